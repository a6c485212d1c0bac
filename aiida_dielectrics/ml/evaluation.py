"""Metrics for ε and Φ predictions: accuracy, ranking, calibration and top-k screening precision.

Everything is computed in the original space (ε, eV), where the numbers are used for screening.
:func:`evaluate_ensembles` measures a folder of ε ensembles on the data and split they were trained on and
:meth:`Evaluation.report` writes the Markdown of ``aiida-dielectrics evaluate``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

import numpy as np
from scipy import stats

from aiida_dielectrics.ml.files import CARD


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MAE, RMSE, R² (1 − SS_res/SS_tot) and Spearman ρ."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    error = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        'mae': float(np.mean(np.abs(error))),
        'rmse': float(np.sqrt(np.mean(error**2))),
        'r2': float(1 - np.sum(error**2) / ss_tot) if ss_tot > 0 else float('nan'),
        'spearman': float(stats.spearmanr(y_true, y_pred).statistic) if len(y_true) > 1 else float('nan'),
    }


def calibration(y_true, mean, std) -> dict[str, float]:
    """Share of points whose true value lies within ±1σ and ±2σ of the ensemble mean.

    A Gaussian would give 0.683 and 0.954; lower means the ensemble is over-confident.
    """
    distance = np.abs(np.asarray(y_true, dtype=float) - np.asarray(mean, dtype=float))
    std = np.asarray(std, dtype=float)
    return {
        'within_1sigma': float(np.mean(distance <= std)),
        'within_2sigma': float(np.mean(distance <= 2 * std)),
    }


def top_k_precision(y_true, y_pred, fraction: float = 0.1) -> float:
    """Of the top ``fraction`` by prediction, the share that is also in the true top ``fraction``."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    k = max(1, round(fraction * len(y_true)))
    predicted = set(np.argsort(-y_pred, kind='stable')[:k])
    actual = set(np.argsort(-y_true, kind='stable')[:k])
    return len(predicted & actual) / k


# --- baselines -----------------------------------------------------------------------------------------


def composition_features(structures) -> np.ndarray:
    """Composition-only descriptors: element fractions plus fraction-weighted mean and range of
    electronegativity, row, group and atomic mass (what a model without structure could know)."""
    from matgl.config import DEFAULT_ELEMENTS
    from pymatgen.core import Element

    column = {symbol: i for i, symbol in enumerate(DEFAULT_ELEMENTS)}
    rows = []
    for structure in structures:
        fractions = structure.composition.fractional_composition.get_el_amt_dict()
        vector = np.zeros(len(DEFAULT_ELEMENTS))
        props = []
        for symbol, fraction in fractions.items():
            vector[column[symbol]] = fraction
            element = Element(symbol)
            props.append(
                (
                    fraction,
                    element.X if not np.isnan(element.X) else 0.0,
                    element.row,
                    element.group,
                    float(element.atomic_mass),
                )
            )
        props = np.array(props)
        weights, values = props[:, 0], props[:, 1:]
        stats_ = np.concatenate([weights @ values, values.max(axis=0) - values.min(axis=0), [len(fractions)]])
        rows.append(np.concatenate([vector, stats_]))
    return np.array(rows)


class MeanBaseline:
    """Predicts the training mean (in the transformed space) for every material."""

    def fit(self, X, y):
        self.mean = float(np.mean(y))
        return self

    def predict(self, X) -> np.ndarray:
        return np.full(len(X), self.mean)


class RidgeBaseline:
    """Ridge regression on standardised composition features; α picked on the validation set."""

    ALPHAS = (0.1, 1.0, 10.0, 100.0)

    def fit(self, X, y, X_val=None, y_val=None):
        self.mu, self.sd = X.mean(axis=0), X.std(axis=0) + 1e-12
        best = None
        for alpha in self.ALPHAS if X_val is not None else (1.0,):
            self._solve(X, y, alpha)
            score = np.mean(np.abs(self.predict(X_val) - y_val)) if X_val is not None else 0.0
            if best is None or score < best[0]:
                best = (score, alpha)
        self.alpha = best[1]
        self._solve(X, y, self.alpha)
        return self

    def _solve(self, X, y, alpha):
        Z = (X - self.mu) / self.sd
        self.intercept = float(np.mean(y))
        self.coef = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (y - self.intercept))

    def predict(self, X) -> np.ndarray:
        return ((X - self.mu) / self.sd) @ self.coef + self.intercept


