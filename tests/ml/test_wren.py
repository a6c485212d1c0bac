"""Wren: protostructure labels, invariance to the Wyckoff setting, training, save/load and bad input."""

import json

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.ml import ensemble, protostructure
from aiida_dielectrics.ml.protostructure import ProtostructureError
from aiida_dielectrics.ml.wren import WrenMember

ROCKSALT = 'AB_cF8_225_a_b:Cl-Na'


def rocksalt(a='Na', b='Cl', lattice=5.64):
    """Primitive fcc cell, written out (``Structure.from_spacegroup`` takes seconds for Fm-3m)."""
    half = lattice / 2
    cell = Lattice([[0, half, half], [half, 0, half], [half, half, 0]])
    return Structure(cell, [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite(a='Sr', b='Ti', x='O', lattice=3.9):
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Structure(Lattice.cubic(lattice), [a, b, x, x, x], coords)


def training_labels():
    """Labels of four AB prototypes over several chemistries, with a target that depends on both."""
    labels, y = [], []
    for pair in ('Cl-Na', 'Mg-O', 'Br-K', 'Ca-S', 'F-Li', 'Ba-O'):
        for prototype, shift in (
            ('AB_cF8_225_a_b', 1.0),  # rock salt
            ('AB_cF8_216_a_c', 0.5),  # zinc blende
            ('AB_hP4_186_b_b', 0.2),  # wurtzite
            ('AB_cP2_221_a_b', 0.0),  # CsCl
        ):
            labels.append(f'{prototype}:{pair}')
            y.append(shift + 0.1 * len(pair))
    return labels, np.asarray(y)


@pytest.fixture(scope='module')
def fitted():
    labels, y = training_labels()
    member = WrenMember(
        dim=16, layers=1, heads=2, embedding=4, hidden=16, readout=(16,), max_epochs=40, lr=1e-2
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a shared machine
    try:
        history = member.fit(labels, y, val=(labels[:6], y[:6]), seed=1)
    finally:
        torch.set_num_threads(threads)
    return member, history, labels, y


def test_parse_sites_and_multiplicities():
    proto = protostructure.parse('A2B_oP12_62_2c_c:Cl-Sr')
    assert proto.spacegroup == 62 and proto.pearson == 'oP12'
    assert [(s.element, s.wyckoff, s.multiplicity) for s in proto.sites] == [
        ('Cl', 'c', 4),
        ('Cl', 'c', 4),
        ('Sr', 'c', 4),
    ]
    assert proto.composition.reduced_formula == 'SrCl2'


def test_parse_lists_equivalent_settings():
    proto = protostructure.parse(ROCKSALT)
    assert set(proto.augmentations) >= {('a', 'b'), ('b', 'a')}
    assert proto.augmentations[0] == ('a', 'b')  # identity first
    assert set(protostructure.parse('AB_cF8_225_b_a:Cl-Na').augmentations) == set(proto.augmentations)
    assert protostructure.parse('A_aP1_1_a:Si').augmentations == (('a',),)


@pytest.mark.parametrize(
    ('label', 'message'),
    [
        ('NaCl', 'not a protostructure label'),
        ('AB_cF8_225_a:Cl-Na', '2 elements'),
        ('AB_cF8_225_a_z:Cl-Na', "no Wyckoff position 'z'"),
        ('AB_cF8_225_a_b:Cl-Xx', "'Xx' is not an element"),
        ('AB_cF8_231_a_b:Cl-Na', 'outside 1–230'),
    ],
)
def test_parse_errors(label, message):
    with pytest.raises(ProtostructureError, match=message):
        protostructure.parse(label)


def test_label_is_independent_of_origin():
    structure = perovskite()
    shifted = structure.copy()
    shifted.translate_sites(range(len(shifted)), [0.13, 0.27, 0.41])
    assert protostructure.label(structure) == protostructure.label(shifted) == 'A3BC_cP5_221_c_a_b:O-Sr-Ti'
    half = rocksalt()
    half.translate_sites(range(len(half)), [0.5, 0, 0])  # swaps the Na and Cl Wyckoff positions
    assert protostructure.label(half) == protostructure.label(rocksalt()) == ROCKSALT


def test_unlabellable_structure_is_a_clear_error():
    disordered = rocksalt()
    disordered.replace(0, {'Na': 0.5, 'K': 0.5})
    with pytest.raises(ProtostructureError, match='disordered'):
        protostructure.label(disordered)
    with pytest.raises(ProtostructureError, match=r'structure 1: .*disordered'):
        protostructure.labels([rocksalt(), disordered])


def test_fit_reduces_training_loss(fitted):
    _, history, _, _ = fitted
    assert history['final_train_mae'] < 0.6 * history['first_train_mae']
    assert history['best_val_mae'] is not None


def test_prediction_is_invariant_to_wyckoff_setting_and_origin(fitted):
    member, *_ = fitted
    assert member.model.wyckoff_embedding.weight.detach().abs().sum() > 0  # learnt, so settings do differ
    shifted = perovskite()
    shifted.translate_sites(range(len(shifted)), [0.13, 0.27, 0.41])
    values = member.predict([ROCKSALT, 'AB_cF8_225_b_a:Cl-Na', rocksalt(), perovskite(), shifted])
    np.testing.assert_allclose(values[1:3], values[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(values[4], values[3], rtol=0, atol=1e-6)


def test_save_load_round_trip(fitted, tmp_path):
    member, _, labels, _ = fitted
    member.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {'model.pt', 'state.pt', 'model.json'}
    loaded = WrenMember.load(tmp_path)
    assert loaded.hyperparameters == member.hyperparameters
    np.testing.assert_array_equal(loaded.predict(labels), member.predict(labels))


def test_ensemble_of_wren_members(fitted, tmp_path):
    member, _, labels, _ = fitted
    assert ensemble.member_class('wren') is WrenMember
    saved = ensemble.Ensemble([member, member], 'diel_elec', 'log', 'wren').save(tmp_path)
    mean, std = ensemble.Ensemble.load(saved).predict(labels[:3])
    np.testing.assert_allclose(mean, np.exp(member.predict(labels[:3])), rtol=1e-6)
    np.testing.assert_allclose(std, 0, atol=1e-6)


def test_bad_items_name_their_position(fitted):
    member, *_ = fitted
    disordered = rocksalt()
    disordered.replace(0, {'Na': 0.5, 'K': 0.5})
    with pytest.raises(ProtostructureError, match=r'item 1: .*disordered'):
        member.predict([rocksalt(), disordered])
    with pytest.raises(ProtostructureError, match=r'item 0: .*beyond Z = 103'):
        member.predict(['AB_cF8_225_a_b:Cl-Og'])


def test_shipped_wren_ensembles_are_selectable_for_prediction(shared):
    """The packaged Wren ensembles match their cards and plug into batched inference by name."""

    from aiida_dielectrics.ml.ensemble import members_sha256
    from aiida_dielectrics.ml.inference import predict
    from aiida_dielectrics.ml.loading import PACKAGED_MODELS, load_predictors

    for target in ('diel_elec', 'diel_ionic'):
        folder = PACKAGED_MODELS / f'wren_{target}'
        card = json.loads((folder / 'model_card.json').read_text())
        assert (card['architecture'], card['target'], card['members']) == ('wren', target, 5)
        assert card['sha256'] == members_sha256(folder)
    sets = load_predictors(
        shared / 'models' / 'matgl', names={'diel_elec': 'wren_diel_elec', 'diel_ionic': 'wren_diel_ionic'}
    )
    assert sets['diel_elec'].architecture == 'wren'
    rocksalt = Structure.from_spacegroup(
        'Fm-3m', Lattice.cubic(5.69), ['Ca', 'S'], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    table = predict([rocksalt], sets)
    assert table['reason'].isna().all()
    assert 1.0 < table['diel_elec'][0] < 20.0 and table['diel_elec_std'][0] > 0
