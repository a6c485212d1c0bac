"""``aiida-dielectrics predict``: screen structure files with the ML models, into a CSV (and the database)."""

from __future__ import annotations

import click

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import load_profile, read_structures, structure_files
from aiida_dielectrics.ml.loading import DEFAULT_MODEL_NAMES, MODEL_DIR_ENV


@cli.command('predict')
@click.argument('paths', nargs=-1, required=True, type=click.Path(exists=True), metavar='FILE_OR_DIR...')
@click.option(
    '-o',
    '--output',
    type=click.Path(dir_okay=False, writable=True),
    default='predictions.csv',
    show_default=True,
    help='CSV file to write, one row per structure.',
)
@click.option(
    '--model-dir',
    type=click.Path(exists=True, file_okay=False),
    envvar=MODEL_DIR_ENV,
    help=f'Folder with the models by name (env: {MODEL_DIR_ENV}); names not found there come from the '
    'package (ε and band-gap ensembles) or are downloaded from Hugging Face by matgl (MEGNet).',
)
@click.option(
    '--e-form',
    metavar='NAME_OR_DIR',
    help=f'Formation-energy model (default {DEFAULT_MODEL_NAMES["e_form"]}).',
)
@click.option(
    '--band-gap',
    metavar='NAME_OR_DIR',
    help='Band-gap model (default: the shipped band_gap ensemble, PBE; or e.g. MEGNet-MP-2019.4.1-BandGap-mfi).',
)
@click.option('--diel-elec', metavar='NAME_OR_DIR', help='ε_electronic ensemble (default: the shipped one).')
@click.option('--diel-ionic', metavar='NAME_OR_DIR', help='ε_ionic ensemble (default: the shipped one).')
@click.option('--batch-size', type=click.IntRange(1), default=64, show_default=True)
@click.option('--threads', type=click.IntRange(1), help='torch CPU threads (default: torch decides).')
@click.option(
    '--store',
    is_flag=True,
    help='Also store structures and predictions in the AiiDA profile, linked to the model nodes.',
)
@click.pass_context
def predict(
    ctx, paths, output, model_dir, e_form, band_gap, diel_elec, diel_ionic, batch_size, threads, store
):
    """Predict E_form, E_hull, band gap, ε and the figure of merit Φ for structure files.

    FILE_OR_DIR: structure files (CIF, POSCAR/CONTCAR/*.vasp, vasprun.xml, pymatgen JSON, (ext)XYZ with
    one crystal per frame, …); directories are searched recursively for files with those names. A
    structure that cannot be predicted (unreadable, overlapping atoms, unsupported element, …) gets its
    reason in the `reason` column and empty values; the command fails only if nothing could be predicted.
    E_hull is taken against the predictions themselves (elements at 0 eV/atom).

    \b
    aiida-dielectrics predict candidates/ -o predictions.csv --model-dir ~/models
    """
    import pandas as pd
    import torch

    from aiida_dielectrics.ml import inference, loading

    if threads:
        torch.set_num_threads(threads)
    names = {
        target: value
        for target, value in (
            ('e_form', e_form),
            ('band_gap', band_gap),
            ('diel_elec', diel_elec),
            ('diel_ionic', diel_ionic),
        )
        if value
    }
    try:
        model_sets = loading.load_predictors(model_dir, names)
    except (FileNotFoundError, ValueError, RuntimeError) as exception:
        raise click.ClickException(
            f'cannot load a model ({exception}); point --model-dir or AIIDA_DIELECTRICS_MODEL_DIR at a '
            'folder of models'
        ) from exception
    for target in ('diel_elec', 'diel_ionic'):
        if target not in model_sets:
            click.echo(f'Warning: no {target} ensemble found; its columns stay empty', err=True)

    files = structure_files(paths)
    if not files:
        raise click.ClickException('no structure files found in the given directories')
    entries = [entry for path in files for entry in read_structures(path)]
    readable = [i for i, (_, structure, _) in enumerate(entries) if structure is not None]
    structures = [entries[i][1] for i in readable]

    if not structures:
        table = pd.DataFrame(columns=inference.COLUMNS)
    elif store:
        table = stored_table(ctx, structures, model_sets, batch_size)
    else:
        table = inference.predict(structures, model_sets, batch_size=batch_size, progress=True)
    table.index = readable
    table = table.reindex(range(len(entries))).astype({'reason': object})
    for i, (_, _, reason) in enumerate(entries):
        if reason is not None:
            table.loc[i, 'reason'] = reason
    table.insert(0, 'file', [label for label, _, _ in entries])
    table.to_csv(output, index=False)

    failed = table['reason'].notna()
    click.echo(f'{int((~failed).sum())} of {len(entries)} structures predicted -> {output}', err=True)
    for row in table[failed].itertuples():
        click.echo(f'  skipped {row.file}: {row.reason}', err=True)
    if failed.all():
        raise click.ClickException('nothing could be predicted')


def stored_table(ctx, structures, model_sets, batch_size: int):
    """Predict through the AiiDA process and read the table back from the stored prediction nodes."""
    import pandas as pd
    from aiida.orm import StructureData

    from aiida_dielectrics.calculations import predictions
    from aiida_dielectrics.ml import inference

    load_profile(ctx)
    missing = [target for target in predictions.REQUIRED_MODELS if target not in model_sets]
    if missing:
        raise click.ClickException(f'--store needs models for {", ".join(missing)} (see --model-dir)')
    models = {
        target: predictions.model_node(target, model_set.source, model_set.architecture)
        for target, model_set in model_sets.items()
    }
    keys = [f's{i}' for i in range(len(structures))]
    nodes = {key: StructureData(pymatgen=structure) for key, structure in zip(keys, structures, strict=True)}
    outputs, process = predictions.run_prediction(nodes, models, batch_size)
    click.echo(f'stored {len(outputs["predictions"])} predictions from process <{process.pk}>', err=True)
    rows = []
    skipped = outputs['report'].get_dict()['skipped']
    for key, structure in zip(keys, structures, strict=True):
        node = outputs['predictions'].get(key)
        if node is None:
            rows.append({'formula': structure.composition.reduced_formula, 'reason': skipped.get(key)})
        else:
            rows.append({column: node.base.attributes.get(column, None) for column in inference.COLUMNS})
    return pd.DataFrame(rows, columns=inference.COLUMNS)
