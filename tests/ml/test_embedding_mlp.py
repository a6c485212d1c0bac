"""The ``embedding-mlp`` member: trained, calibrated by CV, saved, loaded and used by batched inference."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.ml import dataset, embeddings, inference, loading, training
from aiida_dielectrics.ml.embedding_mlp import EmbeddingMLPMember
from aiida_dielectrics.ml.ensemble import Ensemble

SMALL = {'max_epochs': 15, 'width': 16}


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def data(petousis_csv):
    return dataset.from_petousis(petousis_csv, limit=60)


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
    """Two members for ε_ionic with the hidden layers chosen by inner CV, σ fitted by 5-fold CV."""
    ensemble = training.train_ensemble(
        data,
        'diel_ionic',
        'embedding-mlp',
        members=2,
        hyperparameters=SMALL,
        calibration='cv',
        progress=print,
    )
    return ensemble, ensemble.save(tmp_path_factory.mktemp('models') / 'diel_ionic')


def test_card_records_the_inner_cv_choice_and_the_cv_calibration(trained, data):
    ensemble, _ = trained
    card = ensemble.card
    assert card['architecture'] == 'embedding-mlp'
    assert card['hyperparameters']['layers'] in (1, 2)
    assert card['hyperparameters']['potentials'] == ['sevennet-0']
    assert 10 <= card['hyperparameters']['max_epochs'] <= SMALL['max_epochs']
    calibration = card['calibration']
    assert calibration['fitted_on'].startswith('cv (5 folds')
    # out-of-fold over all of train+val: more points than the validation part alone
    assert calibration['cv']['size'] == card['split']['sizes']['train'] + card['split']['sizes']['val']
    assert card['sigma_scale'] > 1  # two seeds on the same data spread too little on their own
    assert card['metrics']['test']['within_2sigma'] is not None


def test_saved_ensemble_predicts_the_same_and_inference_agrees(trained, data):
    ensemble, folder = trained
    structures = data.structures[:7]
    loaded = Ensemble.load(folder)
    np.testing.assert_allclose(
        loaded.predict_transformed(structures), ensemble.predict_transformed(structures)
    )
    model_set = loading.load_model_set('diel_ionic', folder)
    assert model_set.architecture == 'embedding-mlp' and model_set.sigma_scale == ensemble.sigma_scale
    table = inference.predict(structures, {'diel_ionic': model_set}, labels=False)
    mean, std = loaded.predict(structures)
    np.testing.assert_allclose(table['diel_ionic'], mean)
    np.testing.assert_allclose(table['diel_ionic_std'], std)


def test_an_element_the_potential_lacks_gets_a_reason_and_the_rest_go_on(trained, data):
    _, folder = trained
    model_set = loading.load_model_set('diel_ionic', folder)
    known = embeddings.load_embedder('sevennet-0').elements
    element = next(e for e in ('Og', 'Ts', 'Lv', 'Mc', 'Fl') if e not in known)
    odd = Structure(Lattice.cubic(4.0), [element, 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]])
    table = inference.predict([data.structures[0], odd], {'diel_ionic': model_set}, labels=False)
    assert inference.is_missing(table['reason'][0]) and np.isfinite(table['diel_ionic'][0])
    assert f'sevennet-0 was not trained on {element}' in table['reason'][1]
    assert np.isnan(table['diel_ionic'][1])


def test_a_member_refuses_embeddings_of_another_potential_version(trained, data):
    _, folder = trained
    member = EmbeddingMLPMember.load(folder / 'member_0')
    member.versions['sevennet-0'] = 'SevenNet-0 (sevenn 0.0.1)'
    with pytest.raises(ValueError, match=r'trained on SevenNet-0 \(sevenn 0.0.1\) embeddings'):
        member.predict(data.structures[:1])


def test_bad_hyperparameters_are_refused():
    with pytest.raises(ValueError, match='potentials must be among'):
        EmbeddingMLPMember(potentials=('mace',))
    with pytest.raises(ValueError, match='unknown pooling'):
        EmbeddingMLPMember(pooling='median')
