"""Training and evaluation of the ε ensembles: transforms, split, metrics, a tiny training run, AiiDA."""

import numpy as np
import pytest

from aiida_dielectrics.ml import dataset, evaluation, splits, training, transforms
from aiida_dielectrics.ml.ensemble import Ensemble, read_card


@pytest.fixture(scope='module')
def data(petousis_csv):
    return dataset.from_petousis(petousis_csv)


@pytest.fixture(scope='module')
def pretrained(shared):
    return str(shared / 'models' / 'matgl' / 'MEGNet-MP-2019.4.1-BandGap-mfi')


@pytest.fixture(scope='module')
def tiny(data, pretrained):
    """16 materials, 2 members, 2 epochs: a real training run in seconds."""
    small = data.subset(np.arange(16))
    hyperparameters = {'pretrained': pretrained, 'max_epochs': 2, 'batch_size': 8}
    return small, training.train_ensemble(
        small, 'diel_elec', members=2, hyperparameters=hyperparameters, progress=lambda _: None
    )


@pytest.mark.parametrize(
    ('name', 'values'), [('log', [1.0, 2.5, 300.0]), ('log1p', [0.0, 0.3, 250.0]), ('identity', [-1, 2])]
)
def test_transforms_round_trip(name, values):
    np.testing.assert_allclose(transforms.inverse_transform(name, transforms.transform(name, values)), values)


def test_transforms_refuse_values_outside_their_domain():
    with pytest.raises(ValueError, match='positive'):
        transforms.transform('log', [0.0])
    with pytest.raises(ValueError, match='unknown transform'):
        transforms.transform('sqrt', [1.0])


def test_dataset_reads_all_petousis_entries(data):
    assert len(data) == 1056 and not data.skipped
    assert data.diel_elec.min() >= 1 and data.diel_ionic.min() >= 0
    assert data.band_gap.min() > 0 and data.target('band_gap') is data.band_gap  # PBE gaps, eV
    np.testing.assert_allclose(data.diel_total, data.diel_elec + data.diel_ionic)


@pytest.fixture(scope='module')
def combined(petousis_csv, mp_dfpt_extra_xyz):
    return dataset.from_files([petousis_csv, mp_dfpt_extra_xyz])


def test_petousis_and_extra_read_as_one_dataset(combined, data, petousis_csv, mp_dfpt_extra_xyz, tmp_path):
    assert len(combined) == 1056 + 861 and not combined.skipped
    assert combined.source == 'petousis2017+mp-dfpt-extra'
    assert combined.material_ids[:1056] == data.material_ids
    assert combined.material_ids[1056] == 'CO5U-a3ed766e95'
    assert np.isfinite(combined.band_gap[:1056]).all() and np.isnan(combined.band_gap[1056:]).all()
    assert combined.diel_elec.min() >= 1 and combined.diel_ionic.min() >= 0
    with pytest.raises(ValueError, match='materials in more than one data file: mp-'):
        dataset.from_files([petousis_csv, petousis_csv], limit=3)
    with pytest.raises(ValueError, match='unknown data format'):
        dataset.from_files([tmp_path / 'data.json'])
    assert len(dataset.from_files([mp_dfpt_extra_xyz, petousis_csv], limit=4)) == 8


def test_combined_split_keeps_polymorphs_together_and_gapless_out_of_band_gap(combined, data):
    elec = training.target_split(combined, 'diel_elec')
    gap = training.target_split(combined, 'band_gap')
    assert sum(len(part) for part in (elec.train, elec.val, elec.test)) == len(combined)
    for name in ('train', 'val', 'test'):
        part = getattr(gap, name)
        assert (part < 1056).all()  # Petousis entries only: the others have no gap
        np.testing.assert_array_equal(part, getattr(elec, name)[getattr(elec, name) < 1056])
    by_part = [{combined.formulas[i] for i in getattr(elec, name)} for name in ('train', 'val', 'test')]
    assert not (by_part[0] & by_part[1]) and not (by_part[0] & by_part[2]) and not (by_part[1] & by_part[2])
    shared_formulas = set(combined.formulas[:1056]) & set(combined.formulas[1056:])
    assert len(shared_formulas) >= 25  # polymorphs in both data sets, each formula in one part
    # Petousis alone: the split of splits.train_val_test, so the shipped cards still check.
    alone = training.target_split(data, 'band_gap')
    np.testing.assert_array_equal(alone.test, splits.train_val_test(data.formulas).test)
    # The order of the files does not change the split (its hash is over material ids).
    order = np.r_[1056 : len(combined), 0:1056]
    swapped = combined.subset(order)
    assert splits.split_hash(swapped.material_ids, training.target_split(swapped, 'diel_elec')) == (
        splits.split_hash(combined.material_ids, elec)
    )


