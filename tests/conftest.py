"""Shared fixtures: a temporary AiiDA profile (no services) and the offline resources in ../shared."""

import os
import pathlib
import shutil
import subprocess

import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']

#: Offline data, models and pseudos; CI and tests point here, the package never does.
SHARED = pathlib.Path(
    os.environ.get('AIIDA_DIELECTRICS_SHARED', pathlib.Path(__file__).parents[1] / '..' / 'shared')
)


@pytest.fixture(scope='session')
def shared():
    """The ``shared/`` folder with data, models, pseudos and fixtures (skips nothing: CI has it)."""
    if not SHARED.is_dir():
        raise FileNotFoundError(f'{SHARED} not found: set AIIDA_DIELECTRICS_SHARED')
    return SHARED.resolve()


@pytest.fixture(scope='session')
def petousis_csv(shared):
    return shared / 'data' / 'petousis2017' / 'dielectric_constant.csv'


@pytest.fixture
def qe(aiida_localhost, shared):
    """The shared PseudoDojo folder as a cutoffs family and pw.x/ph.x codes on localhost."""
    from aiida_dielectrics.tools import environment
    from tests.qe_setup import FAMILY

    folder = shared / 'pseudos' / 'PseudoDojo-0.4-PBE-SR-noCC-standard'
    hints = shared / 'pseudos' / 'PseudoDojo-0.4-PBE-SR-standard-hints.djson'
    environment.install_pseudo_family(folder, FAMILY, hints=hints)
    codes = environment.register_qe_codes(aiida_localhost.label)
    if 'pw' not in codes or 'ph' not in codes:
        pytest.fail('pw.x and ph.x must be on PATH (Debian: apt-get install quantum-espresso)')
    return codes['pw'][0], codes['ph'][0]


