"""``setup``: the embedded default in one idempotent command."""

from __future__ import annotations

import click

from aiida_dielectrics.cli import cli


@cli.command('setup')
@click.option(
    '--pseudo-dir',
    type=click.Path(exists=True, file_okay=False),
    help='Folder of UPF files to install as the pseudo family. Without it, PseudoDojo is downloaded.',
)
@click.option(
    '--pseudo-hints',
    type=click.Path(exists=True, dir_okay=False),
    help='PseudoDojo .djson with recommended cutoffs for the family (optional).',
)
@click.option(
    '--pseudo-family', default='PseudoDojo/0.4/PBE/SR/standard/upf', show_default=True, help='Family label.'
)
@click.pass_context
def setup(ctx, pseudo_dir, pseudo_hints, pseudo_family):
    """Make everything ready, creating only what is missing.

    \b
    1. an AiiDA profile: the default one (any storage and broker), or a new `verdi presto` profile
       (SQLite + ZeroMQ broker);
    2. a `localhost` computer (core.local, core.direct), as `verdi presto` makes it;
    3. a pseudopotential family (aiida-pseudo) from --pseudo-dir, or PseudoDojo downloaded;
    4. `pw@localhost` and `ph@localhost` codes for the pw.x and ph.x on PATH;
    5. stored processes whose entry point moved get the new one (`tools.migrations`).
    """
    from aiida_dielectrics.tools import environment
    from aiida_dielectrics.tools.migrations import migrate_process_types

    try:
        profile, created = environment.ensure_profile(ctx.find_root().obj.get('profile'))
        click.echo(f'Profile `{profile.name}`: {"created with verdi presto" if created else "exists"}.')
        computer, created = environment.ensure_localhost()
        click.echo(
            f'Computer `{computer.label}`: {"created" if created else "exists"} (work dir {computer.get_workdir()}).'
        )
        if pseudo_dir is None:
            if pseudo_hints is not None:
                raise click.UsageError('--pseudo-hints needs --pseudo-dir')
            environment.install_pseudodojo_online()
            click.echo('Pseudo family PseudoDojo 0.4 PBE SR standard: installed or present.')
        else:
            family, created = environment.install_pseudo_family(pseudo_dir, pseudo_family, pseudo_hints)
            click.echo(f'Pseudo family `{family.label}`: {"installed" if created else "exists"}.')
        codes = environment.register_qe_codes()
        migrated = migrate_process_types()
    except environment.SetupError as exception:
        raise click.ClickException(str(exception)) from exception
    for code, created in codes.values():
        click.echo(f'Code `{code.full_label}`: {"registered" if created else "exists"}.')
    missing = [exe for exe, (label, _) in environment.QE_CODES.items() if label not in codes]
    if missing:
        click.echo(f'Not on PATH, no code registered: {", ".join(missing)}.', err=True)
    if migrated:
        click.echo(f'Process nodes moved to their new entry point: {migrated}.')