# --- the report -----------------------------------------------------------------------------------------

QUANTITIES = ('diel_elec', 'diel_ionic', 'diel_total', 'fom_dft_gap', 'fom_pred_gap')
LABELS = {
    'diel_elec': 'ε_elec',
    'diel_ionic': 'ε_ionic',
    'diel_total': 'ε_total',
    'fom_dft_gap': 'Φ (DFT gap)',
    'fom_pred_gap': 'Φ (predicted gap)',
}


def quantities(elec, ionic, dft_gap, pred_gap) -> dict[str, np.ndarray]:
    """ε_elec, ε_ionic, ε_total and Φ with the DFT and the predicted band gap."""
    total = np.asarray(elec) + np.asarray(ionic)
    return {
        'diel_elec': np.asarray(elec),
        'diel_ionic': np.asarray(ionic),
        'diel_total': total,
        'fom_dft_gap': total * dft_gap,
        'fom_pred_gap': total * pred_gap,
    }


#: ε_total above which a material counts as high-κ, and the prediction that must find it (:func:`high_recall`).
HIGH_TOTAL, HIGH_PREDICTED = 30.0, 20.0


def high_recall(y_true, y_pred) -> float:
    """Of the materials with true ε_total > :data:`HIGH_TOTAL`, the share predicted above
    :data:`HIGH_PREDICTED`: does the model find the tail where discovery happens, or regress to the mean?"""
    high = np.asarray(y_true) > HIGH_TOTAL
    return float(np.mean(np.asarray(y_pred)[high] > HIGH_PREDICTED)) if high.any() else float('nan')


def score(truth: dict, predicted: dict, std: dict | None = None) -> dict[str, dict]:
    """Metrics per quantity; ε_total and Φ also get top-10 % precision (ε_total the share of true
    ε_total > 30 predicted above 20), and calibration where σ is given.

    Φ is scored on the materials with a DFT gap only (its truth is NaN for the others, mp-dfpt-extra).
    """
    result = {}
    for name in QUANTITIES:
        known = np.isfinite(truth[name])
        y_true, y_pred = truth[name][known], np.asarray(predicted[name])[known]
        metrics = regression_metrics(y_true, y_pred)
        if name.startswith('fom') or name == 'diel_total':
            metrics['top10_precision'] = top_k_precision(y_true, y_pred, 0.1)
        if name == 'diel_total':
            metrics['high_recall'] = high_recall(y_true, y_pred)
        if std is not None:
            metrics.update(calibration(y_true, y_pred, np.asarray(std[name])[known]))
        result[name] = metrics
    return result


def propagated_std(
    elec, elec_std, ionic, ionic_std, dft_gap, pred_gap, pred_gap_std
) -> dict[str, np.ndarray]:
    """σ of each quantity as screening propagates it (:func:`~aiida_dielectrics.science.fom.prediction_summary`)
    from the σ of ε_elec, ε_ionic and the predicted gap; the DFT gap is exact."""
    from aiida_dielectrics.science.fom import prediction_summary

    dft = prediction_summary(elec, elec_std, ionic, ionic_std, dft_gap, 0.0)
    predicted = prediction_summary(elec, elec_std, ionic, ionic_std, pred_gap, pred_gap_std)
    return {
        'diel_elec': elec_std,
        'diel_ionic': ionic_std,
        'diel_total': dft['diel_total_std'],
        'fom_dft_gap': dft['fom_std'],
        'fom_pred_gap': predicted['fom_std'],
    }


