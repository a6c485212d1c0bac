"""The private aiida-core API behind ``run_in_bulk``: still there, same signatures, same behaviour.

A new aiida-core that changes one of them fails here with the name of what changed, before the graph
comparisons in ``test_provenance.py`` fail with a diff that does not say why.
"""

import aiida
import pytest
from aiida.common.hashing import make_hash
from aiida.engine import calcfunction
from aiida.manage import get_manager
from aiida.manage.caching import enable_caching
from aiida.orm import CalcFunctionNode, Dict, Float, SinglefileData, load_node
from aiida.orm.entities import EntityTypes
from aiida.orm.nodes.repository import NodeRepository
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from aiida_dielectrics.tools import aiida_internals as internals


@calcfunction
def double(value: Float) -> Float:
    return Float(2 * value.value)


def test_installed_aiida_core_is_supported():
    assert Version(aiida.__version__) in SpecifierSet(internals.SUPPORTED_AIIDA), (
        f'aiida-core {aiida.__version__} is outside {internals.SUPPORTED_AIIDA}: run these tests and '
        'tests/tools/test_provenance.py, then widen SUPPORTED_AIIDA in aiida_dielectrics/tools/aiida_internals.py '
        'and the README'
    )


def test_private_api_is_as_expected():
    problems = internals.check()
    assert not problems, '\n'.join(problems)


def test_check_names_what_changed(monkeypatch):
    monkeypatch.delattr(NodeRepository, '_copy')
    monkeypatch.setattr(NodeRepository, '_store', lambda self, backend: None)
    problems = internals.check()
    assert len(problems) == 2
    assert 'aiida.orm.nodes.repository.NodeRepository._copy is gone' in problems[1]
    assert "NodeRepository._store takes ('self', 'backend'), not ('self',)" in problems[0]
    assert f'aiida-core {aiida.__version__}:' in problems[0]


def test_check_sees_the_function_gone(monkeypatch):
    from aiida.engine.processes.functions import FunctionProcess

    build = FunctionProcess.build

    def without_func(func, node_class):
        process_class = build(func, node_class)
        del process_class._func
        return process_class

    monkeypatch.setattr(FunctionProcess, 'build', staticmethod(without_func))
    problems = internals.check()
    assert (
        len(problems) == 1 and 'FunctionProcess._func no longer holds the decorated function' in problems[0]
    )


def test_wrapped_function_is_the_plain_function(aiida_profile):
    function = internals.wrapped_function(double.process_class)
    result = function(Float(1.5))
    assert isinstance(result, Float) and not result.is_stored and result.value == 3.0


def test_node_row_stores_what_node_store_stores(aiida_profile, tmp_path):
    """A row from ``node_row`` inserted in bulk loads back as the node ``Node.store`` writes."""
    path = tmp_path / 'notes.txt'
    path.write_text('ε∞ = 4.2\n')
    for make in (lambda: Dict({'a': 1.0, 'nested': {'b': [1, 2]}}), lambda: SinglefileData(path)):
        stored = make().store()
        row = internals.node_row(new := make())
        assert not new.is_stored
        backend = get_manager().get_profile_storage()
        with backend.transaction():
            (pk,) = internals.insert_rows(backend, EntityTypes.NODE, [row])
        loaded = load_node(pk)
        assert type(loaded) is type(stored)
        assert loaded.base.attributes.all == stored.base.attributes.all
        assert loaded.base.extras.all == stored.base.extras.all  # the hash, under HASH_EXTRA_KEY
        assert list(loaded.base.extras.keys()) == [internals.HASH_EXTRA_KEY]
        assert loaded.base.caching.compute_hash() == loaded.base.caching.get_hash()
        assert loaded.base.repository.list_object_names() == stored.base.repository.list_object_names()
        for name in stored.base.repository.list_object_names():
            assert loaded.base.repository.get_object_content(
                name
            ) == stored.base.repository.get_object_content(name)
        assert (loaded.user.pk, loaded.computer) == (stored.user.pk, stored.computer)


def test_process_hash_from_the_parts(aiida_profile):
    """The engine's process hash is the inputs-free objects plus the inputs' hashes, minus the ignored labels."""
    _, process = double.run_get_node(Float(7.0))
    objects = internals.objects_to_hash_without_inputs(process)
    assert 'inputs' not in objects
    inputs = {
        link.link_label: link.node.base.caching.get_hash()
        for link in process.base.links.get_incoming().all()
        if link.link_label not in internals.HASH_IGNORED_INPUTS
    }
    assert inputs and make_hash({**objects, 'inputs': inputs}) == process.base.caching.get_hash()
    assert set(internals.HASH_IGNORED_INPUTS) == {'CALL_CALC', 'CALL_WORK'}


@calcfunction
def constant() -> Float:
    return Float(1.0)


def test_store_without_cache_lookup_and_copy_repository(aiida_profile):
    """A twin of a stored process (its files through ``copy_repository``, its attributes): with caching on,
    ``Node.store`` makes it a clone of that process; ``store_without_cache_lookup`` stores it as it is."""
    _, source = constant.run_get_node()

    def twin():
        node = CalcFunctionNode()
        node.set_process_type(source.process_type)
        internals.copy_repository(node, source)
        node.base.attributes.set_many(
            {key: value for key, value in source.base.attributes.all.items() if key != internals.SEALED_KEY}
        )
        return node

    with enable_caching(identifier=source.process_type):
        assert twin().store().base.caching.get_cache_source() == source.uuid
        node = internals.store_without_cache_lookup(twin())
    assert node.is_stored and not node.base.caching.is_created_from_cache
    assert node.base.repository.list_object_names() == source.base.repository.list_object_names() != []
    assert node.base.repository.hash() == source.base.repository.hash()
    assert node.base.caching.get_hash() == source.base.caching.get_hash()


def test_sealed_key_is_the_seal(aiida_profile):
    _, process = double.run_get_node(Float(13.0))
    assert process.base.attributes.get(internals.SEALED_KEY) is True


@pytest.mark.parametrize('column', internals.NODE_COLUMNS)
def test_node_columns_exist(column):
    from aiida.storage.psql_dos.models.node import DbNode

    assert column in DbNode.__table__.columns
