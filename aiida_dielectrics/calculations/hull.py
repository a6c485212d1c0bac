"""The reference hull of a campaign as provenance, and candidates' energies above it.

A hull is a ``Dict`` node (``hull``) made by a calcfunction, so the campaign records which reference it
used: ``{source, energy_scale, potential, entries: [{entry_id, composition, energy}], elements}``,
total energies in eV on the MP2020 scale. Two sources:

- :func:`hull_from_entries`: a JSON file of pymatgen entries (``SinglefileData``), e.g. Materials
  Project entries saved from ``mp-api``; :func:`fetch_mp_hull` fetches them first (``mp`` extra,
  ``MP_API_KEY``) and stores the file it got.
- :func:`default_hull`: the offline default, from relaxations (:mod:`.calculations.relax`) with one
  potential of the element reference states and of the known structures (the imported data sets) in the
  candidates' chemical systems and their subsystems. :func:`build_default_hull` relaxes only what no
  earlier campaign has relaxed with the same potential and settings.

:func:`hull_energies` takes candidates' relaxation results to ``e_above_hull.<key>`` against a hull
(and, by default, against each other). The science is in :mod:`aiida_dielectrics.science.hull`.
"""

from __future__ import annotations

import json
import math
import pathlib
import tempfile
from collections.abc import Iterable

from aiida.engine import calcfunction
from aiida.orm import CalcFunctionNode, Dict, Float, QueryBuilder, SinglefileData, StructureData
from pymatgen.core import Composition

from aiida_dielectrics.calculations import relax as relaxations
from aiida_dielectrics.science import hull as science
from aiida_dielectrics.science import references
from aiida_dielectrics.science.energies import SCHEME
from aiida_dielectrics.tools.provenance import load_nodes, run_in_bulk

#: Processes whose ``structures.*`` outputs are known structures (imported data sets).
IMPORT_PROCESS_TYPES = 'aiida.calculations:dielectrics.import_%'


@calcfunction
def hull_from_entries(entries: SinglefileData) -> Dict:
    """The hull of the pymatgen entries in a JSON file (see :func:`.science.hull.load_entries`)."""
    with entries.as_path() as path:
        loaded = science.load_entries(path)
    rows = science.entries_to_rows(loaded)
    elements = {}
    for row, entry in zip(rows, loaded, strict=True):
        if entry.composition.is_element:
            symbol = entry.elements[0].symbol
            best = elements.get(symbol)
            if best is None or entry.energy_per_atom < best[1]:
                elements[symbol] = (row['entry_id'], entry.energy_per_atom)
    return Dict(
        {
            'source': 'entries',
            'energy_scale': SCHEME,
            'potential': None,
            'entries': rows,
            'elements': {symbol: entry_id for symbol, (entry_id, _) in sorted(elements.items())},
            'filename': entries.filename,
        }
    )


def fetch_mp_hull(elements: Iterable[str], api_key: str | None = None) -> Dict:
    """The hull of Materials Project entries of the system spanned by ``elements``: fetched with
    ``mp-api``, stored as a JSON file node, then :func:`hull_from_entries` (so the provenance holds what MP
    returned)."""
    from monty.json import MontyEncoder

    elements = sorted(set(elements))
    fetched = science.fetch_mp_entries(elements, api_key)
    with tempfile.TemporaryDirectory() as folder:
        path = pathlib.Path(folder) / f'mp-entries-{"-".join(elements)}.json'
        path.write_text(json.dumps(fetched, cls=MontyEncoder))
        node = SinglefileData(path)
    return hull_from_entries(node)


@calcfunction
def default_hull(**inputs) -> Dict:
    """The hull of relaxation results: ``elements.<key>`` (trial structures of the elements; the lowest
    converged one of each element is its reference) and ``known.<key>`` (known structures; those that
    did not converge or have no MP2020 energy are left out and listed in ``excluded``), see
    :func:`.science.references.hull_rows`."""
    rows = references.hull_rows(
        {key: node.get_dict() for key, node in inputs.get('elements', {}).items()},
        {key: node.get_dict() for key, node in inputs.get('known', {}).items()},
    )
    return Dict({'source': 'default', 'energy_scale': SCHEME, **rows})


