"""Space-group symmetrisation of noisy real cells before DFT, and the structure checks."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Vasprun

from aiida_dielectrics.science.structures import minimum_distance, structure_problem
from aiida_dielectrics.science.symmetry import SymmetryError, symmetrize


@pytest.fixture(scope='module')
def aln(shared):
    """The VASP-relaxed wurtzite AlN cell: coordinates written to 6 decimals, γ = 120.000007°."""
    path = shared / 'fixtures' / 'vasp' / 'AlN-wurtzite-dfpt' / 'vasprun.xml'
    return Vasprun(str(path), parse_potcar_file=False, parse_dos=False, parse_eigen=False).final_structure


def test_vasp_cell_is_refined_to_its_space_group(aln):
    assert aln.lattice.gamma != 120.0
    result = symmetrize(aln)
    assert (result.spacegroup_number, result.spacegroup_symbol) == (186, 'P6_3mc')
    assert result.structure.lattice.gamma == pytest.approx(120.0, abs=1e-10)
    thirds = np.sort(result.structure.frac_coords[:, :2].ravel())
    np.testing.assert_allclose(thirds, np.repeat([1 / 3, 2 / 3], 4), atol=1e-12)
    assert abs(result.volume_change) < 1e-6  # noise removed, nothing else changed
    assert result.summary()['num_sites_after'] == 4


def test_conventional_cell_becomes_primitive():
    conventional = Structure.from_spacegroup(
        'Fm-3m', Lattice.cubic(4.212), ['Mg', 'O'], [[0, 0, 0], [0.5] * 3]
    )
    result = symmetrize(conventional)
    assert (len(conventional), len(result.structure)) == (8, 2)
    assert result.structure.volume == pytest.approx(conventional.volume / 4)
    assert result.summary()['num_sites_before'] == 8


def test_real_distortion_above_the_tolerance_is_kept():
    """0.05 Å off the inversion centre is physics, not noise: the symmetry stays lowered."""
    cell = Structure(Lattice.cubic(4.0), ['Ba', 'Ti'], [[0, 0, 0], [0.5, 0.5, 0.5 + 0.05 / 4.0]])
    assert symmetrize(cell).spacegroup_number == 99  # P4mm, not Pm-3m
    assert symmetrize(cell, symprec=0.1).spacegroup_number == 221


def test_structure_problems():
    good = Structure(Lattice.cubic(4.0), ['Na', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert structure_problem(good) is None
    assert minimum_distance(good) == pytest.approx(2 * np.sqrt(3))
    close = Structure(Lattice.cubic(4.0), ['Na', 'Cl'], [[0, 0, 0], [0.01, 0, 0]])
    assert structure_problem(close) == 'atoms 0.040 Å apart (minimum 0.5 Å)'
    assert (
        structure_problem(Structure(Lattice.cubic(0.3), ['Mg'], [[0, 0, 0]]))
        == 'atoms 0.300 Å apart (minimum 0.5 Å)'
    )
    with pytest.raises(SymmetryError):
        symmetrize(Structure(Lattice.cubic(4.0), ['Na', 'Na'], [[0, 0, 0], [0, 0, 0]]))
