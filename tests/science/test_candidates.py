"""Candidate generation: substitution enumeration against brute force, filters, labels, files."""

import itertools

import numpy as np
import pytest
from pymatgen.core import Lattice, Species, Structure

from aiida_dielectrics.science import candidates
from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows


def rocksalt(a=4.21, elements=('Mg', 'O')):
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), list(elements), [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite(a=3.905):
    return Structure.from_spacegroup(
        'Pm-3m', Lattice.cubic(a), ['Sr', 'Ti', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    )


@pytest.fixture(scope='module')
def petousis_formulas(petousis_csv):
    return {
        row.structure.composition.reduced_formula for row in read_rows(petousis_csv) if isinstance(row, Row)
    }


def test_substitutions_equal_brute_force_over_the_table():
    """Every pair of species of pymatgen's table, without pruning, gives the same set for MgO."""
    table = candidates.substitution_table()
    threshold = 2e-3
    mg, o = Species('Mg', 2), Species('O', -2)
    given_mg = {a: table.cond_prob(a, mg) for a in table.species}
    given_o = {b: table.cond_prob(b, o) for b in table.species}
    expected = {}
    for a, b in itertools.product(table.species, repeat=2):
        probability = given_mg[a] * given_o[b]
        if probability > threshold and a != b and a.oxi_state + b.oxi_state == 0 and (a, b) != (mg, o):
            expected[(a, b)] = probability
    found = {
        (mapping[mg], mapping[o]): p
        for p, mapping in candidates.substitutions(candidates.with_oxidation_states(rocksalt()), threshold)
    }
    assert len(expected) > 10
    assert found.keys() == expected.keys()
    for key, probability in expected.items():
        assert found[key] == pytest.approx(probability)


def test_generation_is_ranked_bounded_balanced_and_excludes_known(petousis_formulas):
    seeds = {'mgo': rocksalt(), 'srtio3': perovskite()}
    found, rejected = candidates.generate_substitutions(
        seeds, max_candidates=12, exclude_formulas=petousis_formulas
    )
    assert len(found) == 12
    probabilities = [item.probability for item in found]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(item.formula not in petousis_formulas for item in found)
    assert rejected['in_reference'] > 0  # e.g. CdO and BaTiO3 are in the Petousis set
    assert len({(item.protostructure, item.formula) for item in found}) == len(found)
    for item in found:
        assert candidates.charge_balanced(item.structure.composition)
        assert item.protostructure.endswith(
            ':' + '-'.join(sorted(el.symbol for el in item.structure.elements))
        )
        assert item.source in seeds and item.substitutions
        assert all(getattr(species, 'oxi_state', None) is None for species in item.structure.species)
    # The lattice follows the ionic radii: a larger cation gives a larger cell than the seed's.
    by_formula = {item.formula: item for item in found}
    mno = by_formula.get('MnO') or by_formula['FeO']
    assert mno.structure.volume > rocksalt().volume
    assert np.allclose(mno.structure.lattice.angles, 90)


def test_labels_from_the_seed_symmetry_equal_a_new_analysis(petousis_csv):
    """Labels relabelled from each seed's symmetry equal spglib's on the candidate itself."""
    seeds = {
        f'seed_{i}': row.structure
        for i, row in enumerate(row for row in read_rows(petousis_csv) if isinstance(row, Row))
        if i < 25
    }
    found, _ = candidates.generate_substitutions(seeds, threshold=1e-4, max_candidates=150)
    decorated = [candidates.with_oxidation_states(seed) for seed in seeds.values()]
    fast = [candidates.SeedSymmetry.of(seed) for seed in decorated if seed is not None]
    assert sum(symmetry is not None for symmetry in fast) >= 20  # the relabelling, not the fallback
    assert len({item.source for item in found}) > 5
    assert len({item.protostructure.split('_')[2] for item in found}) > 3  # several space groups
    for item in found:
        assert item.protostructure == candidates.protostructure_label(item.structure)


def test_unusable_seed_is_reported():
    found, rejected = candidates.generate_substitutions({'metal': rocksalt(elements=('Na', 'K'))})
    assert found == []
    assert rejected == {'no_oxidation_states': 1}


def test_user_structures_are_filtered_and_deduplicated(tmp_path):
    mgo = rocksalt()
    supercell = mgo.copy()
    supercell.make_supercell([2, 1, 1])
    structures = {'a': mgo, 'b': supercell, 'c': rocksalt(elements=('Mg', 'Cl')), 'd': perovskite()}
    found, rejected = candidates.filter_structures(structures, exclude_formulas=['SrTiO3'])
    assert [item.source for item in found] == ['a']
    assert found[0].protostructure == 'AB_cF8_225_a_b:Mg-O'
    assert rejected == {'duplicate': 1, 'not_charge_balanced': 1, 'in_reference': 1}

    path = tmp_path / 'SrTiO3.cif'
    perovskite().to(filename=str(path))
    (tmp_path / 'broken.cif').write_text('not a crystal')
    assert candidates.read_structure_files([path])[str(path)].composition.reduced_formula == 'SrTiO3'
    with pytest.raises(ValueError, match=r'broken\.cif'):
        candidates.read_structure_files([tmp_path / 'broken.cif'])
