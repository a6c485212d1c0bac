"""Our Wren (``aiida_dielectrics.ml.wren.WrenMember``) against the reference Wren of ``aviary-models`` 1.2.1
(Goodall et al., Sci. Adv. 8, eabn4117, 2022), trained and scored side by side in one run (issue #12, item 3).

What is compared, and how:

* Data: Petousis 2017 + mp-dfpt-extra (``dataset.from_files``), the project's seeded by-formula split
  (``training.target_split``) and the 5 CV folds over train+val that ``training.cross_validate`` uses
  (``training.cv_folds``: the same seeds and the same inner 90/10 model-selection split per fold).
* Inputs: each model labels the pymatgen structure its own way: ours with
  ``aiida_dielectrics.ml.protostructure.label``, aviary's with the function aviary points to (aviary 1.2.1
  moved it to pymatgen: ``pymatgen.analysis.prototypes.get_protostructure_label_from_spglib`` at its
  defaults), then aviary's own ``parse_protostructure_label``/``WyckoffData``/``collate_batch``. A structure
  that either side cannot label or encode is counted and dropped from every part; both models are trained and
  scored on the same intersection (with nothing dropped the folds are exactly those of ``cross_validate``).
* Training: both through ``training.fit_members`` (one member per fold, targets in the transform of
  ``transforms.DEFAULT_TRANSFORM``: log1p for ``diel_ionic``, log for ``diel_elec``), the same ``--epochs``,
  each keeping the weights of its epoch with the lowest MAE on the inner validation part. Ours uses its own
  defaults otherwise (AdamW 1e-3, one-cycle schedule, batch 64, L1). Aviary's is its ``Wren`` at the class
  defaults (matscholar200 + bra-alg-off embeddings, 3 message layers, 3 pooling heads) trained by its own
  ``BaseModelClass.fit`` one epoch at a time, with the settings of aviary's Wren example: AdamW 3e-4, weight
  decay 1e-6, constant learning rate, batch 128, robust (aleatoric) L1 loss, target ``Normalizer``.
* Scores, in the original space (``evaluation.regression_metrics``): MAE and Spearman ρ of ``diel_ionic``,
  ``diel_elec`` and ε_total = the sum of the two predictions; k-fold CV figures as mean ± std over folds, and
  test-split figures of a member trained on train (model selection on val) as the shipped ensembles are.
  Wall time of training and prediction (labels already computed; labelling is timed on its own), one thread.

Run it (aviary lives in a venv that sees the main environment, so the main one is not changed)::

    python -m venv --system-site-packages /tmp/aviary-venv
    /tmp/aviary-venv/bin/pip install --no-deps aviary-models==1.2.1 && /tmp/aviary-venv/bin/pip install wandb tensorboard
    OMP_NUM_THREADS=1 nice -n 19 /tmp/aviary-venv/bin/python benchmarks/bench_wren_reference.py \\
        --epochs 40 --folds 5 --targets diel_ionic diel_elec --out /tmp/wren_results.json  # docs/topics/wren.md
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import pathlib
import platform
import sys
import time
import warnings

os.environ.setdefault('OMP_NUM_THREADS', '1')

import numpy as np
import torch

SHARED = pathlib.Path(
    os.environ.get('AIIDA_DIELECTRICS_SHARED', pathlib.Path(__file__).parents[2] / 'shared')
)
ARCHITECTURES = {'ours': 'wren-ours', 'aviary': 'wren-aviary'}
#: Wall time of each member's ``fit`` and ``predict``, per architecture (appended by the members).
TIMINGS: dict[str, dict[str, list]] = {name: {'fit': [], 'predict': []} for name in ARCHITECTURES.values()}
#: Aviary's protostructure label per structure, keyed by ``id`` (structures live as long as the data set).
AVIARY_LABELS: dict[int, str] = {}


def aviary_label(structure) -> str:
    """The label aviary 1.2.1 uses, checked to go through aviary's own parser and Wyckoff embedding index."""
    from aviary.wren.data import WYCKOFF_SPG_LETTER_MAP, parse_protostructure_label
    from pymatgen.analysis.prototypes import get_protostructure_label_from_spglib

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        text = get_protostructure_label_from_spglib(structure, raise_errors=True)
    spg, _, _, augmented = parse_protostructure_label(text)
    for wyckoffs in augmented:
        for letter in wyckoffs:
            WYCKOFF_SPG_LETTER_MAP[spg][letter]  # KeyError: a position aviary has no embedding for
    return text


