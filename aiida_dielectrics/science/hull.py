"""Energy above the convex hull of a reference (pure: no AiiDA).

A candidate is only as stable as the reference it is compared with, so every function here takes one
explicitly; none falls back to a hull of the candidates alone (on which every candidate whose chemical
system holds no other candidate is "stable", high-pressure polymorphs included). References:

- entries the user supplies, e.g. Materials Project entries as ``mp-api`` returns them
  (:func:`load_entries`, :func:`fetch_mp_entries`), on the MP2020-corrected scale;
- the offline default: one potential's relaxed energies of the element reference states and of the
  known structures in the candidates' chemical systems (see :mod:`.references`), on the same scale;
- for predicted formation energies (:func:`e_above_hull`), formation-energy entries.

Candidates are compared with the reference and, with ``include_candidates``, with each other: a value is
then the distance to the hull of everything else (negative for a candidate below it). A phase diagram
is built per chemical system (pymatgen's ``PhaseDiagram`` cannot span dozens of elements at once).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element
from pymatgen.entries import Entry
from pymatgen.entries.computed_entries import ComputedEntry


class Hull:
    """The convex hulls of ``entries`` (total energies, any one scale), one per chemical system."""

    def __init__(self, entries: Iterable[PDEntry]):
        self.entries = list(entries)
        self.elements = {entry.elements[0] for entry in self.entries if entry.composition.is_element}
        self._diagrams: dict[frozenset, PhaseDiagram] = {}

    def diagram(self, system: Iterable[Element], without: PDEntry | None = None) -> PhaseDiagram:
        """The phase diagram of ``system`` and its subsystems (``without`` one of the entries: not kept);
        ``ValueError`` if an element has no entry."""
        system = frozenset(system)
        if without is None and system in self._diagrams:
            return self._diagrams[system]
        missing = sorted(element.symbol for element in system - self.elements)
        if missing:
            raise ValueError(f'no reference entry for element(s) {", ".join(missing)}')
        members = [
            entry
            for entry in self.entries
            if entry is not without and set(entry.composition.elements) <= system
        ]
        diagram = PhaseDiagram(members, elements=sorted(system, key=_z))
        if without is None:
            self._diagrams[system] = diagram
        return diagram


def e_above_hull_many(
    reference: Sequence[PDEntry],
    compositions: Sequence,
    energies: Sequence[float],
    include_candidates: bool = True,
) -> tuple[np.ndarray, list[str | None]]:
    """E above the hull of ``reference`` (eV/atom) for each composition with energy ``energies`` (eV/atom,
    the reference's scale), and a reason where it is NaN (no energy, an element without a reference).

    ``include_candidates`` adds the candidates to the hull: a candidate then also competes with the
    others, and one on the hull gets its (negative) distance to the hull without it.
    """
    compositions = [Composition(composition) for composition in compositions]
    candidates = {
        index: PDEntry(composition, float(energy) * composition.num_atoms, name=f'candidate {index}')
        for index, (composition, energy) in enumerate(zip(compositions, energies, strict=True))
        if energy is not None and math.isfinite(energy)
    }
    hull = Hull([*reference, *candidates.values()] if include_candidates else reference)
    values = np.full(len(compositions), np.nan)
    reasons: list[str | None] = ['no energy'] * len(compositions)
    for index, entry in candidates.items():
        try:
            diagram = hull.diagram(entry.composition.elements)
        except ValueError as exception:
            reasons[index] = str(exception)
            continue
        if include_candidates and entry in diagram.stable_entries:
            # On the hull: how far below the hull of everything else (pymatgen's phase separation
            # energy would also leave out the reference's polymorphs of the same composition).
            diagram = hull.diagram(entry.composition.elements, without=entry)
        values[index] = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)[1]
        reasons[index] = None
    return values, reasons


def entries_from_formation_energies(compositions: Sequence, e_form: Sequence[float]) -> list[PDEntry]:
    """PDEntries on the formation-energy scale (total energy = E_form per atom × atoms); NaNs left out."""
    entries = []
    for composition, energy in zip(compositions, e_form, strict=True):
        if energy is None or not math.isfinite(energy):
            continue
        composition = Composition(composition)
        entries.append(PDEntry(composition, float(energy) * composition.num_atoms))
    return entries


def e_above_hull(compositions: Sequence, e_form: Sequence[float], reference: Sequence[PDEntry]) -> np.ndarray:
    """E above hull (eV/atom) of predicted formation energies ``e_form`` against ``reference`` entries
    on the formation-energy scale (every element at 0 eV/atom is added); NaN where ``e_form`` is NaN.

    A candidate below the reference's hull gets a negative value. The candidates are not part of the
    hull: pass ``entries_from_formation_energies(compositions, e_form)`` as ``reference`` to rank them
    against each other only — an explicit choice, since such a hull knows no real competing phase.
    """
    compositions = [Composition(c) for c in compositions]
    elements = {element for composition in compositions for element in composition.elements}
    zero = [PDEntry(Composition({element: 1}), 0.0) for element in elements]
    values, _ = e_above_hull_many([*zero, *reference], compositions, e_form, include_candidates=False)
    return values


def entries_to_rows(entries: Iterable[PDEntry]) -> list[dict]:
    """Compact rows ``{entry_id, composition, energy}`` (total energy, eV) for storage."""
    return [
        {
            'entry_id': getattr(entry, 'entry_id', None) or entry.name,
            'composition': {str(element): float(amount) for element, amount in entry.composition.items()},
            'energy': float(entry.energy),
        }
        for entry in entries
    ]


def entries_from_rows(rows: Iterable[dict]) -> list[ComputedEntry]:
    """The inverse of :func:`entries_to_rows` (corrections already included in ``energy``)."""
    return [ComputedEntry(row['composition'], row['energy'], entry_id=row['entry_id']) for row in rows]


def load_entries(path: str | pathlib.Path) -> list[ComputedEntry]:
    """The entries in a JSON file: a list (or ``{"entries": [...]}``) of pymatgen ``ComputedEntry`` /
    ``ComputedStructureEntry`` / ``PDEntry`` dicts, as ``monty.serialization.dumpfn`` writes what
    ``mp-api``'s ``get_entries_in_chemsys`` returns. Energies are taken as they are: MP entries carry
    their MP2020 corrections, so ``entry.energy`` is on the MP2020 scale.
    """
    from monty.json import MontyDecoder

    path = pathlib.Path(path)
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exception:
        raise ValueError(f'{path} is not a readable JSON file: {exception}') from exception
    if isinstance(content, dict) and 'entries' in content:
        content = content['entries']
    if not isinstance(content, list) or not content:
        raise ValueError(f'{path} holds no list of entries')
    entries = []
    for index, item in enumerate(content):
        try:
            entry = MontyDecoder().process_decoded(item)
            if isinstance(entry, dict):  # a plain dict without @module/@class
                entry = ComputedEntry(
                    entry['composition'],
                    entry['energy'],
                    correction=entry.get('correction', 0.0),
                    entry_id=entry.get('entry_id'),
                )
        except Exception as exception:
            raise ValueError(f'{path}: entry {index} is not a pymatgen entry ({exception})') from exception
        if not isinstance(entry, Entry) or not math.isfinite(entry.energy):
            raise ValueError(f'{path}: entry {index} is not a pymatgen entry with a finite energy')
        entries.append(entry)
    return entries


def fetch_mp_entries(elements: Iterable[str], api_key: str | None = None) -> list[ComputedEntry]:
    """Materials Project entries (GGA/GGA+U mixing, MP2020-corrected) of the chemical system spanned by
    ``elements`` and its subsystems, with ``mp-api`` (the ``mp`` extra) and ``MP_API_KEY``."""
    api_key = api_key or os.environ.get('MP_API_KEY')
    if not api_key:
        raise RuntimeError('fetching Materials Project entries needs an API key: set MP_API_KEY')
    try:
        from mp_api.client import MPRester
    except ImportError as exception:
        raise RuntimeError(
            'fetching Materials Project entries needs mp-api: pip install "aiida-dielectrics[mp]"'
        ) from exception
    with MPRester(api_key) as rester:
        return list(rester.get_entries_in_chemsys(sorted(set(elements))))


def chemical_systems(compositions: Iterable) -> set[frozenset[str]]:
    """The chemical systems (element sets) of ``compositions``."""
    return {frozenset(element.symbol for element in Composition(c).elements) for c in compositions}


def in_systems(elements: Iterable[str], systems: Iterable[frozenset[str]]) -> bool:
    """True if ``elements`` form one of ``systems`` or a subsystem of one."""
    elements = frozenset(elements)
    return any(elements <= system for system in systems)


def _z(element: Element) -> int:
    return element.Z