def test_phi_is_scored_on_materials_with_a_gap_only():
    truth = evaluation.quantities([2.0, 3.0, 4.0], [1.0, 1.0, 1.0], np.array([1.0, 2.0, np.nan]), 0)
    predicted = evaluation.quantities([2.0, 3.0, 9.0], [1.0, 1.0, 1.0], np.array([1.0, 2.0, 5.0]), 0)
    scores = evaluation.score(truth, predicted)
    assert scores['fom_dft_gap']['mae'] == 0.0  # the third, gapless material is left out of Φ
    assert scores['diel_elec']['mae'] == pytest.approx(5 / 3)  # and kept for ε


def test_split_is_deterministic_and_disjoint_by_material_and_formula(data):
    first, second = splits.train_val_test(data.formulas), splits.train_val_test(list(data.formulas))
    for part in ('train', 'val', 'test'):
        np.testing.assert_array_equal(getattr(first, part), getattr(second, part))
    parts = [set(getattr(first, part)) for part in ('train', 'val', 'test')]
    assert sum(map(len, parts)) == len(data) and set.union(*parts) == set(range(len(data)))
    formulas = [{data.formulas[i] for i in part} for part in parts]
    assert (
        not (formulas[0] & formulas[1])
        and not (formulas[0] & formulas[2])
        and not (formulas[1] & formulas[2])
    )
    assert abs(len(first.test) / len(data) - splits.FRACTIONS[2]) < 0.02
    assert splits.split_hash(data.material_ids, first) != splits.split_hash(
        data.material_ids, splits.train_val_test(data.formulas, seed=1)
    )
    # Row order does not matter: shuffling the entries gives the same formulas in the test part.
    order = np.random.default_rng(0).permutation(len(data))
    shuffled = splits.train_val_test([data.formulas[i] for i in order])
    assert {data.formulas[order[i]] for i in shuffled.test} == formulas[2]


def test_kfold_covers_the_pool_once_with_whole_groups(data):
    split = splits.train_val_test(data.formulas)
    pool = np.concatenate([split.train, split.val])
    folds = splits.kfold(data.formulas, pool)
    held = np.concatenate([h for _, h in folds])
    assert len(folds) == 5 and sorted(held) == sorted(pool) and not set(held) & set(split.test)
    for rest, fold in folds:
        assert not {data.formulas[i] for i in rest} & {data.formulas[i] for i in fold}


def test_metrics_match_hand_computed_values():
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 3.0, 2.0, 6.0])
    m = evaluation.regression_metrics(y, p)
    # errors 0, 1, -1, 2: MAE 1, MSE 6/4, SS_tot 5, Spearman of ranks (1,3,2,4) = 1 - 6·2/(4·15) = 0.8
    assert m['mae'] == pytest.approx(1.0) and m['rmse'] == pytest.approx(np.sqrt(1.5))
    assert m['r2'] == pytest.approx(1 - 6 / 5) and m['spearman'] == pytest.approx(0.8)
    c = evaluation.calibration(y, p, np.array([0.5, 1.0, 0.5, 1.0]))
    assert c == {'within_1sigma': 0.5, 'within_2sigma': 1.0}
    truth, pred = np.arange(20.0), np.r_[np.arange(18.0), 30.0, -1.0]
    assert evaluation.top_k_precision(truth, pred, 0.1) == 0.5


def test_ridge_baseline_recovers_a_linear_target():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 4.0
    model = evaluation.RidgeBaseline().fit(X[:150], y[:150], X[150:], y[150:])
    assert np.abs(model.predict(X[150:]) - y[150:]).mean() < 0.05