def baseline_predictions(data, train_idx, val_idx, test_idx) -> dict[str, dict[str, np.ndarray]]:
    """ε_elec and ε_ionic of the mean and composition-ridge baselines on ``test_idx``, trained like the
    ensembles (same split, same log-space targets)."""
    from aiida_dielectrics.ml import transforms

    X = composition_features(data.structures)
    out = {'mean': {}, 'ridge': {}}
    for target in ('diel_elec', 'diel_ionic'):
        name = transforms.DEFAULT_TRANSFORM[target]
        y = transforms.transform(name, data.target(target))
        models = {
            'mean': MeanBaseline().fit(X[train_idx], y[train_idx]),
            'ridge': RidgeBaseline().fit(X[train_idx], y[train_idx], X[val_idx], y[val_idx]),
        }
        for key, model in models.items():
            out[key][target] = transforms.inverse_transform(name, model.predict(X[test_idx]))
    return out


def evaluate(
    data, ensembles: dict, pred_gap: np.ndarray, split, cv: dict | None = None, pred_gap_std=None
) -> dict:
    """Test-split and CV metrics of the ensembles and the baselines.

    ``ensembles`` maps ``diel_elec``/``diel_ionic`` to :class:`~.ensemble.Ensemble`; ``pred_gap`` is the
    predicted band gap of every entry of ``data`` and ``pred_gap_std`` its σ (default 0); ``cv`` maps
    each target to the out-of-fold arrays of :func:`.training.cross_validate` (optional).
    """
    pred_gap_std = np.zeros_like(pred_gap) if pred_gap_std is None else np.asarray(pred_gap_std)
    test = split.test
    # The truth is Φ with the DFT gap for both Φ columns; they differ in the gap the prediction uses.
    truth = quantities(data.diel_elec[test], data.diel_ionic[test], data.band_gap[test], data.band_gap[test])
    elec, elec_std = ensembles['diel_elec'].predict([data.structures[i] for i in test])
    ionic, ionic_std = ensembles['diel_ionic'].predict([data.structures[i] for i in test])
    gaps = (data.band_gap[test], pred_gap[test])
    known = np.isfinite(data.band_gap[test])
    results = {
        'test': {
            'size': len(test),
            'ensemble': score(
                truth,
                quantities(elec, ionic, *gaps),
                propagated_std(elec, elec_std, ionic, ionic_std, *gaps, pred_gap_std[test]),
            ),
        },
        'gap': {
            **regression_metrics(data.band_gap[test][known], pred_gap[test][known]),
            'size': int(known.sum()),
        },
    }
    for key, pred in baseline_predictions(data, split.train, split.val, test).items():
        results['test'][key] = score(truth, quantities(pred['diel_elec'], pred['diel_ionic'], *gaps))
    if cv:
        results['cv'] = cross_validation_scores(data, cv, pred_gap, pred_gap_std)
    return results


def cross_validation_scores(data, cv: dict, pred_gap, pred_gap_std=None) -> dict:
    """Per-fold metrics (model and baselines) and their mean and standard deviation over folds."""
    from aiida_dielectrics.ml import splits

    elec, ionic = cv['diel_elec'], cv['diel_ionic']
    if not np.array_equal(elec['index'], ionic['index']):
        raise ValueError('the CV runs of ε_elec and ε_ionic used different folds')
    elec = {**elec, 'std': cross_fitted_std(elec, data.diel_elec, 'diel_elec')}
    ionic = {**ionic, 'std': cross_fitted_std(ionic, data.diel_ionic, 'diel_ionic')}
    pred_gap_std = np.zeros_like(pred_gap) if pred_gap_std is None else np.asarray(pred_gap_std)
    per_fold = {'ensemble': [], 'mean': [], 'ridge': []}
    for k in np.unique(elec['fold']):
        rows = elec['fold'] == k
        held = elec['index'][rows]
        pool = elec['index'][~rows]
        gaps = (data.band_gap[held], pred_gap[held])
        truth = quantities(data.diel_elec[held], data.diel_ionic[held], gaps[0], gaps[0])
        # One member per fold has σ = 0: no calibration to report then.
        spread = np.any(elec['std'][rows] > 0) or np.any(ionic['std'][rows] > 0)
        predicted = (elec['mean'][rows], ionic['mean'][rows])
        std = (
            propagated_std(
                predicted[0], elec['std'][rows], predicted[1], ionic['std'][rows], *gaps, pred_gap_std[held]
            )
            if spread
            else None
        )
        per_fold['ensemble'].append(score(truth, quantities(*predicted, *gaps), std))
        inner = splits.train_val_test([data.formulas[i] for i in pool], splits.SEED + int(k), (0.9, 0.1, 0.0))
        for key, pred in baseline_predictions(data, pool[inner.train], pool[inner.val], held).items():
            per_fold[key].append(score(truth, quantities(pred['diel_elec'], pred['diel_ionic'], *gaps)))
    summary = {}
    for model, folds in per_fold.items():
        summary[model] = {
            quantity: {
                metric: (
                    float(np.mean([f[quantity][metric] for f in folds])),
                    float(np.std([f[quantity][metric] for f in folds])),
                )
                for metric in folds[0][quantity]
            }
            for quantity in QUANTITIES
        }
    return {'folds': len(per_fold['ensemble']), 'summary': summary}


