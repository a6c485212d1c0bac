"""What every DFPT engine's work chain shares: its outputs, its early checks and its exit codes.

Both ``dielectrics.dfpt.qe`` and ``dielectrics.dfpt.vasp`` call :func:`define_dfpt_interface`, so a
caller (the screening work chain, a user's script) reads the same output names and exit statuses
whatever the engine.
"""

from __future__ import annotations

import numpy as np
from aiida import orm

from aiida_dielectrics.data.dielectric import DielectricData


def minimum_distance(structure: orm.StructureData) -> float:
    """Shortest distance (Å) between two atoms, periodic images included (an atom and its own image too)."""
    pymatgen = structure.get_pymatgen_structure()
    self_image = min(pymatgen.lattice.get_lll_reduced_lattice().abc)
    if len(pymatgen) < 2:
        return float(self_image)
    distances = pymatgen.distance_matrix  # minimum image; 0 for coincident atoms
    return float(min(self_image, distances[~np.eye(len(pymatgen), dtype=bool)].min()))


def define_dfpt_interface(spec, family_kind: str, potential: str, relax_name: str) -> None:
    """The common inputs, outputs and exit codes, worded for the engine's family and potential names."""
    spec.input(
        'min_interatomic_distance',
        valid_type=orm.Float,
        default=lambda: orm.Float(0.5),
        help='Atoms closer than this (Å) make the structure invalid.',
    )
    spec.output('dielectric', valid_type=DielectricData, help='ε∞, ε_ion, Born charges, Γ phonons, band gap.')
    spec.output('structure', valid_type=orm.StructureData, help='The structure the DFPT ran on.')
    spec.exit_code(301, 'ERROR_INVALID_STRUCTURE', message='Invalid structure: {reason}.')
    spec.exit_code(
        302,
        'ERROR_UNSUPPORTED_ELEMENT',
        message=f'The {family_kind} family `{{family}}` has no {potential} for {{elements}}.',
    )
    spec.exit_code(
        303,
        'ERROR_METAL',
        message='The crystal is metallic ({reason}); DFPT with an electric field needs an insulator.',
    )
    spec.exit_code(401, 'ERROR_SUB_PROCESS_FAILED_RELAX', message=f'The relaxation ({relax_name}) failed.')
