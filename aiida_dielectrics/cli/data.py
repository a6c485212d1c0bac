"""``import`` and ``query``: bring published dielectric data in and select from everything stored."""

from __future__ import annotations

import json
import time

import click

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import load_profile
from aiida_dielectrics.tools.query import COLUMNS, NODE_CLASSES

FORMATS = ('table', 'csv', 'json')


@cli.group('import')
def import_group():
    """Import published dielectric data sets as provenance-tracked nodes."""


def group_option(default: str):
    return click.option(
        '-G', '--group', 'group_label', default=default, show_default=True, help='Group for the nodes.'
    )


def run_and_report(ctx, source: str, path, group_label: str):
    """Run the import of ``source`` and print what it did: bad rows on stderr, then one summary line."""
    from aiida_dielectrics.calculations.imports import run_import

    load_profile(ctx)
    start = time.perf_counter()
    try:
        report, node = run_import(source, path, group_label)
    except ValueError as exception:
        raise click.ClickException(str(exception)) from exception
    elapsed = time.perf_counter() - start
    for row in report['skipped']:
        click.echo(f'Skipped line {row["line"]}: {row["reason"]}', err=True)
    if node is None:
        click.echo(
            f'Nothing to do: this file was imported before ({report["already_present"]} entries present).'
        )
        return
    click.echo(
        f'Imported {report["imported"]} entries into group `{group_label}` in {elapsed:.1f} s '
        f'({report["already_present"]} already present, {len(report["skipped"])} skipped); process pk {node.pk}.'
    )


@import_group.command('petousis2017')
@click.argument('path', type=click.Path(exists=True, dir_okay=False))
@group_option('petousis2017')
@click.pass_context
def import_petousis2017(ctx, path, group_label):
    """Import the Petousis et al. (2017) MP DFPT data (matminer's dielectric_constant.csv).

    Each valid row becomes a StructureData and a dielectrics.dielectric node (engine `imported`), made
    by one calcfunction whose input is the CSV file. Rows imported before are not duplicated; a bad row
    is reported with its line and reason and skipped.
    """
    run_and_report(ctx, 'petousis2017', path, group_label)


@import_group.command('mp-dfpt-extra')
@click.argument('path', type=click.Path(exists=True, dir_okay=False))
@group_option('mp-dfpt-extra')
@click.pass_context
def import_mp_dfpt_extra(ctx, path, group_label):
    """Import the mp-dfpt-extra MP DFPT results (mp-dfpt-extra.extxyz: ε∞ from the polarisability, ε_ion,
    Born charges; no band gaps).

    Each valid frame becomes a StructureData and a dielectrics.dielectric node (engine `imported`, Born
    charges as an array, no band gap and so no Φ), made by one calcfunction whose input is the file.
    Materials are identified by formula and structure hash: frames imported before, from this file or
    another, are not duplicated; a bad frame is reported with its line and reason and skipped.
    """
    run_and_report(ctx, 'mp-dfpt-extra', path, group_label)


def positive(ctx, param, value):
    if value is not None and value < 0:
        raise click.BadParameter('must be >= 0')
    return value


@cli.command('query')
@click.option('--fom-min', type=float, help='Keep figure of merit Φ = ε_total·E_gap > this (eV).')
@click.option(
    '--e-hull-max',
    type=float,
    callback=positive,
    help='Keep E_hull < this (eV/atom). Nodes without a hull energy (e.g. imported data) never pass.',
)
@click.option('--band-gap-min', type=float, callback=positive, help='Keep band gap >= this (eV).')
@click.option('--band-gap-max', type=float, callback=positive, help='Keep band gap <= this (eV).')
@click.option('--diel-total-min', type=float, help='Keep ε_total >= this.')
@click.option('--formula', help='Keep this reduced formula only, e.g. MgO.')
@click.option('--engine', type=click.Choice(['vasp', 'qe', 'imported']), help='Keep results of this engine.')
@click.option('-G', '--group', help='Only nodes in this group.')
@click.option('--kind', type=click.Choice(list(NODE_CLASSES)), default='dielectric', show_default=True)
@click.option('--order-by', default='fom', show_default=True, help='Attribute to sort by, descending.')
@click.option('-n', '--limit', type=click.IntRange(min=1), help='Print at most this many rows.')
@click.option(
    '-f', '--format', 'output_format', type=click.Choice(FORMATS), default='table', show_default=True
)
@click.pass_context
def query(ctx, kind, group, order_by, limit, output_format, **bounds):
    """Select dielectric results (or ML predictions) by figure of merit, hull energy, gap, ….

    The original study's MongoDB query {"e_above_hull_pbe": {"$lt": 0.1}, "fom_pbe": {"$gt": 200}} is
    `aiida-dielectrics query --e-hull-max 0.1 --fom-min 200`.
    """
    from aiida_dielectrics.tools.query import query_dielectrics

    if order_by not in COLUMNS[kind]:
        raise click.BadParameter(f'choose one of {", ".join(COLUMNS[kind])}', param_hint='--order-by')
    load_profile(ctx)
    try:
        rows = query_dielectrics(kind=kind, group=group, order_by=order_by, limit=limit, **bounds)
    except ValueError as exception:
        raise click.ClickException(str(exception)) from exception
    if output_format == 'json':
        click.echo(json.dumps(rows, indent=2))
    elif output_format == 'csv':
        import csv
        import sys

        writer = csv.DictWriter(sys.stdout, fieldnames=['pk', 'uuid', *COLUMNS[kind]])
        writer.writeheader()
        writer.writerows(rows)
    elif rows:
        from tabulate import tabulate

        table = [{key: value for key, value in row.items() if key != 'uuid'} for row in rows]
        click.echo(tabulate(table, headers='keys', floatfmt='.2f', missingval='-'))
    if not rows and output_format == 'table':
        click.echo('No results match these filters.', err=True)
