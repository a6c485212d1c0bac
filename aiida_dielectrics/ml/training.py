"""Train ε ensembles on a :class:`~.dataset.Dataset` with the fixed split, and cross-validate them.

Targets are learnt in log space (:data:`.transforms.DEFAULT_TRANSFORM`); members differ in their seed
(data order and read-out initialisation). The returned ensemble carries its model card: data, split,
hyper-parameters, per-member training history, the σ scale fitted on the validation part
(:func:`calibrate`) and test metrics in the original space.
"""

from __future__ import annotations

import hashlib
import pathlib
import time
from collections.abc import Callable

import numpy as np

from aiida_dielectrics.ml import evaluation, loading, splits, transforms
from aiida_dielectrics.ml.dataset import Dataset
from aiida_dielectrics.ml.ensemble import Ensemble, fit_sigma_scale, member_class, members_sha256, write_card


def member_settings(
    architecture: str,
    max_epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    pretrained: str = loading.PRETRAINED,
) -> dict:
    """The hyper-parameters of one member: those given (``None``: the member class's own default); a
    MEGNet's ``pretrained`` model is looked up by :func:`.loading.resolve` (model folder, package,
    Hugging Face Hub) and given as its folder."""
    given = {'max_epochs': max_epochs, 'batch_size': batch_size, 'lr': lr}
    settings = {name: value for name, value in given.items() if value is not None}
    if architecture == 'megnet':
        settings['pretrained'] = str(loading.resolve(pretrained))
    return settings


def target_split(
    data: Dataset, target: str, seed: int = splits.SEED, fractions=splits.FRACTIONS
) -> splits.Split:
    """The seeded by-formula split of all of ``data``, less the entries without a value of ``target``
    (band gaps of mp-dfpt-extra): every target sees each formula in the same part, and with data that
    have every target (Petousis alone) this is the split of :func:`.splits.train_val_test`."""
    split = splits.train_val_test(data.formulas, seed, fractions)
    known = np.isfinite(data.target(target))
    return splits.Split(*(part[known[part]] for part in (split.train, split.val, split.test)))


def ids_sha256(material_ids) -> str:
    return hashlib.sha256('\n'.join(sorted(material_ids)).encode()).hexdigest()


def fit_members(
    data: Dataset,
    target: str,
    train_idx,
    val_idx,
    architecture: str = 'megnet',
    members: int = 5,
    seed: int = splits.SEED,
    hyperparameters: dict | None = None,
    progress: Callable[[str], None] = print,
) -> tuple[Ensemble, list[dict]]:
    """Fit ``members`` members on ``train_idx`` (``val_idx`` for early model selection)."""
    transform = transforms.DEFAULT_TRANSFORM[target]
    y = transforms.transform(transform, data.target(target))
    kind = member_class(architecture)
    train_s = [data.structures[i] for i in train_idx]
    val = ([data.structures[i] for i in val_idx], y[val_idx]) if len(val_idx) else None
    if hasattr(kind, 'select_hyperparameters'):  # chosen once per ensemble, inside its training part
        hyperparameters = kind.select_hyperparameters(
            train_s, y[train_idx], [data.formulas[i] for i in train_idx], seed, **(hyperparameters or {})
        )
        progress(f'{target}: hyper-parameters chosen by inner CV: {hyperparameters}')
    fitted, histories = [], []
    for k in range(members):
        start = time.perf_counter()
        member = kind(**(hyperparameters or {}))
        history = member.fit(train_s, y[train_idx], val=val, seed=seed + k)
        history['seconds'] = round(time.perf_counter() - start, 1)
        progress(f'{target}: member {k + 1}/{members} trained in {history["seconds"]} s ({history})')
        fitted.append(member)
        histories.append(history)
    return Ensemble(fitted, target, transform, architecture), histories


