"""``run_in_bulk`` writes the graph the engine writes: compared node by node, link by link, and with
caching enabled the same cached clones."""

import pytest
from aiida.common.links import LinkType
from aiida.engine import ExitCode, WorkChain, calcfunction, run_get_node
from aiida.manage.caching import enable_caching
from aiida.orm import CalcFunctionNode, Dict, Float, Int, QueryBuilder, SinglefileData, Str, load_node

from aiida_dielectrics.tools.provenance import run_in_bulk

#: One entry per run of ``scale``'s body, to see which runs came from the cache.
BODY_RUNS = []


@calcfunction
def scale(factor: Float, **values) -> dict:
    """Outputs in a namespace plus a plain output, like ``predict_structures``."""
    BODY_RUNS.append(factor.value)
    if factor.value < 0:
        return ExitCode(300, 'negative factor')
    if factor.value == 0:
        raise ZeroDivisionError('factor is zero')
    scaled = {key: Float(node.value * factor.value) for key, node in values['numbers'].items()}
    return {'scaled': scaled, 'report': Dict({'count': len(scaled)})}


@calcfunction
def total(**values) -> Float:
    return Float(sum(node.value for node in values.values()))


@calcfunction
def write_note(text: Str) -> SinglefileData:
    """An output with a file in the repository."""
    import io

    return SinglefileData(io.BytesIO(text.value.encode()), filename='note.txt')


def graph(process: CalcFunctionNode) -> dict:
    """What an engine run and a bulk run must agree on, without pks, uuids and times."""
    attributes = process.base.attributes.all
    incoming = {
        (link.link_type.value, link.link_label, link.node.uuid)
        for link in process.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    }
    outgoing = {
        (
            link.link_type.value,
            link.link_label,
            link.node.node_type,
            repr(link.node.base.attributes.all),
            repr(link.node.base.extras.all),
            tuple(link.node.base.repository.list_object_names()),
        )
        for link in process.base.links.get_outgoing().all()
    }
    output_hashes = sorted(
        link.node.base.caching.get_hash() for link in process.base.links.get_outgoing().all()
    )
    return {
        'node': (process.node_type, process.process_type, process.process_label, process.exit_status),
        'label': (process.label, process.description),
        'extras': sorted(process.base.extras.keys()),
        'attributes': attributes,
        'repository': process.base.repository.list_object_names(),
        'hash': process.base.caching.get_hash(),
        'incoming': incoming,
        'outgoing': outgoing,
        'output_hashes': output_hashes,
    }


def test_bulk_graph_equals_engine_graph(aiida_profile):
    numbers = {f'n{i}': Float(i).store() for i in range(5)}
    factor = Float(2.5).store()

    engine_outputs, engine_node = scale.run_get_node(factor=factor, numbers=numbers)
    bulk_outputs, bulk_node = run_in_bulk(scale, factor=factor, numbers=numbers)

    assert graph(bulk_node) == graph(engine_node)
    assert bulk_node.is_finished_ok and bulk_node.is_sealed
    assert bulk_outputs['scaled']['n3'].is_stored
    assert bulk_outputs['scaled']['n3'].value == engine_outputs['scaled']['n3'].value == 7.5
    assert bulk_node.outputs.scaled.n3.pk == bulk_outputs['scaled']['n3'].pk
    assert bulk_node.inputs.numbers.n1.pk == numbers['n1'].pk


def test_unstored_inputs_single_output_and_metadata(aiida_profile):
    values = {'a': Float(1.0), 'b': Float(2.0)}
    result, node = run_in_bulk(total, metadata={'label': 'sum', 'description': 'a test'}, **values)
    assert isinstance(result, Float) and result.value == 3.0
    assert all(value.is_stored for value in values.values())
    assert (node.label, node.description) == ('sum', 'a test')
    assert node.outputs.result.pk == result.pk
    engine_result, engine_node = total.run_get_node(
        **values, metadata={'label': 'sum', 'description': 'a test'}
    )
    assert graph(node) == graph(engine_node)
    assert node.base.attributes.get('metadata_inputs') == {
        'metadata': {'label': 'sum', 'description': 'a test'}
    }
    assert engine_result.value == result.value


