"""DFPT verification: one common interface (:mod:`.common`), one subpackage per engine.

Engines are ``aiida.workflows`` entry points ``dielectrics.dfpt.<engine>`` (subclasses of
:class:`~.common.DfptWorkChain`); :func:`engines` lists them and :func:`load_engine` loads one, so nothing
outside an engine's own folder names it. This module imports no engine, so listing them is cheap.
"""

from __future__ import annotations

ENTRY_POINT_PREFIX = 'dielectrics.dfpt.'


def engines() -> list[str]:
    """Names of the installed DFPT engines (``qe``, ``vasp``, …), from the entry points."""
    from aiida.plugins.entry_point import get_entry_point_names

    names = get_entry_point_names('aiida.workflows')
    return sorted(
        name.removeprefix(ENTRY_POINT_PREFIX) for name in names if name.startswith(ENTRY_POINT_PREFIX)
    )


def load_engine(name: str):
    """The work chain class of engine ``name``; ``ValueError`` naming the installed ones otherwise."""
    from aiida.plugins import WorkflowFactory

    if name not in engines():
        raise ValueError(f'unknown DFPT engine `{name}`; installed: {", ".join(engines())}')
    return WorkflowFactory(f'{ENTRY_POINT_PREFIX}{name}')