@calcfunction
def hull_energies(hull: Dict, **inputs) -> dict:
    """``e_above_hull.<key>`` (eV/atom) of candidates' relaxation results ``candidates.<key>`` (their
    MP2020 energies) against ``hull``; ``parameters`` may set ``include_candidates`` (default true: the
    candidates are part of the hull, and one on it gets its distance to the hull of all the others).
    The ``report`` gives the reason for every candidate without a value."""
    content = hull.get_dict()
    options = inputs['parameters'].get_dict() if 'parameters' in inputs else {}
    candidates = inputs.get('candidates', {})
    keys = sorted(candidates)
    compositions, energies, reasons = [], [], {}
    for key in keys:
        result = candidates[key].get_dict()
        compositions.append(Composition(result['composition']))
        energy = result['energy_mp']
        if content['potential'] is not None and result['potential'] != content['potential']:
            reasons[key] = f'relaxed with {result["potential"]}, the hull with {content["potential"]}'
            energy = None
        elif energy is None:
            reasons[key] = result['reason'] or result['mp_reason'] or 'no energy'
        energies.append(math.nan if energy is None else energy)
    values, why = science.e_above_hull_many(
        science.entries_from_rows(content['entries']),
        compositions,
        energies,
        include_candidates=options.get('include_candidates', True),
    )
    outputs = {}
    for key, value, reason in zip(keys, values, why, strict=True):
        if math.isfinite(value):
            outputs[key] = Float(float(value))
        else:
            reasons.setdefault(key, reason)
    return {'e_above_hull': outputs, 'report': Dict({'computed': len(outputs), 'missing': reasons})}


def run_hull_energies(hull: Dict, candidates: dict[str, Dict], include_candidates: bool = True):
    """:func:`hull_energies` with its graph written in bulk; returns ``(outputs, process_node)``."""
    return run_in_bulk(
        hull_energies,
        hull=hull,
        candidates=candidates,
        parameters=Dict({'include_candidates': include_candidates}),
    )


def known_structures(systems: Iterable[frozenset[str]]) -> dict[str, StructureData]:
    """Stored known structures (``structures.*`` outputs of the data-set imports) whose elements lie in
    one of ``systems`` (or a subsystem), by ``<import process pk>_<output key>``."""
    systems = [frozenset(system) for system in systems]
    query = QueryBuilder().append(
        CalcFunctionNode, filters={'process_type': {'like': IMPORT_PROCESS_TYPES}}, project='id', tag='import'
    )
    query.append(
        StructureData,
        with_incoming='import',
        edge_filters={'label': {'like': 'structures__%'}},
        edge_project='label',
        project=['id', 'attributes.kinds'],
        tag='structure',
    )
    keep = {}
    for row in query.iterdict():
        structure = row['structure']
        symbols = {symbol for kind in structure['attributes.kinds'] for symbol in kind['symbols']}
        if science.in_systems(symbols, systems):
            label = row['import--structure']['label'].removeprefix('structures__')
            keep[f'known_{row["import"]["id"]}_{label}'] = structure['id']
    nodes = load_nodes(list(keep.values()))
    return {key: nodes[pk] for key, pk in sorted(keep.items())}


def element_structures(elements: Iterable[str]) -> dict[str, tuple[StructureData, bool]]:
    """The trial structures of ``elements`` (:func:`.science.references.element_trials`) as unstored
    nodes, ``{<symbol>_<trial>: (node, fix_cell)}``; relaxing one whose content was relaxed before
    finds that relaxation."""
    trials = {}
    for symbol in elements:
        for name, (structure, fix_cell) in references.element_trials(symbol).items():
            trials[f'{symbol}_{name.replace("-", "_")}'] = (StructureData(pymatgen=structure), fix_cell)
    return trials


def build_default_hull(
    compositions: Iterable,
    potential: str = relaxations.science.DEFAULT_POTENTIAL,
    threads: int | None = None,
    **options,
) -> Dict:
    """The default hull for candidates with ``compositions``: element trials and known structures of
    their chemical systems relaxed with ``potential`` (or found already relaxed), then
    :func:`default_hull`. ``options``: ``fmax``, ``max_steps`` (as :func:`.relax.settings`)."""
    compositions = list(compositions)
    systems = science.chemical_systems(compositions)
    elements = references.elements_of(compositions)
    trials = element_structures(elements)
    fixed = {key: node for key, (node, fix_cell) in trials.items() if fix_cell}
    free = {key: node for key, (node, fix_cell) in trials.items() if not fix_cell}
    element_results = {}
    for group, fix_cell in ((free, False), (fixed, True)):
        found = relaxations.relax(group, threads=threads, potential=potential, fix_cell=fix_cell, **options)
        element_results.update({key: value['results'] for key, value in found.items()})
    known = relaxations.relax(known_structures(systems), threads=threads, potential=potential, **options)
    outputs, _ = run_in_bulk(
        default_hull,
        elements=element_results,
        known={key: value['results'] for key, value in known.items()},
    )
    return outputs
