"""A campaign submitted to the daemon as a user does, through stage 1, on the embedded default and on PostgreSQL + RabbitMQ.

For each profile kind, in a new AiiDA configuration folder (its own ``AIIDA_PATH``) and, for ``psql``, a new
PostgreSQL database:

1. the profile: ``presto``, the embedded default that ``aiida-dielectrics setup`` makes (``verdi presto``:
   SQLite + ZeroMQ broker); ``psql``, ``verdi profile setup core.psql_dos --broker core.rabbitmq`` on the
   local PostgreSQL and RabbitMQ; then ``aiida-dielectrics setup`` with the shared pseudos (README);
2. ``--n`` substitution candidates of the first ``--seeds`` Petousis structures (the
   ``generate_candidates`` calcfunction, as ``bench_campaign.py``), stored and put in the group
   ``candidates`` (not timed as part of the campaign);
3. ``verdi daemon start --workers``, then ``verdi run examples/submit_screening.py --candidates-group
   candidates --relax-count 1 --verify 1 --pseudo-family <not installed> --concurrent-shards M`` (timed: the
   submit step): ``--concurrent-shards`` shard work chains at a time, spread over the workers; with
   ``--predict-jobs N`` instead ``--predict-code python@localhost --concurrent-shards N`` (a code for this
   Python, made first): the shards run as ``dielectrics.predict`` jobs, N at a time;
4. polling (every ``--interval`` s) until the work chain has its ``preselection`` output (the end of its
   ``preselect`` step: stage 1 done); meanwhile the peak RSS (``VmHWM`` in ``/proc/<pid>/status``) and CPU
   time of each daemon worker (``verdi daemon status`` lists them, and the ZeroMQ broker) and the size
   of the work chain's ``checkpoints`` attribute, all read once more as soon as stage 1 is seen done;
5. stages 2 and 3 are not measured: the work chain refuses ``relax_count`` and ``num_verify`` 0, so it
   relaxes its one candidate (seconds) and then refuses its one DFPT (the pseudo family is not
   installed, so no pw.x runs) and ends with exit 400; the script waits for that (``verdi process kill``
   if it does not end within 10 minutes, or at ``--deadline``) and stops the daemon;
6. the timeline from the nodes' times (a shard runs from its batch's ``ctime``, made before the GNNs run,
   to the shard's ``mtime``, sealed right after; shards that overlap run at once), the size of the database (``pg_database_size``, or the SQLite file) and of the file repository,
   and ``--ml-shards`` of the campaign's shards run again piece by piece in a fresh process with the
   campaign's model nodes (ML alone, with protostructure labels, whole ``run_prediction``), scaled to the
   shards the worker ran.

The profiles, the database and RabbitMQ's task queue are removed at the end unless ``--keep``. Torch runs
with ``--threads`` threads (``OMP_NUM_THREADS``, inherited by the daemon workers). The table compares the
two kinds side by side (ratio psql/presto).

    nice -n 10 python benchmarks/bench_daemon_campaign.py --both --n 10000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('AIIDA_DIELECTRICS_SHARED', ROOT / '..' / 'shared')).resolve()
SUBMIT = ROOT / 'examples' / 'submit_screening.py'
POSTGRES = {'host': os.environ.get('PGHOST', '127.0.0.1'), 'port': int(os.environ.get('PGPORT', 5432))}
RABBITMQ = ('127.0.0.1', 5672)
GROUP = 'candidates'
CAMPAIGN = 'campaign'
PROFILE = {'presto': 'presto', 'psql': 'production'}
DEFAULT_WORKERS = {'presto': 1, 'psql': 2}
#: A pseudo family that is not installed: stage 3 refuses its one DFPT, so no pw.x runs after stage 1.
NO_FAMILY = 'not-installed/bench-stops-before-dfpt'


# ---------------------------------------------------------------------------------------------------------
# Steps run inside a profile (``--step NAME``, in a subprocess with the profile's AIIDA_PATH).
# ---------------------------------------------------------------------------------------------------------


def step_candidates(arguments) -> dict:
    """Substitution candidates of the first ``--seeds`` Petousis structures, stored, in the group ``candidates``."""
    from aiida import load_profile, orm

    load_profile()
    from aiida_dielectrics.calculations.candidates import generate_candidates
    from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows
    from aiida_dielectrics.tools.provenance import run_in_bulk

    start = time.perf_counter()
    seeds = [row for row in read_rows(arguments.csv) if isinstance(row, Row)][: arguments.seeds]
    generated, _ = run_in_bulk(
        generate_candidates,
        parameters=orm.Dict({'threshold': arguments.threshold, 'max_candidates': arguments.n}),
        **{f'seed_{i}': orm.StructureData(pymatgen=row.structure) for i, row in enumerate(seeds)},
    )
    group, _ = orm.Group.collection.get_or_create(label=GROUP)
    group.add_nodes(list(generated['structures'].values()))
    return {'candidates': len(generated['structures']), 'seconds': time.perf_counter() - start}


def proc_status(pid: int) -> dict | None:
    """Peak and current RSS (bytes) and CPU time (s) of process ``pid`` from ``/proc``; ``None`` if it is gone."""
    try:
        status = pathlib.Path(f'/proc/{pid}/status').read_text()
        stat = pathlib.Path(f'/proc/{pid}/stat').read_text()
    except OSError:
        return None
    values = {}
    for name in ('VmHWM', 'VmRSS'):
        found = re.search(rf'^{name}:\s+(\d+) kB', status, re.MULTILINE)
        values[name] = int(found.group(1)) * 1024 if found else None
    fields = stat.rsplit(')', 1)[1].split()
    values['cpu_s'] = (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    return values


def step_poll(arguments) -> dict:
    """Poll the campaign until its ``preselection`` output exists (stage 1 done), it ends, or the deadline."""
    from aiida import load_profile, orm
    from aiida.manage import get_manager
    from sqlalchemy.exc import OperationalError

    load_profile()
    pids = {int(pid): kind for pid, kind in json.loads(arguments.pids).items()}
    session = get_manager().get_profile_storage().get_session()
    started, deadline = time.time(), time.time() + arguments.deadline

    def read() -> tuple:
        """The campaign's checkpoint, state and preselection, and how many stage-1 shards finished."""
        query = orm.QueryBuilder().append(
            orm.WorkflowNode,
            filters={'id': arguments.pk},
            project=['attributes.checkpoints', 'attributes.process_state'],
        )
        checkpoint, state = query.one()
        shards = orm.QueryBuilder().append(orm.WorkflowNode, filters={'id': arguments.pk}, tag='campaign')
        shards.append(
            orm.ProcessNode,
            with_incoming='campaign',
            filters={'attributes.process_state': 'finished'},
            edge_filters={'label': {'like': 'stage1_shard%'}},
            project=['id'],
        )
        preselection = orm.QueryBuilder().append(
            orm.WorkflowNode, filters={'id': arguments.pk}, tag='campaign'
        )
        preselection.append(
            orm.Dict, with_incoming='campaign', edge_filters={'label': 'preselection'}, project=['id']
        )
        done = preselection.first(flat=True)
        count = shards.count()
        return checkpoint, state, done, count

    samples, checkpoint_max, last_print, seen, locked = {}, 0, 0.0, {}, 0
    while True:
        session.rollback()  # a new read transaction: see what the worker committed since the last poll
        now = time.time()
        for pid in pids:
            sample = proc_status(pid)
            if sample is not None:
                samples[pid] = sample
        try:
            checkpoint, state, done, count = read()
        except OperationalError:  # SQLite: a worker holds the write lock longer than the busy timeout
            locked += 1
            time.sleep(arguments.interval)
            continue
        checkpoint_max = max(checkpoint_max, len((checkpoint or '').encode()))
        if count and 'first_shard' not in seen:
            seen['first_shard'] = now
        if now - last_print > 30:
            rss = ', '.join(f'{s["VmHWM"] / 2**20:.0f}' for s in samples.values())
            print(
                f'  {now - started:6.0f} s: {state}, {count} stage-1 shards, checkpoint '
                f'{len((checkpoint or "").encode()) / 1024:.1f} kB, worker peak RSS {rss} MiB',
                file=sys.stderr,
                flush=True,
            )
            last_print = now
        finished = state in ('finished', 'excepted', 'killed')
        if done is not None or finished or now > deadline:
            break
        time.sleep(arguments.interval)
    before = {str(pid): dict(sample) for pid, sample in samples.items()}
    for pid in pids:  # at once: the worker goes on into stage 2
        sample = proc_status(pid)
        if sample is not None:
            samples[pid] = sample
    ended = time.time() + 600 if done is not None else time.time()
    while state not in ('finished', 'excepted', 'killed') and time.time() < ended:
        time.sleep(2)  # stage 2 of one candidate, then stage 3 refused (the pseudo family is not installed)
        session.rollback()
        state = orm.load_node(arguments.pk).process_state.value
    return {
        'final_state': state,
        'before': before,
        'state': state,
        'preselection': done,
        'timed_out': done is None and not finished,
        'polled_until': now,
        'shards': count,
        'checkpoint_bytes': len((checkpoint or '').encode()),
        'checkpoint_max_bytes': checkpoint_max,
        'locked_polls': locked,
        'processes': {str(pid): {'kind': pids[pid], **samples.get(pid, {})} for pid in pids},
    }


