"""Band gap of the packaged ensemble against the pretrained MEGNet, on the shipped models' seeded test split.

Prints, per model: gap MAE/RMSE/R²/Spearman, agreement with DFT on the E_gap ≥ 0.5 eV filter, Φ metrics
with the predicted gap (ε from the packaged ensembles), and single predictions for a few rocksalts and Al.
The figures in docs/topics/models.md ("Band gap") come from this script:

    python scripts/compare_band_gap_models.py ../shared/data/petousis2017/dielectric_constant.csv \
        ../shared/data/mp-dfpt-extra/mp-dfpt-extra.extxyz ../shared/models/matgl/MEGNet-MP-2019.4.1-BandGap-mfi

The split is that of Petousis + mp-dfpt-extra, less the materials without a DFT gap (mp-dfpt-extra's).
"""

import argparse
import json

import numpy as np
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.ml import dataset, evaluation, training
from aiida_dielectrics.ml.ensemble import Ensemble
from aiida_dielectrics.ml.evaluation import predict_gap
from aiida_dielectrics.ml.loading import PACKAGED_MODELS


def rocksalt(cation: str, anion: str, a: float) -> Structure:
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('csv', help='Petousis 2017 CSV')
    parser.add_argument('extxyz', help='mp-dfpt-extra extxyz')
    parser.add_argument('pretrained', help='folder of the pretrained MEGNet band-gap model')
    arguments = parser.parse_args()

    data = dataset.from_files([arguments.csv, arguments.extxyz])
    test = training.target_split(data, 'band_gap').test
    structures = [data.structures[i] for i in test]
    elec, _ = Ensemble.load(PACKAGED_MODELS / 'diel_elec').predict(structures)
    ionic, _ = Ensemble.load(PACKAGED_MODELS / 'diel_ionic').predict(structures)
    gaps = data.band_gap[test]
    truth = evaluation.quantities(data.diel_elec[test], data.diel_ionic[test], gaps, gaps)
    examples = {
        'MgO': rocksalt('Mg', 'O', 4.25),
        'CaO': rocksalt('Ca', 'O', 4.83),
        'MgS': rocksalt('Mg', 'S', 5.23),
        'CaS': rocksalt('Ca', 'S', 5.72),
        'Al': Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.04), ['Al'], [[0, 0, 0]]),
    }
    for name, model in (
        ('pretrained MEGNet', arguments.pretrained),
        ('packaged ensemble', PACKAGED_MODELS / 'band_gap'),
    ):
        predicted, _ = predict_gap(model, structures)
        scores = evaluation.score(truth, evaluation.quantities(elec, ionic, gaps, predicted))
        report = {
            'gap': evaluation.regression_metrics(gaps, predicted),
            'gap_filter_agreement': float(np.mean((predicted >= 0.5) == (gaps >= 0.5))),
            'fom_pred_gap': scores['fom_pred_gap'],
            'examples': dict(
                zip(examples, map(float, predict_gap(model, list(examples.values()))[0]), strict=True)
            ),
        }
        print(name, json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
