"""Idempotent set-up: a profile (the default one, or a new ``verdi presto`` profile), a ``localhost``
computer, a pseudo family, QE codes.

Every function here can run again and again: it finds what exists and creates only what is missing, so
the same set-up works on a ``verdi presto`` profile and on any other (PostgreSQL + RabbitMQ, …).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess

#: QE executables registered as codes when they are on PATH: executable → (code label, calculation plugin).
QE_CODES = {'pw.x': ('pw', 'quantumespresso.pw'), 'ph.x': ('ph', 'quantumespresso.ph')}

#: Norm-conserving pseudos need a density cutoff of four times the wave-function cutoff.
NC_DUAL = 4.0

#: Lets Open MPI start as root (it refuses otherwise) and keeps one thread per MPI rank.
ROOT_PREPEND_TEXT = 'export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1'


class SetupError(RuntimeError):
    """Something in the environment prevents the set-up; the message says what to do."""


def ensure_profile(profile_name: str | None = None):
    """Load ``profile_name`` (or the default profile); create a ``verdi presto`` profile if there is none."""
    from aiida import load_profile
    from aiida.common.exceptions import ConfigurationError, ProfileConfigurationError
    from aiida.manage.configuration import get_config

    try:
        config = get_config(create=True)
        wanted = profile_name or config.default_profile_name
        if wanted in config.profile_names:
            return load_profile(wanted, allow_switch=True), False
    except (ConfigurationError, ProfileConfigurationError) as exception:
        raise SetupError(f'the AiiDA configuration cannot be read: {exception}') from exception

    command = ['verdi', 'presto', '--use-zeromq', '--non-interactive']
    if profile_name:
        command += ['--profile-name', profile_name]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SetupError(f'`{" ".join(command)}` failed: {result.stderr.strip() or result.stdout.strip()}')
    from aiida.manage.configuration import reset_config

    reset_config()
    return load_profile(profile_name or get_config().default_profile_name, allow_switch=True), True


def read_pseudodojo_hints(path: str | pathlib.Path, elements) -> dict[str, dict[str, dict[str, float]]]:
    """Cutoffs per stringency (``low``/``normal``/``high``, Hartree) from a PseudoDojo ``.djson`` file."""
    metadata = json.loads(pathlib.Path(path).read_text())['pseudos_metadata']
    cutoffs = {}
    for stringency in ('low', 'normal', 'high'):
        cutoffs[stringency] = {
            element: {
                'cutoff_wfc': metadata[element]['hints'][stringency]['ecut'],
                'cutoff_rho': NC_DUAL * metadata[element]['hints'][stringency]['ecut'],
            }
            for element in elements
            if element in metadata
        }
    return cutoffs


def install_pseudo_family(folder, label: str, hints: str | pathlib.Path | None = None):
    """Install the UPF files in ``folder`` as a cutoffs family ``label``; return ``(family, created)``.

    With ``hints`` (a PseudoDojo ``.djson``), the family gets recommended cutoffs so protocols can use
    them; elements without a hint fall back to the protocol's own value.
    """
    from aiida.common.exceptions import NotExistent
    from aiida.orm import Group
    from aiida_pseudo.data.pseudo import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    try:
        return Group.collection.get(label=label), False
    except NotExistent:
        pass
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SetupError(f'pseudopotential folder {folder} does not exist')
    others = [path.name for path in folder.iterdir() if path.suffix.lower() != '.upf']
    if others:
        raise SetupError(f'{folder} must hold only UPF files; found {", ".join(sorted(others)[:5])}')
    family = CutoffsPseudoPotentialFamily.create_from_folder(folder, label, pseudo_type=UpfData)
    if hints is not None:
        cutoffs = read_pseudodojo_hints(hints, family.elements)
        missing = sorted(set(family.elements) - set(cutoffs['normal']))
        if missing:
            Group.collection.delete(family.pk)
            raise SetupError(f'the hints file has no cutoffs for {", ".join(missing)}; family not installed')
        for stringency, values in cutoffs.items():
            family.set_cutoffs(values, stringency, unit='Eh')
        family.set_default_stringency('normal')
    return family, True


def install_pseudodojo_online():
    """Download and install PseudoDojo 0.4 PBE SR standard (UPF) with ``aiida-pseudo``."""
    command = [
        'aiida-pseudo',
        'install',
        'pseudo-dojo',
        '-v',
        '0.4',
        '-x',
        'PBE',
        '-r',
        'SR',
        '-p',
        'standard',
    ]
    result = subprocess.run([*command, '-f', 'upf'], capture_output=True, text=True, check=False)
    if result.returncode != 0 and 'already installed' not in result.stdout + result.stderr:
        raise SetupError(
            'could not download PseudoDojo (offline?); give a folder of UPF files with --pseudo-dir: '
            + (result.stderr.strip() or result.stdout.strip()).splitlines()[-1]
        )


def ensure_localhost(label: str = 'localhost'):
    """The computer ``label``, configured for the current user; ``(computer, created)``.

    Where it is missing it is created as ``verdi presto`` creates its ``localhost``: ``core.local``
    transport, ``core.direct`` scheduler, one MPI process per machine, a work directory
    ``scratch/<profile>`` in the AiiDA configuration folder. An existing computer not yet configured
    for the current user (as on a profile imported from elsewhere) is configured with the same settings.
    """
    from aiida.common.exceptions import NotExistent
    from aiida.manage import get_manager
    from aiida.manage.configuration import get_config
    from aiida.orm import Computer

    try:
        computer, created = Computer.collection.get(label=label), False
    except NotExistent:
        profile = get_manager().get_profile()
        computer = Computer(
            label=label,
            hostname='localhost',
            description='This machine, created by `aiida-dielectrics setup`',
            transport_type='core.local',
            scheduler_type='core.direct',
            workdir=str(pathlib.Path(get_config().dirpath) / 'scratch' / profile.name),
        ).store()
        computer.set_minimum_job_poll_interval(1)
        computer.set_default_mpiprocs_per_machine(1)
        created = True
    if not computer.is_configured:
        computer.configure(safe_interval=0)
    return computer, created


def register_qe_codes(computer_label: str = 'localhost') -> dict[str, tuple[object, bool]]:
    """Register ``pw.x`` and ``ph.x`` found on PATH as codes on ``computer_label``; ``{label: (code, created)}``."""
    from aiida.common.exceptions import NotExistent
    from aiida.orm import Computer, InstalledCode, load_code

    try:
        computer = Computer.collection.get(label=computer_label)
    except NotExistent as exception:
        raise SetupError(
            f'no computer {computer_label!r}: `aiida-dielectrics setup` creates `localhost`'
        ) from exception
    prepend_text = ROOT_PREPEND_TEXT if os.geteuid() == 0 else 'export OMP_NUM_THREADS=1'
    codes = {}
    for executable, (label, plugin) in QE_CODES.items():
        try:
            codes[label] = (load_code(f'{label}@{computer_label}'), False)
            continue
        except NotExistent:
            pass
        path = shutil.which(executable)
        if path is None:
            continue
        code = InstalledCode(
            label=label,
            computer=computer,
            filepath_executable=path,
            default_calc_job_plugin=plugin,
            prepend_text=prepend_text,
            description=f'Quantum ESPRESSO {executable} found on PATH at set-up',
        )
        codes[label] = (code.store(), True)
    return codes
