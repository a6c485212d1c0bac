"""A campaign on PostgreSQL + RabbitMQ survives SIGKILL of its daemon (circus and its worker; RabbitMQ, a
service, keeps the campaign's task) in the middle of stage 1: after ``verdi daemon start`` the killed step
runs again, finds the shards already made and makes only the others. The campaign stops after stage 1 (no
candidate passes the loose filters); a kill during DFPT is tested on the embedded default
(``tests/workflows/test_screening_faults.py``)."""

import pytest

from tests import campaign_faults as faults
from tests.production.test_psql_rabbitmq import shell  # noqa: F401 (the fixture: its own profile and database)

pytestmark = pytest.mark.production


def test_killed_in_stage_one(shell):  # noqa: F811
    faults.setup(shell)  # localhost, the codes and a family on the new profile
    try:
        pk, _ = faults.kill_in_stage_one(shell, verify=False)
        faults.start_daemon(shell)
        result = faults.run(shell, 'check', pk, 600)
    finally:
        faults.stop_daemon(shell)
    assert (result['state'], result['exit_status']) == ('finished', 311), result
    assert result['shards'] == sorted(f'stage1_shard{index}_1' for index in range(faults.SHARDS))
    assert result['predicted'] == {'stage1': faults.CANDIDATES, 'stage2': 0} and result['most_per_key'] == 1
    assert result['predictions'] == faults.CANDIDATES
