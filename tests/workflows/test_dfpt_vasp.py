"""DfptVaspWorkChain replaying real VASP outputs (../shared/fixtures/vasp) through aiida-vasp's mock-vasp.

The mock registry is built in tmp_path: ``inp/`` holds the INCAR/KPOINTS/POSCAR the recorded run actually
used (read from its vasprun.xml) plus the tags the work chain must add, ``out/`` the recorded outputs.
mock-vasp matches on a hash of the inputs, so a run whose INCAR, k-mesh or structure differs from the
recorded one fails: the replay checks what the chain writes as well as what it reads.
"""

import gzip
import shutil
import warnings

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida_vasp.calcs.vasp import VaspCalculation
from aiida_vasp.data.potcar import PotcarData
from aiida_vasp.parsers.content_parsers.incar import IncarParser
from aiida_vasp.parsers.content_parsers.kpoints import KpointsParser
from aiida_vasp.parsers.content_parsers.poscar import PoscarParser
from pymatgen.io.vasp import Vasprun

from aiida_dielectrics.workflows.dfpt.vasp.workchain import (
    DFPT_INCAR,
    DfptVaspWorkChain,
    kpoints_from_density,
)

FAMILY = 'dielectrics-test-fake-PBE'

#: A header-only POTCAR: what aiida-vasp reads to identify a potential, no usable data (VASP is licensed).
FAKE_POTCAR = """  {titel}
   1.0
 parameters from PSCTR are:
   VRHFIN ={element}: fake header-only POTCAR for tests
   LEXCH  = PE
   TITEL  = {titel}
   LULTRA =        F    use ultrasoft PP ?
   POMASS =    1.000; ZVAL   =    1.000    mass and valenz
   ENMAX  =  400.000; ENMIN  =  300.000 eV
   LPAW   =        T    paw PP
END of PSCTR-controll parameters
 End of Dataset
"""

#: name in the registry -> (fixture folder, whether its outputs are cut short as by a killed job)
CASES = {
    'AlN': ('AlN-wurtzite-dfpt', False),
    'Si': ('Si-dfpt', False),
    'NaCl-no-lepsilon': ('NaCl-ibrion8-no-lepsilon', False),
    'Si-killed': ('Si-displaced-dfpt', True),
}


def read_output(folder, name):
    """Bytes of a recorded output, gzipped or not."""
    plain = folder / name
    if plain.exists():
        return plain.read_bytes()
    with gzip.open(folder / f'{name}.gz') as handle:
        return handle.read()


class Recorded:
    """The inputs a recorded VASP run used, as AiiDA nodes, read from its vasprun.xml."""

    def __init__(self, folder):
        self.folder = folder
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            vasprun_path = folder / 'vasprun.xml'
            if not vasprun_path.exists():
                vasprun_path = folder / 'vasprun.xml.gz'
            run = Vasprun(
                str(vasprun_path),
                parse_dos=False,
                parse_eigen=False,
                parse_projected_eigen=False,
                parse_potcar_file=False,
            )
        self.incar = {key.lower(): value for key, value in run.incar.items()}
        self.structure = orm.StructureData(pymatgen=run.initial_structure)
        self.potcar_symbols = [symbol.split()[1] for symbol in run.potcar_symbols]
        self.titels = run.potcar_symbols
        divisions = run.kpoints.kpts[0]
        shift = np.array(run.kpoints.kpts_shift, dtype=float)
        if run.kpoints.style.name == 'Monkhorst':  # aiida-vasp writes Γ-centred meshes: the same grid
            shift = shift + [0.5 if n % 2 == 0 else 0.0 for n in divisions]
        self.kpoints = orm.KpointsData()
        self.kpoints.set_cell_from_structure(self.structure)
        self.kpoints.set_kpoints_mesh(list(divisions), offset=list(shift))

    @property
    def mapping(self):
        return {
            site.kind_name: symbol
            for site, symbol in zip(self.unique_kinds(), self.potcar_symbols, strict=True)
        }

    def unique_kinds(self):
        seen, kinds = set(), []
        for site in self.structure.sites:
            if site.kind_name not in seen:
                seen.add(site.kind_name)
                kinds.append(site)
        return kinds

    def incar_without_dfpt_tags(self):
        """The recorded INCAR less the tags the work chain is responsible for."""
        return {key: value for key, value in self.incar.items() if key not in DFPT_INCAR}


