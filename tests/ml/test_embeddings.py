"""Frozen universal-potential embeddings (``ml.embeddings``) and the small heads on them (``ml.heads``)."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.ml import embeddings, heads

WIDTH = {'sevennet-0': 128, 'chgnet': 64}
LAYERS = {'sevennet-0': 5, 'chgnet': 4}


@pytest.fixture(scope='module')
def crystals():
    rocksalt = [[0, 0, 0], [0.5, 0.5, 0.5]]
    return {
        'NaCl': Structure(Lattice.cubic(5.64).matrix @ np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
                          ['Na', 'Cl'], rocksalt),
        'MgO': Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.21), ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        'Si': Structure.from_spacegroup('Fd-3m', Lattice.cubic(5.47), ['Si'], [[0, 0, 0]]),
    }  # fmt: skip


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_structure_hash_tracks_the_structure(crystals):
    nacl = crystals['NaCl']
    assert embeddings.structure_hash(nacl) == embeddings.structure_hash(nacl.copy())
    moved = nacl.copy()
    moved.translate_sites([0], [0.01, 0, 0])
    assert embeddings.structure_hash(moved) != embeddings.structure_hash(nacl)


def test_pool_blocks():
    layers = [np.arange(6.0).reshape(3, 2), np.array([[1.0, 4.0], [3.0, 0.0], [2.0, 2.0]])]
    blocks = embeddings.pool(layers)
    np.testing.assert_allclose(blocks['mean'], [2.0, 2.0])
    np.testing.assert_allclose(blocks['max'], [3.0, 4.0])
    np.testing.assert_allclose(blocks['std'], np.std(layers[-1], axis=0))
    np.testing.assert_allclose(blocks['layers'], [2.0, 3.0, 2.0, 2.0])
    X = embeddings.features({name: value[None] for name, value in blocks.items()}, 'mean+max')
    assert X.shape == (1, 4)
    with pytest.raises(ValueError, match='unknown pooling'):
        embeddings.features(blocks, 'median')


@pytest.mark.parametrize('potential', embeddings.POTENTIALS)
def test_embed_shapes_determinism_batching_and_cache(potential, crystals, tmp_path):
    structures, ids = list(crystals.values()), list(crystals)
    cache = tmp_path / f'{potential}.npz'
    first = embeddings.embed(structures, ids, potential, cache=cache, batch_size=2)
    width = WIDTH[potential]
    assert first.computed == 3
    assert {name: value.shape for name, value in first.items()} == {
        'mean': (3, width),
        'max': (3, width),
        'std': (3, width),
        'layers': (3, width * LAYERS[potential]),
    }
    assert np.all(np.isfinite(first['layers'])) and np.all(first.seconds > 0)
    # the last layer's mean is the last slice of the per-layer block
    np.testing.assert_allclose(first['layers'][:, -width:], first['mean'], rtol=1e-6, atol=1e-8)
    # a perfect crystal's atoms of one element are equivalent: no spread over the atoms of Si
    np.testing.assert_allclose(first['std'][2], 0, atol=1e-4)
    assert not np.allclose(first['mean'][0], first['mean'][1])

    # deterministic, and batching does not change an embedding beyond float32 rounding
    single = embeddings.embed(structures, ids, potential, cache=None, batch_size=1)
    again = embeddings.embed(structures, ids, potential, cache=None, batch_size=1)
    for name in embeddings.BLOCKS:
        np.testing.assert_array_equal(single[name], again[name])
        np.testing.assert_allclose(single[name], first[name], rtol=1e-4, atol=1e-4)

    # cache hit: nothing recomputed, the same numbers, any order and subset
    cached = embeddings.embed(structures[::-1], ids[::-1], potential, cache=cache)
    assert cached.computed == 0
    np.testing.assert_array_equal(cached['mean'], first['mean'][::-1])
    # a moved structure under the same id is a new key
    moved = structures[0].copy()
    moved.translate_sites([0], [0.02, 0, 0])
    assert embeddings.embed([moved], ids[:1], potential, cache=cache).computed == 1


def test_cache_refuses_another_potential(tmp_path):
    store = embeddings.EmbeddingCache(tmp_path / 'c.npz', 'chgnet', 'CHGNet x')
    store.add('a#0', {name: np.zeros(2) for name in embeddings.BLOCKS}, 0.1)
    store.save()
    assert len(embeddings.EmbeddingCache(tmp_path / 'c.npz', 'chgnet', 'CHGNet x')) == 1
    with pytest.raises(ValueError, match='holds embeddings of'):
        embeddings.EmbeddingCache(tmp_path / 'c.npz', 'sevennet-0', 'SevenNet-0')


@pytest.fixture(scope='module')
def tiny_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6))
    y = X @ np.array([1.0, -0.5, 0.0, 0.3, 0.0, 0.0]) + 0.5 * np.sin(2 * X[:, 0]) + 0.05 * rng.normal(size=90)
    groups = [f'g{i // 2}' for i in range(90)]  # pairs of "polymorphs"
    return X, y, groups


@pytest.mark.parametrize('kind', ['ridge', 'krr', 'mlp'])
def test_heads_fit_a_tiny_set(kind, tiny_problem):
    X, y, groups = tiny_problem
    spec = {'mlp': {'width': [16], 'weight_decay': [1e-3]}}.get(kind)
    fixed = {'epochs': 100, 'lr': 1e-2, 'batch_size': 16} if kind == 'mlp' else None
    params, scores = heads.inner_cv_select(kind, X[:70], y[:70], groups[:70], folds=3, spec=spec, fixed=fixed)
    assert len(scores) == len(heads.grid(spec or heads.GRIDS[kind]))
    head = heads.HEADS[kind](**params).fit(X[:70], y[:70], seed=1)
    mae = np.mean(np.abs(head.predict(X[70:]) - y[70:]))
    assert mae < 0.5 * np.mean(np.abs(y[70:] - y[:70].mean()))
    np.testing.assert_array_equal(
        head.predict(X[70:]), heads.HEADS[kind](**params).fit(X[:70], y[:70], seed=1).predict(X[70:])
    )


def test_mlp_ensemble_sigma(tiny_problem):
    X, y, _ = tiny_problem
    model = heads.HeadEnsemble('mlp', {'width': 16, 'epochs': 40}, members=3, transform='log1p')
    model.fit(X[:60], y[:60], val=(X[60:75], y[60:75]), seed=0)
    assert all(1 <= member.best_epoch <= 40 for member in model.members)
    scale = model.calibrate(X[60:75], y[60:75])
    assert scale > 0
    mean, std = model.predict(X[75:])
    raw_mean, raw_std = model.predict(X[75:], calibrated=False)
    np.testing.assert_allclose(mean, raw_mean)
    np.testing.assert_allclose(std, scale * raw_std)
    np.testing.assert_allclose(mean, np.expm1(model.predict_transformed(X[75:])).mean(axis=0))
    assert np.all(raw_std > 0)