class TimedWren:
    """Records the wall time of ``fit`` and ``predict`` of a member class into :data:`TIMINGS`."""

    def fit(self, structures, y, val=None, seed: int = 0) -> dict:
        start = time.perf_counter()
        history = super().fit(structures, y, val=val, seed=seed)
        TIMINGS[self.architecture]['fit'].append((len(structures), time.perf_counter() - start))
        return history

    def predict(self, structures) -> np.ndarray:
        start = time.perf_counter()
        out = super().predict(structures)
        TIMINGS[self.architecture]['predict'].append((len(structures), time.perf_counter() - start))
        return out


def _our_member():
    from aiida_dielectrics.ml.wren import WrenMember

    class OurWren(TimedWren, WrenMember):
        architecture = ARCHITECTURES['ours']

    return OurWren


class AviaryWren:
    """aviary's ``Wren`` behind the member interface of :mod:`aiida_dielectrics.ml.ensemble` (fit/predict of
    transformed targets), trained and evaluated with aviary's own data class, collate, loss and fit loop."""

    architecture = ARCHITECTURES['aviary']

    def __init__(
        self,
        max_epochs: int = 100,
        batch_size: int = 128,
        lr: float = 3e-4,
        weight_decay: float = 1e-6,
        robust: bool = True,
        **model_kwargs,
    ):
        self.hyperparameters = {
            'max_epochs': max_epochs,
            'batch_size': batch_size,
            'lr': lr,
            'weight_decay': weight_decay,
            'robust': robust,
            **model_kwargs,
        }
        self.model = None
        self.normalizer = None

    def _loader(self, structures, y=None, shuffle: bool = False, seed: int = 0):
        import pandas as pd
        from aviary.wren.data import WyckoffData, collate_batch
        from torch.utils.data import DataLoader

        labels = [AVIARY_LABELS.get(id(s)) or aviary_label(s) for s in structures]
        frame = pd.DataFrame(
            {
                'material_id': [str(i) for i in range(len(labels))],
                'composition': [s.composition.reduced_formula for s in structures],
                'protostructure': labels,
                'y': np.zeros(len(labels)) if y is None else np.asarray(y, dtype=float),
            }
        )
        data = WyckoffData(frame, {'y': 'regression'})
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            data,
            batch_size=self.hyperparameters['batch_size'],
            shuffle=shuffle,
            collate_fn=collate_batch,
            generator=generator,
        )

    def _predict_loader(self, loader) -> np.ndarray:
        _, (prediction,), _ = self.model.predict(loader)
        mean = prediction[:, 0] if self.model.robust else prediction.squeeze(1)
        return self.normalizer.denorm(mean).numpy().astype(float)

    def fit(self, structures, y, val=None, seed: int = 0) -> dict:
        from aviary.utils import init_normalizers, initialize_losses, initialize_optim
        from aviary.wren.model import Wren

        hp = dict(self.hyperparameters)
        epochs, robust = hp.pop('max_epochs'), hp.pop('robust')
        hp.pop('batch_size')  # used by the loaders
        lr, weight_decay = hp.pop('lr'), hp.pop('weight_decay')
        torch.manual_seed(seed)
        task_dict = {'y': 'regression'}
        self.model = Wren(robust=robust, n_targets=[1], task_dict=task_dict, device='cpu', **hp)
        optimizer, scheduler = initialize_optim(
            self.model, optim='AdamW', learning_rate=lr, weight_decay=weight_decay, momentum=0.9, device='cpu'
        )
        losses = initialize_losses(task_dict, {'y': 'L1'}, robust)
        normalizers = init_normalizers(task_dict, 'cpu')
        self.normalizer = normalizers['y']
        self.normalizer.fit(torch.as_tensor(np.asarray(y, dtype=float), dtype=torch.float32))
        train = self._loader(structures, y, shuffle=True, seed=seed)
        val_loader = self._loader(val[0], val[1]) if val is not None else None
        best, best_epoch, best_state = np.inf, epochs - 1, None
        for epoch in range(epochs):
            self.model.fit(
                train,
                None,
                optimizer=optimizer,
                scheduler=scheduler,
                epochs=1,
                loss_dict=losses,
                normalizer_dict=normalizers,
                model_name='bench',
                run_id=0,
                checkpoint=False,
                writer=None,
                verbose=False,
            )
            if val_loader is not None:
                score = float(np.mean(np.abs(self._predict_loader(val_loader) - np.asarray(val[1]))))
                if score < best:
                    best, best_epoch, best_state = score, epoch, copy.deepcopy(self.model.state_dict())
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return {
            'epochs': epochs,
            'best_epoch': best_epoch,
            'best_val_mae': None if best_state is None else best,
        }

    def predict(self, structures) -> np.ndarray:
        return self._predict_loader(self._loader(structures))


