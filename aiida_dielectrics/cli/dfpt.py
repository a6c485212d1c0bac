"""``dfpt``: verify one structure by DFPT with Quantum ESPRESSO or VASP, and print the result table."""

from __future__ import annotations

import click
import numpy as np

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import load_profile

ENGINES = ('qe', 'vasp')


def read_structure(path: str):
    """A ``StructureData`` from any file pymatgen reads (CIF, POSCAR, extxyz…), or one clear error line."""
    from aiida.orm import StructureData
    from pymatgen.core import Structure

    try:
        structure = Structure.from_file(path)
    except Exception as exception:  # pymatgen raises many types for unreadable files
        reason = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
        raise click.ClickException(f'cannot read a crystal structure from {path}: {reason}') from exception
    if not structure.is_ordered:
        raise click.ClickException(f'{path} holds a disordered structure; DFPT needs an ordered one')
    return StructureData(pymatgen=structure)


def load_code(label: str, option: str):
    from aiida.common.exceptions import MultipleObjectsError, NotExistent
    from aiida.orm import load_code as aiida_load_code

    try:
        return aiida_load_code(label)
    except (NotExistent, MultipleObjectsError) as exception:
        raise click.ClickException(
            f'no unique code `{label}` ({option}); `aiida-dielectrics setup` registers pw@localhost and ph@localhost'
        ) from exception


def qe_builder(structure, protocol, options, relax, pseudo_family, code_pw, code_ph, **_):
    from aiida_dielectrics.workflows.dfpt.qe.workchain import DfptQeWorkChain

    return DfptQeWorkChain.get_builder_from_protocol(
        load_code(code_pw, '--code-pw'),
        load_code(code_ph, '--code-ph'),
        structure,
        protocol=protocol,
        pseudo_family=pseudo_family,
        relax=relax,
        options=options,
    )


def vasp_builder(structure, protocol, options, relax, potential_family, code_vasp, **_):
    from aiida_dielectrics.workflows.dfpt.vasp.workchain import DfptVaspWorkChain

    if code_vasp is None:
        raise click.ClickException('--engine vasp needs --code-vasp (a code for the vasp.vasp plugin)')
    return DfptVaspWorkChain.get_builder_from_protocol(
        load_code(code_vasp, '--code-vasp'),
        structure,
        protocol=protocol,
        potential_family=potential_family,
        relax=relax,
        options=options,
    )


BUILDERS = {'qe': qe_builder, 'vasp': vasp_builder}


def result_table(dielectric, structure=None) -> str:
    """The scalar summary and the tensors of one ``dielectrics.dielectric`` node as aligned text."""
    attributes = dielectric.base.attributes
    rows = [
        ('formula', dielectric.formula),
        ('engine', dielectric.engine),
        ('band gap (eV)', f'{dielectric.band_gap:.3f}'),
        ('ε∞ (mean eigenvalue)', f'{dielectric.diel_elec:.3f}'),
        ('ε_ion (mean eigenvalue)', f'{dielectric.diel_ionic:.3f}'),
        ('ε0 = ε∞ + ε_ion', f'{dielectric.diel_total:.3f}'),
        ('figure of merit Φ (eV)', f'{dielectric.fom:.1f}'),
    ]
    if 'dynamically_stable' in attributes.all:
        rows.append(('dynamically stable', str(attributes.get('dynamically_stable'))))
    if 'born_charge_neutrality_violation' in attributes.all:
        rows.append(
            ('Σ Z* before correction (e)', f'{attributes.get("born_charge_neutrality_violation"):.4f}')
        )
    width = max(len(name) for name, _ in rows)
    lines = [f'{name:<{width}}  {value}' for name, value in rows]
    for name in ('epsilon_electronic', 'epsilon_ionic'):
        lines.append(f'{name}:')
        lines.extend('  ' + '  '.join(f'{x:9.3f}' for x in row) for row in dielectric.get_array(name))
    names = dielectric.get_arraynames()
    if 'born_charges' in names:
        lines.append('Born charges (diagonal, e):')
        symbols = [site.kind_name for site in structure.sites] if structure is not None else []
        for index, charge in enumerate(dielectric.get_array('born_charges')):
            label = symbols[index] if index < len(symbols) else str(index + 1)
            lines.append(f'  {label:<4}' + '  '.join(f'{x:7.3f}' for x in np.diag(charge)))
    if 'phonon_frequencies_gamma' in names:
        frequencies = ' '.join(f'{x:.1f}' for x in dielectric.get_array('phonon_frequencies_gamma'))
        lines.append(f'Γ phonon frequencies (cm⁻¹): {frequencies}')
    return '\n'.join(lines)


@cli.command('dfpt')
@click.argument('structure_file', type=click.Path(exists=True, dir_okay=False))
@click.option('--engine', type=click.Choice(ENGINES), default='qe', show_default=True, help='DFPT code.')
@click.option(
    '--protocol',
    default='moderate',
    show_default=True,
    help='Protocol of the engine: fast, moderate, precise (qe); fast, moderate, paper (vasp).',
)
@click.option(
    '--pseudo-family',
    default='PseudoDojo/0.4/PBE/SR/standard/upf',
    show_default=True,
    help='aiida-pseudo family (qe).',
)
@click.option('--code-pw', default='pw@localhost', show_default=True, help='pw.x code (qe).')
@click.option('--code-ph', default='ph@localhost', show_default=True, help='ph.x code (qe).')
@click.option('--potential-family', default='PBE.54', show_default=True, help='POTCAR family (vasp).')
@click.option('--code-vasp', default=None, help='vasp.vasp code (vasp).')
@click.option('--relax/--no-relax', default=False, show_default=True, help='Relax cell and positions first.')
@click.option('-n', '--num-mpiprocs', type=click.IntRange(min=1), default=None, help='MPI processes per run.')
@click.option(
    '--submit', is_flag=True, help='Submit to the daemon and return at once instead of running here.'
)
@click.pass_context
def dfpt(ctx, structure_file, engine, protocol, num_mpiprocs, submit, **engine_options):
    """Compute ε∞, ε_ion, Born charges, Γ phonons and the band gap of STRUCTURE_FILE by DFPT.

    Any file pymatgen reads works (CIF, POSCAR, …). Without --submit the work chain runs in this process
    and the result table is printed; with --submit it goes to the daemon and the command prints its pk.
    """
    structure = read_structure(structure_file)
    load_profile(ctx)
    from aiida.engine import run_get_node
    from aiida.engine import submit as submit_process

    options = {}
    if num_mpiprocs is not None:
        options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': num_mpiprocs}}
    try:
        builder = BUILDERS[engine](structure, protocol, options, **engine_options)
    except (ValueError, ImportError) as exception:
        raise click.ClickException(str(exception).splitlines()[0]) from exception

    if submit:
        node = submit_process(builder)
        click.echo(
            f'Submitted {node.process_label}<{node.pk}>; follow it with `verdi process status {node.pk}`.'
        )
        return
    results, node = run_get_node(builder)
    if not node.is_finished_ok:
        raise click.ClickException(
            f'{node.process_label}<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}'
        )
    click.echo(
        f'{node.process_label}<{node.pk}> finished; dielectrics.dielectric<{results["dielectric"].pk}>'
    )
    click.echo(result_table(results['dielectric'], results.get('structure')))
