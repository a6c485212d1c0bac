"""Reader for ``mp-dfpt-extra``: 861 Materials Project DFPT results outside the Petousis 2017 set (extended XYZ).

One frame per crystal (Martin et al., arXiv 2508.17870, MP data, VASP PBE): the MP-relaxed structure, the
electronic polarisability α (``REF_polarisability``, 3×3 row-major in ``info``), giving ε∞ = 1 + 4π·α, the
ionic permittivity (``REF_dielectric_ionic``) and Born effective charges per atom (9 numbers per atom,
``REF_becs``; 392 of the 861 frames call the column ``REF_bec``). There are no band gaps and no material
ids: a material is named by its reduced formula and a hash of the frame's structure (:func:`material_id`),
so the same crystal gets the same id in every file that holds it.

Frames are split by their atom-count line and parsed one by one, so a bad frame becomes a :class:`RowError`
with the line where it starts and the reason, and never stops the others.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import pathlib
from collections.abc import Iterator

import ase.io
import numpy as np
from ase.io.extxyz import XYZError
from pymatgen.core import Composition, Lattice, Structure

from aiida_dielectrics.science import tensors
from aiida_dielectrics.science.datasets import RowError

SOURCE = 'mp-dfpt-extra'
BORN_CHARGE_COLUMNS = ('REF_becs', 'REF_bec')
#: Decimals of the lattice and positions (Å) that enter the structure hash of :func:`material_id`.
HASH_DECIMALS = 5


@dataclasses.dataclass
class Row:
    """One validated frame: structure, tensors (symmetrised), Born charges (N×3×3) and its id."""

    line: int
    material_id: str
    structure: Structure
    epsilon_electronic: np.ndarray
    epsilon_ionic: np.ndarray
    born_charges: np.ndarray


def read_rows(path: str | pathlib.Path) -> Iterator[Row | RowError]:
    """Yield one :class:`Row` or :class:`RowError` per frame of the extended XYZ file at ``path``."""
    for line, text in frames(pathlib.Path(path).read_text(encoding='utf-8')):
        if isinstance(text, RowError):
            yield text
            continue
        try:
            yield parse_frame(text, line)
        except (ValueError, KeyError, IndexError, XYZError) as exception:
            yield RowError(line, str(exception).splitlines()[0])


def frames(text: str) -> Iterator[tuple[int, str | RowError]]:
    """``(line, frame text)`` per frame; a count line that is not a number, or a frame cut short, is a
    :class:`RowError` (reading resumes at the next line holding only a number)."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines):
        count = lines[start].strip()
        if not count:
            start += 1
            continue
        if not count.isdigit():
            yield start + 1, RowError(start + 1, f'expected the atom count of a frame, got {count[:40]!r}')
            start += 1
            while start < len(lines) and not lines[start].strip().isdigit():
                start += 1
            continue
        end = start + 2 + int(count)
        if end > len(lines):
            yield start + 1, RowError(start + 1, f'frame of {count} atoms cut short by the end of the file')
            return
        yield start + 1, ''.join(lines[start:end])
        start = end


def parse_frame(text: str, line: int) -> Row:
    """Turn one frame into a validated :class:`Row` (raises on anything unphysical or unreadable)."""
    atoms = ase.io.read(io.StringIO(text), format='extxyz')
    if not atoms.pbc.all() or atoms.cell.rank != 3:
        raise ValueError('the frame is not a periodic crystal (needs a Lattice and pbc="T T T")')
    structure = Structure(
        Lattice(atoms.cell.array), atoms.get_chemical_symbols(), atoms.positions, coords_are_cartesian=True
    )
    polarisability = tensors.symmetric_tensor(
        info_tensor(atoms.info, 'REF_polarisability'), 'REF_polarisability'
    )
    electronic = np.eye(3) + 4 * np.pi * polarisability
    if tensors.mean_eigenvalue(electronic) < 1:
        raise tensors.TensorError(f'ε∞ = 1 + 4π·α has mean {tensors.mean_eigenvalue(electronic):.3g} < 1')
    ionic = tensors.symmetric_tensor(info_tensor(atoms.info, 'REF_dielectric_ionic'), 'REF_dielectric_ionic')
    return Row(
        line=line,
        material_id=material_id(atoms.cell.array, atoms.get_chemical_symbols(), atoms.positions),
        structure=structure,
        epsilon_electronic=electronic,
        epsilon_ionic=ionic,
        born_charges=born_charges(atoms.arrays, len(atoms)),
    )


def info_tensor(info: dict, key: str) -> np.ndarray:
    """The 3×3 tensor stored row-major as 9 numbers under ``key``."""
    if key not in info:
        raise ValueError(f'{key} is missing')
    values = tensors.as_finite_array(info[key], key, (9,))
    return values.reshape(3, 3)


def born_charges(arrays: dict, num_sites: int) -> np.ndarray:
    """Born charges from whichever of :data:`BORN_CHARGE_COLUMNS` the frame has, as N×3×3."""
    present = [name for name in BORN_CHARGE_COLUMNS if name in arrays]
    if not present:
        raise ValueError(f'no Born charges (column {" or ".join(BORN_CHARGE_COLUMNS)})')
    values = tensors.as_finite_array(arrays[present[0]], present[0], (num_sites, 9))
    return tensors.born_charges(values.reshape(num_sites, 3, 3), num_sites)


def material_id(lattice: np.ndarray, species: list[str], positions: np.ndarray) -> str:
    """``<formula>-<10 hex digits>``: the reduced formula with elements in alphabetical order (``CO5U``;
    plain, unlike pymatgen's ``reduced_formula``, whose grouping of polyanions changes between versions) and
    the sha256 of the lattice, species and Cartesian positions rounded to :data:`HASH_DECIMALS`, so the same
    frame gets the same id in any file (the source gives no id). The numbers are the ones read from the
    file: coordinates recomputed by pymatgen differ in the last bits between machines (BLAS), and the file's
    six-decimal lattices often sit exactly on a rounding tie, so a hash of those would differ too."""

    def rounded(values):
        return (np.round(np.asarray(values, dtype=float), HASH_DECIMALS) + 0.0).tolist()  # -0.0 → 0.0

    payload = {'lattice': rounded(lattice), 'species': list(species), 'positions': rounded(positions)}
    digest = hashlib.sha256(json.dumps(payload).encode()).hexdigest()
    amounts = sorted(Composition(collections.Counter(species)).reduced_composition.get_el_amt_dict().items())
    formula = ''.join(f'{element}{amount:g}' if amount != 1 else element for element, amount in amounts)
    return f'{formula}-{digest[:10]}'