class TimedAviaryWren(TimedWren, AviaryWren):
    pass


def register() -> None:
    """Make both members known to ``ensemble.member_class`` (in this process only)."""
    from aiida_dielectrics.ml import files

    module = sys.modules[__name__]
    module.OurWren = _our_member()
    files.ARCHITECTURES[ARCHITECTURES['ours']] = f'{__name__}:OurWren'
    files.ARCHITECTURES[ARCHITECTURES['aviary']] = f'{__name__}:TimedAviaryWren'


def label_all(data) -> tuple[np.ndarray, dict]:
    """Both sides' labels of every structure (cached for training); mask of the structures both can use."""
    from aiida_dielectrics.ml import protostructure, wren
    from aiida_dielectrics.ml.protostructure import ProtostructureError

    ours_ok, aviary_ok, same, seconds = [], [], 0, {'ours': 0.0, 'aviary': 0.0}
    failures = {'ours': [], 'aviary': []}
    for material, structure in zip(data.material_ids, data.structures, strict=True):
        start = time.perf_counter()
        try:
            mine = wren._LABELS.get(structure, protostructure.SYMPREC)  # the cache WrenMember reads
            ours_ok.append(True)
        except ProtostructureError as exc:
            mine = None
            ours_ok.append(False)
            failures['ours'].append(f'{material}: {exc}')
        seconds['ours'] += time.perf_counter() - start
        start = time.perf_counter()
        try:
            theirs = AVIARY_LABELS[id(structure)] = aviary_label(structure)
            aviary_ok.append(True)
        except Exception as exc:  # pymatgen/spglib/aviary raise several kinds
            theirs = None
            aviary_ok.append(False)
            failures['aviary'].append(f'{material}: {type(exc).__name__}: {exc}')
        seconds['aviary'] += time.perf_counter() - start
        same += mine is not None and mine == theirs
    ours_ok, aviary_ok = np.array(ours_ok), np.array(aviary_ok)
    ok = ours_ok & aviary_ok
    report = {
        'structures': len(data),
        'ours_failed': int((~ours_ok).sum()),
        'aviary_failed': int((~aviary_ok).sum()),
        'intersection': int(ok.sum()),
        'identical_labels': int(same),
        'label_seconds_per_structure': {k: v / len(data) for k, v in seconds.items()},
        'failures': failures,
    }
    return ok, report


