"""A production profile: PostgreSQL storage (``core.psql_dos``) and RabbitMQ broker, driven as a user does.

Every command is a subprocess with its own ``AIIDA_PATH`` (:class:`tests.conftest.UserShell`): a profile
made with ``verdi profile setup core.psql_dos --broker core.rabbitmq`` (no computer: ``aiida-dielectrics
setup`` creates ``localhost``), an import and a query, and a work chain run by two daemon workers. The
database is dropped afterwards. PostgreSQL (trust authentication for ``postgres``) and RabbitMQ
(guest/guest) must answer on 127.0.0.1: ``bash scripts/services.sh`` starts them, as ``scripts/test.sh``
does before the tests.
"""

import os
import secrets
import shutil
import socket

import pytest

from tests.conftest import UserShell

pytestmark = pytest.mark.production

POSTGRES = {'host': os.environ.get('PGHOST', '127.0.0.1'), 'port': int(os.environ.get('PGPORT', 5432))}
RABBITMQ = ('127.0.0.1', 5672)

#: A slice of the Petousis CSV: its two header lines, the first 40 rows and the four with Φ ≥ 200
#: (line numbers in the file), so that the import stays a few seconds instead of the full file's minutes.
SLICE_LINES = [*range(1, 43), 206, 486, 719, 771]
#: What ``aiida-dielectrics query --fom-min 200`` lists after importing the full file; the slice keeps all four.
FOM_200 = ['AlTlF4', 'Tl2SnCl6', 'Bi2SO2', 'BiCl3']


def postgres(sql: str) -> None:
    import psycopg

    with psycopg.connect(**POSTGRES, user='postgres', dbname='postgres', autocommit=True) as connection:
        connection.execute(sql)


def require_services() -> None:
    """Fail (not skip: CI runs these) with what to do when PostgreSQL or RabbitMQ does not answer."""
    import psycopg

    try:
        postgres('SELECT 1')
    except psycopg.OperationalError as exception:
        pytest.fail(f'PostgreSQL does not answer on {POSTGRES}: {exception}; run `bash scripts/services.sh`')
    try:
        socket.create_connection(RABBITMQ, timeout=5).close()
    except OSError as exception:
        pytest.fail(f'RabbitMQ does not answer on {RABBITMQ}: {exception}; run `bash scripts/services.sh`')


@pytest.fixture(scope='module')
def shell(tmp_path_factory, shared):
    """A user's shell whose default profile is a new PostgreSQL + RabbitMQ profile without a computer."""
    require_services()
    database = f'aiida_dielectrics_test_{secrets.token_hex(4)}'
    postgres(f'CREATE DATABASE {database}')
    home = tmp_path_factory.mktemp('production')
    user = UserShell(home, shared)
    try:
        user.run(
            *('verdi', 'profile', 'setup', 'core.psql_dos', '--non-interactive', '--set-as-default'),
            *('--profile-name', 'production', '--email', 'test@localhost'),
            *('--first-name', 'Test', '--last-name', 'User', '--institution', 'aiida-dielectrics'),
            *('--database-hostname', POSTGRES['host'], '--database-port', POSTGRES['port']),
            *('--database-username', 'postgres', '--database-password', 'postgres'),
            *('--database-name', database, '--repository-uri', (home / 'repository').as_uri()),
            *('--broker', 'core.rabbitmq'),
            check=True,
        )
        yield user
    finally:
        user.run('verdi', 'daemon', 'stop')  # if a test left it running
        postgres(f'DROP DATABASE IF EXISTS {database} WITH (FORCE)')
        delete_task_queue(home)


def delete_task_queue(home) -> None:
    """Delete the profile's durable task queue, which RabbitMQ would otherwise keep after the profile."""
    import asyncio
    import json

    import aio_pika

    config = home / '.aiida' / 'config.json'
    if not config.is_file():
        return
    uuid = json.loads(config.read_text())['profiles']['production']['PROFILE_UUID']

    async def delete():
        connection = await aio_pika.connect(f'amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/')
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(f'aiida-{uuid}.process.queue')

    asyncio.run(delete())


def test_setup_creates_localhost_and_codes(shell):
    """``aiida-dielectrics setup`` on a profile it did not make: the computer, a family (two pseudos, to
    keep it short; the full folder is tested on SQLite) and the codes."""
    folder, hints = shell.mgo_pseudos()
    arguments = ('--pseudo-dir', folder, '--pseudo-hints', hints, '--pseudo-family', 'MgO')
    output = shell.run('aiida-dielectrics', 'setup', *arguments, check=True).stdout
    assert 'Profile `production`: exists.' in output
    assert 'Computer `localhost`: created' in output
    assert 'Pseudo family `MgO`: installed.' in output
    if shutil.which('pw.x'):
        assert 'Code `pw@localhost`: registered.' in output


def test_import_and_query(shell, petousis_csv):
    lines = petousis_csv.read_text().splitlines(keepends=True)
    sliced = shell.home / 'petousis_slice.csv'
    sliced.write_text(''.join(lines[number - 1] for number in SLICE_LINES))
    imported = shell.run('aiida-dielectrics', 'import', 'petousis2017', sliced, check=True).stdout
    assert f'Imported {len(SLICE_LINES) - 2} entries into group `petousis2017`' in imported
    table = shell.run('aiida-dielectrics', 'query', '--fom-min', '200', check=True).stdout.splitlines()
    assert [line.split()[1] for line in table[2:]] == FOM_200


SUBMIT = """
import time
from aiida import engine, orm
from aiida.engine.daemon.client import get_daemon_client
from aiida.plugins import WorkflowFactory

computer = orm.load_computer('localhost')
code = orm.InstalledCode(
    label='bash', computer=computer, filepath_executable='/bin/bash', default_calc_job_plugin='core.arithmetic.add'
).store()
node = engine.submit(WorkflowFactory('core.arithmetic.multiply_add'), x=orm.Int(6), y=orm.Int(7), z=orm.Int(-2), code=code)
deadline = time.monotonic() + 180
while not node.is_terminated and time.monotonic() < deadline:
    time.sleep(0.5)
workers = get_daemon_client().get_numprocesses()['numprocesses']
result = node.outputs.result.value if node.is_finished_ok else None
children = [child.process_label for child in node.called_descendants]
print(workers, node.process_state.value, node.exit_status, result, children)
"""


def test_daemon_runs_a_submitted_workchain(shell):
    """Two daemon workers take a work chain from RabbitMQ: a calcfunction and a CalcJob on ``localhost``
    (direct scheduler) through the work chain, results in PostgreSQL."""
    (shell.home / 'submit.py').write_text(SUBMIT)
    shell.run('verdi', 'daemon', 'start', '2', '--timeout', '60', check=True)
    try:
        result = shell.run('verdi', 'run', shell.home / 'submit.py', check=True, timeout=300).stdout
    finally:
        stopped = shell.run('verdi', 'daemon', 'stop', '--timeout', '60')  # circus answers slowly under load
    # The last line: this RabbitMQ's version warning (docs/how-to/production.md) comes first.
    assert result.splitlines()[-1].split()[:4] == ['2', 'finished', '0', '40'], result
    assert 'multiply' in result and 'ArithmeticAddCalculation' in result
    assert stopped.returncode == 0, stopped.stderr