def test_exit_code_is_recorded_and_exception_stores_nothing(aiida_profile):
    numbers = {'x': Float(1.0)}
    outputs, node = run_in_bulk(scale, factor=Float(-1.0), numbers=numbers)
    assert outputs == {}
    assert (node.exit_status, node.exit_message) == (300, 'negative factor')
    assert node.is_failed and node.is_sealed

    before = QueryBuilder().append(CalcFunctionNode).count()
    with pytest.raises(ZeroDivisionError):
        run_in_bulk(scale, factor=Float(0.0), numbers={'y': Float(1.0)})
    assert QueryBuilder().append(CalcFunctionNode).count() == before


def test_invalid_inputs_are_refused(aiida_profile):
    with pytest.raises(ValueError, match='invalid inputs for scale'):
        run_in_bulk(scale, factor=Str('two'), numbers={'x': Float(1.0)})
    with pytest.raises(TypeError, match='not a Data node'):
        run_in_bulk(total, a=Float(1.0), b=CalcFunctionNode())


class CallsInBulk(WorkChain):
    """A work chain step that runs a calcfunction in bulk, as the screening work chain does."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('count', valid_type=Int)
        spec.outline(cls.add)
        spec.output('total', valid_type=Float)

    def add(self):
        values = {f'v{i}': Float(i) for i in range(self.inputs.count.value)}
        result, _ = run_in_bulk(total, metadata={'call_link_label': 'add_up'}, **values)
        self.out('total', result)


def test_call_link_from_a_calling_work_chain(aiida_profile):
    results, workchain = run_get_node(CallsInBulk, count=Int(4))
    assert workchain.is_finished_ok
    assert results['total'].value == 6.0
    called = workchain.base.links.get_outgoing(link_type=LinkType.CALL_CALC).one()
    assert called.link_label == 'add_up'
    assert called.node.outputs.result.pk == results['total'].pk


def cached_runs(numbers: dict, factor: Float, first_run, metadata=None):
    """A first run (``first_run``: the engine or ``run_in_bulk``), then, with caching enabled for
    ``scale``, a cached run by each; returns the three process nodes and the bulk run's outputs."""
    _, first = first_run(factor=factor, numbers=numbers)
    runs = len(BODY_RUNS)
    with enable_caching(identifier=first.process_type):
        bulk_outputs, bulk = run_in_bulk(scale, metadata=metadata, factor=factor, numbers=numbers)
        _, engine = scale.run_get_node(factor=factor, numbers=numbers, metadata=metadata or {})
    assert len(BODY_RUNS) == runs, 'a cached run ran the function body'
    return first, bulk, engine, bulk_outputs


@pytest.mark.parametrize(
    ('first_run', 'offset'),
    [(scale.run_get_node, 0.5), (lambda **inputs: run_in_bulk(scale, **inputs), 0.25)],
)
def test_cached_run_equals_the_engines_cached_run(aiida_profile, first_run, offset):
    # The profile is the session's: values no other test uses, so the first run is the only cache source.
    numbers = {f'n{i}': Float(i + offset).store() for i in range(4)}
    factor = Float(1.5).store()
    first, bulk, engine, bulk_outputs = cached_runs(numbers, factor, first_run, {'label': 'again'})

    assert bulk.base.caching.get_cache_source() == first.uuid
    assert engine.base.caching.get_cache_source() in (first.uuid, bulk.uuid)
    assert graph(bulk) == graph(engine)
    # As the engine's clone: the first run's label and attributes, its outputs cloned, the same hash.
    assert bulk.label == first.label == 'scale'  # not 'again': the engine's clone takes the source's
    assert bulk.base.attributes.all == first.base.attributes.all
    assert graph(bulk)['outgoing'] == graph(first)['outgoing']
    assert bulk.base.caching.get_hash() == first.base.caching.get_hash()
    clone, original = bulk_outputs['scaled']['n2'], first.outputs.scaled.n2
    assert clone.pk != original.pk and clone.value == original.value == 1.5 * (2 + offset)
    assert bulk.outputs.scaled.n2.pk == clone.pk
    assert bulk.inputs.numbers.n2.pk == numbers['n2'].pk