def run(data, ok, targets, architectures, epochs: int, folds: int, seed: int, log, partial=None) -> dict:
    from aiida_dielectrics.ml import splits, training

    keep = lambda index: index[ok[index]]  # noqa: E731
    settings = {
        ARCHITECTURES['ours']: {'max_epochs': epochs},
        ARCHITECTURES['aviary']: {'max_epochs': epochs},
    }
    out = {'cv': {}, 'test': {}}
    for target in targets:
        for name in architectures:
            arch = ARCHITECTURES[name]
            held_all, pred_all, fold_all, fit_seconds = [], [], [], []
            for k, train, val, held in list(training.cv_folds(data, target, folds, seed))[
                : args_folds_limit(folds)
            ]:
                train, val, held = keep(train), keep(val), keep(held)
                log(
                    f'{target} {name}: CV fold {k + 1}/{folds} ({len(train)} train, {len(val)} val, {len(held)} held)'
                )
                start = time.perf_counter()
                ensemble, history = training.fit_members(
                    data, target, train, val, arch, 1, seed + 100 * k, settings[arch], progress=log
                )
                fit_seconds.append(time.perf_counter() - start)
                mean, _ = ensemble.summarize(ensemble.predict_transformed([data.structures[i] for i in held]))
                held_all.append(held)
                pred_all.append(mean)
                fold_all.append(np.full(len(held), k))
            out['cv'].setdefault(target, {})[name] = {
                'index': np.concatenate(held_all).tolist(),
                'fold': np.concatenate(fold_all).tolist(),
                'mean': np.concatenate(pred_all).tolist(),
                'fit_seconds': fit_seconds,
            }
            split = training.target_split(data, target, seed)
            train, val, test = keep(split.train), keep(split.val), keep(split.test)
            log(f'{target} {name}: test fit ({len(train)} train, {len(val)} val, {len(test)} test)')
            start = time.perf_counter()
            ensemble, history = training.fit_members(
                data, target, train, val, arch, 1, splits.SEED, settings[arch], progress=log
            )
            fit_seconds = time.perf_counter() - start
            structures = [data.structures[i] for i in test]
            predict_seconds = []
            for _ in range(3):
                start = time.perf_counter()
                transformed = ensemble.predict_transformed(structures)
                predict_seconds.append(time.perf_counter() - start)
            out['test'].setdefault(target, {})[name] = {
                'index': test.tolist(),
                'mean': ensemble.summarize(transformed)[0].tolist(),
                'fit_seconds': fit_seconds,
                'train_size': len(train),
                'history': history,
                'predict_seconds_per_structure': min(predict_seconds) / len(test),
                'parameters': parameter_count(ensemble.members[0]),
            }
            if partial is not None:  # what is done so far, should the run be stopped
                pathlib.Path(partial).write_text(json.dumps(out, default=float) + '\n')
    return out


_FOLD_LIMIT: list[int] = []


def args_folds_limit(folds: int) -> int:
    """How many of the ``folds`` folds are run (``--run-folds``; all by default)."""
    return _FOLD_LIMIT[0] if _FOLD_LIMIT else folds


def parameter_count(member) -> int:
    return sum(p.numel() for p in member.model.parameters() if p.requires_grad)


