"""``plot``: the campaign's interactive Pareto front as one self-contained HTML file."""

from __future__ import annotations

import click

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import load_profile


@cli.command('plot')
@click.option('-G', '--group', required=True, help='Campaign group with predictions and DFPT results.')
@click.option(
    '-B',
    '--background',
    default='petousis2017',
    show_default=True,
    help='Group of reference DFPT data drawn behind (skipped with a note if it does not exist).',
)
@click.option(
    '-o',
    '--output',
    type=click.Path(dir_okay=False),
    default='pareto.html',
    show_default=True,
    help='HTML file.',
)
@click.pass_context
def plot(ctx, group, background, output):
    """Write the interactive Pareto front: ε_total vs E_gap, Φ iso-lines, prediction → DFPT arrows.

    Opens offline in any browser (plotly.js is inside the file). Hover a point for formula,
    protostructure, Φ, E_hull, pk and uuid; the non-dominated fronts are drawn as staircases.
    """
    from aiida.orm import Group, QueryBuilder

    from aiida_dielectrics.tools.plot import campaign_tables, pareto_figure, write_html

    load_profile(ctx)

    def exists(label):
        return bool(QueryBuilder().append(Group, filters={'label': label}).count())

    if not exists(group):
        raise click.ClickException(f'no group with label {group!r}')
    if background and not exists(background):
        click.echo(f'Note: no group {background!r}; plotting without reference data.', err=True)
        background = None
    reference, predictions, results = campaign_tables(group, background)
    try:
        figure = pareto_figure(reference, predictions, results, title=f'Campaign {group}')
    except ValueError as exception:
        raise click.ClickException(str(exception)) from exception
    write_html(figure, output)
    click.echo(
        f'Wrote {output}: {len(predictions)} predictions, {len(results)} DFPT results, '
        f'{len(reference)} reference points.'
    )