def cross_fitted_std(run: dict, truth, target: str) -> np.ndarray:
    """The σ of a :func:`.training.cross_validate` run, each fold's member spread times the σ scale fitted
    (as :func:`.training.calibrate` does) on the out-of-fold predictions of the *other* folds: calibrated
    σ measured on points its scale has not seen. With one member per fold it is the spread, 0."""
    from aiida_dielectrics.ml import transforms
    from aiida_dielectrics.ml.ensemble import fit_sigma_scale

    outputs = run.get('transformed')
    if outputs is None or outputs.shape[0] < 2:
        return run['std']
    y = transforms.transform(transforms.DEFAULT_TRANSFORM[target], np.asarray(truth)[run['index']])
    std = np.array(run['std'], dtype=float)
    for k in np.unique(run['fold']):
        rows = run['fold'] == k
        std[rows] *= fit_sigma_scale(outputs[:, ~rows], y[~rows])
    return std


def _fmt(value, digits=2) -> str:
    """A number, or mean ± std; undefined values (Spearman ρ of a constant prediction) as a dash."""
    if isinstance(value, tuple | list):
        return '—' if np.isnan(value[0]) else f'{value[0]:.{digits}f} ± {value[1]:.{digits}f}'
    return '—' if np.isnan(value) else f'{value:.{digits}f}'


#: Column title -> metric of the test-split and of the cross-validation table.
TEST_COLUMNS = {
    'MAE': 'mae',
    'RMSE': 'rmse',
    'R²': 'r2',
    'Spearman ρ': 'spearman',
    'top-10 % precision': 'top10_precision',
    'ε_total > 30 predicted > 20': 'high_recall',
}
CV_COLUMNS = {
    'MAE': 'mae',
    'R²': 'r2',
    'Spearman ρ': 'spearman',
    'top-10 % precision': 'top10_precision',
    'ε_total > 30 predicted > 20': 'high_recall',
    'within ±1σ': 'within_1sigma',
}


def _table(scores: dict, names: dict, columns: dict) -> list[str]:
    """Markdown rows of ``scores[model][quantity][metric]``, per quantity and model; a metric a row lacks
    (top-10 % precision of ε, σ of an ensemble without spread) is left blank."""
    lines = ['| quantity | model | ' + ' | '.join(columns) + ' |', '| --- | --- |' + ' --- |' * len(columns)]
    for quantity in QUANTITIES:
        for model in ('ensemble', 'ridge', 'mean'):
            m = scores[model][quantity]
            cells = [_fmt(m[metric]) if metric in m else '' for metric in columns.values()]
            lines.append(f'| {LABELS[quantity]} | {names[model]} | ' + ' | '.join(cells) + ' |')
    return lines