def test_cached_failed_run_and_unstored_inputs(aiida_profile):
    """A failed run is a valid cache source for the engine (its exit code does not invalidate caching);
    unstored inputs equal to stored ones hit the cache too, as the engine's do."""
    first, bulk, engine, outputs = cached_runs({'x': Float(1.25)}, Float(-2.0), scale.run_get_node)
    assert outputs == {}
    assert bulk.base.caching.get_cache_source() == first.uuid
    assert (
        (bulk.exit_status, bulk.exit_message)
        == (engine.exit_status, engine.exit_message)
        == (300, 'negative factor')
    )
    assert graph(bulk) == graph(engine)

    values = {'a': Float(3.0), 'b': Float(4.0)}
    first_result, first_node = run_in_bulk(total, **values)
    with enable_caching(identifier=first_node.process_type):
        result, node = run_in_bulk(total, a=Float(3.0), b=Float(4.0))
    assert node.base.caching.get_cache_source() == first_node.uuid
    assert isinstance(result, Float) and result.value == 7.0 and result.pk != first_result.pk


def test_disable_cache_runs_the_body(aiida_profile):
    numbers, factor = {'y': Float(2.0).store()}, Float(3.0).store()
    _, first = scale.run_get_node(factor=factor, numbers=numbers)
    runs = len(BODY_RUNS)
    metadata = {'disable_cache': True}
    with enable_caching(identifier=first.process_type):
        _, bulk = run_in_bulk(scale, metadata=metadata, factor=factor, numbers=numbers)
        _, engine = scale.run_get_node(factor=factor, numbers=numbers, metadata=metadata)
    assert len(BODY_RUNS) == runs + 2
    assert not bulk.base.caching.is_created_from_cache
    assert graph(bulk) == graph(engine)


def test_cache_source_is_a_valid_one(aiida_profile):
    """A node marked invalid for caching is not reused (the engine's ``is_valid_cache``)."""
    numbers, factor = {'z': Float(5.0).store()}, Float(2.0).store()
    _, first = run_in_bulk(scale, factor=factor, numbers=numbers)
    first.base.caching.is_valid_cache = False
    with enable_caching(identifier=first.process_type):
        _, again = run_in_bulk(scale, factor=factor, numbers=numbers)
    assert not again.base.caching.is_created_from_cache
    assert load_node(again.pk).base.caching.get_hash() == first.base.caching.get_hash()


def test_cached_output_files(aiida_profile):
    text = Str('ε∞ = 4.2').store()
    note, first = run_in_bulk(write_note, text=text)
    with enable_caching(identifier=first.process_type):
        clone, bulk = run_in_bulk(write_note, text=text)
        _, engine = write_note.run_get_node(text=text)
    assert bulk.base.caching.get_cache_source() == first.uuid
    assert graph(bulk) == graph(engine)
    assert clone.pk != note.pk and clone.get_content() == note.get_content() == 'ε∞ = 4.2'


def test_caching_from_the_profile_option(aiida_profile):
    """The daemon reads caching from the profile (``verdi config set caching.enabled_for …``), not from
    ``enable_caching``, which only affects the interpreter it runs in."""
    from aiida import get_profile

    numbers, factor = {'w': Float(7.5).store()}, Float(4.0).store()
    _, first = run_in_bulk(scale, factor=factor, numbers=numbers)
    # The loaded profile: another test's temporary profile may have left its configuration current.
    profile = get_profile()
    profile.set_option('caching.enabled_for', [first.process_type])
    try:
        _, again = run_in_bulk(scale, factor=factor, numbers=numbers)
    finally:
        profile.unset_option('caching.enabled_for')
    assert again.base.caching.get_cache_source() == first.uuid
