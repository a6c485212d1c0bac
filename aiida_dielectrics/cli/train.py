"""``aiida-dielectrics train``, ``retrain``, ``calibrate`` and ``evaluate``: fit ε ensembles, calibrate their σ
and measure them, with or without AiiDA. The work is in :mod:`aiida_dielectrics.ml.training` and
:mod:`aiida_dielectrics.ml.evaluation` (and :mod:`aiida_dielectrics.calculations.training` for the nodes)."""

from __future__ import annotations

import functools
import pathlib

import click

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import GroupParamType, echo_progress
from aiida_dielectrics.ml.files import ARCHITECTURES
from aiida_dielectrics.ml.loading import MODEL_DIR_ENV, PRETRAINED


def fit_options(command):
    """The options ``train`` and ``retrain`` share (architecture and hyper-parameters of the members);
    the command receives them as one ``fit_options`` dict, for :func:`fit_arguments`."""
    options = [
        click.option(
            '--architecture',
            type=click.Choice(list(ARCHITECTURES)),
            default='megnet',
            show_default=True,
            help='megnet: fine-tuned MEGNet; wren: protostructure model; embedding-mlp: MLP head on frozen '
            'SevenNet-0 embeddings.',
        ),
        click.option(
            '--members', type=click.IntRange(1), default=5, show_default=True, help='Ensemble size.'
        ),
        click.option(
            '--epochs',
            type=click.IntRange(1),
            help="Epochs per member  [default: the architecture's: megnet 30, wren 100, embedding-mlp 200].",
        ),
        click.option(
            '--batch-size',
            type=click.IntRange(1),
            help="[default: the architecture's: megnet 32, wren 64, embedding-mlp 256]",
        ),
        click.option(
            '--lr', type=float, help="Learning rate  [default: the architecture's: 1e-3, embedding-mlp 2e-3]."
        ),
        click.option(
            '--seed', type=int, default=2017, show_default=True, help='Seed of the split and of member 0.'
        ),
        click.option(
            '--pretrained',
            default=PRETRAINED,
            show_default=True,
            help=f'MEGNet to fine-tune: a folder, or a name looked up in ${MODEL_DIR_ENV} or on Hugging Face.',
        ),
        click.option(
            '--calibration',
            type=click.Choice(['val', 'cv']),
            default='val',
            show_default=True,
            help='Fit the σ scale on the validation part, or on out-of-fold predictions of a 5-fold CV over '
            'train+val (5 × the training).',
        ),
        click.option(
            '--threads', type=click.IntRange(1), default=1, show_default=True, help='torch CPU threads.'
        ),
    ]
    names = (
        'architecture',
        'members',
        'epochs',
        'batch_size',
        'lr',
        'seed',
        'pretrained',
        'calibration',
        'threads',
    )

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, fit_options={name: kwargs.pop(name) for name in names}, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def fit_arguments(
    architecture, members, epochs, batch_size, lr, seed, pretrained, calibration, threads
) -> dict:
    """The training arguments of :func:`.ml.training.train_ensemble` and the calcfunctions from the options
    of :func:`fit_options`; sets torch's CPU threads."""
    import torch

    from aiida_dielectrics.ml import training

    torch.set_num_threads(threads)
    try:
        settings = training.member_settings(architecture, epochs, batch_size, lr, pretrained)
    except FileNotFoundError as exception:
        raise click.ClickException(f'--pretrained: {exception}') from None
    return {
        'architecture': architecture,
        'members': members,
        'seed': seed,
        'hyperparameters': settings,
        'calibration': calibration,
    }


def data_option(help: str, required: bool = True):
    """``--data FILE`` (repeatable): the data files a command reads, as one data set."""
    return click.option(
        '--data',
        'paths',
        type=click.Path(exists=True, dir_okay=False),
        multiple=True,
        required=required,
        help=f'{help} Repeat for several: the Petousis 2017 CSV (.csv) and mp-dfpt-extra (.extxyz) '
        'together are split by formula as one data set, whatever their order.',
    )


def read_data(paths, limit: int | None = None):
    """:func:`.ml.dataset.from_files`, a bad file or a material in two files ending the command with one line."""
    from aiida_dielectrics.ml import dataset

    try:
        return dataset.from_files(paths, limit)
    except ValueError as exception:
        raise click.ClickException(str(exception)) from None


def echo_model_node(node):
    echo_progress(
        f'stored ModelData<{node.pk}> ({node.members} members, sha256 {node.base.attributes.get("sha256")[:12]})'
    )