def markdown_tables(results: dict, model_name: str = 'MEGNet ensemble', gap_model: str = 'predicted') -> str:
    """The metric tables of :func:`evaluate` as Markdown; ``gap_model`` names the band-gap model."""
    names = {'ensemble': model_name, 'ridge': 'composition ridge', 'mean': 'dummy (train mean)'}
    lines = [f'### Test split ({results["test"]["size"]} materials)', '']
    lines += _table(results['test'], names, TEST_COLUMNS)
    lines += [
        '',
        '### Ensemble calibration on the test split',
        '',
        '| quantity | within ±1σ | within ±2σ |',
        '| --- | --- | --- |',
    ]
    for quantity in QUANTITIES:
        m = results['test']['ensemble'][quantity]
        lines.append(f'| {LABELS[quantity]} | {_fmt(m["within_1sigma"])} | {_fmt(m["within_2sigma"])} |')
    lines += ['', '(A Gaussian error with the predicted σ would give 0.68 and 0.95.)', '']
    g = results['gap']
    lines += [
        f'Band gap ({gap_model}, PBE) on the test split: MAE {_fmt(g["mae"])} eV, '
        f'R² {_fmt(g["r2"])}, Spearman ρ {_fmt(g["spearman"])}.',
        '',
    ]
    if g['size'] < results['test']['size']:
        lines += [
            f'Φ and the band gap are scored on the {g["size"]} test materials with a DFT gap; the others '
            '(mp-dfpt-extra) have none.',
            '',
        ]
    if 'cv' in results:
        cv = results['cv']
        lines += [
            f'### {cv["folds"]}-fold cross-validation over train+val (mean ± std over folds)',
            '',
            *_table(cv['summary'], names, CV_COLUMNS),
        ]
        lines += [
            '',
            f'(Φ (predicted gap) uses {gap_model} as it is, not refitted per fold: a gap model trained on '
            'the train part of this split has seen most of these materials, which makes those rows optimistic.)',
            '',
        ]
    return '\n'.join(lines)


# --- evaluating a folder of ensembles ------------------------------------------------------------------


def predict_gap(name, structures) -> tuple[np.ndarray, np.ndarray]:
    """PBE band gaps (eV, clipped at 0) and their σ from model ``name`` (a folder or a name, as
    :func:`.loading.resolve` finds it): an ensemble's calibrated σ, or 0 for a single MEGNet."""
    from aiida_dielectrics.ml import loading
    from aiida_dielectrics.ml.ensemble import Ensemble, MEGNetMember

    location = loading.resolve(name)
    if (location / CARD).is_file():
        gap, std = Ensemble.load(location).predict(structures)
    else:
        gap = MEGNetMember.load(location).predict(structures)
        std = np.zeros_like(gap)
    return np.clip(gap, 0, None), std


def read_ensemble_cards(root) -> dict[str, dict]:
    """The cards of the ``diel_elec`` and ``diel_ionic`` ensembles in ``root``; ``ValueError`` unless both
    are there and were trained on the same split."""
    from aiida_dielectrics.ml.ensemble import read_card

    root = pathlib.Path(root)
    cards = {}
    for target in ('diel_elec', 'diel_ionic'):
        if not (root / target / CARD).is_file():
            raise ValueError(f'{root / target} is not an ensemble folder (no {CARD})')
        cards[target] = read_card(root / target)
    if len({(card['split']['seed'], tuple(card['split']['fractions'])) for card in cards.values()}) != 1:
        raise ValueError('the two ensembles were trained on different splits')
    return cards


#: Epochs per member in :func:`evaluate_ensembles`' CV where it is cheaper than training (MEGNet: 5 folds of
#: the shipped 5 × 30 epochs would take hours on a CPU).
CV_EPOCHS = {'megnet': 15}