def storage_sizes() -> dict:
    """Database size (PostgreSQL's ``pg_database_size`` or the SQLite file) and file repository size, bytes."""
    from aiida.manage import get_manager
    from sqlalchemy import text

    profile = get_manager().get_profile()
    storage = get_manager().get_profile_storage()
    config = profile.storage_config
    if profile.storage_backend == 'core.psql_dos':
        size = storage.get_session().execute(text('SELECT pg_database_size(current_database())')).scalar()
        repository = pathlib.Path(config['repository_uri'].removeprefix('file://'))
        database = {'database': int(size), 'database_kind': 'PostgreSQL (pg_database_size)'}
    else:
        folder = pathlib.Path(config['filepath'])
        sqlite = folder / 'database.sqlite'
        database = {'database': sqlite.stat().st_size, 'database_kind': 'SQLite file'}
        repository = folder / 'container'
    files = [path for path in repository.rglob('*') if path.is_file()]
    return {**database, 'repository': sum(path.stat().st_size for path in files)}


def model_cards(models: dict) -> dict:
    """What the campaign's model nodes are: architecture (model card or node), members, sha256."""
    cards = {}
    for target, node in models.items():
        card = {}
        if 'model_card.json' in node.base.repository.list_object_names():
            card = json.loads(node.base.repository.get_object_content('model_card.json'))
        cards[target] = {
            'architecture': card.get('architecture', node.architecture),
            'members': node.members,
            'sha256': node.base.attributes.get('sha256')[:12],
            'pk': node.pk,
        }
    return cards