def test_tiny_training_writes_a_card_and_round_trips(tiny, tmp_path):
    small, ensemble = tiny
    assert len(ensemble.members) == 2 and ensemble.transform == 'log'
    folder = ensemble.save(tmp_path / 'ens')
    card = read_card(folder)
    assert card['target'] == 'diel_elec' and card['architecture'] == 'megnet' and card['members'] == 2
    assert card['split']['sizes']['test'] == len(card['split']['test_ids']) > 0
    assert {'mae', 'rmse', 'r2', 'spearman', 'within_1sigma'} <= set(card['metrics']['test'])
    # σ is recalibrated on the validation part after training (tests/test_calibration.py has the details).
    assert card['calibration']['fitted_on'] == 'val' and card['sigma_scale'] == ensemble.sigma_scale > 0
    assert len(card['sha256']) == 64 and all(
        (folder / 'member_1' / f).is_file() for f in ('model.pt', 'state.pt', 'model.json')
    )
    mean, std = ensemble.predict(small.structures[:4])
    loaded = Ensemble.load(folder)
    mean2, std2 = loaded.predict(small.structures[:4])
    np.testing.assert_allclose(mean2, mean, rtol=1e-5)
    np.testing.assert_allclose(std2, std, rtol=1e-4, atol=1e-6)
    assert np.all(mean >= 1) and np.all(std > 0)


@pytest.fixture
def small_csv(petousis_head, tmp_path):
    """The first 12 records of the Petousis CSV."""
    return petousis_head(tmp_path / 'small.csv', 12)


def test_training_process_links_model_to_imported_group(aiida_profile_clean, small_csv, pretrained, tmp_path):
    from aiida.common.links import LinkType
    from aiida.orm import Group

    from aiida_dielectrics.calculations.imports import run_petousis2017_import
    from aiida_dielectrics.calculations.training import run_training
    from aiida_dielectrics.data.model import ModelData

    run_petousis2017_import(small_csv, group_label='small')
    hyperparameters = {'pretrained': pretrained, 'max_epochs': 1, 'batch_size': 8}
    model = run_training(
        'small', 'diel_ionic', 'megnet', 1, 1, hyperparameters, tmp_path / 'out', progress=print
    )
    assert isinstance(model, ModelData) and model.is_stored
    assert (
        model.target == 'diel_ionic' and model.members == 1 and model.hyperparameters['transform'] == 'log1p'
    )
    assert (tmp_path / 'out' / 'model_card.json').is_file()
    process = model.base.links.get_incoming(link_type=LinkType.CREATE).one().node
    assert process.is_finished_ok and process.process_label == 'train_model'
    inputs = {link.node.uuid for link in process.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()}
    assert {node.uuid for node in Group.collection.get(label='small').nodes} <= inputs
    assert len(inputs) == 2 * 12 + 6  # structures, dielectrics and the six parameter nodes


@pytest.fixture(scope='module')
def union(petousis_csv, mp_dfpt_extra_xyz):
    return dataset.from_files([petousis_csv, mp_dfpt_extra_xyz])


