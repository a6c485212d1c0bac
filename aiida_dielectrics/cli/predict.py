"""``aiida-dielectrics predict``: screen structure files with the ML models, into a CSV (and the database)."""

from __future__ import annotations

import pathlib

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
@click.option(
    '--relax',
    is_flag=True,
    help='Relax each structure first with a universal potential (in the AiiDA profile: a structure relaxed '
    'before with the same settings is not relaxed again), predict on the relaxed structure and add its '
    'E_hull, energy and volume change.',
)
@click.option('--potential', metavar='NAME', help='With --relax: sevennet-0 (default) or chgnet.')
@click.option(
    '--hull-entries',
    type=click.Path(exists=True, dir_okay=False),
    help='With --relax: a JSON file of pymatgen entries (e.g. Materials Project entries saved from mp-api) '
    'for the hull; default: the offline default hull.',
)
@click.option(
    '--relaxed-dir',
    type=click.Path(file_okay=False),
    help='With --relax: write each relaxed structure as DIR/<input stem>.cif.',
)
@click.pass_context
def predict(
    ctx,
    paths,
    output,
    model_dir,
    e_form,
    band_gap,
    diel_elec,
    diel_ionic,
    batch_size,
    threads,
    store,
    relax,
    potential,
    hull_entries,
    relaxed_dir,
):
    """Predict E_form, band gap, ε and the figure of merit Φ for structure files (and, with --relax, E_hull).

    FILE_OR_DIR: structure files (CIF, POSCAR/CONTCAR/*.vasp, vasprun.xml, pymatgen JSON, (ext)XYZ with
    one crystal per frame, …); directories are searched recursively for files with those names. A
    structure that cannot be predicted (unreadable, overlapping atoms, unsupported element, …) gets its
    reason in the `reason` column and empty values; the command fails only if nothing could be predicted.

    E_hull (`e_above_hull`, eV/atom) needs --relax: the relaxed energy on the MP2020 scale against the
    hull of --hull-entries or, without it, the offline default hull (the potential's energies of the
    element reference states and of the stored known structures in the inputs' chemical systems; see
    docs/topics/stability.md for what it does not cover); the input structures are part of the hull too.
    Without --relax it stays empty: a predicted E_form of an unrelaxed cell against a hull of the inputs
    alone would call nearly every structure stable. `e_form` is the formation energy against the
    elements. With --relax the CSV also has `energy` and `energy_mp` (eV/atom), `volume_change`
    (V_relaxed/V_input − 1), `relax_reason` and, with --relaxed-dir, `relaxed_file`.

    \b
    aiida-dielectrics predict candidates/ -o predictions.csv --model-dir ~/models
    aiida-dielectrics predict candidates/ --relax --hull-entries mp-entries.json --relaxed-dir relaxed/
    """
    given = [
        name
        for name, value in (
            ('--potential', potential),
            ('--hull-entries', hull_entries),
            ('--relaxed-dir', relaxed_dir),
        )
        if value
    ]
    if given and not relax:
        raise click.ClickException(f'{", ".join(given)} needs --relax')
    if relax:
        check_relax_options(potential, hull_entries)

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
    entries, names = [], []
    for path in files:
        frames = read_structures(path)
        entries.extend(frames)
        names.extend([path.stem] if len(frames) == 1 else [f'{path.stem}_{i}' for i in range(len(frames))])
    readable = [i for i, (_, structure, _) in enumerate(entries) if structure is not None]
    structures = [entries[i][1] for i in readable]

    relaxed = None
    if relax and structures:
        relaxed = relax_and_measure(ctx, structures, potential, hull_entries, threads)
        # What the models see: the relaxed structure, where the potential gave one.
        predictable = [i for i, row in enumerate(relaxed['rows']) if row['structure'] is not None]
        structures = [relaxed['rows'][i]['structure'] for i in predictable]
    else:
        predictable = list(range(len(structures)))

    if not structures:
        table = pd.DataFrame(columns=inference.COLUMNS)
    elif store:
        nodes = relaxed['nodes'] if relaxed else None
        hull = relaxed['e_above_hull'] if relaxed else None
        table = stored_table(ctx, structures, model_sets, batch_size, nodes, hull)
    else:
        table = inference.predict(structures, model_sets, batch_size=batch_size, progress=True)
        if relaxed:
            table['e_above_hull'] = [relaxed['rows'][i]['e_above_hull'] for i in predictable]
    table.index = [readable[i] for i in predictable]
    table = table.reindex(range(len(entries))).astype({'reason': object})
    for i, (_, _, reason) in enumerate(entries):
        if reason is not None:
            table.loc[i, 'reason'] = reason
    table.insert(0, 'file', [label for label, _, _ in entries])
    if relaxed:
        columns = pd.DataFrame([row['columns'] for row in relaxed['rows']], index=readable)
        table = table.join(columns.reindex(range(len(entries))))
        for i, row in zip(readable, relaxed['rows'], strict=True):
            if row['structure'] is None:
                table.loc[i, 'reason'] = f'not relaxed: {row["columns"]["relax_reason"]}'
        if relaxed_dir:
            table['relaxed_file'] = write_relaxed(relaxed_dir, readable, relaxed['rows'], names, len(entries))
    table.to_csv(output, index=False)

    failed = table['reason'].notna()
    click.echo(f'{int((~failed).sum())} of {len(entries)} structures predicted -> {output}', err=True)
    for row in table[failed].itertuples():
        click.echo(f'  skipped {row.file}: {row.reason}', err=True)
    if failed.all():
        raise click.ClickException('nothing could be predicted')


