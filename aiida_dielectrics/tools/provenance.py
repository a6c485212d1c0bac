"""Run a calcfunction over thousands of nodes and write its provenance in bulk.

AiiDA's engine validates each link as it adds it: a uniqueness query and a cycle check (a recursive
``with_ancestors`` query), 30–100 ms per link on SQLite. A prediction batch has two links per structure
(its structure in, its prediction out), so for 10,000 candidates the engine spends most of the campaign
validating links that cannot be wrong: every output is a new node, so no cycle and no duplicate is
possible. :func:`run_in_bulk` runs the function's body, then, in one storage transaction, stores the
process node (and any unstored input) with ``Node.store``, and the new output nodes and every link with
the storage backend's ``bulk_insert``, as ``verdi archive import`` does; outputs are validated, cleaned
and hashed as ``Node.store`` would. The graph is the one the engine writes — same node types, attributes,
hashes, link types and labels, the CALL link from a calling work chain, and with caching enabled the same
cached clone — which ``tests/tools/test_provenance.py`` checks by comparing the two. The private
aiida-core API this needs is in :mod:`.aiida_internals`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiida.common import timezone
from aiida.common.links import LinkType
from aiida.common.utils import get_new_uuid
from aiida.engine import ExitCode, Process, ProcessState
from aiida.engine.processes.ports import PORT_NAMESPACE_SEPARATOR as SEPARATOR
from aiida.manage import get_manager
from aiida.orm import CalcFunctionNode, Data, Node, QueryBuilder
from aiida.orm.entities import EntityTypes
from aiida.plugins.utils import PluginVersionProvider

from aiida_dielectrics.tools import aiida_internals as internals

#: Nodes loaded per query, below SQLite's limit on bound parameters.
CHUNK = 500


def run_in_bulk(function, metadata: Mapping | None = None, **inputs) -> tuple[dict, CalcFunctionNode]:
    """Like ``function.run_get_node(**inputs)`` for a calcfunction, with the provenance written in bulk.

    ``inputs`` may be nested mappings (namespaces) of ``Data`` nodes, stored or not; ``metadata`` takes
    ``label``, ``description``, ``call_link_label`` and ``disable_cache`` as the engine's does. Returns what
    the engine returns (the stored outputs) and the finished process node. If the function raises, nothing
    is stored; an :class:`~aiida.engine.ExitCode` it returns is recorded as the engine would.

    With caching enabled for the function (``aiida.manage.caching.enable_caching``, or the profile's
    ``caching.*`` options), a run whose inputs hash as a finished run's does not run the body: as the
    engine, it stores a clone of that process node (extra ``_aiida_cached_from``) linked to these inputs,
    with clones of its outputs. Unstored inputs are then stored before the look-up, as the engine does.
    """
    metadata = dict(metadata or {})
    flat_inputs = flatten(inputs)
    for label, node in flat_inputs.items():
        if not isinstance(node, Data):
            raise TypeError(f'input {label} is a {type(node).__name__}, not a Data node')
    process_class = function.process_class
    body = internals.wrapped_function(process_class)
    problem = process_class.spec().inputs.validate({**inputs, 'metadata': metadata})
    if problem is not None:
        raise ValueError(f'invalid inputs for {body.__name__}: {problem}')
    process = new_process_node(process_class, metadata)
    use_cache = process.base.caching.should_use_cache()
    if use_cache:
        store_inputs(flat_inputs)
    backend = get_manager().get_profile_storage()
    # In a transaction, reading a stored node's attributes does not re-query the database for each one.
    with backend.transaction():
        source, node_hash = None, None
        if use_cache:
            node_hash = process_hash(process, flat_inputs)
            source = cache_source(process, node_hash)
        if source is None:
            result = body(**inputs)
            exit_code = result if isinstance(result, ExitCode) else ExitCode()
            outputs = {} if isinstance(result, ExitCode) else result
            if isinstance(outputs, Data):
                outputs = {process_class.SINGLE_OUTPUT_LINKNAME: outputs}
            flat_outputs = flatten(outputs)
            for label, node in flat_outputs.items():
                if not isinstance(node, Data) or node.is_stored:
                    raise ValueError(f'output {label} must be a new (unstored) Data node')
            process.set_process_state(ProcessState.FINISHED)
            process.set_exit_status(exit_code.status)
            process.set_exit_message(exit_code.message)
            output_rows = {label: internals.node_row(node) for label, node in flat_outputs.items()}
        else:
            output_rows = clone_from_cache(process, source)
        process.seal()
        store_inputs(flat_inputs)
        internals.store_without_cache_lookup(process)
        pks = internals.insert_rows(backend, EntityTypes.NODE, output_rows.values())
        output_pks = dict(zip(output_rows, pks, strict=True))
        links = [
            link_row(node.pk, process.pk, LinkType.INPUT_CALC, label) for label, node in flat_inputs.items()
        ]
        links += [link_row(process.pk, pk, LinkType.CREATE, label) for label, pk in output_pks.items()]
        caller = Process.current()
        if caller is not None:
            label = metadata.get('call_link_label', 'CALL')
            links.append(link_row(caller.node.pk, process.pk, LinkType.CALL_CALC, label))
        internals.insert_rows(backend, EntityTypes.LINK, links)
        process.base.extras.set(internals.HASH_EXTRA_KEY, node_hash or process_hash(process, flat_inputs))
        if source is not None:
            process.base.extras.set(process.base.caching.CACHED_FROM_KEY, source.uuid)
    stored = load_nodes(list(output_pks.values()))
    outputs = unflatten({label: stored[pk] for label, pk in output_pks.items()})
    # The engine's rule (``FunctionProcess.run_get_node``): a lone ``result`` is returned on its own.
    if len(outputs) == 1 and process_class.SINGLE_OUTPUT_LINKNAME in outputs:
        return outputs[process_class.SINGLE_OUTPUT_LINKNAME], process
    return outputs, process


#: What the engine's runner records as ``version``; its own, not the global runner's, which would connect to the
#: broker (a profile's ZeroMQ broker runs only with the daemon: ``predict --store`` waited 10 s, then failed).
_VERSIONS = PluginVersionProvider()


def new_process_node(process_class, metadata: Mapping) -> CalcFunctionNode:
    """An unstored process node with the attributes the engine sets before it runs a calcfunction."""
    function = internals.wrapped_function(process_class)
    process = CalcFunctionNode()
    ports = process_class.spec().inputs['metadata']
    for name in ('label', 'description'):  # the label's default is the function's name
        if name in metadata:
            setattr(process, name, metadata[name])
        elif ports[name].has_default():
            setattr(process, name, ports[name].default)
    process.set_process_type(process_class.build_process_type())
    process.set_process_label(function.__name__)
    process.base.attributes.set_many(_VERSIONS.get_version_info(process_class))
    process.set_metadata_inputs({'metadata': dict(metadata)} if metadata else None)
    process.store_source_info(function)
    return process


def store_inputs(inputs: Mapping[str, Data]) -> None:
    for node in inputs.values():
        if not node.is_stored:
            node.store()


def cache_source(process: CalcFunctionNode, node_hash: str) -> CalcFunctionNode | None:
    """The first valid cache source with the hash ``node_hash``, as the engine's ``_get_same_node`` finds it."""
    query = QueryBuilder().append(
        type(process), filters={f'extras.{internals.HASH_EXTRA_KEY}': node_hash}, subclassing=False
    )
    return next((node for (node,) in query.iterall() if node.base.caching.is_valid_cache), None)


