"""Validation on construction of the three data types, and what they store."""

import numpy as np
import pytest
from aiida.orm import QueryBuilder, StructureData, load_node
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.data import DielectricData, ModelData, PredictionData
from aiida_dielectrics.science.tensors import TensorError


@pytest.fixture
def mgo():
    structure = Structure(Lattice.cubic(4.21), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return StructureData(pymatgen=structure)


def make_dielectric(**overrides):
    inputs = {
        'epsilon_electronic': np.diag([3.0, 3.0, 3.3]),
        'epsilon_ionic': np.diag([6.0, 6.0, 7.2]),
        'band_gap': 5.0,
        'engine': 'qe',
        'formula': 'MgO',
    }
    return DielectricData(**{**inputs, **overrides})


def test_dielectric_scalars_are_mean_eigenvalues_and_queryable(aiida_profile):
    rotation = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=float) / 1.0
    node = make_dielectric(epsilon_electronic=rotation @ np.diag([2.0, 3.0, 4.0]) @ rotation.T).store()
    assert node.diel_elec == pytest.approx(3.0)
    assert node.diel_ionic == pytest.approx(6.4)
    assert node.diel_total == pytest.approx(9.4)
    assert node.fom == pytest.approx(47.0)
    np.testing.assert_allclose(node.epsilon_total, node.epsilon_electronic + node.epsilon_ionic)
    found = QueryBuilder().append(DielectricData, filters={'attributes.fom': {'>': 46.9}, 'id': node.pk})
    assert found.count() == 1
    assert load_node(node.pk).e_above_hull is None


def test_dielectric_symmetrises_noise_and_refuses_asymmetry():
    noisy = np.diag([3.0, 3.0, 3.0]) + np.array([[0, 0.01, 0], [0, 0, 0], [0, 0, 0]])
    node = make_dielectric(epsilon_electronic=noisy)
    np.testing.assert_allclose(node.epsilon_electronic, node.epsilon_electronic.T)
    assert node.epsilon_electronic[0, 1] == pytest.approx(0.005)
    skewed = np.diag([3.0, 3.0, 3.0]) + np.array([[0, 1.0, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(TensorError, match='epsilon_electronic is not symmetric'):
        make_dielectric(epsilon_electronic=skewed)


@pytest.mark.parametrize(
    ('overrides', 'message'),
    [
        ({'epsilon_electronic': np.eye(2)}, r'must have shape 3×3'),
        ({'epsilon_ionic': [[1, 0, 0], [0, np.nan, 0], [0, 0, 1]]}, 'NaN or infinite'),
        ({'epsilon_ionic': 'abc'}, 'not numeric'),
        ({'band_gap': -0.1}, 'band_gap must be >= 0'),
        ({'band_gap': float('inf')}, 'NaN or infinite'),
        ({'engine': 'castep'}, 'engine must be one of'),
        ({'e_above_hull': float('nan')}, 'NaN or infinite'),
    ],
)
def test_dielectric_refuses_invalid_input(overrides, message):
    with pytest.raises(TensorError, match=message):
        make_dielectric(**overrides)


def test_dielectric_without_band_gap_has_no_fom_and_is_left_out_by_gap_filters(aiida_profile):
    """Imported data without a gap (mp-dfpt-extra): ε is stored, Φ is not, so no Φ or gap filter passes it."""
    node = make_dielectric(band_gap=None).store()
    assert (node.band_gap, node.fom) == (None, None)
    assert node.diel_total == pytest.approx(3.1 + 6.4)
    assert 'band_gap' not in node.base.attributes.all and 'fom' not in node.base.attributes.all
    for filters in ({'attributes.fom': {'>': 0}}, {'attributes.band_gap': {'>=': 0}}):
        assert not QueryBuilder().append(DielectricData, filters={**filters, 'id': node.pk}).count()
    found = QueryBuilder().append(
        DielectricData, filters={'attributes.diel_total': {'>': 9.0}, 'id': node.pk}
    )
    assert found.count() == 1


def test_born_charges_must_match_structure(mgo):
    charges = np.array([np.eye(3) * 2, -np.eye(3) * 2])
    node = make_dielectric(structure=mgo, formula=None, born_charges=charges)
    assert node.formula == 'MgO'
    assert node.get_array('born_charges').shape == (2, 3, 3)
    with pytest.raises(TensorError, match='3 sites but the structure has 2'):
        make_dielectric(structure=mgo, born_charges=np.zeros((3, 3, 3)))
    with pytest.raises(TensorError, match=r'shape N×3×3'):
        make_dielectric(born_charges=np.zeros((2, 3)))


def test_prediction_derives_fom_with_propagated_uncertainty(aiida_profile):
    node = PredictionData(
        formula='MgO',
        band_gap=5.0,
        band_gap_std=0.3,
        diel_elec=3.0,
        diel_elec_std=0.3,
        diel_ionic=7.0,
        diel_ionic_std=0.4,
        e_form=-3.0,
        protostructure='AB_cF8_225_a_b:Mg-O',
    ).store()
    assert node.diel_total == pytest.approx(10.0)
    assert node.base.attributes.get('diel_total_std') == pytest.approx(0.5)
    expected_std = np.hypot(5.0 * 0.5, 10.0 * 0.3)
    assert node.fom == pytest.approx(50.0)
    assert node.fom_std == pytest.approx(expected_std)
    assert node.fom_adj == pytest.approx(50.0 - 0.5 * expected_std)
    assert node.e_above_hull is None
    assert 'e_above_hull' not in node.base.attributes.all


@pytest.mark.parametrize(
    ('overrides', 'message'),
    [({'diel_elec': float('nan')}, 'diel_elec must be finite'), ({'band_gap_std': -1}, '>= 0')],
)
def test_prediction_refuses_invalid_input(overrides, message):
    inputs = {'formula': 'MgO', 'band_gap': 5.0, 'diel_elec': 3.0, 'diel_ionic': 7.0}
    with pytest.raises(ValueError, match=message):
        PredictionData(**{**inputs, **overrides})


def test_model_holds_files_and_card(aiida_profile, tmp_path):
    for member in ('member_0', 'member_1'):
        folder = tmp_path / 'ensemble' / member
        folder.mkdir(parents=True)
        for name in ('model.pt', 'state.pt', 'model.json'):
            (folder / name).write_text(f'{member} {name}')
    node = ModelData(folder=tmp_path / 'ensemble', target='diel_elec', architecture='MEGNet').store()
    assert node.members == 2
    assert len(node.base.attributes.get('sha256')) == 64
    exported = node.export_to(tmp_path / 'out')
    assert (exported / 'member_1' / 'state.pt').read_text() == 'member_1 state.pt'


def test_model_refuses_incomplete_folders(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        ModelData(folder=tmp_path / 'missing', target='band_gap', architecture='MEGNet')
    with pytest.raises(ValueError, match='holds no model'):
        ModelData(folder=tmp_path, target='band_gap', architecture='MEGNet')
    (tmp_path / 'model.json').write_text('{}')
    with pytest.raises(ValueError, match=r'lacks model\.pt, state\.pt'):
        ModelData(folder=tmp_path, target='band_gap', architecture='MEGNet')


def test_entry_points_load():
    from aiida.plugins import DataFactory

    assert DataFactory('dielectrics.dielectric') is DielectricData
    assert DataFactory('dielectrics.prediction') is PredictionData
    assert DataFactory('dielectrics.model') is ModelData
