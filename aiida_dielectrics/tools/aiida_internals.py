"""The private aiida-core API that :mod:`.provenance` relies on, in one place.

``run_in_bulk`` writes the graph the engine writes without the engine's per-node and per-link steps,
so it needs a few things aiida-core does not publish: the function inside a calcfunction's process
class, the steps of ``Node.store`` one by one (validation, repository, hash, the database row), the
hash extra and the inputs a process hash leaves out, and the repository copy the engine's caching uses.
Nothing else in the package touches them. :func:`check` compares each with what this module expects
(present, same kind, same parameters) and names what changed; ``tests/tools/test_aiida_internals.py``
runs it and checks the behaviour built on them, so a new aiida-core that changes one fails there first.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable

from aiida.orm import Node
from aiida.orm.entities import EntityTypes
from aiida.orm.nodes.caching import NodeCaching
from aiida.orm.nodes.process.process import ProcessNodeCaching
from aiida.orm.utils.mixins import Sealable

#: The aiida-core releases this module was checked against (``tests/tools/test_aiida_internals.py``).
SUPPORTED_AIIDA = '>=2.9,<2.10'

#: The extra holding a node's hash, which the engine's cache look-up queries.
HASH_EXTRA_KEY: str = NodeCaching._HASH_EXTRA_KEY
#: Input link labels a process node's hash leaves out.
HASH_IGNORED_INPUTS: list[str] = ProcessNodeCaching._hash_ignored_inputs
#: The attribute a cached clone does not copy from its source (it is sealed anew).
SEALED_KEY: str = Sealable.SEALED_KEY
#: The columns of a node row, as ``StorageBackend.bulk_insert`` takes them (with user and computer ids).
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

#: What :func:`check` verifies: ``(module:owner, attribute, parameters or a type, what run_in_bulk uses it for)``.
#: ``parameters`` is the tuple of parameter names of a function; a type is what a constant must be.
REQUIRED: tuple[tuple[str, str, tuple[str, ...] | type, str], ...] = (
    ('aiida.orm.nodes.node:Node', '_validate_storability', ('self',), 'validate a node as Node.store does'),
    ('aiida.orm.nodes.node:Node', '_validate', ('self',), 'validate a node as Node.store does'),
    (
        'aiida.orm.nodes.node:Node',
        '_store',
        ('self', 'clean'),
        'store a process node without a cache look-up',
    ),
    (
        'aiida.orm.implementation.nodes:BackendNode',
        'clean_values',
        ('self',),
        'clean attributes before a row',
    ),
    ('aiida.storage.psql_dos.orm.entities:SqlaModelEntity', 'bare_model', property, 'read a node row'),
    ('aiida.orm.nodes.repository:NodeRepository', '_store', ('self',), 'store a new node’s files'),
    ('aiida.orm.nodes.repository:NodeRepository', '_copy', ('self', 'repo'), 'share a cache source’s files'),
    ('aiida.orm.nodes.caching:NodeCaching', '_HASH_EXTRA_KEY', str, 'write and look up hashes'),
    (
        'aiida.orm.nodes.caching:NodeCaching',
        '_compute_hash',
        ('self', 'ignore_errors', 'kwargs'),
        'hash new nodes',
    ),
    (
        'aiida.orm.nodes.caching:NodeCaching',
        'get_objects_to_hash',
        ('self',),
        'hash a process without queries',
    ),
    ('aiida.orm.nodes.process.process:ProcessNodeCaching', '_hash_ignored_inputs', list, 'hash a process'),
    (
        'aiida.orm.nodes.process.process:ProcessNodeCaching',
        'get_objects_to_hash',
        ('self',),
        'hash a process',
    ),
    ('aiida.orm.utils.mixins:Sealable', 'SEALED_KEY', str, 'clone a cache source as the engine does'),
    (
        'aiida.orm.implementation.storage_backend:StorageBackend',
        'bulk_insert',
        ('self', 'entity_type', 'rows', 'allow_defaults'),
        'insert nodes and links in bulk',
    ),
    ('aiida.plugins.utils:PluginVersionProvider', 'get_version_info', ('self', 'plugin'), 'record versions'),
)


def wrapped_function(process_class) -> Callable:
    """The plain function a calcfunction's process class runs (``FunctionProcess._func``)."""
    return process_class._func


