"""Frozen universal-potential embeddings + small heads for ε, compared by cross-validation.

On the union of the Petousis 2017 set and mp-dfpt-extra (1,917 materials) and the project's fixed, seeded,
by-formula split (:mod:`aiida_dielectrics.ml.splits`: 1,438 / 192 / 287):

(a) 5-fold CV over train+val (the folds of :func:`aiida_dielectrics.ml.training.cross_validate`) of every
    variant: frozen SevenNet-0 / CHGNet embeddings (:mod:`aiida_dielectrics.ml.embeddings`, several
    poolings) or composition features, with a ridge or RBF kernel-ridge head, and a 5-seed MLP ensemble
    head (σ from its spread, calibrated as the ε ensembles are) on the pooling the cheap heads chose by CV
    for each potential; plus the project's composition-ridge baseline (:mod:`aiida_dielectrics.ml.evaluation`)
    as a reference. Targets are learnt as log ε_elec and log(1 + ε_ionic); ε_total is the sum of the two
    predictions. Hyper-parameters (ridge α, kernel α/γ, MLP width/weight decay/epochs) are chosen per
    outer fold by grouped 3-fold CV **inside that fold's training part**; the MLP members are
    early-stopped on, and their σ scale fitted on, a 10 % by-formula part of it.
(b) The variant with the best CV Spearman ρ of ε_total (overall, and the best of each potential) is then
    refitted on all of train+val (hyper-parameters again by inner CV there) and scored on the test split,
    which nothing before has looked at.
(c) The embedding cost per structure and potential, measured on one thread (``torch.set_num_threads(1)``).

Embeddings are cached in ``--cache-dir`` (``<potential>.npz``), so a rerun only fits heads.

    OMP_NUM_THREADS=1 python benchmarks/bench_embeddings.py --cache-dir /tmp/emb/cache --out /tmp/emb/results.json

``--megnet-epochs N`` adds the MEGNet fine-tuning (:func:`aiida_dielectrics.ml.training.cross_validate`,
1 member × N epochs per fold) on the same folds as a reference; with ``--sources composition --no-mlp``
that is all a run adds to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

SHARED = pathlib.Path(
    os.environ.get('AIIDA_DIELECTRICS_SHARED', pathlib.Path(__file__).parents[2] / 'shared')
)
DATA = [
    SHARED / 'data' / 'petousis2017' / 'dielectric_constant.csv',
    SHARED / 'data' / 'mp-dfpt-extra' / 'mp-dfpt-extra.extxyz',
]
TARGETS = ('diel_elec', 'diel_ionic')
EMBEDDED = ('sevennet-0', 'chgnet')
CHEAP_HEADS = ('ridge', 'krr')
#: What a variant's features may be built from: a potential's embedding, both, or composition only.
SOURCES = ('sevennet-0', 'chgnet', 'sevennet-0+chgnet', 'composition')
HIGH, HIGH_PREDICTED = 30.0, 20.0


def log(message: str):
    print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


# --- metrics --------------------------------------------------------------------------------------------


def scores(elec_true, ionic_true, elec, ionic, elec_std=None, ionic_std=None) -> dict:
    """MAE and Spearman ρ of ε_elec, ε_ionic, ε_total; top-10 % precision on ε_total; the share of the true
    ε_total > 30 predicted above 20; ±1σ/±2σ coverage where σ is given (ε_total: independent errors)."""
    from aiida_dielectrics.ml import evaluation

    truth = {'elec': elec_true, 'ionic': ionic_true, 'total': elec_true + ionic_true}
    pred = {'elec': elec, 'ionic': ionic, 'total': elec + ionic}
    out = {}
    for name in truth:
        m = evaluation.regression_metrics(truth[name], pred[name])
        out[f'{name}_mae'], out[f'{name}_spearman'] = m['mae'], m['spearman']
    out['total_top10'] = evaluation.top_k_precision(truth['total'], pred['total'], 0.1)
    high = truth['total'] > HIGH
    out['high_recall'] = float(np.mean(pred['total'][high] > HIGH_PREDICTED)) if high.any() else float('nan')
    out['high_count'] = int(high.sum())
    if elec_std is not None:
        std = {'elec': elec_std, 'ionic': ionic_std, 'total': np.hypot(elec_std, ionic_std)}
        for name in ('elec', 'ionic', 'total'):
            c = evaluation.calibration(truth[name], pred[name], std[name])
            out[f'{name}_1s'], out[f'{name}_2s'] = c['within_1sigma'], c['within_2sigma']
    return out


def summarize(per_fold: list[dict]) -> dict:
    return {
        key: (float(np.mean([f[key] for f in per_fold])), float(np.std([f[key] for f in per_fold])))
        for key in per_fold[0]
    }


# --- features and fitting -------------------------------------------------------------------------------


def feature_matrix(blocks: dict, composition: np.ndarray, source: str, pooling: str) -> np.ndarray:
    from aiida_dielectrics.ml import embeddings

    if source == 'composition':
        return composition
    return np.concatenate([embeddings.features(blocks[p], pooling) for p in source.split('+')], axis=1)


def fit_predict(head: str, X, y, train, held, formulas, seed: int, transform: str, members: int) -> tuple:
    """Choose the head's hyper-parameters by inner grouped 3-fold CV on ``train`` only, fit, predict
    ``held``: mean, σ (None for single deterministic heads), the chosen hyper-parameters."""
    from aiida_dielectrics.ml import heads, splits

    params, _ = heads.inner_cv_select(head, X[train], y[train], [formulas[i] for i in train], 3, seed)
    if head == 'mlp':
        inner = splits.train_val_test([formulas[i] for i in train], seed, (0.9, 0.1, 0.0))
        fit_idx, val_idx = train[inner.train], train[inner.val]
        model = heads.HeadEnsemble(head, params, members, transform)
        model.fit(X[fit_idx], y[fit_idx], val=(X[val_idx], y[val_idx]), seed=seed)
        model.calibrate(X[val_idx], y[val_idx])
        mean, std = model.predict(X[held])
        return mean, std, {**params, 'sigma_scale': model.sigma_scale}
    model = heads.HeadEnsemble(head, params, 1, transform).fit(X[train], y[train], seed=seed)
    return model.predict(X[held])[0], None, params


def run_variant(data, X, folds, head: str, members: int) -> dict:
    """Out-of-fold CV of one (features, head) variant on both targets; per-fold scores and their summary."""
    from aiida_dielectrics.ml import splits, transforms

    per_fold, chosen = [], []
    for k, (rest, held) in enumerate(folds):
        preds, stds = {}, {}
        for target in TARGETS:
            name = transforms.DEFAULT_TRANSFORM[target]
            y = transforms.transform(name, data.target(target))
            preds[target], stds[target], params = fit_predict(
                head, X, y, rest, held, data.formulas, splits.SEED + k, name, members
            )
            chosen.append({'fold': k, 'target': target, **params})
        per_fold.append(
            scores(data.diel_elec[held], data.diel_ionic[held], preds['diel_elec'], preds['diel_ionic'],
                   stds['diel_elec'], stds['diel_ionic'])
        )  # fmt: skip
    return {'cv': summarize(per_fold), 'folds': per_fold, 'hyperparameters': chosen}


def test_variant(data, X, split, head: str, members: int) -> dict:
    """Refit on all of train+val (hyper-parameters by inner CV there) and score the test split."""
    from aiida_dielectrics.ml import splits, transforms

    pool = np.concatenate([split.train, split.val])
    preds, stds, chosen = {}, {}, {}
    for target in TARGETS:
        name = transforms.DEFAULT_TRANSFORM[target]
        y = transforms.transform(name, data.target(target))
        preds[target], stds[target], chosen[target] = fit_predict(
            head, X, y, pool, split.test, data.formulas, splits.SEED, name, members
        )
    test = split.test
    return {
        'test': scores(data.diel_elec[test], data.diel_ionic[test], preds['diel_elec'], preds['diel_ionic'],
                       stds['diel_elec'], stds['diel_ionic']),
        'hyperparameters': chosen,
    }  # fmt: skip


def composition_ridge_reference(data, folds, split) -> dict:
    """The composition ridge of :mod:`aiida_dielectrics.ml.evaluation`, refitted per fold exactly as its
    CV does (α on a 10 % by-formula part), and on train/val → test."""
    from aiida_dielectrics.ml import evaluation, splits

    per_fold = []
    for k, (rest, held) in enumerate(folds):
        inner = splits.train_val_test([data.formulas[i] for i in rest], splits.SEED + k, (0.9, 0.1, 0.0))
        pred = evaluation.baseline_predictions(data, rest[inner.train], rest[inner.val], held)['ridge']
        per_fold.append(
            scores(data.diel_elec[held], data.diel_ionic[held], pred['diel_elec'], pred['diel_ionic'])
        )
    pred = evaluation.baseline_predictions(data, split.train, split.val, split.test)['ridge']
    test = scores(
        data.diel_elec[split.test], data.diel_ionic[split.test], pred['diel_elec'], pred['diel_ionic']
    )
    return {'cv': summarize(per_fold), 'folds': per_fold, 'test': test}


def megnet_reference(data, folds, epochs: int, pretrained: pathlib.Path) -> dict:
    """CV of the MEGNet fine-tuning the shipped ensembles use (:func:`.training.cross_validate`, the same
    folds), at the cheaper setting of ``aiida-dielectrics evaluate``'s CV: 1 member × ``epochs`` per fold."""
    from aiida_dielectrics.ml import training

    settings = training.member_settings('megnet', epochs, 32, 1e-3, str(pretrained))
    cv = {
        t: training.cross_validate(data, t, 'megnet', len(folds), 1, hyperparameters=settings, progress=log)
        for t in TARGETS
    }
    if not np.array_equal(cv['diel_elec']['index'], cv['diel_ionic']['index']):
        raise RuntimeError('the two CV runs used different folds')
    per_fold = []
    for k, (_, held) in enumerate(folds):
        rows = cv['diel_elec']['fold'] == k
        if not np.array_equal(np.sort(cv['diel_elec']['index'][rows]), np.sort(held)):
            raise RuntimeError(f"fold {k} of training.cross_validate differs from this benchmark's")
        index = cv['diel_elec']['index'][rows]
        elec, ionic = cv['diel_elec']['mean'][rows], cv['diel_ionic']['mean'][rows]
        per_fold.append(scores(data.diel_elec[index], data.diel_ionic[index], elec, ionic))
    return {
        'source': 'megnet',
        'head': 'baseline',
        'epochs': epochs,
        'cv': summarize(per_fold),
        'folds': per_fold,
    }