def step_analyse(arguments) -> dict:
    """The campaign's timeline from its nodes, the storage sizes, and the ML alone on a sample."""
    from aiida import load_profile, orm

    from aiida_dielectrics.workflows.prediction_shard import prediction_batch

    load_profile()

    campaign = orm.load_node(arguments.pk)
    query = orm.QueryBuilder().append(orm.WorkflowNode, filters={'id': campaign.pk}, tag='campaign')
    query.append(
        orm.ProcessNode,
        with_incoming='campaign',
        filters={'attributes.process_state': 'finished', 'attributes.exit_status': 0},
        edge_filters={'label': {'like': 'stage1_shard%'}},
        edge_project='label',
        project='*',
    )
    # A shard runs from its batch's ctime (the batch's process node is made before the GNNs run; a job's is
    # the job) to the shard's mtime (a shard work chain is sealed right after its batch).
    shards = sorted(
        (
            int(label.split('_')[1].removeprefix('shard')),
            prediction_batch(shard).ctime.timestamp(),
            shard.mtime.timestamp(),
        )
        for shard, label in query.all()
    )
    result = {
        'campaign_ctime': campaign.ctime.timestamp(),
        'shard_times': [[ctime, mtime] for _, ctime, mtime in shards],
        'state': campaign.process_state.value if campaign.process_state else None,
        'logs': [
            [log.time.timestamp(), log.message]
            for log in orm.Log.collection.get_logs_for(campaign, order_by=None)
        ],
        'storage': storage_sizes(),
        'models': model_cards(dict(campaign.inputs.models)),
        'shard_size': campaign.inputs.inference.shard_size.value,
        'package': str(pathlib.Path(sys.modules['aiida_dielectrics'].__file__).parent),
    }
    result['logs'].sort()
    if 'preselection' in campaign.outputs:
        preselection = campaign.outputs.preselection
        result.update(
            preselection_ctime=preselection.ctime.timestamp(),
            predicted=preselection['candidates'],
            passed_filters=preselection['passed_filters'],
        )
    if arguments.ml_shards and shards:
        result['ml'] = time_shards(campaign, [mtime - ctime for _, ctime, mtime in shards], arguments)
    return result