def summarise(data, results: dict, targets, architectures) -> dict:
    """MAE and Spearman ρ per target and ε_total: per fold (mean ± std) and on the test split."""
    from aiida_dielectrics.ml import evaluation

    def score(truth, pred):
        m = evaluation.regression_metrics(truth, pred)
        return {'mae': m['mae'], 'spearman': m['spearman']}

    quantities = [*targets, *(['diel_total'] if {'diel_elec', 'diel_ionic'} <= set(targets) else [])]
    summary = {'cv': {}, 'test': {}}
    for name in architectures:
        # Per-target predictions keyed by index (CV: the folds agree across targets: same split and formulas).
        cv = {t: results['cv'][t][name] for t in targets}
        folds = sorted(set(cv[targets[0]]['fold']))
        per_fold = {q: [] for q in quantities}
        for k in folds:
            preds = {}
            for t in targets:
                mask = np.asarray(cv[t]['fold']) == k
                preds[t] = dict(
                    zip(
                        np.asarray(cv[t]['index'])[mask].tolist(),
                        np.asarray(cv[t]['mean'])[mask],
                        strict=True,
                    )
                )
            for q in quantities:
                if q == 'diel_total':
                    index = sorted(set(preds['diel_elec']) & set(preds['diel_ionic']))
                    pred = [preds['diel_elec'][i] + preds['diel_ionic'][i] for i in index]
                else:
                    index = sorted(preds[q])
                    pred = [preds[q][i] for i in index]
                per_fold[q].append(
                    score(data.diel_total[index] if q == 'diel_total' else data.target(q)[index], pred)
                )
        summary['cv'][name] = {
            q: {
                metric: {
                    'mean': float(np.mean([f[metric] for f in rows])),
                    'std': float(np.std([f[metric] for f in rows])),
                }
                for metric in ('mae', 'spearman')
            }
            | {'folds': len(rows)}
            for q, rows in per_fold.items()
        }
        test = {t: results['test'][t][name] for t in targets}
        preds = {t: dict(zip(test[t]['index'], test[t]['mean'], strict=True)) for t in targets}
        summary['test'][name] = {}
        for q in quantities:
            if q == 'diel_total':
                index = sorted(set(preds['diel_elec']) & set(preds['diel_ionic']))
                pred = [preds['diel_elec'][i] + preds['diel_ionic'][i] for i in index]
                truth = data.diel_total[index]
            else:
                index = sorted(preds[q])
                pred, truth = [preds[q][i] for i in index], data.target(q)[index]
            summary['test'][name][q] = {**score(truth, pred), 'size': len(index)}
        fits = [(n, s) for n, s in TIMINGS[ARCHITECTURES[name]]['fit']]
        summary.setdefault('timing', {})[name] = {
            'fit_seconds_total': float(sum(s for _, s in fits)),
            'fit_ms_per_structure_epoch': float(
                1e3 * sum(s for _, s in fits) / max(1, sum(n for n, _ in fits)) / results['epochs']
            ),
            'test_predict_ms_per_structure': {
                t: 1e3 * results['test'][t][name]['predict_seconds_per_structure'] for t in targets
            },
            'parameters': {t: results['test'][t][name]['parameters'] for t in targets},
        }
    return summary


