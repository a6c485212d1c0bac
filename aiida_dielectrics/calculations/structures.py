"""Provenance around structure cleaning: the original cell stays the parent of the one DFT runs on."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from aiida_dielectrics.science import symmetry


@calcfunction
def symmetrize_structure(structure: orm.StructureData, symprec: orm.Float) -> dict:
    """The primitive standard cell of ``structure`` refined to its space group at ``symprec`` (Å).

    Outputs ``structure`` and ``symmetry`` (space group, site counts, relative volume change); raises
    :class:`~aiida_dielectrics.science.symmetry.SymmetryError` (a ``ValueError``) if spglib finds none.
    """
    result = symmetry.symmetrize(structure.get_pymatgen_structure(), symprec=symprec.value)
    return {'structure': orm.StructureData(pymatgen=result.structure), 'symmetry': orm.Dict(result.summary())}
