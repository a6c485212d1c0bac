"""``aiida-dielectrics train``, ``calibrate`` and ``evaluate``: fit ε ensembles, calibrate their σ and measure
them, with or without AiiDA."""

from __future__ import annotations

import os
import pathlib
import time

import click
import numpy as np

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import load_profile

#: Environment variable naming a folder of local models (e.g. ``../shared/models/matgl``), one sub-folder per
#: name, used for ``--pretrained`` / ``--gap-model`` names that are not paths (the same as for prediction).
MODELS_ENV = 'AIIDA_DIELECTRICS_MODEL_DIR'
PRETRAINED = 'MEGNet-MP-2019.4.1-BandGap-mfi'


def resolve_model(name: str) -> str:
    """A folder path as is; a bare name inside ``$AIIDA_DIELECTRICS_MODEL_DIR`` if set there, else the name
    (matgl then fetches it from Hugging Face)."""
    if pathlib.Path(name).is_dir():
        return name
    base = os.environ.get(MODELS_ENV)
    if base and (pathlib.Path(base) / name).is_dir():
        return str(pathlib.Path(base) / name)
    return name


def echo(message: str):
    click.echo(f'[{time.strftime("%H:%M:%S")}] {message}', err=True)


@cli.command('train')
@click.option(
    '--data', 'csv', type=click.Path(exists=True, dir_okay=False), help='Petousis 2017 CSV to train on.'
)
@click.option(
    '--group',
    help='Train on the DielectricData/StructureData nodes of this AiiDA group instead '
    '(e.g. petousis2017); stores a dielectrics.model node with provenance.',
)
@click.option(
    '--target',
    type=click.Choice(['diel_elec', 'diel_ionic', 'band_gap']),
    required=True,
    help='Quantity to learn (band_gap: the PBE gap in eV).',
)
@click.option('--architecture', type=click.Choice(['megnet', 'wren']), default='megnet', show_default=True)
@click.option('--members', type=click.IntRange(1), default=5, show_default=True, help='Ensemble size.')
@click.option('--epochs', type=click.IntRange(1), default=30, show_default=True, help='Epochs per member.')
@click.option('--batch-size', type=click.IntRange(1), default=32, show_default=True)
@click.option('--lr', type=float, default=1e-3, show_default=True, help='Learning rate.')
@click.option('--seed', type=int, default=2017, show_default=True, help='Seed of the split and of member 0.')
@click.option(
    '--pretrained',
    default=PRETRAINED,
    show_default=True,
    help=f'MEGNet to fine-tune: a folder, or a name looked up in ${MODELS_ENV} or on Hugging Face.',
)
@click.option('--limit', type=click.IntRange(1), help='Use only the first N entries (quick trials).')
@click.option('--threads', type=click.IntRange(1), default=1, show_default=True, help='torch CPU threads.')
@click.option(
    '-o',
    '--output',
    type=click.Path(file_okay=False),
    required=True,
    help='Ensemble folder to write (model_card.json + member_*/).',
)
@click.pass_context
def train(
    ctx,
    csv,
    group,
    target,
    architecture,
    members,
    epochs,
    batch_size,
    lr,
    seed,
    pretrained,
    limit,
    threads,
    output,
):
    """Train an ensemble for ε_elec or ε_ionic on the fixed, seeded split and write its model card.

    \b
    aiida-dielectrics train --data dielectric_constant.csv --target diel_elec -o models/diel_elec
    aiida-dielectrics train --group petousis2017 --target diel_ionic -o models/diel_ionic
    """
    import torch

    from aiida_dielectrics.ml import dataset, training

    if bool(csv) == bool(group):
        raise click.ClickException('give exactly one of --data CSV or --group LABEL')
    torch.set_num_threads(threads)
    hyperparameters = {'max_epochs': epochs, 'batch_size': batch_size, 'lr': lr}
    if architecture == 'megnet':
        hyperparameters['pretrained'] = resolve_model(pretrained)
    if group:
        load_profile(ctx)
        from aiida_dielectrics.calculations.training import run_training

        node = run_training(group, target, architecture, members, seed, hyperparameters, output, limit, echo)
        echo(
            f'stored ModelData<{node.pk}> ({node.members} members, sha256 {node.base.attributes.get("sha256")[:12]})'
        )
        return
    data = dataset.from_petousis(csv, limit=limit)
    for reason in data.skipped:
        echo(f'skipped {reason}')
    echo(f'{len(data)} materials read from {csv}')
    ensemble = training.train_ensemble(
        data, target, architecture, members, seed, hyperparameters=hyperparameters, progress=echo
    )
    folder = ensemble.save(output)
    test = ensemble.card['metrics']['test']
    echo(
        f'wrote {folder}: test MAE {test["mae"]:.3f}, R² {test["r2"]:.3f}, Spearman {test["spearman"]:.3f}, '
        f'σ scale {ensemble.sigma_scale:.2f} (within ±1σ {test["within_1sigma"]:.2f})'
    )