@dataclasses.dataclass
class Evaluation:
    """What :func:`evaluate_ensembles` measured, and the setting it measured it in (for the report)."""

    results: dict
    root: pathlib.Path
    cards: dict[str, dict]
    sigma_scales: dict[str, float]
    gap_model: str
    cv_members: int
    cv_epochs: int | None

    def report(self, command: str, seconds: float, threads: int) -> str:
        """The Markdown report: how it was made, then :func:`markdown_tables`."""
        card = self.cards['diel_elec']
        hp, split = card['hyperparameters'], card['split']
        header = [
            '<!-- written by `aiida-dielectrics evaluate`; do not edit by hand -->',
            '',
            f'Produced by `{command}` in {seconds / 60:.1f} min on {threads} CPU thread(s).',
            f'Ensembles: {self.root.name}/diel_elec and diel_ionic, {card["architecture"]}, {hp["members"]} '
            f'members each, {hp.get("max_epochs")} epochs (diel_elec); split seed {split["seed"]}, fractions '
            f'{list(split["fractions"])}, grouped by reduced formula, sha256 `{split["sha256"][:16]}…`.',
            'σ is the member spread times the σ scale each card holds (fitted on '
            + str(card.get('calibration', {}).get('fitted_on', 'the validation part'))
            + '): '
            + ', '.join(f'{target} {scale:.2f}' for target, scale in self.sigma_scales.items())
            + f'. Φ (predicted gap) uses the band gap of `{self.gap_model}` and adds its σ to σ_Φ '
            '(`fom.prediction_summary`).',
        ]
        if 'cv' in self.results:
            epochs = f'{self.cv_epochs} epochs' if self.cv_epochs else 'the training setting'
            header.append(
                f'Cross-validation: {self.cv_members} member(s) × {epochs} per fold, trained as the shipped '
                'ones otherwise; baselines are refitted per fold.'
            )
        tables = markdown_tables(self.results, f'{card["architecture"]} ensemble', self.gap_model)
        return '\n'.join([*header, '', tables])


def evaluate_ensembles(
    data,
    root,
    gap_model: str = 'band_gap',
    cv_folds: int = 5,
    cv_members: int = 1,
    cv_epochs: int | None = None,
    progress: Callable[[str], None] = print,
) -> Evaluation:
    """:func:`evaluate` the ``diel_elec`` and ``diel_ionic`` ensembles of ``root`` on ``data``, the data they
    were trained on (``ValueError`` if their split does not match it), with the band gap of ``gap_model``
    and, unless ``cv_folds`` is 0, k-fold CV with ``cv_members`` members of ``cv_epochs`` epochs per fold
    (``None``: :data:`CV_EPOCHS` of the architecture, else its own default; an ``embedding-mlp`` chooses
    its hidden layers by inner CV in each fold, as when it was trained)."""
    from aiida_dielectrics.ml import splits, training
    from aiida_dielectrics.ml.ensemble import Ensemble

    root = pathlib.Path(root)
    cards = read_ensemble_cards(root)
    seed, fractions = cards['diel_elec']['split']['seed'], tuple(cards['diel_elec']['split']['fractions'])
    split = splits.train_val_test(data.formulas, seed, fractions)
    for target, card in cards.items():
        if card['split']['sha256'] != splits.split_hash(data.material_ids, split):
            raise ValueError(f'{target} ensemble was trained on other data or another split')
    progress(f'{len(data)} materials; test split {len(split.test)}; loading ensembles from {root}')
    ensembles = {target: Ensemble.load(root / target) for target in cards}
    progress(f'predicting band gaps ({gap_model}, PBE fidelity)')
    pred_gap, pred_gap_std = predict_gap(gap_model, data.structures)
    cv = None
    if cv_folds:
        trained = cards['diel_elec']
        cv_epochs = cv_epochs or CV_EPOCHS.get(trained['architecture'])
        settings = training.member_settings(
            trained['architecture'],
            cv_epochs,
            trained['hyperparameters'].get('batch_size'),
            trained['hyperparameters'].get('lr'),
        )
        cv = {
            target: training.cross_validate(
                data, target, card['architecture'], cv_folds, cv_members, seed, fractions, settings, progress
            )
            for target, card in cards.items()
        }
    return Evaluation(
        results=evaluate(data, ensembles, pred_gap, split, cv, pred_gap_std),
        root=root,
        cards=cards,
        sigma_scales={target: ensemble.sigma_scale for target, ensemble in ensembles.items()},
        gap_model=str(gap_model),
        cv_members=cv_members,
        cv_epochs=cv_epochs,
    )
