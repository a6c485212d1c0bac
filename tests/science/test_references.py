"""Element trial structures for the default hull: ASE's crystal, the literature's, molecules."""

import pytest

from aiida_dielectrics.science import references
from aiida_dielectrics.science.structures import minimum_distance


def test_trials_per_kind_of_element():
    assert list(references.element_trials('Zn')) == ['ase']
    assert list(references.element_trials('O')) == ['molecule', 'molecular-crystal']
    assert list(references.element_trials('Cl')) == ['crystal', 'molecule']
    assert list(references.element_trials('Sn')) == ['ase', 'crystal']  # β-Sn (ASE) and α-Sn
    assert list(references.element_trials('Pu')) == ['fcc', 'bcc', 'sc']  # no crystal known here


@pytest.mark.parametrize(
    ('symbol', 'trial', 'atoms', 'bond', 'group'),
    [
        ('Se', 'crystal', 3, 2.37, 'P3_121'),  # helical chains
        ('P', 'crystal', 4, 2.22, 'Cmce'),  # black phosphorus
        ('B', 'crystal', 12, 1.67, 'R-3m'),  # α-B12 icosahedra
        ('Mn', 'crystal', 29, 2.26, 'I-43m'),  # α-Mn
        ('Sn', 'crystal', 2, 2.81, 'Fd-3m'),  # α-Sn (diamond)
        ('N', 'molecular-crystal', 8, 1.10, 'Pa-3'),  # α-N2
        ('O', 'molecule', 2, 1.21, 'P4/mmm'),  # O2 in a 10 Å box
    ],
)
def test_trial_structures_are_the_named_crystals(symbol, trial, atoms, bond, group):
    structure, fix_cell = references.element_trials(symbol)[trial]
    assert len(structure) == atoms and structure.get_space_group_info()[0] == group
    assert minimum_distance(structure) == pytest.approx(bond, abs=0.01)
    assert fix_cell == (trial == 'molecule')


def test_lowest_and_elements():
    assert references.lowest({'a': -1.0, 'b': -2.0, 'c': float('nan'), 'd': None}) == 'b'
    assert references.lowest({'a': float('nan')}) is None
    assert references.elements_of(['ZnS', 'CdSe', 'O']) == ['O', 'S', 'Zn', 'Se', 'Cd']


def record(composition, energy, energy_mp=None, reason=None, potential='sevennet-0'):
    """A relaxation record (:func:`.relax.record`) with the fields the hull reads."""
    return {
        'composition': composition,
        'energy': energy,
        'energy_mp': energy if energy_mp is None else energy_mp,
        'reason': reason,
        'mp_reason': None,
        'potential': potential,
    }


def test_hull_rows_take_the_lowest_converged_trial_and_drop_failures():
    elements = {
        'O_molecule': record({'O': 2.0}, -4.90),
        'O_molecular_crystal': record({'O': 8.0}, -4.95, reason='not converged within 500 steps'),
        'Zn_ase': record({'Zn': 2.0}, -1.20),
    }
    known = {
        'mp_1986': record({'Zn': 1.0, 'O': 1.0}, -5.0, energy_mp=-5.7),
        'mp_bad': record({'Zn': 1.0, 'O': 1.0}, None, reason='exploding forces'),
    }
    rows = references.hull_rows(elements, known)
    assert rows['elements'] == {'O': 'O_molecule', 'Zn': 'Zn_ase'}
    assert rows['entries'] == [
        {'entry_id': 'O_molecule', 'composition': {'O': 1.0}, 'energy': -4.90},
        {'entry_id': 'Zn_ase', 'composition': {'Zn': 1.0}, 'energy': -1.20},
        {'entry_id': 'mp_1986', 'composition': {'Zn': 1.0, 'O': 1.0}, 'energy': pytest.approx(-11.4)},
    ]
    assert rows['excluded'] == {'mp_bad': 'exploding forces'} and rows['potential'] == 'sevennet-0'
    with pytest.raises(ValueError, match='different potentials'):
        references.hull_rows(elements, {'x': record({'Zn': 1.0}, -1.0, potential='chgnet')})
