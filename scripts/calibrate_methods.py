"""Compare ways to fit the σ scale of the shipped ensembles: fitted on validation, scored on test.

Each estimator turns the validation z-scores (error / member σ) into one factor s for σ; the table gives
s and the share of test truths within ±1σ and ±2σ of the mean with σ = s × member spread (a Gaussian:
0.68 and 0.95). ``training.calibrate`` uses the last one; docs/topics/models.md explains the choice:

    python scripts/calibrate_methods.py ../shared/data/petousis2017/dielectric_constant.csv
"""

import argparse

import numpy as np

from aiida_dielectrics.ml import dataset, evaluation, splits, transforms
from aiida_dielectrics.ml.ensemble import Ensemble
from aiida_dielectrics.ml.loading import PACKAGED_MODELS

ENSEMBLES = ('diel_elec', 'diel_ionic', 'band_gap', 'wren_diel_elec', 'wren_diel_ionic')
#: name -> (space of z, s from |z|)
ESTIMATORS = {
    'none': ('original', lambda z: 1.0),
    'RMS z, ε space': ('original', lambda z: np.sqrt(np.mean(z**2))),
    'RMS z, transformed space': ('transformed', lambda z: np.sqrt(np.mean(z**2))),
    '68.3 % quantile of \\|z\\|, transformed': ('transformed', lambda z: np.quantile(z, 0.6827)),
    '√(π/2)·mean \\|z\\|, transformed': ('transformed', lambda z: np.sqrt(np.pi / 2) * np.mean(z)),
}


def abs_z(ensemble: Ensemble, outputs, truth, space: str) -> np.ndarray:
    if space == 'transformed':
        truth = transforms.transform(ensemble.transform, truth)
        return np.abs(truth - outputs.mean(axis=0)) / outputs.std(axis=0)
    mean, std = ensemble.summarize(outputs, calibrated=False)
    return np.abs(truth - mean) / std


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('csv', help='Petousis 2017 CSV')
    data = dataset.from_petousis(parser.parse_args().csv)
    split = splits.train_val_test(data.formulas)
    print('| estimator | ' + ' | '.join(ENSEMBLES) + ' | mean of \\|Δ₁σ\\| + \\|Δ₂σ\\| |')
    print('| --- |' + ' ---: |' * (len(ENSEMBLES) + 1))
    rows = {name: [] for name in ESTIMATORS}
    for name in ENSEMBLES:
        ensemble = Ensemble.load(PACKAGED_MODELS / name)
        truth = {part: data.target(ensemble.target)[getattr(split, part)] for part in ('val', 'test')}
        outputs = {
            part: ensemble.predict_transformed([data.structures[i] for i in getattr(split, part)])
            for part in truth
        }
        mean, std = ensemble.summarize(outputs['test'], calibrated=False)
        for estimator, (space, fit) in ESTIMATORS.items():
            scale = fit(abs_z(ensemble, outputs['val'], truth['val'], space))
            shares = evaluation.calibration(truth['test'], mean, scale * std)
            rows[estimator].append((scale, shares['within_1sigma'], shares['within_2sigma']))
    for estimator, cells in rows.items():
        gap = np.mean([abs(one - 0.6827) + abs(two - 0.9545) for _, one, two in cells])
        text = ' | '.join(f'{s:.2f}: {one:.2f}/{two:.2f}' for s, one, two in cells)
        print(f'| {estimator} | {text} | {gap:.3f} |')


if __name__ == '__main__':
    main()