def register(registry, name, recorded, truncate):
    """Put one recorded run in the mock-vasp registry under the inputs the work chain will write."""
    inp, out = registry / name / 'inp', registry / name / 'out'
    inp.mkdir(parents=True)
    out.mkdir()
    IncarParser(data=orm.Dict({**recorded.incar_without_dfpt_tags(), **DFPT_INCAR})).write(str(inp / 'INCAR'))
    PoscarParser(data=recorded.structure, precision=10).write(str(inp / 'POSCAR'))
    KpointsParser(data=recorded.kpoints).write(str(inp / 'KPOINTS'))
    for output in ('vasprun.xml', 'OUTCAR'):
        content = read_output(recorded.folder, output)
        (out / output).write_bytes(content[: len(content) // 2] if truncate else content)
    # VASP writes CONTCAR (the unchanged structure for IBRION = 8); the fixtures do not keep it.
    shutil.copy(inp / 'POSCAR', out / 'CONTCAR')


@pytest.fixture(scope='module')
def recorded(shared):
    root = shared / 'fixtures' / 'vasp'
    return {name: Recorded(root / folder) for name, (folder, _) in CASES.items()}


@pytest.fixture(scope='module')
def registry(tmp_path_factory, recorded):
    path = tmp_path_factory.mktemp('mock-vasp-registry')
    for name, (_, truncate) in CASES.items():
        register(path, name, recorded[name], truncate)
    return path


@pytest.fixture
def potcar_family(aiida_profile, tmp_path, recorded):
    """A POTCAR family of header-only POTCARs named like the recorded runs' ones."""
    if PotcarData.get_potcar_group(FAMILY) is None:
        titels = {titel for run in recorded.values() for titel in run.titels}
        titels.update(['PAW_PBE W_sv 04Sep2015', 'PAW_PBE O 08Apr2002'])
        for titel in titels:
            folder = tmp_path / titel.split()[1]
            folder.mkdir()
            (folder / 'POTCAR').write_text(
                FAKE_POTCAR.format(titel=titel, element=titel.split()[1].split('_')[0])
            )
        PotcarData.upload_potcar_family(
            str(tmp_path), FAMILY, 'fake POTCARs for tests', stop_if_existing=False
        )
    return FAMILY


@pytest.fixture
def mock_vasp(aiida_localhost, registry):
    """mock-vasp (strict: only registered inputs) reading the registry of this module."""
    aiida_localhost.set_minimum_job_poll_interval(0.0)
    aiida_localhost.configure(safe_interval=0.0)
    code = orm.InstalledCode(
        computer=aiida_localhost,
        filepath_executable=shutil.which('mock-vasp'),
        default_calc_job_plugin='vasp.vasp',
        prepend_text=f'export MOCK_VASP_REG_BASE={registry}',
    )
    return code.store()


def replay_builder(name, recorded, mock_vasp, potcar_family):
    """The protocol's builder, then the recorded run's own INCAR (less the DFPT tags), mesh and structure."""
    run = recorded[name]
    builder = DfptVaspWorkChain.get_builder_from_protocol(
        run.structure, codes={'vasp': mock_vasp}, protocol='fast', potential_family=potcar_family, relax=False
    )
    builder.symmetrize = orm.Bool(False)  # mock-vasp matches the recorded POSCAR exactly
    builder.pop('kpoints_density')
    builder.dfpt.kpoints = run.kpoints
    builder.dfpt.parameters = orm.Dict({'incar': run.incar_without_dfpt_tags()})
    builder.dfpt.potential_mapping = orm.Dict(run.mapping)
    builder.dfpt.calc.metadata.options = {'resources': {'num_machines': 1}, 'withmpi': False}
    return builder


def test_aln_wurtzite(recorded, mock_vasp, potcar_family):
    """AlN (mp-661): ε∞ and ε_ion of the recorded run, anisotropic, with Born charges and a wide gap."""
    results, node = run_get_node(replay_builder('AlN', recorded, mock_vasp, potcar_family))
    assert node.is_finished_ok, node.exit_message
    dielectric = results['dielectric']
    assert dielectric.engine == 'vasp'
    assert dielectric.formula == 'AlN'
    np.testing.assert_allclose(np.diag(dielectric.epsilon_electronic), [4.372, 4.372, 4.573], atol=1e-3)
    np.testing.assert_allclose(np.diag(dielectric.epsilon_ionic), [3.731, 3.731, 4.976], atol=1e-3)
    born = dielectric.get_array('born_charges')
    assert born.shape == (4, 3, 3)
    assert np.all(born[:2, 0, 0] > 2.4) and np.all(born[2:, 0, 0] < -2.4)
    assert dielectric.band_gap == pytest.approx(4.197, abs=1e-3)
    assert dielectric.diel_total == pytest.approx((4.372 * 2 + 4.573 + 3.731 * 2 + 4.976) / 3, abs=1e-3)
    # the conversion is a calcfunction: the result links back to the DFPT run's parsed arrays
    creator = dielectric.creator
    assert creator.process_label == 'dielectric_from_vasp'
    assert creator.inputs.dielectrics.get_array('epsilon').shape == (3, 3)
    assert results['structure'].uuid == recorded['AlN'].structure.uuid


def test_si(recorded, mock_vasp, potcar_family):
    """Si: ε∞ 13.23 and no ionic part (a non-polar crystal)."""
    results, node = run_get_node(replay_builder('Si', recorded, mock_vasp, potcar_family))
    assert node.is_finished_ok, node.exit_message
    dielectric = results['dielectric']
    assert dielectric.diel_elec == pytest.approx(13.232, abs=1e-3)
    assert abs(dielectric.diel_ionic) < 1e-3
    assert dielectric.band_gap == pytest.approx(0.637, abs=1e-3)


def test_no_dielectric_block(recorded, mock_vasp, potcar_family):
    """A finished IBRION = 8 run without the LEPSILON block (NaCl) is a named failure, not a traceback."""
    _, node = run_get_node(replay_builder('NaCl-no-lepsilon', recorded, mock_vasp, potcar_family))
    assert node.exit_status == DfptVaspWorkChain.exit_codes.ERROR_MISSING_DIELECTRIC_OUTPUT.status
    assert 'no dielectric tensor' in node.exit_message
    assert node.called[-1].is_finished_ok  # the VASP run itself was fine


def test_killed_run(recorded, mock_vasp, potcar_family):
    """A run cut short (as by the walltime) is restarted by aiida-vasp, then the chain fails with exit 403."""
    builder = replay_builder('Si-killed', recorded, mock_vasp, potcar_family)
    builder.dfpt.max_iterations = orm.Int(2)
    _, node = run_get_node(builder)
    assert node.exit_status == DfptVaspWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_DFPT.status
    dfpt = node.called[-1]
    assert f'exit status {dfpt.exit_status}' in node.exit_message
    unfinished = VaspCalculation.exit_codes.ERROR_DID_NOT_FINISH.status
    assert [calc.exit_status for calc in dfpt.called] == [unfinished, unfinished]


def test_unregistered_inputs_fail(recorded, mock_vasp, potcar_family):
    """A different INCAR does not match the recorded run: the replay really checks the written inputs."""
    builder = replay_builder('AlN', recorded, mock_vasp, potcar_family)
    incar = builder.dfpt.parameters.get_dict()['incar']
    builder.dfpt.parameters = orm.Dict({'incar': {**incar, 'encut': 700}})
    builder.dfpt.max_iterations = orm.Int(1)  # mock-vasp finds no match: no need for aiida-vasp's retry
    _, node = run_get_node(builder)
    assert node.exit_status == DfptVaspWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_DFPT.status


def test_invalid_structure(mock_vasp, potcar_family):
    """Overlapping atoms are refused at submission: no process is created."""
    structure = orm.StructureData(cell=np.eye(3) * 4.0)
    structure.append_atom(position=(0, 0, 0), symbols='Si')
    structure.append_atom(position=(0.1, 0, 0), symbols='Si')
    builder = DfptVaspWorkChain.get_builder_from_protocol(
        structure, codes={'vasp': mock_vasp}, potential_family=potcar_family
    )
    with pytest.raises(ValueError, match=r'invalid structure: atoms 0\.100 Å apart'):
        run_get_node(builder)


def test_unsupported_element(mock_vasp, potcar_family):
    """An element the POTCAR family lacks is refused at submission."""
    structure = orm.StructureData(cell=np.eye(3) * 4.0)
    structure.append_atom(position=(0, 0, 0), symbols='Ba')
    structure.append_atom(position=(2, 2, 2), symbols='O')
    builder = DfptVaspWorkChain.get_builder_from_protocol(
        structure, codes={'vasp': mock_vasp}, potential_family=potcar_family
    )
    with pytest.raises(ValueError, match=r'has no potential for Ba \(Ba_sv\)'):
        run_get_node(builder)


def test_paper_protocol(mock_vasp, potcar_family):
    """The paper protocol carries the original study's settings; W maps to W_sv."""
    structure = orm.StructureData(cell=np.eye(3) * 3.16)
    structure.append_atom(position=(0, 0, 0), symbols='W')
    structure.append_atom(position=(1.58, 1.58, 1.58), symbols='O')
    builder = DfptVaspWorkChain.get_builder_from_protocol(
        structure, codes={'vasp': mock_vasp}, protocol='paper', potential_family=potcar_family
    )
    for step in (builder.dfpt, builder.relax.vasp):
        assert step.potential_mapping.get_dict() == {'W': 'W_sv', 'O': 'O'}
        assert step.parameters['incar']['encut'] == 700
        assert step.parameters['incar']['ismear'] == 0
    assert builder.dfpt.parameters['incar']['ediff'] == 1e-7
    assert builder.kpoints_density.value == 3000
    fast = DfptVaspWorkChain.get_builder_from_protocol(
        structure, codes={'vasp': mock_vasp}, protocol='fast', potential_family=potcar_family, relax=False
    )
    assert fast.dfpt.parameters['incar']['encut'] < 700
    assert 'relax' not in fast._inputs(prune=True)


def test_kpoints_density_per_reciprocal_atom(recorded):
    """3000 k-points per reciprocal atom: mesh points × atoms ≈ 3000, Γ-centred."""
    structure = recorded['AlN'].structure
    mesh, offset = kpoints_from_density(structure, 3000).get_kpoints_mesh()
    assert 2400 <= np.prod(mesh) * len(structure.sites) <= 4500
    assert list(offset) == [0.0, 0.0, 0.0]
    assert mesh[0] == mesh[1] > mesh[2]  # hexagonal: a = b, c longer
