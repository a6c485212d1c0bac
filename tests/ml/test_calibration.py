"""σ recalibration: the scale fitted on validation data, applied by Ensemble.predict, written by training."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from aiida_dielectrics.cli import cli
from aiida_dielectrics.ml import dataset, evaluation, splits, training
from aiida_dielectrics.ml.ensemble import Ensemble, fit_sigma_scale, members_sha256, read_card
from aiida_dielectrics.ml.loading import PACKAGED_MODELS

SHIPPED = ('diel_elec', 'diel_ionic', 'band_gap', 'wren_diel_elec', 'wren_diel_ionic')


class Fixed:
    """A stand-in member: its outputs (transformed space) are looked up by the index passed as structure."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=float)

    def predict(self, structures):
        return self.values[np.asarray(structures, dtype=int)]


def overconfident(points: int, factor: float, members: int = 5, seed: int = 0):
    """(members × points) outputs and truths whose error is ``factor`` times the member spread (Gaussian)."""
    rng = np.random.default_rng(seed)
    spread = rng.uniform(0.02, 0.1, points)
    outputs = rng.normal(1.0, 0.5, points) + spread * rng.standard_normal((members, points))
    truth = outputs.mean(axis=0) + factor * outputs.std(axis=0) * rng.standard_normal(points)
    return outputs, truth


def test_fit_sigma_scale_recovers_a_known_over_confidence():
    outputs, truth = overconfident(20000, 3.0)
    assert fit_sigma_scale(outputs, truth) == pytest.approx(3.0, rel=0.03)
    outputs, truth = overconfident(20000, 1.0, seed=1)
    assert fit_sigma_scale(outputs, truth) == pytest.approx(1.0, rel=0.03)


def test_predict_applies_the_card_scale_and_a_card_without_it_is_unchanged():
    outputs = np.log([[2.0, 10.0], [4.0, 30.0]])  # two members, ε 2|4 and 10|30
    members = [Fixed(row) for row in outputs]
    plain = Ensemble(members, 'diel_elec', 'log', 'stub', {'members': 2})
    mean, std = plain.predict([0, 1])
    np.testing.assert_allclose(mean, [3.0, 20.0])
    np.testing.assert_allclose(std, [1.0, 10.0])  # the member spread, as before calibration existed
    assert plain.sigma_scale == 1.0
    scaled = Ensemble(members, 'diel_elec', 'log', 'stub', {'members': 2, 'sigma_scale': 2.5})
    mean2, std2 = scaled.predict([0, 1])
    np.testing.assert_allclose(mean2, mean)
    np.testing.assert_allclose(std2, 2.5 * std)
    np.testing.assert_allclose(scaled.summarize(outputs, calibrated=False)[1], std)


def test_training_calibrate_fits_on_validation_and_measures_test():
    points = 3000
    outputs, truth = overconfident(points, 2.0)
    data = dataset.Dataset(
        [f'id-{i}' for i in range(points)],
        list(range(points)),
        np.exp(truth),
        np.zeros(points),
        np.ones(points),
    )
    split = splits.Split(train=np.arange(0), val=np.arange(1000), test=np.arange(1000, points))
    ensemble = Ensemble([Fixed(row) for row in outputs], 'diel_elec', 'log', 'stub')
    result = training.calibrate(ensemble, data, split)
    assert ensemble.card['sigma_scale'] == pytest.approx(2.0, rel=0.08)
    assert result['fitted_on'] == 'val' and result['val']['size'] == 1000 and result['test']['size'] == 2000
    before, after = result['test']['before'], result['test']['after']
    assert before['within_1sigma'] < 0.45 and after['within_1sigma'] == pytest.approx(0.683, abs=0.04)
    assert after['within_2sigma'] == pytest.approx(0.954, abs=0.03)
    assert ensemble.card['metrics']['test']['within_1sigma'] == after['within_1sigma']
    # Scaling is fitted on the validation part only: changing test truths does not move it.
    shifted = dataset.Dataset(
        data.material_ids,
        data.structures,
        data.diel_elec * np.r_[np.ones(1000), np.full(2000, 5.0)],
        data.diel_ionic,
        data.band_gap,
    )
    assert training.calibrate(ensemble, shifted, split) and ensemble.sigma_scale == pytest.approx(
        fit_sigma_scale(outputs[:, :1000], truth[:1000])
    )
    single = Ensemble([Fixed(outputs[0])], 'diel_elec', 'log', 'stub', {'sigma_scale': 3.0})
    assert training.calibrate(single, data, split) == {} and single.sigma_scale == 1.0


def test_predicted_gap_sigma_enters_phi_sigma_as_in_screening():
    one = np.ones(2)
    std = evaluation.propagated_std(2 * one, 0.3 * one, 3 * one, 0.4 * one, 2 * one, 4 * one, 0.5 * one)
    np.testing.assert_allclose(std['diel_total'], 0.5)
    np.testing.assert_allclose(std['fom_dft_gap'], 1.0)  # the DFT gap is exact: 2 eV × 0.5
    np.testing.assert_allclose(std['fom_pred_gap'], np.hypot(4 * 0.5, 5 * 0.5))


def test_shipped_ensembles_carry_a_held_out_fitted_scale():
    for name in SHIPPED:
        card = read_card(PACKAGED_MODELS / name)
        calibration = card['calibration']
        sizes = card['split']['sizes']
        part = 'cv' if card['architecture'] == 'embedding-mlp' else 'val'  # out-of-fold over train+val
        assert card['sigma_scale'] > 1 and calibration['fitted_on'].startswith(part)
        assert calibration[part]['size'] == (sizes['train'] + sizes['val'] if part == 'cv' else sizes['val'])
        assert calibration['test']['size'] == card['split']['sizes']['test']
        assert calibration['test']['after']['within_1sigma'] > calibration['test']['before']['within_1sigma']
        assert card['metrics']['test']['within_1sigma'] == calibration['test']['after']['within_1sigma']
        assert card['sha256'] == members_sha256(PACKAGED_MODELS / name)


def test_cli_calibrate_rewrites_only_the_card(petousis_csv, mp_dfpt_extra_xyz, tmp_path):
    folder = shutil.copytree(PACKAGED_MODELS / 'band_gap', tmp_path / 'band_gap')
    shipped = read_card(folder)
    stale = {key: value for key, value in shipped.items() if key not in ('sigma_scale', 'calibration')}
    (folder / 'model_card.json').write_text(json.dumps(stale))
    result = CliRunner().invoke(
        cli, ['calibrate', '--data', str(petousis_csv), '--data', str(mp_dfpt_extra_xyz), str(folder)]
    )
    assert result.exit_code == 0, result.output
    card = read_card(folder)
    assert card['sigma_scale'] == pytest.approx(shipped['sigma_scale'], rel=1e-5)
    assert card['sha256'] == shipped['sha256'] == members_sha256(folder)
    stale['split']['sha256'] = '0' * 64
    (folder / 'model_card.json').write_text(json.dumps(stale))
    result = CliRunner().invoke(
        cli, ['calibrate', '--data', str(petousis_csv), '--data', str(mp_dfpt_extra_xyz), str(folder)]
    )
    assert result.exit_code == 1 and 'another split' in result.output


def test_cli_calibrate_refuses_an_ensemble_calibrated_by_cross_validation(petousis_csv, mp_dfpt_extra_xyz):
    data = ['--data', str(petousis_csv), '--data', str(mp_dfpt_extra_xyz)]
    result = CliRunner().invoke(cli, ['calibrate', *data, str(PACKAGED_MODELS / 'diel_ionic')])
    assert result.exit_code == 1 and 'calibrated by cross-validation' in result.output
