"""Reader for the Petousis et al. (2017) Materials Project DFPT data set (matminer's CSV).

Sci. Data 4, 160134 (2017): 1,056 compounds computed with VASP DFPT (PBE). Each CSV row holds the
band gap, the 3×3 electronic and total dielectric tensors (ionic = total − electronic) and a
Python-literal ``meta`` dict with the structure (POSCAR and CIF) and the Materials Project id.
Rows are yielded as plain data; a row that cannot be read becomes a :class:`RowError` with its line
number and reason, so one bad row never stops the others.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import pathlib
from collections.abc import Iterator

import numpy as np
from pymatgen.core import Structure

from aiida_dielectrics.science import tensors
from aiida_dielectrics.science.datasets import RowError

SOURCE = 'petousis2017'
COLUMNS = ('band_gap', 'e_electronic', 'e_total', 'meta')


@dataclasses.dataclass
class Row:
    """One validated entry: structure, tensors (symmetrised) and identifiers."""

    line: int
    material_id: str
    structure: Structure
    band_gap: float
    epsilon_electronic: np.ndarray
    epsilon_ionic: np.ndarray


def read_rows(path: str | pathlib.Path) -> Iterator[Row | RowError]:
    """Yield one :class:`Row` or :class:`RowError` per CSV record (records may span several lines)."""
    with open(path, newline='', encoding='utf-8') as handle:
        first = handle.readline()
        offset = 1 if first.startswith('#') else 0
        if not offset:
            handle.seek(0)
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f'{path} is not the Petousis 2017 CSV: missing columns {", ".join(missing)}')
        start = reader.line_num + offset + 1
        for record in reader:
            try:
                yield parse_record(record, start)
            except (ValueError, TypeError, KeyError) as exception:
                yield RowError(start, str(exception).splitlines()[0])
            start = reader.line_num + offset + 1


def literal(record: dict, column: str):
    """The Python literal in ``column``; the error names the column."""
    if not record.get(column):
        raise ValueError(f'column {column} is empty')
    try:
        return ast.literal_eval(record[column])
    except (ValueError, SyntaxError) as exception:
        raise ValueError(f'column {column} is not a valid literal ({exception})') from exception


def parse_record(record: dict, line: int) -> Row:
    """Turn one CSV record into a validated :class:`Row` (raises on anything unphysical or unreadable)."""
    meta = literal(record, 'meta')
    electronic = tensors.symmetric_tensor(literal(record, 'e_electronic'), 'e_electronic')
    total = tensors.symmetric_tensor(literal(record, 'e_total'), 'e_total')
    try:
        structure = Structure.from_str(meta['poscar'], fmt='poscar')
    except (KeyError, ValueError, IndexError) as exception:
        raise ValueError(f'meta has no readable POSCAR: {exception}') from exception
    return Row(
        line=line,
        material_id=str(meta['material_id']),
        structure=structure,
        band_gap=tensors.band_gap(record['band_gap']),
        epsilon_electronic=electronic,
        epsilon_ionic=total - electronic,
    )