@cli.command('calibrate')
@click.option(
    '--data',
    'csv',
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help='Petousis 2017 CSV the ensembles were trained on.',
)
@click.option('--threads', type=click.IntRange(1), default=1, show_default=True, help='torch CPU threads.')
@click.argument('folders', nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
def calibrate(csv, threads, folders):
    """Fit the σ scale of trained ensembles on their validation part, without retraining.

    Training does this itself; this command calibrates ensembles trained before it did. Each FOLDER's
    seeded split (seed and fractions from its card, checked against the card's sha256) and members
    (checked against their sha256, never rewritten) are used as they are; only model_card.json changes:
    sigma_scale, calibration (before/after on val and test) and metrics.test with calibrated σ.

    \b
    aiida-dielectrics calibrate --data dielectric_constant.csv aiida_dielectrics/models/diel_elec
    """
    import torch

    from aiida_dielectrics.ml import dataset, splits, training
    from aiida_dielectrics.ml.ensemble import Ensemble, members_sha256, write_card

    torch.set_num_threads(threads)
    data = dataset.from_petousis(csv)
    for folder in map(pathlib.Path, folders):
        ensemble = Ensemble.load(folder)
        card = ensemble.card
        if card['sha256'] != members_sha256(folder):
            raise click.ClickException(f'{folder}: the member files do not match the sha256 in its card')
        split = splits.train_val_test(data.formulas, card['split']['seed'], card['split']['fractions'])
        if splits.split_hash(data.material_ids, split) != card['split']['sha256']:
            raise click.ClickException(f'{folder} was trained on other data or another split than {csv}')
        result = training.calibrate(ensemble, data, split)
        write_card(folder, ensemble.card)
        if not result:
            echo(f'{folder}: one member, no spread to calibrate (σ scale 1)')
            continue
        shares = {
            part: ' → '.join(
                f'{result[part][when]["within_1sigma"]:.3f}/{result[part][when]["within_2sigma"]:.3f}'
                for when in ('before', 'after')
            )
            for part in ('val', 'test')
        }
        echo(
            f'{folder}: σ scale {ensemble.sigma_scale:.3f}; within ±1σ/±2σ on val {shares["val"]}, '
            f'on test {shares["test"]}; test MAE {ensemble.card["metrics"]["test"]["mae"]:.4f}'
        )


@cli.command('retrain')
@click.option(
    '--campaign',
    required=True,
    help='Campaign group whose DFPT results (DielectricData) join the training set.',
)
@click.option(
    '--base-group',
    default='petousis2017',
    show_default=True,
    help='Group of imported DielectricData/StructureData to train on as well.',
)
@click.option(
    '--target', type=click.Choice(['diel_elec', 'diel_ionic']), required=True, help='Quantity to learn.'
)
@click.option('--architecture', type=click.Choice(['megnet', 'wren']), default='megnet', show_default=True)
@click.option('--members', type=click.IntRange(1), default=5, show_default=True, help='Ensemble size.')
@click.option('--epochs', type=click.IntRange(1), default=30, show_default=True, help='Epochs per member.')
@click.option('--batch-size', type=click.IntRange(1), default=32, show_default=True)
@click.option('--lr', type=float, default=1e-3, show_default=True, help='Learning rate.')
@click.option('--seed', type=int, default=2017, show_default=True, help='Seed of the split and of member 0.')
@click.option(
    '--pretrained',
    default=PRETRAINED,
    show_default=True,
    help=f'MEGNet to fine-tune: a folder, or a name looked up in ${MODELS_ENV} or on Hugging Face.',
)
@click.option(
    '--limit', type=click.IntRange(1), help='Use only the first N entries of the base group (quick trials).'
)
@click.option('--threads', type=click.IntRange(1), default=1, show_default=True, help='torch CPU threads.')
@click.option(
    '-o', '--output', type=click.Path(file_okay=False), help='Also export the ensemble to this folder.'
)
@click.pass_context
def retrain(
    ctx,
    campaign,
    base_group,
    target,
    architecture,
    members,
    epochs,
    batch_size,
    lr,
    seed,
    pretrained,
    limit,
    threads,
    output,
):
    """Train a new ε model node on a campaign's DFPT results plus the base data (the learning loop).

    The stored dielectrics.model node links, through its train_model process, to every structure and
    dielectric node it was trained on; its pk is printed.

    \b
    aiida-dielectrics retrain --campaign my-campaign --target diel_ionic -o models/diel_ionic_v2
    """
    import torch

    from aiida_dielectrics.calculations.training import RetrainError, run_retraining

    load_profile(ctx)
    torch.set_num_threads(threads)
    hyperparameters = {'max_epochs': epochs, 'batch_size': batch_size, 'lr': lr}
    if architecture == 'megnet':
        hyperparameters['pretrained'] = resolve_model(pretrained)
    try:
        node = run_retraining(
            campaign, base_group, target, architecture, members, seed, hyperparameters, output, limit, echo
        )
    except RetrainError as error:
        raise click.ClickException(str(error)) from None
    echo(
        f'stored ModelData<{node.pk}> ({node.members} members, sha256 {node.base.attributes.get("sha256")[:12]})'
    )
    click.echo(node.pk)


def predict_gap(name: str, structures) -> np.ndarray:
    """PBE band gaps (eV, clipped at 0) from an ensemble folder (``model_card.json``) or a single MEGNet."""
    return predict_gap_and_std(name, structures)[0]


def predict_gap_and_std(name: str, structures) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict_gap` and the gaps' σ: the ensemble's calibrated σ, or 0 for a single MEGNet."""
    from aiida_dielectrics.ml import loading
    from aiida_dielectrics.ml.ensemble import Ensemble, MEGNetMember

    location = loading.resolve(name)
    if isinstance(location, pathlib.Path) and (location / loading.CARD).is_file():
        gap, std = Ensemble.load(location).predict(structures)
    else:
        gap = MEGNetMember.load(str(location)).predict(structures)
        std = np.zeros_like(gap)
    return np.clip(gap, 0, None), std


@cli.command('evaluate')
@click.option(
    '--data',
    'csv',
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help='Petousis 2017 CSV (the data the ensembles were trained on).',
)
@click.option(
    '--models',
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help='Folder with diel_elec/ and diel_ionic/ ensembles  [default: the ones shipped in the package].',
)
@click.option(
    '--gap-model',
    default='band_gap',
    show_default=True,
    help='Band-gap model for Φ with predicted gap: an ensemble or MEGNet folder, or a name looked up in '
    f'${MODELS_ENV}, then in the package (the shipped band_gap ensemble).',
)
@click.option(
    '--cv-folds',
    type=click.IntRange(0),
    default=5,
    show_default=True,
    help='Folds of cross-validation over train+val (0: skip).',
)
@click.option(
    '--cv-members', type=click.IntRange(1), default=1, show_default=True, help='Members per CV fold.'
)
@click.option(
    '--cv-epochs', type=click.IntRange(1), default=15, show_default=True, help='Epochs per CV member.'
)
@click.option('--threads', type=click.IntRange(1), default=1, show_default=True, help='torch CPU threads.')
@click.option(
    '-o', '--output', type=click.Path(dir_okay=False), required=True, help='Markdown report to write.'
)
@click.option(
    '--json', 'json_path', type=click.Path(dir_okay=False), help='Also write the raw metrics as JSON.'
)
def evaluate(csv, models, gap_model, cv_folds, cv_members, cv_epochs, threads, output, json_path):
    """Measure the ε ensembles against a mean and a composition-only baseline and write the report.

    Test-split metrics for ε_elec, ε_ionic, ε_total and Φ (with DFT and predicted gap), calibration,
    top-10 % precision, and k-fold CV (cheaper setting: --cv-members × --cv-epochs per fold).

    \b
    aiida-dielectrics evaluate --data dielectric_constant.csv -o docs/evaluation.md
    """
    import json
    import shlex
    import sys

    import torch

    from aiida_dielectrics.ml import dataset, evaluation, splits, training
    from aiida_dielectrics.ml.ensemble import DEFAULT_MODELS, Ensemble, json_safe, read_card

    torch.set_num_threads(threads)
    start = time.perf_counter()
    root = pathlib.Path(models) if models else DEFAULT_MODELS
    cards = {}
    for target in ('diel_elec', 'diel_ionic'):
        if not (root / target / 'model_card.json').is_file():
            raise click.ClickException(f'{root / target} is not an ensemble folder (no model_card.json)')
        cards[target] = read_card(root / target)
    seeds = {card['split']['seed'] for card in cards.values()}
    fractions = {tuple(card['split']['fractions']) for card in cards.values()}
    if len(seeds) != 1 or len(fractions) != 1:
        raise click.ClickException('the two ensembles were trained on different splits')
    seed, fraction = seeds.pop(), fractions.pop()
    data = dataset.from_petousis(csv)
    split = splits.train_val_test(data.formulas, seed, fraction)
    for target, card in cards.items():
        if card['split']['sha256'] != splits.split_hash(data.material_ids, split):
            raise click.ClickException(
                f'{target} ensemble was trained on other data or another split than {csv}'
            )
    echo(f'{len(data)} materials; test split {len(split.test)}; loading ensembles from {root}')
    ensembles = {target: Ensemble.load(root / target) for target in cards}
    echo(f'predicting band gaps ({gap_model}, PBE fidelity)')
    pred_gap, pred_gap_std = predict_gap_and_std(gap_model, data.structures)
    cv = None
    if cv_folds:
        hyperparameters = {key: cards['diel_elec']['hyperparameters'][key] for key in ('batch_size', 'lr')}
        hyperparameters.update({'max_epochs': cv_epochs})
        if cards['diel_elec']['architecture'] == 'megnet':
            hyperparameters['pretrained'] = resolve_model(PRETRAINED)
        cv = {
            target: training.cross_validate(
                data,
                target,
                cards[target]['architecture'],
                cv_folds,
                cv_members,
                seed,
                fraction,
                hyperparameters,
                progress=echo,
            )
            for target in cards
        }
    results = evaluation.evaluate(data, ensembles, pred_gap, split, cv, pred_gap_std)
    seconds = time.perf_counter() - start
    arguments = sys.argv[sys.argv.index('evaluate') + 1 :] if 'evaluate' in sys.argv else []
    command = 'aiida-dielectrics evaluate ' + ' '.join(shlex.quote(arg) for arg in arguments)
    architecture = cards['diel_elec']['architecture']
    hp = cards['diel_elec']['hyperparameters']
    header = [
        '<!-- written by `aiida-dielectrics evaluate`; do not edit by hand -->',
        '',
        f'Produced by `{command}` in {seconds / 60:.1f} min on {torch.get_num_threads()} CPU thread(s).',
        f'Ensembles: {root.name}/diel_elec and diel_ionic, {architecture}, {hp["members"]} members each, '
        f'{hp.get("max_epochs")} epochs; split seed {seed}, fractions {list(fraction)}, grouped by reduced formula, '
        f'sha256 `{cards["diel_elec"]["split"]["sha256"][:16]}…`.',
        'σ is the member spread times the σ scale each card holds (fitted on the validation part): '
        + ', '.join(f'{target} {ensemble.sigma_scale:.2f}' for target, ensemble in ensembles.items())
        + f'. Φ (predicted gap) uses the band gap of `{gap_model}` and adds its σ to σ_Φ (`fom.prediction_summary`).',
    ]
    if cv:
        header.append(
            f'Cross-validation uses a cheaper setting than the shipped ensembles: {cv_members} member(s) × '
            f'{cv_epochs} epochs per fold; baselines are refitted per fold.'
        )
    report = '\n'.join(
        [*header, '', evaluation.markdown_tables(results, f'{architecture} ensemble', gap_model)]
    )
    pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(output).write_text(report)
    if json_path:
        pathlib.Path(json_path).write_text(json.dumps(json_safe(results), indent=1, allow_nan=False) + '\n')
    test = results['test']['ensemble']
    echo(
        f'wrote {output} in {seconds:.0f} s: test MAE ε_elec {test["diel_elec"]["mae"]:.2f}, '
        f'ε_ionic {test["diel_ionic"]["mae"]:.2f}, ε_total {test["diel_total"]["mae"]:.2f}'
    )