def test_shipped_ensembles_match_their_cards(union):
    from aiida_dielectrics.ml.ensemble import members_sha256
    from aiida_dielectrics.ml.loading import PACKAGED_MODELS

    files = [path for path in PACKAGED_MODELS.rglob('*') if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= 20e6
    for target, transform in transforms.DEFAULT_TRANSFORM.items():
        card = read_card(PACKAGED_MODELS / target)
        assert card['target'] == target and card['transform'] == transform and card['members'] >= 5
        assert card['sha256'] == members_sha256(PACKAGED_MODELS / target)
        assert card['data']['source'] == 'petousis2017+mp-dfpt-extra'
        split = training.target_split(union, target)
        assert card['split']['sha256'] == splits.split_hash(union.material_ids, split)
        assert len(card['training']) == card['members']


def test_shipped_epsilon_ensembles_are_the_cv_chosen_embedding_heads():
    from aiida_dielectrics.ml.loading import PACKAGED_MODELS

    for target in ('diel_elec', 'diel_ionic'):
        card = read_card(PACKAGED_MODELS / target)
        assert card['architecture'] == 'embedding-mlp'
        assert card['hyperparameters']['potentials'] == ['sevennet-0']
        assert card['hyperparameters']['pooling'] == 'layers' and card['hyperparameters']['bagging']
        assert card['calibration']['fitted_on'].startswith('cv (5 folds')
        assert card['calibration']['cv']['size'] == 1630


def test_shipped_band_gap_ensemble_is_fine_tuned_at_pbe_fidelity_on_the_epsilon_split():
    from aiida_dielectrics.ml.loading import PACKAGED_MODELS

    card = read_card(PACKAGED_MODELS / 'band_gap')
    assert card['target'] == 'band_gap' and card['transform'] == 'log1p' and card['architecture'] == 'megnet'
    hyperparameters = card['hyperparameters']
    assert hyperparameters['pretrained'] == 'MEGNet-MP-2019.4.1-BandGap-mfi'
    assert hyperparameters['state_attr'] == 0  # the PBE fidelity inference calls it with
    for target in ('diel_elec', 'diel_ionic'):  # the same seeded split: no ε test material trained on
        epsilon = read_card(PACKAGED_MODELS / target)['split']
        assert (card['split']['seed'], card['split']['fractions']) == (epsilon['seed'], epsilon['fractions'])
        assert set(card['split']['test_ids']) <= set(epsilon['test_ids'])
    # The pretrained MEGNet scores MAE 1.24 eV, R² -0.08 on the Petousis test split (docs/topics/models.md).
    assert card['metrics']['test']['mae'] < 1.0 and card['metrics']['test']['r2'] > 0.3


def test_cli_train_and_evaluate_refuse_bad_input(tmp_path):
    from click.testing import CliRunner

    from aiida_dielectrics.cli import cli

    result = CliRunner().invoke(cli, ['train', '--target', 'diel_elec', '-o', str(tmp_path / 'm')])
    assert result.exit_code == 1 and 'exactly one of --data FILE or --group' in result.output
    csv = tmp_path / 'data.csv'
    csv.write_text('x\n')
    result = CliRunner().invoke(
        cli, ['evaluate', '--data', str(csv), '--models', str(tmp_path), '-o', 'r.md']
    )
    assert result.exit_code == 1 and 'no model_card.json' in result.output


def test_cv_scores_compare_with_dft_phi_and_skip_calibration_without_spread(data):
    split = splits.train_val_test(data.formulas)
    folds = splits.kfold(data.formulas, np.concatenate([split.train, split.val]))
    index = np.concatenate([held for _, held in folds])
    fold = np.concatenate([np.full(len(held), k) for k, (_, held) in enumerate(folds)])
    cv = {
        target: {
            'index': index,
            'fold': fold,
            'mean': data.target(target)[index],
            'std': np.zeros(len(index)),
        }
        for target in dataset.TARGETS
    }
    summary = evaluation.cross_validation_scores(data, cv, data.band_gap * 0.5)['summary']['ensemble']
    assert summary['fom_dft_gap']['mae'] == (0.0, 0.0) and summary['diel_total']['r2'][0] == pytest.approx(
        1.0
    )
    assert summary['fom_pred_gap']['mae'][0] > 0 and 'within_1sigma' not in summary['diel_elec']


def test_evaluate_reports_ensemble_and_baselines(tiny):
    small, ensemble = tiny
    split = splits.train_val_test(small.formulas)
    results = evaluation.evaluate(small, {t: ensemble for t in dataset.TARGETS}, small.band_gap, split)
    test = small.subset(split.test)
    elec, _ = ensemble.predict(test.structures)
    expected = np.mean(np.abs(2 * elec * test.band_gap - test.diel_total * test.band_gap))
    assert results['test']['ensemble']['fom_dft_gap']['mae'] == pytest.approx(expected)
    assert set(results['test']) == {'size', 'ensemble', 'ridge', 'mean'}
    assert 'within_2sigma' in results['test']['ensemble']['diel_total']
    assert '| Φ (DFT gap) | megnet ensemble |' in evaluation.markdown_tables(results, 'megnet ensemble')
