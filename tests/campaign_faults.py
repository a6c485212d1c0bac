"""A screening campaign whose daemon is killed with SIGKILL while it runs, then started again, as a user would
see it: every command a subprocess in a :class:`tests.conftest.UserShell` (the fault tests on the embedded
default and on PostgreSQL + RabbitMQ share this).

The candidates are :data:`CANDIDATES` rocksalt MgO cells of different lattice constants in a group,
predicted in shard work chains of :data:`SHARD_SIZE` in the daemon, so that stage 1 runs long enough to be
killed in the middle. :data:`SCRIPT` polls the database and kills circus and the processes it runs (the
workers and, on the embedded default, its ZeroMQ broker; RabbitMQ is a service and stays) the moment a
condition holds; the jobs (pw.x, ph.x) are not the daemon's children and keep running, as on a cluster.
"""

import json
import pathlib
import time
import warnings

#: Candidates and structures per shard: 30 shards, enough to kill in the middle of stage 1.
CANDIDATES, SHARD_SIZE = 60, 2
SHARDS = -(-CANDIDATES // SHARD_SIZE)

SCRIPT = """
'''`submit COUNT SHARD_SIZE verify|stage1`: submit a campaign, kill the daemon once it made its first stage-1
shard; `ph`: kill the daemon once a ph.x job runs; `check PK WAIT`: the campaign's counts, once it ended
(waiting up to WAIT s). Prints JSON.'''
import collections
import contextlib
import json
import os
import sys
import time

import numpy as np
import psutil
from aiida import engine, orm
from aiida.engine.daemon.client import get_daemon_client
from aiida.manage import get_manager
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.calculations.predictions import model_node
from aiida_dielectrics.data.prediction import PredictionData
from aiida_dielectrics.ml.loading import DEFAULT_MODEL_NAMES, resolve
from aiida_dielectrics.workflows.screening import ScreeningWorkChain


def submit(count, shard_size, verify):
    group = orm.Group(label='fault-candidates').store()
    fcc = 0.5 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])  # from_spacegroup takes seconds a cell when busy
    cells = [Structure(Lattice(a * fcc), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]) for a in np.linspace(4.0, 4.6, count)]
    group.add_nodes([orm.StructureData(pymatgen=cell).store() for cell in cells])
    builder = ScreeningWorkChain.get_builder()
    builder.candidates_group = orm.Str(group.label)
    builder.models = {target: model_node(target, resolve(name)) for target, name in DEFAULT_MODEL_NAMES.items()}
    builder.inference = {'shard_size': orm.Int(shard_size)}
    builder.relax_count = orm.Int(1)
    builder.num_verify = orm.Int(1)
    if not verify:
        builder.loose_filters = orm.Dict({'band_gap_min': 100.0})  # nothing passes: it ends after stage 1
    builder.dfpt = {
        'protocol': orm.Str('fast'),
        'potential_family': orm.Str('PseudoDojo/0.4/PBE/SR/standard/upf'),
        'codes': {'pw': orm.load_code('pw@localhost'), 'ph': orm.load_code('ph@localhost')},
        'relax': orm.Bool(False),
        'overrides': orm.Dict({'ecutwfc': 30.0, 'scf': {'kpoints_distance': 1.0}}),  # a short ph.x
        'options': orm.Dict({
            'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1},
            'environment_variables': {'OMPI_MCA_mpi_yield_when_idle': '1'},
        }),
    }
    return engine.submit(builder).pk


def count(condition):
    '''The stage-1 shards the campaign predicted, or the ph.x jobs with the scheduler (the profile holds one campaign).'''
    get_manager().get_profile_storage().get_session().rollback()  # see what the daemon committed since
    if condition == 'ph':
        filters = {'attributes.process_label': 'PhCalculation', 'attributes.state': 'withscheduler'}
        return orm.QueryBuilder().append(orm.CalcJobNode, filters=filters).count()
    query = orm.QueryBuilder().append(
        orm.WorkflowNode, filters={'attributes.process_label': 'ScreeningWorkChain'}, tag='campaign'
    )
    query.append(orm.ProcessNode, with_incoming='campaign', edge_filters={'label': {'like': 'stage1_shard%'}}, tag='shard')
    query.append(orm.CalculationNode, with_incoming='shard', edge_filters={'label': 'batch'})
    return query.count()


def kill_when(condition, timeout=900):
    start = time.monotonic()
    deadline = start + timeout
    while not count(condition):
        if time.monotonic() > deadline:
            sys.exit(f'{condition}: not reached in {timeout} s')
        time.sleep(0.2)
    waited = time.monotonic() - start
    # circus and what it runs (workers, broker); not their own short-lived children (the direct scheduler's
    # `bash -l`: killed, pyenv's rehash in it would leave its lock behind and make the next logins wait 60 s)
    daemon = psutil.Process(get_daemon_client().get_daemon_pid())
    processes, commands = [daemon, *daemon.children()], []
    for process in processes:  # a child may be gone already
        with contextlib.suppress(psutil.NoSuchProcess):
            commands.append(' '.join(process.cmdline()[2:6]))  # e.g. -p presto daemon worker
            process.kill()
    psutil.wait_procs(processes, timeout=30)
    jobs = [  # the profile's jobs (they run in its scratch folder) that outlive the daemon
        process.info['name']
        for process in psutil.process_iter(['name', 'cwd'])
        if process.info['name'] in ('pw.x', 'ph.x') and (process.info['cwd'] or '').startswith(os.environ['AIIDA_PATH'])
    ]
    return {'seen': count(condition), 'killed': commands, 'jobs': jobs, 'waited': waited, 'took': time.monotonic() - start}


def check(pk, wait):
    node = orm.load_node(pk)
    deadline = time.monotonic() + wait
    while not node.is_terminated and time.monotonic() < deadline:
        time.sleep(2)
    query = orm.QueryBuilder().append(orm.WorkflowNode, filters={'id': node.pk}, tag='campaign')
    query.append(
        orm.ProcessNode,
        with_incoming='campaign',
        edge_filters={'label': {'like': 'stage%_shard%'}},
        edge_project='label',
        tag='shard',
    )
    shards = query.all(flat=True)
    query.append(orm.CalculationNode, with_incoming='shard', edge_filters={'label': 'batch'}, tag='batch')
    query.append(PredictionData, with_incoming='batch', edge_project='label', tag='prediction')
    per_key = collections.Counter(
        (row['campaign--shard']['label'].split('_')[0], row['batch--prediction']['label']) for row in query.iterdict()
    )

    def processes(process_type):
        return orm.QueryBuilder().append(orm.ProcessNode, filters={'process_type': process_type}).count()

    return {
        'state': node.process_state.value,
        'exit_status': node.exit_status,
        'shards': sorted(shards),
        'predicted': {stage: sum(1 for s, _ in per_key if s == stage) for stage in ('stage1', 'stage2')},
        'most_per_key': max(per_key.values(), default=0),
        'predictions': orm.QueryBuilder().append(PredictionData).count(),
        'dfpt': processes('aiida.workflows:dielectrics.dfpt.qe'),
        'pw': processes('aiida.calculations:quantumespresso.pw'),
        'ph': processes('aiida.calculations:quantumespresso.ph'),
        'verified': len(node.outputs.dielectrics) if 'dielectrics' in node.outputs else 0,
    }


mode, *arguments = sys.argv[1:]
if mode == 'submit':
    pk = submit(int(arguments[0]), int(arguments[1]), arguments[2] == 'verify')
    get_manager().reset_runner()  # let go of the broker: a client of a killed ZeroMQ broker waits ~30 s to exit
    get_manager().reset_broker()
    print(json.dumps({'pk': pk, **kill_when('stage1')}))
elif mode == 'ph':
    print(json.dumps(kill_when('ph')))
else:
    print(json.dumps(check(int(arguments[0]), float(arguments[1]))))
"""


def setup(shell) -> None:
    """``aiida-dielectrics setup`` with the two pseudos MgO needs (the whole folder is tested elsewhere)."""
    folder, hints = shell.mgo_pseudos()
    shell.run('aiida-dielectrics', 'setup', '--pseudo-dir', folder, '--pseudo-hints', hints, check=True)
    (shell.home / 'faults.py').write_text(SCRIPT)


def run(shell, *arguments, timeout: float = 1200) -> dict:
    result = shell.run('verdi', 'run', shell.home / 'faults.py', *arguments, check=True, timeout=timeout)
    return json.loads(result.stdout.splitlines()[-1])


def start_daemon(shell) -> None:
    """``verdi daemon start``, as after a crash (it deletes circus's stale PID file itself).

    On the embedded default the new worker can read the killed broker's socket path before the new broker
    replaces it (aiida-core 2.9.4) and then never receives a task (``verdi status``: tasks pending, none
    processing); ``verdi daemon restart``, which stops the broker cleanly, gets it going.
    """
    started = time.time()
    shell.run('verdi', 'daemon', 'start', '1', '--timeout', '60', check=True, timeout=180)
    status_files = list((shell.home / '.aiida' / 'broker').glob('*/broker.status'))
    if not status_files:
        return  # RabbitMQ
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(status_files[0].read_text() or '{}')
        if status.get('timestamp', 0) > started and status.get('task_subscribers'):
            return
        time.sleep(1)
    warnings.warn('the restarted worker did not reach the ZeroMQ broker: verdi daemon restart', stacklevel=2)
    shell.run('verdi', 'daemon', 'restart', '--timeout', '60', check=True, timeout=180)


def stop_daemon(shell) -> None:
    """``verdi daemon stop`` if the daemon runs (against a killed one it waits for its timeout)."""
    for path in (shell.home / '.aiida' / 'daemon').glob('circus-*.pid'):
        if pathlib.Path(f'/proc/{path.read_text().strip()}').exists():
            shell.run('verdi', 'daemon', 'stop', '--timeout', '60', timeout=180)


def kill_in_stage_one(shell, verify: bool) -> tuple[int, dict]:
    """Submit, kill the daemon once the first stage-1 shard is made, and check that it died in the middle."""
    start_daemon(shell)
    seen = run(shell, 'submit', CANDIDATES, SHARD_SIZE, 'verify' if verify else 'stage1')
    assert any('daemon worker' in command for command in seen['killed']), seen
    assert 1 <= seen['seen'] < SHARDS, seen
    return seen['pk'], seen