def clone_from_cache(process: CalcFunctionNode, source: CalcFunctionNode) -> dict[str, dict]:
    """Make ``process`` a clone of ``source`` as ``Node._store_from_cache`` does (label, description, files,
    attributes but the seal); returns the rows of clones of its outputs by link label.

    The engine clones each output with ``Data.clone`` and stores it, which rehashes it: a clone has the
    source's attributes, extras and files, so its row is the source's with a new UUID and times, read for
    all outputs in one query instead of one query per output for ``clone`` (tested equal).
    """
    process.label = source.label
    process.description = source.description
    internals.copy_repository(process, source)
    for key, value in source.base.attributes.all.items():
        if key != internals.SEALED_KEY:
            process.base.attributes.set(key, value)
    copied = [column for column in internals.NODE_COLUMNS if column not in ('uuid', 'ctime', 'mtime')]
    query = QueryBuilder().append(CalcFunctionNode, filters={'id': source.pk}, tag='process')
    query.append(
        Data,
        with_incoming='process',
        edge_filters={'type': LinkType.CREATE.value},
        edge_project='label',
        project=[*copied, 'user_id', 'dbcomputer_id'],
        tag='output',
    )
    rows = {}
    for projected in query.iterdict():
        now = timezone.now()
        row = {**projected['output'], 'uuid': get_new_uuid(), 'ctime': now, 'mtime': now}
        rows[projected['process--output']['label']] = row
    return rows


def process_hash(process: CalcFunctionNode, inputs: dict[str, Data]) -> str:
    """The hash the engine gives the process node, from its (stored) inputs' stored hashes.

    ``rehash()`` would recompute every input's hash from its attributes (~1.5 ms for a structure); a
    stored node's hash is already in its extras and cannot have changed, since its attributes cannot.
    """
    from aiida.common.hashing import make_hash

    objects = internals.objects_to_hash_without_inputs(process)
    objects['inputs'] = {
        label: node.base.caching.get_hash() or node.base.caching.compute_hash()
        for label, node in inputs.items()
        if label not in internals.HASH_IGNORED_INPUTS
    }
    return make_hash(objects)


def load_nodes(pks: list[int]) -> dict[int, Node]:
    """Stored nodes by pk, a few hundred per query instead of one query each."""
    loaded = {}
    for start in range(0, len(pks), CHUNK):
        query = QueryBuilder().append(Node, filters={'id': {'in': pks[start : start + CHUNK]}})
        loaded.update((node.pk, node) for node in query.all(flat=True))
    return loaded


def link_row(source: int, target: int, link_type: LinkType, label: str) -> dict:
    return {'input_id': source, 'output_id': target, 'type': link_type.value, 'label': label}


def unflatten(flat: Mapping) -> dict:
    """The inverse of :func:`flatten`."""
    nested: dict = {}
    for label, value in flat.items():
        *namespaces, key = label.split(SEPARATOR)
        level = nested
        for name in namespaces:
            level = level.setdefault(name, {})
        level[key] = value
    return nested


def flatten(namespace: Mapping, prefix: str = '') -> dict:
    """``{'a': {'b': x}}`` → ``{'a__b': x}``: nested port namespaces as link labels."""
    flat = {}
    for key, value in namespace.items():
        label = f'{prefix}{key}'
        if isinstance(value, Mapping):
            flat.update(flatten(value, f'{label}{SEPARATOR}'))
        else:
            flat[label] = value
    return flat