def train_ensemble(
    data: Dataset,
    target: str,
    architecture: str = 'megnet',
    members: int = 5,
    seed: int = splits.SEED,
    fractions=splits.FRACTIONS,
    hyperparameters: dict | None = None,
    progress: Callable[[str], None] = print,
    calibration: str = 'val',
) -> Ensemble:
    """Train an ensemble on the train part of the seeded split and write its model card.

    ``calibration``: where the σ scale is fitted (:func:`calibrate`): ``'val'``, the validation part, or
    ``'cv'``, out-of-fold predictions of a :data:`.splits.FOLDS`-fold CV at the same setting over
    train+val (the CV runs ``members`` members per fold: k times the training)."""
    if members < 1:
        raise ValueError('an ensemble needs at least one member')
    if calibration not in ('val', 'cv'):
        raise ValueError(f"calibration must be 'val' or 'cv', not {calibration!r}")
    split = target_split(data, target, seed, fractions)
    progress(f'{target}: {len(split.train)} train / {len(split.val)} val / {len(split.test)} test materials')
    ensemble, histories = fit_members(
        data, target, split.train, split.val, architecture, members, seed, hyperparameters, progress
    )
    test = data.subset(split.test)
    ensemble.card.update(
        {
            'data': {
                'source': data.source,
                'entries': len(data),
                'ids_sha256': ids_sha256(data.material_ids),
            },
            'split': {
                'seed': seed,
                'fractions': list(fractions),
                'grouped_by': 'reduced_formula',
                'sizes': {'train': len(split.train), 'val': len(split.val), 'test': len(split.test)},
                'sha256': splits.split_hash(data.material_ids, split),
                'test_ids': sorted(test.material_ids),
            },
            'hyperparameters': {'members': members, 'seed': seed, **kind_hyperparameters(ensemble)},
            'training': histories,
        }
    )
    cv = None
    if calibration == 'cv':
        cv = cross_validate(
            data, target, architecture, splits.FOLDS, members, seed, fractions, hyperparameters, progress
        )
    calibrate(ensemble, data, split, cv)
    return ensemble


def calibrate(ensemble: Ensemble, data: Dataset, split: splits.Split, cv: dict | None = None) -> dict:
    """Fit the ensemble's σ scale on held-out data and measure the test part with it.

    The held-out data are the validation part, or with ``cv`` (:func:`cross_validate` of the same
    setting) the out-of-fold predictions over all of train+val: members early-stopped on the validation
    part are optimistic there, and k folds give ten times the points. Writes ``sigma_scale``,
    ``calibration`` (share of truths within ±1σ and ±2σ before and after scaling, on the part it is
    fitted on and on the test part) and ``metrics.test`` (with calibrated σ) into the card; returns
    ``calibration``. With one member (no spread) or no held-out part the scale stays 1.
    """
    fitted_on = 'val' if cv is None else 'cv'
    parts = {fitted_on: split.val if cv is None else cv['index'], 'test': split.test}
    truth = data.target(ensemble.target)
    outputs = {'test': ensemble.predict_transformed([data.structures[i] for i in split.test])}
    outputs[fitted_on] = (
        ensemble.predict_transformed([data.structures[i] for i in split.val])
        if cv is None
        else cv['transformed']
    )
    raw = {part: ensemble.summarize(values, calibrated=False) for part, values in outputs.items()}
    scale, calibration = 1.0, {}
    if len(ensemble.members) > 1 and len(parts[fitted_on]) and outputs[fitted_on].shape[0] > 1:
        held = parts[fitted_on]
        scale = fit_sigma_scale(outputs[fitted_on], transforms.transform(ensemble.transform, truth[held]))
        calibration = {
            'fitted_on': fitted_on
            if cv is None
            else f'cv ({int(cv["fold"].max()) + 1} folds over train+val)',
            'method': 'sqrt(pi/2) * mean |z| in the transformed space',
            **{
                part: {
                    'size': len(index),
                    'before': evaluation.calibration(truth[index], *raw[part]),
                    'after': evaluation.calibration(truth[index], raw[part][0], scale * raw[part][1]),
                }
                for part, index in parts.items()
            },
        }
    mean, std = raw['test']
    test = {
        **evaluation.regression_metrics(truth[split.test], mean),
        **evaluation.calibration(truth[split.test], mean, scale * std),
    }
    ensemble.card.update({'sigma_scale': scale, 'calibration': calibration, 'metrics': {'test': test}})
    return calibration