def markdown(summary: dict, architectures, labels: dict, epochs: int) -> str:
    names = {'ours': 'ours (aiida_dielectrics.ml.wren)', 'aviary': 'aviary 1.2.1 Wren'}
    qnames = {'diel_ionic': 'ε_ionic', 'diel_elec': 'ε_elec', 'diel_total': 'ε_total'}
    lines = [
        f'Labels: {labels["structures"]} structures, ours failed {labels["ours_failed"]}, aviary failed '
        f'{labels["aviary_failed"]}, scored on {labels["intersection"]}; identical labels: '
        f'{labels["identical_labels"]}. {epochs} epochs, 1 member per fold.',
        '',
        '| quantity | model | CV MAE | CV Spearman ρ | test MAE | test Spearman ρ |',
        '| --- | --- | --- | --- | --- | --- |',
    ]
    for q in summary['cv'][architectures[0]]:
        for name in architectures:
            cv, test = summary['cv'][name][q], summary['test'][name][q]
            lines.append(
                f'| {qnames[q]} | {names[name]} | {cv["mae"]["mean"]:.3f} ± {cv["mae"]["std"]:.3f} | '
                f'{cv["spearman"]["mean"]:.3f} ± {cv["spearman"]["std"]:.3f} | {test["mae"]:.3f} | '
                f'{test["spearman"]:.3f} |'
            )
    lines += [
        '',
        '| model | parameters | train ms / structure / epoch | predict ms / structure | label ms / structure |',
    ]
    lines.append('| --- | --- | --- | --- | --- |')
    for name in architectures:
        t = summary['timing'][name]
        predict = ', '.join(f'{v:.3f}' for v in t['test_predict_ms_per_structure'].values())
        params = ', '.join(str(v) for v in t['parameters'].values())
        lines.append(
            f'| {names[name]} | {params} | {t["fit_ms_per_structure_epoch"]:.3f} | {predict} | '
            f'{1e3 * labels["label_seconds_per_structure"][name]:.2f} |'
        )
    return '\n'.join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--epochs', type=int, default=100, help='epochs per member, both models (default 100)'
    )
    parser.add_argument(
        '--folds', type=int, default=5, help='CV folds over train+val (default 5, as the project)'
    )
    parser.add_argument(
        '--run-folds', type=int, default=None, help='run only the first N folds (smoke tests)'
    )
    parser.add_argument(
        '--targets', nargs='+', default=['diel_ionic', 'diel_elec'], choices=['diel_ionic', 'diel_elec']
    )
    parser.add_argument('--models', nargs='+', default=['ours', 'aviary'], choices=list(ARCHITECTURES))
    parser.add_argument('--out', default='results.json', help='JSON file for all figures and predictions')
    parser.add_argument(
        '--data',
        nargs='+',
        default=[
            str(SHARED / 'data' / 'petousis2017' / 'dielectric_constant.csv'),
            str(SHARED / 'data' / 'mp-dfpt-extra' / 'mp-dfpt-extra.extxyz'),
        ],
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.run_folds:
        _FOLD_LIMIT[:] = [args.run_folds]
    from aiida_dielectrics.ml import dataset, splits

    begin = time.perf_counter()
    log = lambda text: print(f'[{time.perf_counter() - begin:7.1f} s] {text}', flush=True)  # noqa: E731
    register()
    data = dataset.from_files(args.data)
    log(f'{len(data)} materials from {data.source}; labelling')
    ok, labels = label_all(data)
    log(f'labels: { ({k: v for k, v in labels.items() if k != "failures"}) }')
    warnings.filterwarnings('ignore', message='Converting a tensor with requires_grad')  # aviary's own
    partial = f'{args.out}.partial'
    results = run(data, ok, args.targets, args.models, args.epochs, args.folds, splits.SEED, log, partial)
    results['epochs'] = args.epochs
    summary = summarise(data, results, args.targets, args.models)
    table = markdown(summary, args.models, labels, args.epochs)
    print(table)
    import aviary

    payload = {
        'setting': {
            'command': ' '.join([sys.executable, *sys.argv]),
            'epochs': args.epochs,
            'folds': args.folds,
            'folds_run': args_folds_limit(args.folds),
            'targets': args.targets,
            'members_per_fold': 1,
            'seed': splits.SEED,
            'torch_threads': torch.get_num_threads(),
            'torch': torch.__version__,
            'aviary': aviary.__version__ if hasattr(aviary, '__version__') else 'unknown',
            'python': platform.python_version(),
            'wall_seconds': time.perf_counter() - begin,
            'hyperparameters': {
                'ours': _our_member()(max_epochs=args.epochs).hyperparameters,
                'aviary': AviaryWren(max_epochs=args.epochs).hyperparameters
                | {'model': 'aviary.wren.model.Wren class defaults', 'optimizer': 'AdamW, constant lr'},
            },
        },
        'labels': labels,
        'summary': summary,
        'table_markdown': table,
        'predictions': {k: v for k, v in results.items() if k != 'epochs'},
        'timings_raw': TIMINGS,
    }
    pathlib.Path(args.out).write_text(json.dumps(payload, indent=1, default=float) + '\n')
    log(f'wrote {args.out}')
    return payload


if __name__ == '__main__':
    main()
