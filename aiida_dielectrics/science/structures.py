"""Checks that a structure is a crystal any method can work on: atoms, a volume, no overlapping atoms."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

#: Atoms closer than this (Å) are taken as overlapping (the shortest real bonds, H–H aside, exceed 0.7 Å).
MIN_INTERATOMIC_DISTANCE = 0.5


def minimum_distance(structure: Structure) -> float:
    """Shortest distance (Å) between two atoms, periodic images included (an atom and its own image too)."""
    self_image = min(structure.lattice.get_lll_reduced_lattice().abc)
    if len(structure) < 2:
        return float(self_image)
    distances = structure.distance_matrix  # minimum image; 0 for coincident atoms
    return float(min(self_image, distances[~np.eye(len(structure), dtype=bool)].min()))


def structure_problem(structure: Structure, min_distance: float = MIN_INTERATOMIC_DISTANCE) -> str | None:
    """Why ``structure`` is not a usable crystal, or ``None`` if it is."""
    if len(structure) == 0:
        return 'the structure has no atoms'
    if structure.volume <= 1e-6:
        return 'the cell has no volume'
    distance = minimum_distance(structure)
    if distance < min_distance:
        return f'atoms {distance:.3f} Å apart (minimum {min_distance} Å)'
    return None