class UserShell:
    """Commands run as a user types them: subprocesses with their own AiiDA configuration folder.

    Nothing of the pytest profile leaks in: ``AIIDA_PATH`` points at a fresh folder, so the first
    command that needs a profile finds none until ``aiida-dielectrics setup`` makes one (``verdi presto``).
    """

    def __init__(self, home: pathlib.Path, shared: pathlib.Path):
        self.home = home
        self.shared = shared
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith(('AIIDA_', 'PYTEST'))
        }
        self.env.update(
            AIIDA_PATH=str(home),
            AIIDA_DIELECTRICS_MODEL_DIR=str(shared / 'models' / 'matgl'),
            OMP_NUM_THREADS='1',
        )

    def run(self, *args, check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
        """Run ``args`` (e.g. ``'aiida-dielectrics', 'query'``) in the user's folder; never raises on exit."""
        result = subprocess.run(
            [str(arg) for arg in args],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f'{" ".join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}'
            )
        return result

    def mgo_pseudos(self) -> tuple[pathlib.Path, pathlib.Path]:
        """A pseudo folder with only the two pseudos MgO needs (a short ``setup``), and the cutoff hints."""
        pseudos = self.shared / 'pseudos'
        folder = self.home / 'pseudos'
        folder.mkdir()
        for name in ('Mg-sp.upf', 'O.upf'):
            shutil.copy(pseudos / 'PseudoDojo-0.4-PBE-SR-noCC-standard' / name, folder)
        return folder, pseudos / 'PseudoDojo-0.4-PBE-SR-standard-hints.djson'

    def setup(self) -> subprocess.CompletedProcess:
        """``aiida-dielectrics setup`` with the shared pseudos, as the README's quick start runs it."""
        pseudos = self.shared / 'pseudos'
        return self.run(
            'aiida-dielectrics',
            'setup',
            '--pseudo-dir',
            pseudos / 'PseudoDojo-0.4-PBE-SR-noCC-standard',
            '--pseudo-hints',
            pseudos / 'PseudoDojo-0.4-PBE-SR-standard-hints.djson',
            check=True,
        )


@pytest.fixture(scope='session')
def user_shell(tmp_path_factory, shared):
    """A fresh user's shell with the embedded default made by ``aiida-dielectrics setup`` (once per session).

    Tests that need a profile-less machine make their own :class:`UserShell` instead.
    """
    shell = UserShell(tmp_path_factory.mktemp('user'), shared)
    shell.setup()
    return shell


@pytest.fixture(scope='session')
def matgl_hub_cache(shared):
    """``make(folder, *names)``: the shared pretrained MEGNets laid out in ``folder`` as huggingface_hub caches
    the downloads of ``matgl.load_model(name)`` (``models--materialyze--<name>/refs/main``, ``snapshots/<commit>/``
    with links into ``blobs/``); pointed at by ``matgl.config.MATGL_CACHE`` (or ``$HOME/.cache/matgl``) with
    ``HF_HUB_OFFLINE=1``, the names load as if downloaded from the Hub."""
    import hashlib

    def make(folder: pathlib.Path, *names: str) -> pathlib.Path:
        for name in names:
            repository = folder / f'models--materialyze--{name}'
            commit = hashlib.sha1(name.encode()).hexdigest()
            snapshot = repository / 'snapshots' / commit
            snapshot.mkdir(parents=True)
            (repository / 'blobs').mkdir()
            (repository / 'refs').mkdir()
            (repository / 'refs' / 'main').write_text(commit)
            for source in sorted((shared / 'models' / 'matgl' / name).iterdir()):
                content = source.read_bytes()
                blob = hashlib.sha256(content).hexdigest()
                (repository / 'blobs' / blob).write_bytes(content)
                (snapshot / source.name).symlink_to(f'../../blobs/{blob}')
        return folder

    return make


@pytest.fixture(scope='session')
def petousis_head(petousis_csv):
    """``make(path, rows)``: a Petousis CSV with its comment line, header and first ``rows`` records."""
    import csv

    def make(path: pathlib.Path, rows: int) -> pathlib.Path:
        with open(petousis_csv, newline='', encoding='utf-8') as handle:
            comment = handle.readline()
            records = list(csv.reader(handle))[: rows + 1]
        with open(path, 'w', newline='', encoding='utf-8') as handle:
            handle.write(comment)
            csv.writer(handle).writerows(records)
        return path

    return make


@pytest.fixture(scope='session')
def mp_dfpt_extra_xyz(shared):
    return shared / 'data' / 'mp-dfpt-extra' / 'mp-dfpt-extra.extxyz'


@pytest.fixture(scope='session')
def mp_dfpt_extra_frames(mp_dfpt_extra_xyz) -> list[str]:
    """The frames of mp-dfpt-extra as text, split by their atom-count lines: slices make small test files."""
    lines = mp_dfpt_extra_xyz.read_text().splitlines(keepends=True)
    frames, start = [], 0
    while start < len(lines):
        end = start + 2 + int(lines[start])
        frames.append(''.join(lines[start:end]))
        start = end
    return frames


@pytest.fixture
def generate_workchain():
    """Factory: a work chain instantiated from its builder but not run, to step through its outline."""
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    def factory(builder):
        return instantiate_process(get_manager().get_runner(), builder)

    return factory


@pytest.fixture
def generate_workflow_node():
    """Factory: a finished ``WorkflowNode`` with an exit status and input/output links, as a fake child."""
    from aiida import orm
    from aiida.common.links import LinkType
    from plumpy import ProcessState

    def factory(exit_status=0, inputs=None, outputs=None):
        node = orm.WorkflowNode()
        for label, value in (inputs or {}).items():
            node.base.links.add_incoming(value.store(), link_type=LinkType.INPUT_WORK, link_label=label)
        node.set_process_state(ProcessState.FINISHED)
        node.set_exit_status(exit_status)
        node.store()
        for label, value in (outputs or {}).items():
            value.store().base.links.add_incoming(node, link_type=LinkType.RETURN, link_label=label)
        return node

    return factory


@pytest.fixture
def generate_calc_job_node(aiida_localhost):
    """Factory: a finished ``CalcJobNode`` of ``entry_point`` whose retrieved files are ``folder``, with the
    exit status its real parser gives them (``inputs``: the input nodes the parser reads)."""
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.plugins import CalculationFactory, ParserFactory
    from plumpy import ProcessState

    def factory(entry_point: str, folder: pathlib.Path, inputs: dict | None = None):
        node = orm.CalcJobNode(computer=aiida_localhost, process_type=f'aiida.calculations:{entry_point}')
        node.set_process_label(CalculationFactory(entry_point).__name__)
        node.set_option('resources', {'num_machines': 1})
        node.set_option('output_filename', 'aiida.out')
        for label, value in (inputs or {}).items():
            node.base.links.add_incoming(value.store(), link_type=LinkType.INPUT_CALC, link_label=label)
        node.store()
        retrieved = orm.FolderData(tree=folder)
        retrieved.base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='retrieved')
        retrieved.store()
        _, parsing = ParserFactory(entry_point).parse_from_node(node, store_provenance=False)
        node.set_process_state(ProcessState.FINISHED)
        node.set_exit_status(parsing.exit_status)
        node.set_exit_message(parsing.exit_message)
        return node

    return factory