def objects_to_hash_without_inputs(process: Node) -> dict:
    """What a process node's hash covers except its inputs: ``NodeCaching``'s part of
    ``ProcessNodeCaching.get_objects_to_hash``, which queries every input link and rehashes its node."""
    return NodeCaching.get_objects_to_hash(process.base.caching)


def node_row(node: Node) -> dict:
    """Validate, clean and hash an unstored node as ``Node.store`` does, store its files, and return its
    database row for ``bulk_insert`` (the Python object stays unstored)."""
    node._validate_storability()
    node._validate()
    node.backend_entity.clean_values()
    node.base.repository._store()
    node.base.extras.set(HASH_EXTRA_KEY, node.base.caching._compute_hash())
    model = node.backend_entity.bare_model
    row = {column: getattr(model, column) for column in NODE_COLUMNS}
    row['user_id'] = node.user.pk
    row['dbcomputer_id'] = node.computer.pk if node.computer is not None else None
    return row


def store_without_cache_lookup(node: Node) -> Node:
    """``node.store()`` without its cache look-up, for a process node whose look-up ``run_in_bulk`` has
    made itself from the inputs' stored hashes (``Node.store`` would hash it without its inputs)."""
    node._validate_storability()
    node._validate()
    node._store(clean=True)
    autogroup = node.backend.autogroup
    if autogroup.is_to_be_grouped(node):
        autogroup.get_or_create_group().add_nodes(node)
    return node


def copy_repository(target: Node, source: Node) -> None:
    """Give ``target`` the files of ``source`` without copying them, as a cached clone gets them."""
    target.base.repository._copy(source.base.repository)


def insert_rows(backend, entity_type: EntityTypes, rows: Iterable[dict]) -> list[int]:
    """``bulk_insert`` rows into the profile's storage, inside its current transaction; returns pks."""
    return backend.bulk_insert(entity_type, list(rows))


def check() -> list[str]:
    """What in the installed aiida-core differs from :data:`REQUIRED` and ``FunctionProcess._func``, one
    line each naming the attribute, what changed and what depends on it; empty when nothing did."""
    import aiida
    from aiida.engine import calcfunction

    def problem(where: str, change: str, purpose: str) -> str:
        return (
            f'aiida-core {aiida.__version__}: {where} {change} (run_in_bulk uses it to {purpose}); '
            f'aiida_dielectrics/tools/aiida_internals.py supports aiida-core {SUPPORTED_AIIDA}'
        )

    problems = []
    for owner_path, attribute, expected, purpose in REQUIRED:
        module_name, _, owner_name = owner_path.partition(':')
        where = f'{module_name}.{owner_name}.{attribute}'
        try:
            owner = getattr(importlib.import_module(module_name), owner_name)
        except (ImportError, AttributeError):
            problems.append(problem(where, f'is gone: no {owner_path.replace(":", ".")}', purpose))
            continue
        try:
            value = inspect.getattr_static(owner, attribute)
        except AttributeError:
            problems.append(problem(where, 'is gone', purpose))
            continue
        if expected is property:
            if not isinstance(value, property):
                problems.append(problem(where, f'is a {type(value).__name__}, no longer a property', purpose))
        elif isinstance(expected, type):
            if not isinstance(value, expected):
                problems.append(
                    problem(where, f'is a {type(value).__name__}, not a {expected.__name__}', purpose)
                )
        else:
            function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
            if not callable(function):
                problems.append(problem(where, f'is a {type(value).__name__}, no longer a function', purpose))
                continue
            parameters = tuple(inspect.signature(function).parameters)
            if parameters != expected:
                problems.append(problem(where, f'takes {parameters}, not {expected}', purpose))

    def probe():
        """A plain function, to see what its calcfunction's process class keeps of it."""

    process_class = calcfunction(probe).process_class
    if getattr(process_class, '_func', None) is not probe:
        problems.append(
            problem(
                'aiida.engine.processes.functions.FunctionProcess._func',
                'no longer holds the decorated function',
                'run a calcfunction body and record its source',
            )
        )
    return problems