@cli.command('train')
@data_option('Data file to train on.', required=False)
@click.option(
    '--group',
    type=GroupParamType(),
    help='Train on the DielectricData/StructureData nodes of this AiiDA group instead '
    '(e.g. petousis2017); stores a dielectrics.model node with provenance.',
)
@click.option(
    '--target',
    type=click.Choice(['diel_elec', 'diel_ionic', 'band_gap']),
    required=True,
    help='Quantity to learn (band_gap: the PBE gap in eV).',
)
@fit_options
@click.option(
    '--limit',
    type=click.IntRange(1),
    help='Use only the first N entries of each file or of the group (quick trials).',
)
@click.option(
    '-o',
    '--output',
    type=click.Path(file_okay=False),
    required=True,
    help='Ensemble folder to write (model_card.json + member_*/).',
)
def train(paths, group, target, fit_options, limit, output):
    """Train an ensemble for ε_elec, ε_ionic or the band gap on the fixed, seeded split and write its card.

    Materials without a value of the target (the band gap of mp-dfpt-extra) are left out of its split.

    \b
    aiida-dielectrics train --data dielectric_constant.csv --target diel_elec -o models/diel_elec
    aiida-dielectrics train --data dielectric_constant.csv --data mp-dfpt-extra.extxyz \\
        --target diel_ionic -o models/diel_ionic
    aiida-dielectrics train --group petousis2017 --target diel_ionic -o models/diel_ionic
    """
    from aiida_dielectrics.ml import training

    if bool(paths) == bool(group):
        raise click.ClickException('give exactly one of --data FILE or --group LABEL')
    arguments = fit_arguments(**fit_options)
    if group:
        from aiida_dielectrics.calculations.training import TrainingDataError, run_training

        try:
            node = run_training(
                group, target, **arguments, output=output, limit=limit, progress=echo_progress
            )
        except TrainingDataError as error:
            raise click.ClickException(str(error)) from None
        echo_model_node(node)
        return
    data = read_data(paths, limit)
    for reason in data.skipped:
        echo_progress(f'skipped {reason}')
    echo_progress(f'{len(data)} materials read from {", ".join(paths)}')
    ensemble = training.train_ensemble(data, target, **arguments, progress=echo_progress)
    folder = ensemble.save(output)
    test = {name: metric(value) for name, value in ensemble.card['metrics']['test'].items()}
    echo_progress(
        f'wrote {folder}: test MAE {test["mae"]}, R² {test["r2"]}, Spearman {test["spearman"]}, '
        f'σ scale {ensemble.sigma_scale:.2f} (within ±1σ {test["within_1sigma"]})'
    )


def metric(value) -> str:
    """A card's metric for the summary line; undefined ones (R² of a one-material test part) as a dash."""
    return '-' if value is None else f'{value:.3f}'


@cli.command('retrain')
@click.option(
    '--campaign',
    type=GroupParamType(),
    required=True,
    help='Campaign group whose DFPT results (DielectricData) join the training set.',
)
@click.option(
    '--base-group',
    type=GroupParamType(),
    default='petousis2017',
    show_default=True,
    help='Group of imported DielectricData/StructureData to train on as well.',
)
@click.option(
    '--target', type=click.Choice(['diel_elec', 'diel_ionic']), required=True, help='Quantity to learn.'
)
@fit_options
@click.option(
    '--limit', type=click.IntRange(1), help='Use only the first N entries of the base group (quick trials).'
)
@click.option(
    '-o', '--output', type=click.Path(file_okay=False), help='Also export the ensemble to this folder.'
)
def retrain(campaign, base_group, target, fit_options, limit, output):
    """Train a new ε model node on a campaign's DFPT results plus the base data (the learning loop).

    The stored dielectrics.model node links, through its train_model process, to every structure and
    dielectric node it was trained on; its pk is printed.

    \b
    aiida-dielectrics retrain --campaign my-campaign --target diel_ionic -o models/diel_ionic_v2
    """
    from aiida_dielectrics.calculations.training import TrainingDataError, run_retraining

    arguments = fit_arguments(**fit_options)
    try:
        node = run_retraining(
            campaign, base_group, target, **arguments, output=output, limit=limit, progress=echo_progress
        )
    except TrainingDataError as error:
        raise click.ClickException(str(error)) from None
    echo_model_node(node)
    click.echo(node.pk)


