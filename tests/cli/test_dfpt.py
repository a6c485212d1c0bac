"""``aiida-dielectrics dfpt``: bad input ends in one line and exit 1; a run prints its outcome."""

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.dfpt import result_table
from aiida_dielectrics.data.dielectric import DielectricData
from tests.qe_setup import FAMILY, fcc_binary


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_unreadable_file_is_one_clear_line(aiida_profile, tmp_path):
    path = tmp_path / 'garbage.cif'
    path.write_text('this is not a crystal\n')
    result = invoke('dfpt', str(path))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('Error: cannot read a crystal structure from')


def test_missing_file_and_unknown_engine(aiida_profile, tmp_path):
    assert invoke('dfpt', str(tmp_path / 'absent.cif')).exit_code == 2
    path = tmp_path / 'POSCAR'
    fcc_binary(['Mg', 'O'], 4.212).get_pymatgen_structure().to(filename=str(path), fmt='poscar')
    result = invoke('dfpt', str(path), '--engine', 'abinit')
    assert result.exit_code == 2
    assert 'abinit' in result.output


@pytest.mark.usefixtures('qe')
def test_unknown_code_and_family(tmp_path):
    path = tmp_path / 'MgO.cif'
    fcc_binary(['Mg', 'O'], 4.212).get_pymatgen_structure().to(filename=str(path))
    result = invoke('dfpt', str(path), '--potential-family', FAMILY, '--code', 'pw=nope@localhost')
    assert result.exit_code == 1
    assert 'no unique code `nope@localhost` for pw' in result.output
    result = invoke('dfpt', str(path), '--potential-family', FAMILY, '--code', 'phonon=ph@localhost')
    assert result.exit_code == 2
    assert 'give ROLE=LABEL with ROLE one of pw, ph' in result.output
    result = invoke('dfpt', str(path), '--potential-family', 'no-such-family')
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == 'Error: pseudo family `no-such-family` is not installed (see `aiida-pseudo install`)'
    )


@pytest.mark.usefixtures('qe')
def test_failed_run_reports_exit_code(tmp_path):
    """LiF from a CIF is refused by the work chain's input validation: one line, exit 1."""
    path = tmp_path / 'LiF.cif'
    fcc_binary(['Li', 'F'], 4.03).get_pymatgen_structure().to(filename=str(path))
    result = invoke('dfpt', str(path), '--engine', 'qe', '--protocol', 'fast', '--potential-family', FAMILY)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()  # one line: the family lacks Li (said by the builder)
    assert line.startswith('Error: ') and FAMILY in line and 'Li' in line
    result = invoke('dfpt', str(path), '--no-relax', '--protocol', 'fast', '--potential-family', FAMILY)
    assert result.output.strip().splitlines() == [f'Error: the pseudo family `{FAMILY}` has no pseudo for Li']


def test_result_table(aiida_profile):
    structure = fcc_binary(['Mg', 'O'], 4.212)
    dielectric = DielectricData(
        epsilon_electronic=3.2 * np.eye(3),
        epsilon_ionic=6.9 * np.eye(3),
        band_gap=4.77,
        engine='qe',
        structure=structure,
        born_charges=np.array([1.99 * np.eye(3), -1.99 * np.eye(3)]),
        phonon_frequencies_gamma=[0, 0, 0, 394.4, 394.4, 394.4],
    )
    dielectric.base.attributes.set('dynamically_stable', True)
    lines = [' '.join(line.split()) for line in result_table(dielectric, structure).splitlines()]
    assert lines[0] == 'formula MgO'
    assert 'ε0 = ε∞ + ε_ion 10.100' in lines
    assert 'figure of merit Φ (eV) 48.2' in lines  # 10.1 × 4.77 eV = 48.18 eV
    assert 'dynamically stable True' in lines
    assert 'Mg 1.990 1.990 1.990' in lines
    assert lines[-1] == 'Γ phonon frequencies (cm⁻¹): 0.0 0.0 0.0 394.4 394.4 394.4'


def test_vasp_engine_needs_its_code(aiida_profile, tmp_path):
    path = tmp_path / 'POSCAR'
    fcc_binary(['Mg', 'O'], 4.212).get_pymatgen_structure().to(filename=str(path), fmt='poscar')
    result = invoke('dfpt', str(path), '--engine', 'vasp')
    assert result.exit_code == 1
    assert result.output.strip() == 'Error: this engine needs --code vasp=LABEL (a code for its vasp runs)'
