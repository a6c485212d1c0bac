"""A campaign on the embedded default (``verdi presto``: SQLite, ZeroMQ broker inside the daemon) survives
SIGKILL of its daemon — circus, the worker and the broker — in the middle of stage 1 and while ph.x runs:
after ``verdi daemon start`` it finishes with one prediction per candidate and no calculation made twice."""

import pytest

from tests import campaign_faults as faults
from tests.conftest import UserShell


@pytest.fixture(scope='module')
def shell(tmp_path_factory, shared):
    user = UserShell(tmp_path_factory.mktemp('faults'), shared)
    faults.setup(user)
    yield user
    faults.stop_daemon(user)


def test_killed_in_stage_one_and_during_ph(shell):
    pk, _ = faults.kill_in_stage_one(shell, verify=True)
    faults.start_daemon(shell)  # the step that was killed runs again from the checkpoint
    seen = faults.run(shell, 'ph')
    assert any('daemon broker' in command for command in seen['killed']), seen
    assert seen['jobs'] == ['ph.x'], seen  # the job outlives the daemon, as on a cluster
    faults.start_daemon(shell)
    result = faults.run(shell, 'check', pk, 900)
    assert (result['state'], result['exit_status'], result['verified']) == ('finished', 0, 1), result
    shards = [f'stage1_shard{index}_1' for index in range(faults.SHARDS)]
    assert result['shards'] == sorted([*shards, 'stage2_shard0_1'])
    assert result['predicted'] == {'stage1': faults.CANDIDATES, 'stage2': 1} and result['most_per_key'] == 1
    assert result['predictions'] == faults.CANDIDATES + 1  # none made outside the shards either
    assert (result['dfpt'], result['pw'], result['ph']) == (1, 1, 1), result
