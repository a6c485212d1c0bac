"""``export``: a campaign's group with its provenance as an AiiDA archive, to hand to a colleague."""

from __future__ import annotations

import click

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import GroupParamType


@cli.command('export')
@click.argument('group', type=GroupParamType())
@click.option('-o', '--output', type=click.Path(dir_okay=False), default='campaign.aiida', show_default=True)
@click.option('-f', '--force', is_flag=True, help='Overwrite an existing file.')
@click.pass_context
def export(ctx, group, output, force):
    """Write GROUP, its nodes and their provenance to an AiiDA archive (like `verdi archive create -G`).

    The archive holds the group and the provenance of its nodes: the processes that created them with
    their inputs (predictions keep their structures and models) and the work chains that returned
    them (DFPT results keep their work chain and its input structure). Import elsewhere with
    `verdi archive import FILE`; the same as `verdi archive create -G GROUP --return-backward FILE`.
    """
    import pathlib

    from aiida_dielectrics.tools.archive import export_group

    if pathlib.Path(output).exists() and not force:
        raise click.ClickException(f'{output} exists; use --force to overwrite it')
    path, count = export_group(group, output)
    click.echo(f'Wrote {path}: group {group.label!r} ({count} nodes) with provenance.')
