"""Import of published dielectric data as provenance-tracked nodes.

The CSV file is stored as a ``SinglefileData`` and one calcfunction turns it into ``StructureData`` and
``dielectrics.dielectric`` nodes, so every imported result has the file as its provenance parent. The
outputs of a row share its key: ``structures.<key>`` and ``dielectrics.<key>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib

from aiida.engine import calcfunction
from aiida.orm import CalcFunctionNode, Dict, Group, List, QueryBuilder, SinglefileData, StructureData
from tqdm import tqdm

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.science.datasets import petousis2017
from aiida_dielectrics.tools.provenance import run_in_bulk

PROCESS_TYPE = 'aiida.calculations:dielectrics.import_petousis2017'


def output_key(material_id: str) -> str:
    """A link-label-safe key for a source id (``mp-441`` → ``mp_441``)."""
    return material_id.replace('-', '_')


@calcfunction
def import_petousis2017(csv_file: SinglefileData, skip: List) -> dict:
    """Create a structure and a dielectric node per valid row; rows with ids in ``skip`` are left out.

    The ``report`` output lists every skipped row with its line number and reason.
    """
    already = set(skip.get_list())
    outputs = {'structures': {}, 'dielectrics': {}}
    errors, duplicates = [], 0
    with csv_file.as_path() as path:
        for row in tqdm(petousis2017.read_rows(path), desc='import petousis2017', unit=' rows', disable=None):
            if isinstance(row, petousis2017.RowError):
                errors.append(dataclasses.asdict(row))
                continue
            if row.material_id in already:
                duplicates += 1
                continue
            already.add(row.material_id)
            key = output_key(row.material_id)
            structure = StructureData(pymatgen=row.structure)
            outputs['structures'][key] = structure
            outputs['dielectrics'][key] = DielectricData(
                epsilon_electronic=row.epsilon_electronic,
                epsilon_ionic=row.epsilon_ionic,
                band_gap=row.band_gap,
                engine='imported',
                formula=row.structure.composition.reduced_formula,
                source=petousis2017.SOURCE,
                source_id=row.material_id,
            )
    outputs['report'] = Dict(
        {'imported': len(outputs['dielectrics']), 'already_present': duplicates, 'skipped': errors}
    )
    return outputs


def file_sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def imported_ids(source: str) -> list[str]:
    """Source ids of all dielectric nodes imported from ``source`` (in any group)."""
    query = QueryBuilder().append(
        DielectricData, filters={'attributes.source': source}, project='attributes.source_id'
    )
    return sorted(query.all(flat=True))


def run_petousis2017_import(path, group_label: str = petousis2017.SOURCE):
    """Import the CSV at ``path`` into the group ``group_label``, adding only rows not imported before.

    Returns ``(report, process_node)``; the process node is ``None`` when this very file was imported
    before, so there is nothing to do.
    """
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f'no such file: {path}')
    sha256 = file_sha256(path)
    existing = imported_ids(petousis2017.SOURCE)
    earlier = QueryBuilder().append(SinglefileData, filters={'extras.sha256': sha256}, tag='file')
    earlier.append(CalcFunctionNode, with_incoming='file', filters={'attributes.exit_status': 0})
    group, _ = Group.collection.get_or_create(label=group_label)
    if earlier.count():
        group.add_nodes(imported_nodes())
        return {'imported': 0, 'already_present': len(existing), 'skipped': []}, None

    csv_file = SinglefileData(file=path)
    csv_file.base.extras.set('sha256', sha256)
    # Nodes and links written in bulk in one transaction (``benchmarks/bench_import.py`` compares this
    # with the engine's per-link validation); if the import fails, nothing is stored.
    results, node = run_in_bulk(import_petousis2017, csv_file=csv_file, skip=List(existing))
    group.add_nodes(imported_nodes())
    return results['report'].get_dict(), node


def imported_nodes() -> list:
    """All structures and dielectric results made by Petousis imports, whichever run made them."""
    query = QueryBuilder().append(CalcFunctionNode, filters={'process_type': PROCESS_TYPE}, tag='import')
    query.append(
        (StructureData, DielectricData),
        with_incoming='import',
        edge_filters={'label': {'or': [{'like': 'structures__%'}, {'like': 'dielectrics__%'}]}},
    )
    return query.all(flat=True)
