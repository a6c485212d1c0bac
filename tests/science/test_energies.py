"""MP2020 corrections of potential energies: MP's run parameters for a new structure, pymatgen's scheme."""

import math

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility

from aiida_dielectrics.science import energies


@pytest.fixture(scope='module')
def scheme():
    return MaterialsProject2020Compatibility()


def hematite() -> Structure:
    return Structure.from_spacegroup(
        'R-3c', Lattice.hexagonal(5.035, 13.75), ['Fe', 'O'], [[0, 0, 0.3553], [0.3059, 0, 0.25]]
    )


def test_parameters_follow_mp_relax_set():
    """U on Fe only in an oxide (O most electronegative); a sulfide and a metal are plain GGA."""
    oxide = energies.mp_parameters('Fe2O3')
    assert oxide['run_type'] == 'GGA+U' and oxide['is_hubbard'] and oxide['hubbards'] == {'Fe': 5.3}
    assert [spec['titel'] for spec in oxide['potcar_spec']] == ['PAW_PBE Fe_pv', 'PAW_PBE O']
    for formula in ('FeS', 'Fe'):
        assert energies.mp_parameters(formula)['run_type'] == 'GGA'
        assert energies.mp_parameters(formula)['hubbards'] == {}


def test_corrections_are_pymatgens(scheme):
    """The corrected energy equals pymatgen's ``process_entry`` of the same entry (POTCAR check on)."""
    corrections = scheme.comp_correction
    fe2o3 = hematite()
    energy, reason = energies.mp_corrected_energy(fe2o3, -6.7)
    assert reason is None
    processed = scheme.process_entry(energies.mp_entry(fe2o3, -6.7 * len(fe2o3)))
    assert energy == pytest.approx(processed.energy_per_atom)
    u_fe = scheme.u_corrections['O']['Fe']
    assert energy == pytest.approx(-6.7 + (3 * corrections['oxide'] + 2 * u_fe) / 5)

    mgo = Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.2), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert energies.mp_corrected_energy(mgo, -6.0)[0] == pytest.approx(-6.0 + corrections['oxide'] / 2)
    iron = Structure(Lattice.cubic(2.83), ['Fe', 'Fe'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert energies.mp_corrected_energy(iron, -8.3) == (pytest.approx(-8.3), None)  # elements: none


def test_structure_dependent_oxide_type(scheme):
    """A peroxide (O–O 1.5 Å) gets the peroxide correction, not the oxide one: the structure matters."""
    li2o2 = Structure(
        Lattice.hexagonal(3.14, 7.65),
        ['Li', 'Li', 'O', 'O', 'Li', 'Li', 'O', 'O'],
        [[0, 0, 0], [0, 0, 0.5], [1 / 3, 2 / 3, 0.15], [1 / 3, 2 / 3, 0.35], [2 / 3, 1 / 3, 0.25],
         [1 / 3, 2 / 3, 0.75], [2 / 3, 1 / 3, 0.65], [2 / 3, 1 / 3, 0.85]],
    )  # fmt: skip
    energy, _ = energies.mp_corrected_energy(li2o2, -4.0)
    assert energy == pytest.approx(-4.0 + scheme.comp_correction['peroxide'] / 2)


def test_inapplicable_scheme_gives_nan_and_reason():
    polonium = Structure(Lattice.cubic(3.35), ['Po'], [[0, 0, 0]])
    energy, reason = energies.mp_corrected_energy(polonium, -4.0)
    assert math.isnan(energy) and reason == 'MP2020 correction not applicable: MP has no POTCAR for Po'
    assert energies.mp_corrected_energy(polonium, math.nan) == (
        pytest.approx(math.nan, nan_ok=True),
        'no energy',
    )
