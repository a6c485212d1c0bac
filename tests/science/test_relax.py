"""The relaxation layer on a handful of small cells, with the real potentials (seconds once loaded)."""

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.science import relax


def rocksalt(formula: tuple[str, str], a: float) -> Structure:
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), list(formula), [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope='module')
def relaxer():
    return relax.Relaxer(threads=1)


def test_strained_rattled_mgo_relaxes_back(relaxer):
    """Rocksalt MgO at +15 % volume, rattled, returns to SevenNet-0's (PBE-like) a ≈ 4.25 Å."""
    structure = rocksalt(('Mg', 'O'), 4.212 * 1.15 ** (1 / 3)).get_primitive_structure()
    structure.perturb(0.03)
    (result,) = relaxer.relax([structure])
    assert result.reason is None and result.converged
    assert result.max_force < relax.FMAX
    a = result.structure.lattice.abc[0] * math.sqrt(2)  # primitive fcc vector → cubic a
    assert 4.15 < a < 4.30
    assert result.volume_change == pytest.approx(result.structure.volume / structure.volume - 1)
    assert result.volume_change < -0.08
    assert 0 < result.steps < relax.MAX_STEPS
    # MP2020 puts the oxide correction (−0.687 eV per O) on top of the raw energy: −0.34 eV/atom here.
    assert result.energy_mp - result.energy == pytest.approx(-0.687 / 2, abs=1e-3)


def test_failures_give_reasons_and_the_batch_goes_on(relaxer):
    """Po (not in SevenNet-0's 89 elements), overlapping atoms and exploding forces fail; MgO still relaxes."""
    assert 'Po' not in relaxer.potential.elements and 'Mg' in relaxer.potential.elements
    polonium = Structure(Lattice.cubic(3.35), ['Po'], [[0, 0, 0]])
    overlapping = Structure(Lattice.cubic(4.2), ['Mg', 'O'], [[0, 0, 0], [0.1, 0, 0]])
    squeezed = Structure(Lattice.cubic(4.2), ['Mg', 'O'], [[0, 0, 0], [0.15, 0, 0]])  # 0.63 Å apart
    results = relaxer.relax([polonium, overlapping, squeezed, rocksalt(('Mg', 'O'), 4.3)])
    reasons = [result.reason for result in results]
    assert reasons[0] == 'unsupported element(s) for sevennet-0: Po'
    assert reasons[1].startswith('atoms 0.420 Å apart')
    assert reasons[2].startswith('exploding forces')
    assert reasons[3] is None
    for result in results[:3]:
        assert result.structure is None and math.isnan(result.energy) and not result.converged
    assert results[0].as_dict()['energy'] is None  # NaN → None for a table or a Dict node


def test_step_limit_keeps_the_last_structure(relaxer):
    result = relax.Relaxer(max_steps=2).relax_one(rocksalt(('Mg', 'O'), 4.6))
    assert not result.converged and result.steps == 2
    assert result.reason == f'not converged within 2 steps (fmax {relax.FMAX} eV/Å)'
    assert result.structure is not None and np.isfinite(result.energy)


def test_fixed_cell_moves_atoms_only(relaxer):
    """A stretched O2 molecule in a box: the bond relaxes, the box stays."""
    box = Structure(Lattice.cubic(10.0), ['O', 'O'], [[0, 0, 0], [0, 0, 1.4]], coords_are_cartesian=True)
    (result,) = relaxer.relax([box], fix_cell=True)
    assert result.reason is None and result.volume_change == pytest.approx(0, abs=1e-9)
    assert 1.15 < result.structure.get_distance(0, 1) < 1.30


def test_chgnet_is_selectable():
    chgnet = relax.Relaxer('chgnet', threads=1)
    assert chgnet.potential.name == 'chgnet' and 'CHGNet 0.3.0' in chgnet.potential.version
    (result,) = chgnet.relax([rocksalt(('Mg', 'O'), 4.4).get_primitive_structure()])
    assert result.converged and 4.15 < result.structure.lattice.abc[0] * math.sqrt(2) < 4.30
    assert chgnet.parameters == {'potential': 'chgnet', 'fmax': relax.FMAX, 'max_steps': relax.MAX_STEPS}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match='unknown potential'):
        relax.load_potential('mace')
    with pytest.raises(ValueError, match='fmax must be > 0'):
        relax.Relaxer(fmax=0)