def calibrate_folder(folder, data: Dataset) -> tuple[Ensemble, dict]:
    """:func:`calibrate` the ensemble in ``folder`` on its own split of ``data`` and rewrite its card only.

    The seed and fractions come from the card and must give its split checksum on ``data``, and the member
    files must match the card's sha256 (``ValueError`` otherwise): the members are used as they are.
    """
    folder = pathlib.Path(folder)
    ensemble = Ensemble.load(folder)
    card = ensemble.card
    if card['sha256'] != members_sha256(folder):
        raise ValueError(f'{folder}: the member files do not match the sha256 in its card')
    split = target_split(data, card['target'], card['split']['seed'], card['split']['fractions'])
    if splits.split_hash(data.material_ids, split) != card['split']['sha256']:
        raise ValueError(f'{folder} was trained on other data or another split')
    if str(card.get('calibration', {}).get('fitted_on', '')).startswith('cv'):
        raise ValueError(
            f'{folder} was calibrated by cross-validation when it was trained: retrain it instead'
        )
    result = calibrate(ensemble, data, split)
    write_card(folder, ensemble.card)
    return ensemble, result


def kind_hyperparameters(ensemble: Ensemble) -> dict:
    member = ensemble.members[0]
    return dict(getattr(member, 'hyperparameters', {}))


def cv_folds(
    data: Dataset, target: str, folds: int = splits.FOLDS, seed: int = splits.SEED, fractions=splits.FRACTIONS
):
    """The folds of :func:`cross_validate` over train+val: ``(k, train, val, held_out)`` index arrays, ``val``
    the 10 % of the fold's training groups kept for model selection."""
    split = target_split(data, target, seed, fractions)
    pool = np.concatenate([split.train, split.val])
    for k, (rest, held) in enumerate(splits.kfold(data.formulas, pool, folds, seed)):
        inner = splits.train_val_test([data.formulas[i] for i in rest], seed + k, (0.9, 0.1, 0.0))
        yield k, rest[inner.train], rest[inner.val], held


def cross_validate(
    data: Dataset,
    target: str,
    architecture: str = 'megnet',
    folds: int = splits.FOLDS,
    members: int = 1,
    seed: int = splits.SEED,
    fractions=splits.FRACTIONS,
    hyperparameters: dict | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, np.ndarray]:
    """Out-of-fold predictions over train+val (the test part is never touched), of the entries that have
    ``target``.

    Returns ``index``, ``fold``, ``mean`` and ``std`` arrays aligned with each other, and ``transformed``,
    the members' outputs (members × entries, transformed space) for :func:`calibrate`. Each fold keeps
    10 % of its training groups for model selection.
    """
    out = {'index': [], 'fold': [], 'mean': [], 'std': [], 'transformed': []}
    for k, train, val, held in cv_folds(data, target, folds, seed, fractions):
        progress(f'{target}: CV fold {k + 1}/{folds} ({len(train) + len(val)} train, {len(held)} held out)')
        ensemble, _ = fit_members(
            data,
            target,
            train,
            val,
            architecture,
            members,
            seed + 100 * k,
            hyperparameters,
            progress,
        )
        transformed = ensemble.predict_transformed([data.structures[i] for i in held])
        mean, std = ensemble.summarize(transformed)
        for key, value in (('index', held), ('fold', np.full(len(held), k)), ('mean', mean), ('std', std)):
            out[key].append(value)
        out['transformed'].append(transformed)
    return {key: np.concatenate(value, axis=-1) for key, value in out.items()}