def check_relax_options(potential, hull_entries):
    """Refuse an unknown potential or an unreadable entries file before anything is loaded."""
    from aiida_dielectrics.calculations.relax import settings
    from aiida_dielectrics.science.hull import load_entries

    try:
        settings(**({} if potential is None else {'potential': potential}))
    except ValueError as exception:
        raise click.ClickException(f'--potential: {exception}') from None
    if hull_entries:
        try:
            load_entries(hull_entries)
        except ValueError as exception:
            raise click.ClickException(f'--hull-entries: {exception}') from None


def relax_and_measure(ctx, structures, potential, hull_entries, threads) -> dict:
    """Relax ``structures`` through the AiiDA layer (stored, reused by content) and take E_hull against
    the chosen hull. Returns ``rows`` (per structure: the relaxed pymatgen structure or ``None``, its
    E_hull, the CSV columns), and the relaxed ``nodes`` and ``e_above_hull`` nodes by key for ``--store``."""
    from aiida.orm import SinglefileData, StructureData

    from aiida_dielectrics.calculations import hull, relax

    load_profile(ctx)
    options = {} if potential is None else {'potential': potential}
    keys = [f's{i}' for i in range(len(structures))]
    inputs = {key: StructureData(pymatgen=structure) for key, structure in zip(keys, structures, strict=True)}
    found = relax.relax(inputs, threads=threads, **options)
    if hull_entries:
        reference = hull.hull_from_entries(SinglefileData(pathlib.Path(hull_entries).resolve()))
    else:
        compositions = [structure.composition for structure in structures]
        reference = hull.build_default_hull(compositions, threads=threads, **options)
    outputs, _ = hull.run_hull_energies(reference, {key: found[key]['results'] for key in keys})
    energies = outputs.get('e_above_hull', {})
    click.echo(
        f'relaxed {sum("relaxed" in found[key] for key in keys)} of {len(keys)}; E_hull of '
        f'{len(energies)} against the {reference["source"]} hull<{reference.pk}>',
        err=True,
    )
    rows = []
    for key in keys:
        result = found[key]['results'].get_dict()
        node = found[key].get('relaxed')
        rows.append(
            {
                'structure': None if node is None else node.get_pymatgen(),
                'e_above_hull': energies[key].value if key in energies else None,
                'columns': {
                    'energy': result['energy'],
                    'energy_mp': result['energy_mp'],
                    'volume_change': result['volume_change'],
                    'relax_reason': result['reason'],
                },
            }
        )
    nodes = {key: found[key]['relaxed'] for key in keys if 'relaxed' in found[key]}
    return {
        'rows': rows,
        'nodes': list(nodes.values()),
        'e_above_hull': list(energies.get(key) for key in nodes),
    }


def write_relaxed(folder, readable, rows, names, count: int) -> list:
    """Write each relaxed structure as ``folder/<input stem>.cif`` (``-2``… where stems repeat); the
    paths by entry (``None`` where nothing was written)."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, used = [None] * count, set()
    for index, row in zip(readable, rows, strict=True):
        if row['structure'] is None:
            continue
        name, number = names[index], 1
        while name in used:
            number += 1
            name = f'{names[index]}-{number}'
        used.add(name)
        path = folder / f'{name}.cif'
        row['structure'].to(filename=str(path))
        written[index] = str(path)
    return written


def stored_table(ctx, structures, model_sets, batch_size: int, nodes=None, e_above_hull=None):
    """Predict through the AiiDA process and read the table back from the stored prediction nodes.

    ``nodes``: the structures' nodes where they exist (the relaxed ones), ``e_above_hull`` their hull
    energies (``Float`` or ``None``), in the same order."""
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
    nodes = nodes or [StructureData(pymatgen=structure) for structure in structures]
    hull = {key: value for key, value in zip(keys, e_above_hull or [], strict=False) if value is not None}
    outputs, process = predictions.run_prediction(
        dict(zip(keys, nodes, strict=True)), models, batch_size, e_above_hull=hull
    )
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
