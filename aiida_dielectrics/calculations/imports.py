"""Import of published dielectric data as provenance-tracked nodes.

The data file is stored as a ``SinglefileData`` and one calcfunction per data set turns it into
``StructureData`` and ``dielectrics.dielectric`` nodes, so every imported result has the file as its
provenance parent. The outputs of a row share its key: ``structures.<key>`` and ``dielectrics.<key>``.
Both data sets go through the same code (:func:`rows_to_nodes`, :func:`run_import`); they differ only in
their reader (:mod:`aiida_dielectrics.science.datasets`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
import re
from collections.abc import Iterable

from aiida.engine import calcfunction
from aiida.orm import CalcFunctionNode, Dict, Group, List, QueryBuilder, SinglefileData, StructureData
from tqdm import tqdm

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.science.datasets import RowError, mp_dfpt_extra, petousis2017
from aiida_dielectrics.tools.provenance import run_in_bulk


def output_key(material_id: str) -> str:
    """A link-label-safe key for a source id (``mp-441`` → ``mp_441``, ``CO5U-a3ed766e95`` → ``CO5U_a3ed766e95``)."""
    return re.sub(r'\W+', '_', material_id)


def rows_to_nodes(rows: Iterable, source: str, skip: List) -> dict:
    """A structure and a dielectric node per valid row; rows with ids in ``skip`` (or seen earlier in the
    file) are counted as already present. The ``report`` output lists every bad row with its line and reason.
    """
    already = set(skip.get_list())
    outputs = {'structures': {}, 'dielectrics': {}}
    errors, duplicates = [], 0
    for row in tqdm(rows, desc=f'import {source}', unit=' rows', disable=None):
        if isinstance(row, RowError):
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
            band_gap=getattr(row, 'band_gap', None),  # mp-dfpt-extra has no gaps
            born_charges=getattr(row, 'born_charges', None),  # Petousis 2017 has no Born charges
            structure=structure,
            engine='imported',
            formula=row.structure.composition.reduced_formula,
            source=source,
            source_id=row.material_id,
        )
    outputs['report'] = Dict(
        {'imported': len(outputs['dielectrics']), 'already_present': duplicates, 'skipped': errors}
    )
    return outputs


@calcfunction
def import_petousis2017(csv_file: SinglefileData, skip: List) -> dict:
    """The Petousis 2017 CSV as nodes (:func:`rows_to_nodes`)."""
    with csv_file.as_path() as path:
        return rows_to_nodes(petousis2017.read_rows(path), petousis2017.SOURCE, skip)


@calcfunction
def import_mp_dfpt_extra(extxyz_file: SinglefileData, skip: List) -> dict:
    """The mp-dfpt-extra extended XYZ file as nodes (:func:`rows_to_nodes`), Born charges included."""
    with extxyz_file.as_path() as path:
        return rows_to_nodes(mp_dfpt_extra.read_rows(path), mp_dfpt_extra.SOURCE, skip)


#: Data set → its calcfunction and the name of the calcfunction's file input.
IMPORTERS = {
    petousis2017.SOURCE: (import_petousis2017, 'csv_file'),
    mp_dfpt_extra.SOURCE: (import_mp_dfpt_extra, 'extxyz_file'),
}
READERS = {petousis2017.SOURCE: petousis2017.read_rows, mp_dfpt_extra.SOURCE: mp_dfpt_extra.read_rows}


def process_type(source: str) -> str:
    """The process type of ``source``'s import calcfunction (its entry point ``dielectrics.<name>``)."""
    function, _ = IMPORTERS[source]
    return f'aiida.calculations:dielectrics.{function.__name__}'


def file_sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def imported_ids(source: str) -> list[str]:
    """Source ids of all dielectric nodes imported from ``source`` (in any group)."""
    query = QueryBuilder().append(
        DielectricData, filters={'attributes.source': source}, project='attributes.source_id'
    )
    return sorted(query.all(flat=True))


def run_import(source: str, path, group_label: str | None = None):
    """Import ``source``'s file at ``path`` into the group ``group_label`` (default: named after the data
    set), adding only rows not imported before. The group gets the nodes of this file's rows, whichever
    import made them, and nothing else.

    Returns ``(report, process_node)``; the process node is ``None`` when this very file was imported
    before, so there is nothing to do.
    """
    function, file_input = IMPORTERS[source]
    path = pathlib.Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f'no such file: {path}')
    sha256 = file_sha256(path)
    existing = imported_ids(source)
    earlier = QueryBuilder().append(SinglefileData, filters={'extras.sha256': sha256}, tag='file')
    earlier.append(
        CalcFunctionNode,
        with_incoming='file',
        filters={'attributes.exit_status': 0, 'process_type': process_type(source)},
    )
    group, _ = Group.collection.get_or_create(label=group_label or source)
    if earlier.count():
        group.add_nodes(imported_nodes(source, file_ids(source, path)))
        return {'imported': 0, 'already_present': len(existing), 'skipped': []}, None

    data_file = SinglefileData(file=path)
    data_file.base.extras.set('sha256', sha256)
    # Nodes and links written in bulk in one transaction (``benchmarks/bench_import.py`` compares this
    # with the engine's per-link validation); if the import fails, nothing is stored.
    results, node = run_in_bulk(function, **{file_input: data_file, 'skip': List(existing)})
    group.add_nodes(imported_nodes(source, file_ids(source, path)))
    return results['report'].get_dict(), node


def run_petousis2017_import(path, group_label: str = petousis2017.SOURCE):
    """:func:`run_import` of the Petousis 2017 CSV."""
    return run_import(petousis2017.SOURCE, path, group_label)


def file_ids(source: str, path) -> list[str]:
    """The source ids of the valid rows in ``source``'s file at ``path``."""
    return [row.material_id for row in READERS[source](path) if not isinstance(row, RowError)]


def imported_nodes(source: str, material_ids: Iterable[str]) -> list:
    """The structures and dielectric results of ``material_ids`` made by ``source``'s imports, whichever
    run made them."""
    keys = {output_key(material_id) for material_id in material_ids}
    labels = [f'{output}__{key}' for key in sorted(keys) for output in ('structures', 'dielectrics')]
    if not labels:
        return []
    query = QueryBuilder().append(
        CalcFunctionNode, filters={'process_type': process_type(source)}, tag='import'
    )
    query.append(
        (StructureData, DielectricData), with_incoming='import', edge_filters={'label': {'in': labels}}
    )
    return query.all(flat=True)