class Stopwatch:
    """Accumulates the time spent in ``module.name`` (replaced by a timed wrapper) while it is installed."""

    def __init__(self, module, name: str):
        self.seconds, self.module, self.name = 0.0, module, name
        self.function = getattr(module, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self.function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(module, name, timed)


def time_shards(campaign, durations: list[float], arguments) -> dict:
    """``--ml-shards`` of the campaign's stage-1 shards (evenly spread, plus the one after the first that the
    worker took longest for) run again with ``run_prediction`` in this process, after a warm-up, with the
    time spent in ``predict_records`` (the ML, what the ``dielectrics.predict`` job runs too) and, inside it,
    in the protostructure labels (spglib) measured as they run: ML = predict − labels, provenance = shard −
    predict."""
    import torch
    from aiida import orm

    from aiida_dielectrics.calculations.predictions import load_model_node, pymatgen_structure, run_prediction
    from aiida_dielectrics.ml import inference, job
    from aiida_dielectrics.tools.provenance import load_nodes

    torch.set_num_threads(arguments.threads)
    group = orm.load_group(GROUP)
    query = orm.QueryBuilder().append(orm.Group, filters={'id': group.pk}, tag='group')
    query.append(orm.StructureData, with_group='group', project='id')
    keys = sorted(f'n{pk}' for pk in query.all(flat=True))  # the campaign's order
    size = campaign.inputs.inference.shard_size.value
    count = -(-len(keys) // size)
    wanted = arguments.ml_shards
    picks = {round(i * (count - 1) / max(wanted - 1, 1)) for i in range(wanted)}
    longest = max(range(1, len(durations)), key=durations.__getitem__) if len(durations) > 1 else None
    if longest is not None:
        picks.add(longest)
    models = dict(campaign.inputs.models)
    start = time.perf_counter()
    model_sets = {target: load_model_node(node) for target, node in models.items()}
    loading = time.perf_counter() - start
    warm = [pymatgen_structure(node) for node in load_nodes([int(key[1:]) for key in keys[:8]]).values()]
    job.predict_records(warm, model_sets, {'batch_size': 64, 'labels': True})
    predicting, labelling = Stopwatch(job, 'predict_records'), Stopwatch(inference, 'protostructure_label')
    timed = {}
    for index in sorted(picks):
        shard = keys[index * size : (index + 1) * size]
        nodes = load_nodes([int(key[1:]) for key in shard])
        predicting.seconds = labelling.seconds = 0.0
        start = time.perf_counter()
        run_prediction({key: nodes[int(key[1:])] for key in shard}, models)
        total = time.perf_counter() - start
        timed[str(index)] = {
            'shard': total,
            'predict': predicting.seconds,
            'labels': labelling.seconds,
            'in_worker': durations[index] if index < len(durations) else None,
        }
    return {'model_loading_s': loading, 'shard_count': count, 'longest': longest, 'shards': timed}


STEPS = {'candidates': step_candidates, 'poll': step_poll, 'analyse': step_analyse}


# ---------------------------------------------------------------------------------------------------------
# The driver: profiles, daemon, submission, clean-up.
# ---------------------------------------------------------------------------------------------------------


class Profile:
    """A throw-away AiiDA configuration folder with one profile of ``kind``; commands run as a user types them."""

    def __init__(self, kind: str, arguments):
        self.kind, self.arguments = kind, arguments
        self.home = pathlib.Path(tempfile.mkdtemp(prefix=f'aiida-daemon-bench-{kind}-'))
        self.database = f'aiida_bench_{secrets.token_hex(4)}' if kind == 'psql' else None
        self.env = {key: value for key, value in os.environ.items() if not key.startswith('AIIDA_')}
        self.env.update(
            AIIDA_PATH=str(self.home),
            AIIDA_DIELECTRICS_MODEL_DIR=str(SHARED / 'models' / 'matgl'),
            OMP_NUM_THREADS=str(arguments.threads),
        )
        self.daemon, self.pids = False, []

    def run(
        self, *args, check: bool = True, timeout: float = 3600, stderr=None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(arg) for arg in args],
            cwd=self.home,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=stderr if stderr is not None else subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise SystemExit(
                f'{" ".join(map(str, args))} exited {result.returncode}:\n{result.stdout[-3000:]}\n'
                f'{(result.stderr or "")[-3000:]}'
            )
        return result

    def step(self, name: str, *args, timeout: float = 3600) -> dict:
        """Run ``--step name`` of this script in the profile; its JSON output (progress goes to stderr)."""
        result = self.run(sys.executable, __file__, '--step', name, *args, timeout=timeout, stderr=sys.stderr)
        return json.loads(result.stdout.strip().splitlines()[-1])

    def create(self) -> None:
        if self.kind == 'psql':
            postgres(f'CREATE DATABASE {self.database}')
            self.run(
                *('verdi', 'profile', 'setup', 'core.psql_dos', '--non-interactive', '--set-as-default'),
                *('--profile-name', PROFILE['psql'], '--email', 'bench@localhost'),
                *('--first-name', 'Bench', '--last-name', 'Mark', '--institution', 'aiida-dielectrics'),
                *('--database-hostname', POSTGRES['host'], '--database-port', POSTGRES['port']),
                *('--database-username', 'postgres', '--database-password', 'postgres'),
                *('--database-name', self.database, '--repository-uri', (self.home / 'repository').as_uri()),
                *('--broker', 'core.rabbitmq'),
            )
        pseudos = SHARED / 'pseudos'
        self.run(  # on a folder without a profile this makes the embedded default (verdi presto)
            *('aiida-dielectrics', 'setup', '--pseudo-dir', pseudos / 'PseudoDojo-0.4-PBE-SR-noCC-standard'),
            *('--pseudo-hints', pseudos / 'PseudoDojo-0.4-PBE-SR-standard-hints.djson'),
        )

    def start_daemon(self, workers: int) -> dict:
        """``verdi daemon start``; the worker (and broker) PIDs from ``verdi daemon status`` once all are up."""
        self.daemon = True
        self.run('verdi', 'daemon', 'start', workers, '--timeout', '60', timeout=300)
        deadline = time.monotonic() + 120
        while True:
            status = self.run('verdi', 'daemon', 'status', '--timeout', '30', check=False).stdout
            table = status.split('Active workers', 1)[-1]
            pids = {pid: 'worker' for pid in re.findall(r'^\s*(\d+)\s+[\d.]+\s+[\d.]+\s+\d{4}-', table, re.M)}
            if len(pids) >= workers or time.monotonic() > deadline:
                break
            time.sleep(2)
        broker = re.search(r'Broker is running as PID (\d+)', status)
        if broker:
            pids[broker.group(1)] = 'ZeroMQ broker'
        circus = re.search(r'Daemon is running as PID (\d+)', status)
        self.pids = [*pids, *([circus.group(1)] if circus else [])]
        if self.kind == 'presto':
            wait_for_zeromq_subscriber(self.home)
        return pids

    def stop_daemon(self) -> None:
        """``verdi daemon stop``; then SIGKILL any of this daemon's processes that are still there."""
        if not self.daemon:
            return
        self.run('verdi', 'daemon', 'stop', '--timeout', '120', check=False, timeout=600)
        time.sleep(2)
        for pid in self.pids:
            if proc_status(int(pid)) is not None and str(self.home) in read_environ(int(pid)):
                print(f'daemon process {pid} still runs after `verdi daemon stop`: SIGKILL', file=sys.stderr)
                os.kill(int(pid), signal.SIGKILL)
        self.daemon = False

    def remove(self) -> None:
        self.stop_daemon()
        if self.arguments.keep:
            print(f'kept: AIIDA_PATH={self.home}' + (f', database {self.database}' if self.database else ''))
            return
        if self.database:
            delete_task_queue(self.home)
            postgres(f'DROP DATABASE IF EXISTS {self.database} WITH (FORCE)')
        shutil.rmtree(self.home, ignore_errors=True)


def read_environ(pid: int) -> str:
    try:
        return pathlib.Path(f'/proc/{pid}/environ').read_bytes().decode(errors='replace')
    except OSError:
        return ''


def postgres(sql: str) -> None:
    import psycopg

    with psycopg.connect(**POSTGRES, user='postgres', dbname='postgres', autocommit=True) as connection:
        connection.execute(sql)


def delete_task_queue(home: pathlib.Path) -> None:
    """Delete the profile's durable RabbitMQ task queue, which would outlive the profile."""
    import asyncio

    import aio_pika

    config = home / '.aiida' / 'config.json'
    if not config.is_file():
        return
    uuid = json.loads(config.read_text())['profiles'][PROFILE['psql']]['PROFILE_UUID']

    async def delete():
        connection = await aio_pika.connect(f'amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/')
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(f'aiida-{uuid}.process.queue')

    asyncio.run(delete())


def wait_for_zeromq_subscriber(home: pathlib.Path, seconds: float = 60) -> None:
    """Wait until the ZeroMQ broker reports a task subscriber (the worker has connected)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in (home / '.aiida' / 'broker').glob('*/broker.status'):
            if json.loads(path.read_text() or '{}').get('task_subscribers'):
                return
        time.sleep(1)
    print('warning: no worker subscribed to the ZeroMQ broker after 60 s', file=sys.stderr)


def measure(kind: str, arguments) -> dict:
    """Everything for one profile kind; the profile is removed at the end (unless ``--keep``)."""
    workers = arguments.workers or DEFAULT_WORKERS[kind]
    profile = Profile(kind, arguments)
    print(f'[{kind}] AIIDA_PATH={profile.home}', file=sys.stderr, flush=True)
    result = {'kind': kind, 'workers': workers, 'n': arguments.n, 'load_before': os.getloadavg()}
    try:
        start = time.perf_counter()
        profile.create()
        result['setup_s'] = time.perf_counter() - start
        forwarded = [
            '--n',
            arguments.n,
            '--seeds',
            arguments.seeds,
            '--threshold',
            arguments.threshold,
            '--csv',
            arguments.csv,
        ]
        result['generation'] = profile.step('candidates', *forwarded)
        print(f'[{kind}] {result["generation"]}', file=sys.stderr, flush=True)
        pids = profile.start_daemon(workers)
        submit = (
            *('verdi', 'run', SUBMIT, '--candidates-group', GROUP, '--group', CAMPAIGN),
            *('--relax-count', '1', '--verify', '1', '--shard-size', arguments.shard_size),
            *('--pseudo-family', NO_FAMILY),
        )
        if arguments.predict_jobs:  # the shards as `dielectrics.predict` jobs on localhost (direct scheduler)
            profile.run(
                *('verdi', 'code', 'create', 'core.code.installed', '--non-interactive', '--label', 'python'),
                *('--computer', 'localhost', '--filepath-executable', sys.executable),
            )
            options = {'environment_variables': {'OMP_NUM_THREADS': str(arguments.threads)}}
            submit += ('--predict-code', 'python@localhost', '--concurrent-shards', arguments.predict_jobs)
            submit += ('--predict-options', json.dumps(options))
        else:
            submit += ('--concurrent-shards', arguments.concurrent_shards)
        result['predict_jobs'] = arguments.predict_jobs
        result['concurrent_shards'] = arguments.predict_jobs or arguments.concurrent_shards
        submitted = time.time()
        output = profile.run(*submit, timeout=3600).stdout
        result['submit_s'] = time.time() - submitted
        result['submitted'] = submitted
        pk = int(re.search(r'ScreeningWorkChain<(\d+)>', output).group(1))
        print(f'[{kind}] submitted ScreeningWorkChain<{pk}> in {result["submit_s"]:.1f} s', file=sys.stderr)
        polled = profile.step(
            'poll',
            *('--pk', pk, '--pids', json.dumps(pids), '--interval', arguments.interval),
            *('--deadline', arguments.deadline),
            timeout=arguments.deadline + 900,
        )
        result['poll'] = polled
        result['load_after'] = os.getloadavg()
        if polled['final_state'] not in ('finished', 'excepted', 'killed'):
            killed = profile.run('verdi', 'process', 'kill', pk, '--timeout', '60', check=False, timeout=600)
            result['kill'] = (killed.stdout + killed.stderr).strip().splitlines()[-1:]
        profile.stop_daemon()
        forwarded = ['--pk', pk, '--ml-shards', arguments.ml_shards, '--threads', arguments.threads]
        result['analysis'] = profile.step('analyse', *forwarded)
    finally:
        profile.remove()
    return summarize(result)


def summarize(result: dict) -> dict:
    """The figures of one run from its raw measurements."""
    analysis, poll = result['analysis'], result['poll']
    submitted, n = result['submitted'], result['generation']['candidates']
    end = analysis.get('preselection_ctime')
    shards = analysis['shard_times']
    figures = {
        'candidates': n,
        'submit_s': result['submit_s'],
        'stage1_done': end is not None,
        'shards': len(shards),
        'shard_size': analysis['shard_size'],
        'checkpoint_bytes': poll['checkpoint_bytes'],
        'checkpoint_max_bytes': poll['checkpoint_max_bytes'],
        'locked_polls': poll.get('locked_polls'),
        'storage': analysis['storage'],
        'models': analysis['models'],
        'package': analysis['package'],
        'processes': poll['processes'],
        'kill': result.get('kill'),
        'final_state': poll['final_state'],
        'workers': result['workers'],
        'predict_jobs': result.get('predict_jobs', 0),
        'concurrent_shards': result.get('concurrent_shards'),
        'before': poll['before'],
        'setup_s': result['setup_s'],
        'generation_s': result['generation']['seconds'],
        'load': [result['load_before'], result['load_after']],
        'logs': [[round(t - submitted, 1), message] for t, message in analysis['logs']],
    }
    if end is not None:
        figures['stage1_s'] = end - submitted
        figures['predicted'] = analysis['predicted']
        figures['passed_filters'] = analysis['passed_filters']
    else:  # stopped at the deadline: the rate at that point
        done = min(n, len(shards) * analysis['shard_size'])
        figures['stage1_s'] = poll['polled_until'] - submitted
        figures['predicted_at_stop'] = done
    figures['rate'] = (n if end is not None else figures['predicted_at_stop']) / figures['stage1_s']
    if shards:
        durations = [mtime - ctime for ctime, mtime in shards]
        rest = sorted(durations[1:])
        figures['before_shards_s'] = shards[0][0] - submitted
        figures['first_shard_s'] = durations[0]
        figures['other_shards_s'] = sum(rest)
        span = max(mtime for _, mtime in shards) - min(ctime for ctime, _ in shards)
        figures['shards_at_once'] = sum(durations) / span if span > 0 else None
        figures['after_shards_s'] = (end - max(mtime for _, mtime in shards)) if end is not None else None
        figures['campaign_ctime_s'] = analysis['campaign_ctime'] - submitted
        if rest:
            figures['shard_mean_s'] = sum(rest) / len(rest)
            figures['shard_median_s'] = rest[len(rest) // 2]
            figures['shard_max_s'] = rest[-1]
    if 'ml' in analysis:
        ml = analysis['ml']
        timed = ml['shards']
        scale = len(shards)  # the shards the worker ran
        mean = {
            name: sum(t[name] for t in timed.values()) / len(timed) for name in ('shard', 'predict', 'labels')
        }
        figures['sampled_shards'] = sorted(int(index) for index in timed)
        figures['shard_times'] = timed
        figures['longest_shard'] = ml['longest']
        figures['ml_model_loading_s'] = ml['model_loading_s']
        figures['shard_in_process_mean_s'] = mean['shard']
        pairs = [(t['in_worker'], t['shard']) for i, t in timed.items() if int(i) > 0 and t['in_worker']]
        if pairs:
            figures['sampled_in_worker_mean_s'] = sum(w for w, _ in pairs) / len(pairs)
            figures['sampled_in_process_mean_s'] = sum(p for _, p in pairs) / len(pairs)
        figures['ml_estimate_s'] = (mean['predict'] - mean['labels']) * scale
        figures['labels_estimate_s'] = mean['labels'] * scale
        figures['shard_storage_estimate_s'] = (mean['shard'] - mean['predict']) * scale
    return figures


def mib(value) -> str:
    return '–' if value is None else f'{value / 2**20:.0f} MiB'


def table(results: dict) -> str:
    """Markdown: one column per profile kind, and psql/presto where both ran."""
    kinds = list(results)
    both = kinds == ['presto', 'psql']
    header = [
        'figure',
        *(f'{k} ({"SQLite + ZeroMQ" if k == "presto" else "PostgreSQL + RabbitMQ"})' for k in kinds),
    ]
    rows = []

    def row(name, values, ratio=True, fmt=str):
        cells = [fmt(v) if v is not None else '–' for v in values]
        if both:
            r = (
                f'{values[1] / values[0]:.2f}'
                if ratio and all(isinstance(v, int | float) and v for v in values)
                else ''
            )
            cells.append(r)
        rows.append([name, *cells])

    get = [results[k] for k in kinds]
    row('daemon workers', [r_['workers'] for r_ in get], ratio=False)
    row(
        'shards at a time (as jobs: prediction jobs on localhost)',
        [f'{r_["concurrent_shards"]}' + (' (as jobs)' if r_['predict_jobs'] else '') for r_ in get],
        ratio=False,
    )
    row('candidates', [r_['candidates'] for r_ in get], ratio=False)
    row('submit (`verdi run examples/submit_screening.py`)', [r_['submit_s'] for r_ in get], fmt=seconds)
    row(
        'submission → stage-1 selection stored'
        + ('' if all(r_['stage1_done'] for r_ in get) else ' (or stop)'),
        [r_['stage1_s'] for r_ in get],
        fmt=seconds,
    )
    row(
        '**candidates/s through stage 1** (goal ≥ 50)',
        [r_['rate'] for r_ in get],
        fmt=lambda v: f'**{v:.1f}**',
    )
    row(
        '… submission → first shard starts (submit, pick-up, first step)',
        [r_.get('before_shards_s') for r_ in get],
        fmt=seconds,
    )
    row(
        '… first shard (loads the 4 model nodes, first imports)',
        [r_.get('first_shard_s') for r_ in get],
        fmt=seconds,
    )
    row('… the other shards, their times added', [r_.get('other_shards_s') for r_ in get], fmt=seconds)
    row(
        '… shards running at once, mean (their time in all / first start → last end)',
        [r_.get('shards_at_once') for r_ in get],
        fmt=lambda v: f'{v:.2f}',
    )
    row(
        '… last shard → selection stored (inspect, group, preselect)',
        [r_.get('after_shards_s') for r_ in get],
        fmt=seconds,
    )
    row('one shard in the worker: mean', [r_.get('shard_mean_s') for r_ in get], fmt=seconds)
    row('one shard in the worker: median', [r_.get('shard_median_s') for r_ in get], fmt=seconds)
    row('one shard in the worker: longest', [r_.get('shard_max_s') for r_ in get], fmt=seconds)
    row(
        'sampled shards: in the worker / in a plain process (`run_prediction`), mean',
        [
            f'{r_["sampled_in_worker_mean_s"]:.2f} s / {r_["sampled_in_process_mean_s"]:.2f} s'
            if 'sampled_in_worker_mean_s' in r_
            else None
            for r_ in get
        ],
        ratio=False,
    )
    row(
        'ML alone: graphs + networks (sampled shards × shards run)',
        [r_.get('ml_estimate_s') for r_ in get],
        fmt=seconds,
    )
    row(
        'protostructure labels in the shards (same)', [r_.get('labels_estimate_s') for r_ in get], fmt=seconds
    )
    row(
        "shards' provenance in bulk (same)",
        [r_.get('shard_storage_estimate_s') for r_ in get],
        fmt=seconds,
    )
    row(
        'engine and the rest (total − the three above)',
        [
            r_['stage1_s'] - r_['ml_estimate_s'] - r_['labels_estimate_s'] - r_['shard_storage_estimate_s']
            if 'ml_estimate_s' in r_
            else None
            for r_ in get
        ],
        fmt=seconds,
    )
    row('checkpoint after preselect', [r_['checkpoint_bytes'] for r_ in get], fmt=kilobytes)
    row('checkpoint, largest while polled', [r_['checkpoint_max_bytes'] for r_ in get], fmt=kilobytes)

    def processes(figures, kind):  # busiest first: the worker that ran the campaign
        found = [p for p in figures['processes'].values() if p['kind'] == kind]
        return sorted(found, key=lambda p: -p.get('cpu_s', 0))

    for index in range(max(len(processes(r_, 'worker')) for r_ in get)):
        values = [(processes(r_, 'worker')[index:] or [{}])[0].get('VmHWM') for r_ in get]
        name = 'worker 1 (the busiest)' if index == 0 else f'worker {index + 1}'
        row(f'peak RSS (VmHWM), {name}', values, fmt=mib)
        values = [(processes(r_, 'worker')[index:] or [{}])[0].get('cpu_s') for r_ in get]
        row(f'CPU time of {name} at the end of stage 1', values, fmt=seconds)
    if any(processes(r_, 'ZeroMQ broker') for r_ in get):
        values = [(processes(r_, 'ZeroMQ broker') or [{}])[0].get('VmHWM') for r_ in get]
        row('peak RSS (VmHWM), ZeroMQ broker', values, ratio=False, fmt=mib)
    row('database size', [r_['storage']['database'] for r_ in get], fmt=mib)
    row('file repository size', [r_['storage']['repository'] for r_ in get], fmt=mib)
    if both:
        header.append('psql/presto')
    lines = ['| ' + ' | '.join(header) + ' |', '| ' + ' | '.join('---' for _ in header) + ' |']
    lines += ['| ' + ' | '.join(str(c) for c in r_) + ' |' for r_ in rows]
    return '\n'.join(lines)


def kilobytes(value) -> str:
    return f'{value / 1024:.1f} kB'


def seconds(value) -> str:
    return f'{value:.1f} s'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=10000, help='Candidates to generate and screen.')
    parser.add_argument('--seeds', type=int, default=400, help='Petousis structures used as seeds.')
    parser.add_argument(
        '--threshold',
        type=float,
        default=1e-4,
        help='Substitution probability threshold of the generator (lower: more candidates per seed).',
    )
    kinds = parser.add_mutually_exclusive_group()
    kinds.add_argument('--profile-kind', choices=('presto', 'psql'), default='presto')
    kinds.add_argument('--both', action='store_true', help='presto, then psql.')
    parser.add_argument('--workers', type=int, help='Daemon workers (default: 1 for presto, 2 for psql).')
    parser.add_argument('--shard-size', type=int, default=64, help='submit_screening.py --shard-size.')
    parser.add_argument(
        '--concurrent-shards',
        type=int,
        default=4,
        help='submit_screening.py --concurrent-shards: shard work chains at a time in the daemon.',
    )
    parser.add_argument(
        '--threads', type=int, default=1, help='OMP_NUM_THREADS of the daemon (torch threads).'
    )
    parser.add_argument(
        '--predict-jobs',
        type=int,
        default=0,
        help='Run the shards as this many `dielectrics.predict` jobs at a time on localhost (a `python` code, '
        'direct scheduler) instead of in the daemon worker (0, the default).',
    )
    parser.add_argument('--interval', type=float, default=1.0, help='Polling interval (s).')
    parser.add_argument(
        '--deadline', type=float, default=2100, help='Stop a campaign after this many seconds.'
    )
    parser.add_argument(
        '--ml-shards', type=int, default=8, help='Stage-1 shards timed piece by piece afterwards (0: none).'
    )
    parser.add_argument('--keep', action='store_true', help='Keep the profiles (and database) afterwards.')
    parser.add_argument('--json', type=pathlib.Path, help='Also write the raw figures to this file.')
    parser.add_argument(
        '--csv', type=pathlib.Path, default=SHARED / 'data' / 'petousis2017' / 'dielectric_constant.csv'
    )
    parser.add_argument('--step', choices=tuple(STEPS), help=argparse.SUPPRESS)
    parser.add_argument('--pk', type=int, help=argparse.SUPPRESS)
    parser.add_argument('--pids', help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.step:
        import warnings

        warnings.simplefilter('ignore')
        print(json.dumps(STEPS[arguments.step](arguments)))
        return
    kinds = ['presto', 'psql'] if arguments.both else [arguments.profile_kind]
    results = {}
    for kind in kinds:
        results[kind] = measure(kind, arguments)
        if arguments.json:
            arguments.json.write_text(json.dumps(results, indent=1))
    print(
        f'\n{datetime.date.today()}, {arguments.n} candidates, shards of {arguments.shard_size}, {arguments.threads} torch thread(s)'
    )
    print(table(results))
    for kind, figures in results.items():
        print(
            f'\n[{kind}] models: '
            + ', '.join(f'{t} {m["architecture"]}×{m["members"]}' for t, m in figures['models'].items())
        )
        for index, times in sorted(figures.get('shard_times', {}).items(), key=lambda item: int(item[0])):
            worker = '–' if times['in_worker'] is None else f'{times["in_worker"]:.2f} s'
            print(
                f'[{kind}] shard {index:>4}: run_prediction {times["shard"]:.2f} s (predict_records '
                f'{times["predict"]:.2f} s, of which labels {times["labels"]:.2f} s); in the worker {worker}'
                + (' (the longest)' if int(index) == figures.get('longest_shard') else '')
            )
        print(f'[{kind}] package: {figures["package"]}')
        print(f'[{kind}] load average before/after: {figures["load"]}; kill: {figures["kill"]}')
        print(
            f'[{kind}] setup {figures["setup_s"]:.1f} s, candidate generation and storage {figures["generation_s"]:.1f} s'
        )
        for t, message in figures['logs'][:6]:
            print(f'[{kind}]   +{t:7.1f} s  {message[:150]}')


if __name__ == '__main__':
    sys.exit(main())
