"""Energy above the convex hull from predicted formation energies (eV/atom).

Formation energies put every element at 0 eV/atom, so the hull of a chemical system is spanned by the
elements and the compounds of a reference: either given entries (e.g. known materials with DFT or ML
formation energies) or, without one, the predictions themselves — a self-consistent ML hull, on which a
candidate is "stable" if no mixture of the other candidates is predicted lower in energy.
A phase diagram is built per chemical system (pymatgen's ``PhaseDiagram`` cannot span dozens of
elements at once) and shared by all candidates of that system.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element


def entries_from_formation_energies(compositions: Sequence, e_form: Sequence[float]) -> list[PDEntry]:
    """PDEntries on the formation-energy scale (total energy = E_form per atom × atoms); NaNs left out."""
    entries = []
    for composition, energy in zip(compositions, e_form, strict=True):
        if energy is None or not math.isfinite(energy):
            continue
        composition = Composition(composition)
        entries.append(PDEntry(composition, float(energy) * composition.num_atoms))
    return entries


def e_above_hull(
    compositions: Sequence, e_form: Sequence[float], reference: Sequence[PDEntry] | None = None
) -> np.ndarray:
    """E above hull (eV/atom) of each composition with predicted formation energy ``e_form``.

    ``reference`` entries (formation-energy scale) define the hull when given, and a candidate below
    it gets a negative value; without a reference the candidates themselves define it (values ≥ 0).
    NaN where ``e_form`` is NaN.
    """
    compositions = [Composition(c) for c in compositions]
    candidates = entries_from_formation_energies(compositions, e_form)
    pool = list(reference) if reference is not None else candidates
    diagrams: dict[frozenset, PhaseDiagram] = {}
    result = np.full(len(compositions), np.nan)
    for index, (composition, energy) in enumerate(zip(compositions, e_form, strict=True)):
        if energy is None or not math.isfinite(energy):
            continue
        system = frozenset(composition.elements)
        if system not in diagrams:
            elements = [PDEntry(Composition({element: 1}), 0.0) for element in system]
            members = [entry for entry in pool if set(entry.composition.elements) <= system]
            diagrams[system] = PhaseDiagram(elements + members, elements=sorted(system, key=_z))
        entry = PDEntry(composition, float(energy) * composition.num_atoms)
        _, value = diagrams[system].get_decomp_and_e_above_hull(entry, allow_negative=True)
        result[index] = value
    return result


def _z(element: Element) -> int:
    return element.Z