def embedding_cost(data, potential: str, count: int, seed: int = 0) -> dict:
    """Seconds per structure (and per atom) to embed ``count`` random structures afresh (no cache)."""
    from aiida_dielectrics.ml import embeddings

    embeddings.load_embedder(potential)  # loading is not part of the cost
    index = np.random.default_rng(seed).choice(len(data), count, replace=False)
    structures = [data.structures[i] for i in index]
    start, cpu = time.perf_counter(), time.process_time()
    embeddings.embed(structures, [data.material_ids[i] for i in index], potential, cache=None)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    atoms = sum(len(s) for s in structures)
    return {
        'structures': count,
        'atoms': atoms,
        's_per_structure': seconds / count,
        'cpu_s_per_structure': cpu / count,  # one thread: what a dedicated core would take
        'ms_per_atom': 1e3 * seconds / atoms,
    }


# --- the report -----------------------------------------------------------------------------------------

COLUMNS = {
    'ε_elec MAE': 'elec_mae',
    'ε_elec ρ': 'elec_spearman',
    'ε_ionic MAE': 'ionic_mae',
    'ε_ionic ρ': 'ionic_spearman',
    'ε_total MAE': 'total_mae',
    'ε_total ρ': 'total_spearman',
    'top-10 % prec.': 'total_top10',
    'ε_tot>30 → >20': 'high_recall',
}


