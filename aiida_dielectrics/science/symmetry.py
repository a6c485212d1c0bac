"""Symmetrised cells for DFT: real MP and VASP cells carry numerical noise that breaks symmetry analysis.

ph.x classifies the symmetry operations of the crystal; on a VASP-relaxed wurtzite AlN cell whose
coordinates are symmetric only to ~1e-5 it stops with ``Error in routine divide_class``. Refining the
cell to its space group first (spglib through pymatgen's :class:`SpacegroupAnalyzer`) removes the noise
and gives the primitive standard cell, the smallest one DFPT can run on.

:data:`SYMPREC` (Å) and :data:`ANGLE_TOLERANCE` (degrees) are pymatgen's defaults: a distortion smaller
than 0.01 Å is taken for noise and symmetrised away; a real one that small would be lost.
"""

from __future__ import annotations

import dataclasses

from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

SYMPREC = 0.01
ANGLE_TOLERANCE = 5.0


class SymmetryError(ValueError):
    """spglib found no space group for the structure at the tolerance (e.g. overlapping atoms)."""


@dataclasses.dataclass(frozen=True)
class Symmetrized:
    """A symmetrised primitive standard cell and what the refinement did."""

    structure: Structure
    spacegroup_number: int
    spacegroup_symbol: str
    num_sites_before: int
    volume_change: float  # relative, (V_after/atom) / (V_before/atom) - 1

    def summary(self) -> dict:
        return {
            'spacegroup_number': self.spacegroup_number,
            'spacegroup_symbol': self.spacegroup_symbol,
            'num_sites_before': self.num_sites_before,
            'num_sites_after': len(self.structure),
            'volume_change': self.volume_change,
        }


def symmetrize(
    structure: Structure, symprec: float = SYMPREC, angle_tolerance: float = ANGLE_TOLERANCE
) -> Symmetrized:
    """The primitive standard cell of ``structure``, refined to its space group at ``symprec`` (Å)."""
    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=symprec, angle_tolerance=angle_tolerance)
        primitive = analyzer.get_primitive_standard_structure()
        number, symbol = analyzer.get_space_group_number(), analyzer.get_space_group_symbol()
    except (TypeError, ValueError) as exception:  # spglib returns no dataset
        raise SymmetryError(f'no space group found at symprec {symprec} Å: {exception}') from exception
    change = (primitive.volume / len(primitive)) / (structure.volume / len(structure)) - 1
    return Symmetrized(primitive, int(number), str(symbol), len(structure), float(change))
