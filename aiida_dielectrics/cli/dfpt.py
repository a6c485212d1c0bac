"""``dfpt``: verify one structure by DFPT with any installed engine, and print the result table."""

from __future__ import annotations

import re

import click
import numpy as np

from aiida_dielectrics.cli import cli
from aiida_dielectrics.cli.utils import load_profile
from aiida_dielectrics.workflows.dfpt import engines, load_engine


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


def reason(exception: Exception) -> str:
    """The last line of an error, without plumpy's ``Error occurred validating port '...':`` prefix."""
    line = str(exception).strip().splitlines()[-1]
    return re.sub(r"^Error occurred validating port '[^']*': ", '', line)


def engine_codes(workchain, given: tuple[str, ...]) -> dict:
    """``ROLE=LABEL`` pairs over the engine's default code labels, loaded, or one clear error line."""
    from aiida.common.exceptions import MultipleObjectsError, NotExistent
    from aiida.orm import load_code

    labels = {role: label for role, label in workchain.CODES.items() if label}
    for pair in given:
        role, _, label = pair.partition('=')
        if role not in workchain.CODES or not label:
            raise click.BadParameter(
                f'`{pair}`: give ROLE=LABEL with ROLE one of {", ".join(workchain.CODES)}',
                param_hint='--code',
            )
        labels[role] = label
    missing = sorted(set(workchain.CODES) - set(labels))
    if missing:
        raise click.ClickException(
            f'this engine needs --code {missing[0]}=LABEL (a code for its {missing[0]} runs)'
        )
    codes = {}
    for role, label in labels.items():
        try:
            codes[role] = load_code(label)
        except (NotExistent, MultipleObjectsError) as exception:
            raise click.ClickException(
                f'no unique code `{label}` for {role}; `aiida-dielectrics setup` registers the QE codes on localhost'
            ) from exception
    return codes


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
    if structure is not None:
        volume = structure.get_cell_volume() / len(structure.sites)
        rows.append(('volume per atom (Å³)', f'{volume:.3f}'))
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
@click.option(
    '--engine',
    type=click.Choice(engines()),
    default='qe',
    show_default=True,
    help='DFPT engine (entry points).',
)
@click.option(
    '--protocol',
    type=click.Choice(('fast', 'moderate', 'precise', 'paper')),
    default='moderate',
    show_default=True,
    help='Protocol: fast, moderate, precise (every engine); paper (vasp: the original study).',
)
@click.option(
    '--potential-family',
    default=None,
    help="Pseudo family (qe) or POTCAR family (vasp); default: the engine's.",
)
@click.option(
    '--code',
    'codes',
    multiple=True,
    metavar='ROLE=LABEL',
    help='A code of the engine by role, repeatable: qe uses pw and ph (default pw@localhost, ph@localhost), vasp uses vasp.',
)
@click.option(
    '--relax/--no-relax',
    default=True,
    show_default=True,
    help='vc-relax at the DFT level first (off only for a structure already at its DFT equilibrium).',
)
@click.option('-n', '--num-mpiprocs', type=click.IntRange(min=1), default=None, help='MPI processes per run.')
@click.option(
    '--submit', is_flag=True, help='Submit to the daemon and return at once instead of running here.'
)
@click.pass_context
def dfpt(ctx, structure_file, engine, protocol, potential_family, codes, relax, num_mpiprocs, submit):
    """Compute ε∞, ε_ion, Born charges, Γ phonons and the band gap of STRUCTURE_FILE by DFPT.

    Any file pymatgen reads works (CIF, POSCAR, …). The cell is symmetrised to its space group and
    relaxed at the DFT level first. Without --submit the work chain runs in this process and the result
    table is printed; with --submit it goes to the daemon and the command prints its pk.
    """
    load_profile(ctx)
    from aiida.engine import run_get_node
    from aiida.engine import submit as submit_process

    structure = read_structure(structure_file)
    workchain = load_engine(engine)
    options = {}
    if num_mpiprocs is not None:
        options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': num_mpiprocs}}
    try:
        builder = workchain.get_builder_from_protocol(
            structure,
            codes=engine_codes(workchain, codes),
            protocol=protocol,
            potential_family=potential_family,
            relax=relax,
            options=options,
        )
        node = submit_process(builder) if submit else None
    except ValueError as exception:  # protocol, family or the work chain's input validation
        raise click.ClickException(reason(exception)) from exception
    if submit:
        click.echo(
            f'Submitted {node.process_label}<{node.pk}>; follow it with `verdi process status {node.pk}`.'
        )
        return
    try:
        results, node = run_get_node(builder)
    except ValueError as exception:
        raise click.ClickException(reason(exception)) from exception
    if not node.is_finished_ok:
        raise click.ClickException(
            f'{node.process_label}<{node.pk}> failed with exit status {node.exit_status}: {node.exit_message}'
        )
    click.echo(
        f'{node.process_label}<{node.pk}> finished; dielectrics.dielectric<{results["dielectric"].pk}>'
    )
    click.echo(result_table(results['dielectric'], results.get('structure')))