def _cell(value) -> str:
    if isinstance(value, tuple | list):
        return f'{value[0]:.2f} ± {value[1]:.2f}'
    return '—' if value is None or np.isnan(value) else f'{value:.2f}'


def markdown(results: dict) -> str:
    lines = ['| variant | ' + ' | '.join(COLUMNS) + ' |', '| --- |' + ' ---: |' * len(COLUMNS)]
    for name, result in sorted(
        results['variants'].items(), key=lambda item: -item[1]['cv']['total_spearman'][0]
    ):
        lines.append(f'| {name} | ' + ' | '.join(_cell(result['cv'][c]) for c in COLUMNS.values()) + ' |')
    lines += ['', '| test split | ' + ' | '.join(COLUMNS) + ' |', '| --- |' + ' ---: |' * len(COLUMNS)]
    for name, result in results['test'].items():
        lines.append(f'| {name} | ' + ' | '.join(_cell(result['test'][c]) for c in COLUMNS.values()) + ' |')
    sigma = [(n, r) for n, r in results['variants'].items() if 'ionic_1s' in r['cv']]
    if sigma:
        lines += [
            '',
            '| σ coverage (calibrated) | ε_elec ±1σ/±2σ | ε_ionic ±1σ/±2σ | ε_total ±1σ/±2σ |',
            '| --- | --- | --- | --- |',
        ]
        for name, r in sigma:
            cells = [
                f'{r["cv"][f"{q}_1s"][0]:.2f} / {r["cv"][f"{q}_2s"][0]:.2f}'
                for q in ('elec', 'ionic', 'total')
            ]
            lines.append(f'| {name} (CV) | ' + ' | '.join(cells) + ' |')
        for name, r in results['test'].items():
            if 'ionic_1s' in r['test']:
                cells = [
                    f'{r["test"][f"{q}_1s"]:.2f} / {r["test"][f"{q}_2s"]:.2f}'
                    for q in ('elec', 'ionic', 'total')
                ]
                lines.append(f'| {name} (test) | ' + ' | '.join(cells) + ' |')
    lines += [
        '',
        '| potential | wall s/structure | CPU s/structure | wall ms/atom | structures timed | all (cache) s/structure |',
    ]
    lines.append('| --- | ---: | ---: | ---: | ---: | ---: |')
    for potential, c in results['cost'].items():
        lines.append(
            f'| {potential} | {c["s_per_structure"]:.3f} | {c["cpu_s_per_structure"]:.3f} | {c["ms_per_atom"]:.2f} '
            f'| {c["structures"]} | {c["cached_mean_s_per_structure"]:.3f} |'
        )
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--data', action='append', type=pathlib.Path, help='data files (default: both shared sets)'
    )
    parser.add_argument(
        '--cache-dir', type=pathlib.Path, default=pathlib.Path('/tmp/aiida-dielectrics-embeddings')
    )
    parser.add_argument('--out', type=pathlib.Path, help='write the results as JSON here')
    parser.add_argument(
        '--poolings', nargs='+', default=['mean', 'mean+max', 'mean+std', 'layers', 'layers+max']
    )
    parser.add_argument('--sources', nargs='+', default=list(SOURCES), choices=SOURCES)
    parser.add_argument('--no-mlp', action='store_true', help='skip the MLP-ensemble heads')
    parser.add_argument('--members', type=int, default=5, help='MLP ensemble members')
    parser.add_argument('--cost-structures', type=int, default=64)
    parser.add_argument(
        '--megnet-epochs',
        type=int,
        default=0,
        help='also cross-validate the MEGNet fine-tuning on the same folds (1 member × this many epochs)',
    )
    parser.add_argument(
        '--pretrained',
        type=pathlib.Path,
        default=SHARED / 'models' / 'matgl' / 'MEGNet-MP-2019.4.1-BandGap-mfi',
        help='the MEGNet that --megnet-epochs fine-tunes',
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from aiida_dielectrics.ml import dataset, embeddings, evaluation, splits

    began = time.perf_counter()
    data = dataset.from_files(args.data or DATA)
    split = splits.train_val_test(data.formulas)
    pool = np.concatenate([split.train, split.val])
    folds = splits.kfold(data.formulas, pool, splits.FOLDS, splits.SEED)
    log(
        f'{len(data)} materials; split {len(split.train)}/{len(split.val)}/{len(split.test)}; {len(folds)} folds'
    )

    needed = {p for s in args.sources if s != 'composition' for p in s.split('+')}
    blocks, cost = {}, {}
    for potential in sorted(needed):
        start = time.perf_counter()
        blocks[potential] = embeddings.embed(
            data.structures, data.material_ids, potential, args.cache_dir / f'{potential}.npz', progress=log
        )
        log(f'{potential}: {blocks[potential].computed} embedded now in {time.perf_counter() - start:.0f} s')
        cost[potential] = embedding_cost(data, potential, args.cost_structures)
        cost[potential]['cached_mean_s_per_structure'] = float(blocks[potential].seconds.mean())
        log(f'{potential}: {cost[potential]}')
    composition = evaluation.composition_features(data.structures)

    results = {'data': [str(p) for p in args.data or DATA], 'sizes': [len(split.train), len(split.val), len(split.test)], 'variants': {}, 'test': {}, 'cost': cost}  # fmt: skip
    features = {}
    for source in args.sources:
        for pooling in args.poolings if source != 'composition' else ['-']:
            X = feature_matrix(blocks, composition, source, pooling)
            features[(source, pooling)] = X
            for head in CHEAP_HEADS:
                name = (
                    f'{source} [{pooling}] + {head}' if source != 'composition' else f'composition + {head}'
                )
                start = time.perf_counter()
                results['variants'][name] = {
                    'source': source,
                    'pooling': pooling,
                    'head': head,
                    **run_variant(data, X, folds, head, 1),
                }
                cv = results['variants'][name]['cv']
                log(
                    f'{name}: ε_total ρ {cv["total_spearman"][0]:.3f}, ε_ionic ρ {cv["ionic_spearman"][0]:.3f} ({time.perf_counter() - start:.0f} s)'
                )
    reference = composition_ridge_reference(data, folds, split)
    results['variants']['composition ridge (evaluation.py baseline)'] = {
        'source': 'composition',
        'head': 'baseline',
        'cv': reference['cv'],
        'folds': reference['folds'],
    }

    if args.megnet_epochs:
        start = time.perf_counter()
        name = f'MEGNet fine-tuned, 1 member × {args.megnet_epochs} epochs (reference)'
        results['variants'][name] = megnet_reference(data, folds, args.megnet_epochs, args.pretrained)
        log(f'{name}: {results["variants"][name]["cv"]} ({time.perf_counter() - start:.0f} s)')

    def best(candidates):
        return max(candidates, key=lambda n: results['variants'][n]['cv']['total_spearman'][0])

    if not args.no_mlp:
        for source in [s for s in args.sources if s != 'composition']:
            # the pooling the cheap heads found best by CV for this source; the MLP is tried on it only
            pick = best(
                [
                    n
                    for n, v in results['variants'].items()
                    if v['source'] == source and v['head'] in CHEAP_HEADS
                ]
            )
            pooling = results['variants'][pick]['pooling']
            name = f'{source} [{pooling}] + mlp×{args.members}'
            start = time.perf_counter()
            results['variants'][name] = {
                'source': source,
                'pooling': pooling,
                'head': 'mlp',
                **run_variant(data, features[(source, pooling)], folds, 'mlp', args.members),
            }
            cv = results['variants'][name]['cv']
            log(
                f'{name}: ε_total ρ {cv["total_spearman"][0]:.3f}, ε_ionic ρ {cv["ionic_spearman"][0]:.3f} ({time.perf_counter() - start:.0f} s)'
            )

    # (b) chosen by CV only: the best variant of each source and the best overall; then the test split
    chosen = {}
    for source in args.sources:
        candidates = [
            n for n, v in results['variants'].items() if v['source'] == source and v['head'] != 'baseline'
        ]
        if candidates:
            chosen[best(candidates)] = f'best {source}'
    results['chosen_overall'] = best([n for n, v in results['variants'].items() if v['head'] != 'baseline'])
    for name, why in chosen.items():
        v = results['variants'][name]
        start = time.perf_counter()
        members = args.members if v['head'] == 'mlp' else 1
        results['test'][name] = {
            'why': why,
            **test_variant(data, features[(v['source'], v['pooling'])], split, v['head'], members),
        }
        log(f'test {name}: {results["test"][name]["test"]} ({time.perf_counter() - start:.0f} s)')
    results['test']['composition ridge (evaluation.py baseline)'] = {
        'why': 'reference',
        'test': reference['test'],
    }
    results['seconds'] = time.perf_counter() - began
    report = markdown(results)
    print(report)
    print(f'chosen overall by CV ε_total ρ: {results["chosen_overall"]}; {results["seconds"] / 60:.1f} min')
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=float))
        args.out.with_suffix('.md').write_text(report + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
