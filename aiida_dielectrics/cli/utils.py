"""Helpers shared by the commands."""

from __future__ import annotations

import pathlib

import click
from aiida.cmdline.params import types


def load_profile(ctx: click.Context):
    """Load the profile chosen with ``--profile`` (or the default), or exit with one clear line."""
    from aiida import load_profile as aiida_load_profile
    from aiida.common.exceptions import (
        ConfigurationError,
        MissingConfigurationError,
        ProfileConfigurationError,
    )

    name = ctx.find_root().obj.get('profile') if ctx.find_root().obj else None
    try:
        return aiida_load_profile(name, allow_switch=True)
    except (ConfigurationError, MissingConfigurationError, ProfileConfigurationError) as exception:
        raise click.ClickException(
            f'no usable AiiDA profile ({first_line(exception)}); run `aiida-dielectrics setup` first'
        ) from exception


def echo_progress(message: str):
    """A progress line on stderr with the time of day, for long commands (training, evaluation)."""
    import time

    click.echo(f'[{time.strftime("%H:%M:%S")}] {message}', err=True)


class LoadsProfile:
    """Mixin for AiiDA's ORM parameter types (``aiida.cmdline.params.types``) in this CLI.

    AiiDA's types load the default profile when they resolve a value; here the profile chosen with
    ``--profile`` is loaded first (:func:`load_profile`, which also says what to do without one), and a value
    that matches nothing ends the command with one ``Error:`` line and exit 1, like every other mistake.
    """

    def convert(self, value, param, ctx):
        load_profile(ctx)
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exception:
            hint = param.get_error_hint(ctx) if param is not None else 'value'
            raise click.ClickException(f'Invalid value for {hint}: {exception.message}') from None


class GroupParamType(LoadsProfile, types.GroupParamType):
    """A group by label, pk or UUID (AiiDA's ``GroupParamType``), resolved in the ``--profile`` profile."""


#: Structure files pymatgen does not know by name, read with ASE: (extended) XYZ, one crystal per frame.
ASE_PATTERNS = ('*.xyz', '*.extxyz')


def is_structure_file(path) -> bool:
    """True for a file name pymatgen (``pymatgen.io.registry``) or ASE (:data:`ASE_PATTERNS`) reads as a
    structure: CIF, POSCAR/CONTCAR/*.vasp, vasprun.xml, pymatgen JSON, XSF, (ext)XYZ, …"""
    import fnmatch

    from pymatgen.io.registry import get_structure_format

    try:
        get_structure_format(filename=str(path))
    except ValueError:
        return any(fnmatch.fnmatch(pathlib.Path(path).name.lower(), pattern) for pattern in ASE_PATTERNS)
    return True


def structure_files(paths) -> list[pathlib.Path]:
    """Files as given, and the structure files (:func:`is_structure_file`) inside given directories,
    recursively and sorted, hidden ones skipped."""
    files = []
    for path in map(pathlib.Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        files.extend(
            sorted(
                p
                for p in path.rglob('*')
                if p.is_file()
                and not any(part.startswith('.') for part in p.relative_to(path).parts)
                and is_structure_file(p)
            )
        )
    return files


def read_structures(path) -> list[tuple[str, object, str | None]]:
    """``(label, structure, None)`` or ``(label, None, reason)`` for the crystals in a file: one (labelled
    with the path) for most formats, one per frame (``path@i``) of an (extended) XYZ file."""
    import fnmatch
    import warnings

    from pymatgen.core import Structure

    path = pathlib.Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if any(fnmatch.fnmatch(path.name.lower(), pattern) for pattern in ASE_PATTERNS):
                import ase.io

                frames = ase.io.read(path, index=':')
                labels = [str(path)] if len(frames) == 1 else [f'{path}@{i}' for i in range(len(frames))]
                return [(label, *_crystal(atoms)) for label, atoms in zip(labels, frames, strict=True)]
            structure = Structure.from_file(path)
    except Exception as exception:  # pymatgen and ASE raise many types for unreadable files
        return [(str(path), None, f'unreadable: {first_line(exception)}')]
    if len(structure) == 0:
        return [(str(path), None, 'unreadable: no atoms')]
    return [(str(path), structure, None)]


def _crystal(atoms) -> tuple[object, str | None]:
    """The pymatgen structure of a periodic ASE ``Atoms`` (its per-atom data left out), or why there is none."""
    from pymatgen.core import Structure

    if len(atoms) == 0:
        return None, 'unreadable: no atoms'
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        return None, 'not a crystal: no periodic cell'
    return Structure(
        atoms.cell.array, atoms.get_chemical_symbols(), atoms.positions, coords_are_cartesian=True
    ), None


def first_line(exception: Exception) -> str:
    """The first line of an exception's message, or its type when it has none (for one-line errors)."""
    return str(exception).splitlines()[0] if str(exception) else type(exception).__name__