@cli.command('calibrate')
@data_option('Data file the ensembles were trained on.')
@click.option('--threads', type=click.IntRange(1), default=1, show_default=True, help='torch CPU threads.')
@click.argument('folders', nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
def calibrate(paths, threads, folders):
    """Fit the σ scale of trained ensembles on their validation part, without retraining.

    Training does this itself; this command calibrates ensembles trained before it did. Each FOLDER's
    seeded split (seed and fractions from its card, checked against the card's sha256) and members
    (checked against their sha256, never rewritten) are used as they are; only model_card.json changes:
    sigma_scale, calibration (before/after on val and test) and metrics.test with calibrated σ.

    \b
    aiida-dielectrics calibrate --data dielectric_constant.csv aiida_dielectrics/models/diel_elec
    """
    import torch

    from aiida_dielectrics.ml import training

    torch.set_num_threads(threads)
    data = read_data(paths)
    for folder in folders:
        try:
            ensemble, result = training.calibrate_folder(folder, data)
        except ValueError as exception:
            raise click.ClickException(str(exception)) from None
        if not result:
            echo_progress(f'{folder}: one member, no spread to calibrate (σ scale 1)')
            continue
        shares = {
            part: ' → '.join(
                f'{result[part][when]["within_1sigma"]:.3f}/{result[part][when]["within_2sigma"]:.3f}'
                for when in ('before', 'after')
            )
            for part in ('val', 'test')
        }
        echo_progress(
            f'{folder}: σ scale {ensemble.sigma_scale:.3f}; within ±1σ/±2σ on val {shares["val"]}, '
            f'on test {shares["test"]}; test MAE {ensemble.card["metrics"]["test"]["mae"]:.4f}'
        )


@cli.command('evaluate')
@data_option('Data file the ensembles were trained on.')
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
    f'${MODEL_DIR_ENV}, then in the package (the shipped band_gap ensemble), then on Hugging Face.',
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
    '--cv-epochs',
    type=click.IntRange(1),
    help='Epochs per CV member  [default: megnet 15, others as they were trained].',
)
@click.option('--threads', type=click.IntRange(1), default=1, show_default=True, help='torch CPU threads.')
@click.option(
    '-o', '--output', type=click.Path(dir_okay=False), required=True, help='Markdown report to write.'
)
@click.option(
    '--json', 'json_path', type=click.Path(dir_okay=False), help='Also write the raw metrics as JSON.'
)
def evaluate(paths, models, gap_model, cv_folds, cv_members, cv_epochs, threads, output, json_path):
    """Measure the ε ensembles against a mean and a composition-only baseline and write the report.

    Test-split metrics for ε_elec, ε_ionic, ε_total and Φ (with DFT and predicted gap), calibration,
    top-10 % precision, and k-fold CV (cheaper setting: --cv-members × --cv-epochs per fold).

    \b
    aiida-dielectrics evaluate --data dielectric_constant.csv -o docs/evaluation.md
    """
    import json
    import shlex
    import sys
    import time

    import torch

    from aiida_dielectrics.ml import evaluation
    from aiida_dielectrics.ml.ensemble import json_safe
    from aiida_dielectrics.ml.loading import PACKAGED_MODELS

    torch.set_num_threads(threads)
    start = time.perf_counter()
    root = pathlib.Path(models) if models else PACKAGED_MODELS
    try:
        evaluation.read_ensemble_cards(
            root
        )  # before the data are read: a wrong folder is the likelier mistake
        run = evaluation.evaluate_ensembles(
            read_data(paths), root, gap_model, cv_folds, cv_members, cv_epochs, echo_progress
        )
    except (ValueError, FileNotFoundError) as exception:
        raise click.ClickException(str(exception)) from None
    seconds = time.perf_counter() - start
    arguments = sys.argv[sys.argv.index('evaluate') + 1 :] if 'evaluate' in sys.argv else []
    command = 'aiida-dielectrics evaluate ' + ' '.join(shlex.quote(arg) for arg in arguments)
    pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(output).write_text(run.report(command, seconds, torch.get_num_threads()))
    if json_path:
        pathlib.Path(json_path).write_text(
            json.dumps(json_safe(run.results), indent=1, allow_nan=False) + '\n'
        )
    test = run.results['test']['ensemble']
    echo_progress(
        f'wrote {output} in {seconds:.0f} s: test MAE ε_elec {test["diel_elec"]["mae"]:.2f}, '
        f'ε_ionic {test["diel_ionic"]["mae"]:.2f}, ε_total {test["diel_total"]["mae"]:.2f}'
    )
