"""Relaxation as an AiiDA process: structures in, relaxed structures and their energies out, reusable.

:func:`relax_structures` is one calcfunction over a batch: ``structures.<key>`` in, ``relaxed.<key>`` (a
``StructureData``, for every structure the potential could move) and ``results.<key>`` (a ``Dict``:
energies raw and on the MP2020 scale, volume change, steps, convergence, reason) out, so each relaxed
structure links to its input through the process. :func:`relax` writes that graph in bulk and first
looks for relaxations already stored: a structure with the same content (its AiiDA hash) relaxed with
the same potential and settings is not relaxed again, whichever campaign relaxed it. The work itself is
:class:`aiida_dielectrics.science.relax.Relaxer`, which needs no profile.
"""

from __future__ import annotations

from aiida.engine import calcfunction
from aiida.orm import CalcFunctionNode, Dict, Node, QueryBuilder, StructureData

from aiida_dielectrics.calculations.predictions import pymatgen_structure
from aiida_dielectrics.science import relax as science
from aiida_dielectrics.tools.provenance import CHUNK, run_in_bulk

PROCESS_LABEL = 'relax_structures'
#: Relaxed structures per process node: small enough that an interrupted campaign loses little.
BATCH = 50


def settings(
    potential: str = science.DEFAULT_POTENTIAL,
    fmax: float = science.FMAX,
    max_steps: int = science.MAX_STEPS,
    fix_cell: bool = False,
) -> dict:
    """The ``parameters`` of :func:`relax_structures`: everything that determines its result."""
    if potential not in science.POTENTIALS:
        raise ValueError(f'unknown potential {potential!r}; choose one of {", ".join(science.POTENTIALS)}')
    if not fmax > 0 or max_steps < 1:
        raise ValueError(f'fmax must be > 0 and max_steps ≥ 1 (got {fmax}, {max_steps})')
    return {
        'potential': potential,
        'fmax': float(fmax),
        'max_steps': int(max_steps),
        'fix_cell': bool(fix_cell),
    }


@calcfunction
def relax_structures(**inputs) -> dict:
    """Relax ``structures.<key>`` as ``parameters`` says (:func:`settings`); outputs ``relaxed.<key>``,
    ``results.<key>`` and a ``report`` with the reason of every structure that did not converge."""
    structures = inputs.get('structures', {})
    options = inputs['parameters'].get_dict()
    relaxer = science.Relaxer(options['potential'], options['fmax'], options['max_steps'])
    keys = sorted(structures)
    originals = [pymatgen_structure(structures[key]) for key in keys]
    results = relaxer.relax(originals, fix_cell=options.get('fix_cell', False))
    relaxed, records, failed = {}, {}, {}
    for key, original, result in zip(keys, originals, results, strict=True):
        records[key] = Dict(science.record(result, original, relaxer.potential))
        if result.structure is not None:
            relaxed[key] = StructureData(pymatgen=result.structure)
        if result.reason is not None:
            failed[key] = result.reason
    outputs = {'results': records, 'report': Dict({'converged': len(keys) - len(failed), 'failed': failed})}
    if relaxed:
        outputs['relaxed'] = relaxed
    return outputs


def structure_hash(node: StructureData) -> str:
    """The node's AiiDA hash (content only: cell, sites, kinds), also before it is stored."""
    from aiida.common.hashing import make_hash

    if node.is_stored and node.base.caching.get_hash():
        return node.base.caching.get_hash()
    return make_hash(node.base.caching.get_objects_to_hash())


def find_relaxations(structures: dict[str, StructureData], parameters: dict) -> dict[str, dict[str, Node]]:
    """Stored relaxations of structures with the same content as ``structures`` under ``parameters``:
    ``{key: {'results': Dict, 'relaxed': StructureData}}`` (``relaxed`` absent where it failed).

    The newest relaxation wins where a structure was relaxed more than once.
    """
    keys_by_hash: dict[str, list[str]] = {}
    for key, node in structures.items():
        keys_by_hash.setdefault(structure_hash(node), []).append(key)
    hashes = list(keys_by_hash)
    found: dict[int, dict[str, str]] = {}  # process id → {input key: structure hash}
    for start in range(0, len(hashes), CHUNK):
        query = QueryBuilder()
        query.append(
            StructureData,
            filters={'extras._aiida_hash': {'in': hashes[start : start + CHUNK]}},
            project='extras._aiida_hash',
            tag='structure',
        )
        query.append(
            CalcFunctionNode,
            with_incoming='structure',
            filters={'attributes.process_label': PROCESS_LABEL, 'attributes.exit_status': 0},
            edge_project='label',
            project='id',
            tag='process',
        )
        query.append(
            Dict,
            with_outgoing='process',
            edge_filters={'label': 'parameters'},
            filters={f'attributes.{name}': value for name, value in parameters.items()},
        )
        for row in query.iterdict():
            label = row['structure--process']['label'].removeprefix('structures__')
            found.setdefault(row['process']['id'], {})[label] = row['structure']['extras._aiida_hash']
    if not found:
        return {}
    outputs = QueryBuilder().append(
        CalcFunctionNode, filters={'id': {'in': list(found)}}, project='id', tag='p'
    )
    outputs.append(Node, with_incoming='p', edge_project='label', project='*', tag='output')
    by_process: dict[int, dict[str, Node]] = {}
    for row in outputs.iterdict():
        by_process.setdefault(row['p']['id'], {})[row['p--output']['label']] = row['output']['*']
    matches: dict[str, dict[str, Node]] = {}
    for process in sorted(found):  # oldest first: a newer relaxation overwrites
        for suffix, node_hash in found[process].items():
            nodes = by_process.get(process, {})
            if f'results__{suffix}' not in nodes:
                continue
            match = {'results': nodes[f'results__{suffix}']}
            if f'relaxed__{suffix}' in nodes:
                match['relaxed'] = nodes[f'relaxed__{suffix}']
            for key in keys_by_hash[node_hash]:
                matches[key] = match
    return matches


def relax(
    structures: dict[str, StructureData],
    threads: int | None = None,
    reuse: bool = True,
    batch: int = BATCH,
    **options,
) -> dict[str, dict[str, Node]]:
    """Relaxations of ``structures`` (``options``: those of :func:`settings`), each as ``{'results': Dict,
    'relaxed': StructureData}``: found among the stored ones (``reuse``) or run now with
    :func:`relax_structures` in batches of ``batch``, its graph written in bulk.

    ``threads`` sets torch's threads for this process (it does not change a result, so it is not a
    parameter of the calcfunction).
    """
    parameters = settings(**options)
    found = find_relaxations(structures, parameters) if reuse else {}
    missing = sorted(key for key in structures if key not in found)
    if missing and threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    for start in range(0, len(missing), batch):
        keys = missing[start : start + batch]
        outputs, _ = run_in_bulk(
            relax_structures, structures={key: structures[key] for key in keys}, parameters=Dict(parameters)
        )
        for key in keys:
            found[key] = {'results': outputs['results'][key]}
            if key in outputs.get('relaxed', {}):
                found[key]['relaxed'] = outputs['relaxed'][key]
    return found
