"""Run a calcfunction over thousands of nodes and write its provenance in bulk.

AiiDA's engine validates each link as it adds it: a uniqueness query and a cycle check (a recursive
``with_ancestors`` query), 30–100 ms per link on SQLite. A prediction batch has two links per structure
(its structure in, its prediction out), so for 10,000 candidates the engine spends most of the campaign
validating links that cannot be wrong: every output is a new node, so no cycle and no duplicate is
possible. :func:`run_in_bulk` runs the function's body, then, in one storage transaction, stores the
process node (and any unstored input) with ``Node.store``, and the new output nodes and every link with
the storage backend's ``bulk_insert``, as ``verdi archive import`` does; outputs are validated, cleaned
and hashed as ``Node.store`` would. The graph is the one the engine writes — same node types, attributes,
hashes, link types and labels, the CALL link from a calling work chain — which
``tests/test_provenance.py`` checks by comparing the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aiida.common.links import LinkType
from aiida.engine import ExitCode, Process, ProcessState
from aiida.engine.processes.ports import PORT_NAMESPACE_SEPARATOR as SEPARATOR
from aiida.manage import get_manager
from aiida.orm import CalcFunctionNode, Data, Node, QueryBuilder
from aiida.orm.entities import EntityTypes

#: Nodes loaded per query, below SQLite's limit on bound parameters.
CHUNK = 500
#: The columns of a node row, as ``bulk_insert`` takes them.
NODE_COLUMNS = (
    'uuid',
    'node_type',
    'process_type',
    'label',
    'description',
    'ctime',
    'mtime',
    'attributes',
    'extras',
    'repository_metadata',
)


def run_in_bulk(function, metadata: Mapping | None = None, **inputs) -> tuple[dict, CalcFunctionNode]:
    """Like ``function.run_get_node(**inputs)`` for a calcfunction, with the provenance written in bulk.

    ``inputs`` may be nested mappings (namespaces) of ``Data`` nodes, stored or not; ``metadata`` takes
    ``label``, ``description`` and ``call_link_label`` as the engine's does. Returns what the engine
    returns (the stored outputs) and the finished process node. If the function raises, nothing is
    stored; an :class:`~aiida.engine.ExitCode` it returns is recorded as the engine would.
    """
    metadata = dict(metadata or {})
    flat_inputs = flatten(inputs)
    for label, node in flat_inputs.items():
        if not isinstance(node, Data):
            raise TypeError(f'input {label} is a {type(node).__name__}, not a Data node')
    process_class = function.process_class
    problem = process_class.spec().inputs.validate(inputs)
    if problem is not None:
        raise ValueError(f'invalid inputs for {process_class._func.__name__}: {problem}')
    backend = get_manager().get_profile_storage()
    # In a transaction, reading a stored node's attributes does not re-query the database for each one.
    with backend.transaction():
        result = process_class._func(**inputs)
        exit_code = result if isinstance(result, ExitCode) else ExitCode()
        outputs = {} if isinstance(result, ExitCode) else result
        if isinstance(outputs, Data):
            outputs = {process_class.SINGLE_OUTPUT_LINKNAME: outputs}
        flat_outputs = flatten(outputs)
        for label, node in flat_outputs.items():
            if not isinstance(node, Data) or node.is_stored:
                raise ValueError(f'output {label} must be a new (unstored) Data node')

        process = finished_process_node(process_class, exit_code, metadata)
        for node in [process, *flat_inputs.values()]:
            if not node.is_stored:
                node.store()
        output_pks = dict(zip(flat_outputs, insert_nodes(flat_outputs.values()), strict=True))
        links = [
            link_row(node.pk, process.pk, LinkType.INPUT_CALC, label) for label, node in flat_inputs.items()
        ]
        links += [link_row(process.pk, pk, LinkType.CREATE, label) for label, pk in output_pks.items()]
        caller = Process.current()
        if caller is not None:
            label = metadata.get('call_link_label', 'CALL')
            links.append(link_row(caller.node.pk, process.pk, LinkType.CALL_CALC, label))
        backend.bulk_insert(EntityTypes.LINK, links)
        process.base.extras.set(process.base.caching._HASH_EXTRA_KEY, process_hash(process, flat_inputs))
    stored = load_nodes(list(output_pks.values()))
    outputs = unflatten({label: stored[pk] for label, pk in output_pks.items()})
    return (outputs[process_class.SINGLE_OUTPUT_LINKNAME] if isinstance(result, Data) else outputs), process


def finished_process_node(process_class, exit_code: ExitCode, metadata: Mapping) -> CalcFunctionNode:
    """An unstored, sealed process node with the attributes the engine sets on a finished calcfunction."""
    process = CalcFunctionNode(label=metadata.get('label', ''), description=metadata.get('description', ''))
    process.set_process_type(process_class.build_process_type())
    process.set_process_label(process_class._func.__name__)
    process.base.attributes.set_many(
        get_manager().get_runner().plugin_version_provider.get_version_info(process_class)
    )
    process.set_metadata_inputs(None)
    process.store_source_info(process_class._func)
    process.set_process_state(ProcessState.FINISHED)
    process.set_exit_status(exit_code.status)
    process.set_exit_message(exit_code.message)
    return process.seal()


def process_hash(process: CalcFunctionNode, inputs: dict[str, Data]) -> str:
    """The hash the engine gives the process node, from its inputs' stored hashes.

    ``rehash()`` would recompute every input's hash from its attributes (~1.5 ms for a structure); a
    stored node's hash is already in its extras and cannot have changed, since its attributes cannot.
    """
    from aiida.common.hashing import make_hash
    from aiida.orm.nodes.caching import NodeCaching

    objects = NodeCaching.get_objects_to_hash(process.base.caching)
    objects['inputs'] = {
        label: node.base.caching.get_hash() or node.base.caching.compute_hash()
        for label, node in inputs.items()
        if label not in process.base.caching._hash_ignored_inputs
    }
    return make_hash(objects)


def insert_nodes(nodes: Iterable[Data]) -> list[int]:
    """Store new data nodes with one ``bulk_insert``: validated, cleaned and hashed as ``Node.store`` does,
    without its two flushes per node. Returns their pks; the Python objects stay unstored."""
    rows = []
    for node in nodes:
        node._validate_storability()
        node._validate()
        node.backend_entity.clean_values()
        node.base.repository._store()
        node.base.extras.set(node.base.caching._HASH_EXTRA_KEY, node.base.caching._compute_hash())
        model = node.backend_entity.bare_model
        row = {column: getattr(model, column) for column in NODE_COLUMNS}
        row['user_id'] = node.user.pk
        row['dbcomputer_id'] = node.computer.pk if node.computer is not None else None
        rows.append(row)
    return get_manager().get_profile_storage().bulk_insert(EntityTypes.NODE, rows)


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
