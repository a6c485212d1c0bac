"""``run_in_bulk`` writes the graph the engine writes: compared node by node, link by link."""

import pytest
from aiida.common.links import LinkType
from aiida.engine import ExitCode, WorkChain, calcfunction, run_get_node
from aiida.orm import CalcFunctionNode, Dict, Float, Int, QueryBuilder, Str

from aiida_dielectrics.tools.provenance import run_in_bulk


@calcfunction
def scale(factor: Float, **values) -> dict:
    """Outputs in a namespace plus a plain output, like ``predict_structures``."""
    if factor.value < 0:
        return ExitCode(300, 'negative factor')
    if factor.value == 0:
        raise ZeroDivisionError('factor is zero')
    scaled = {key: Float(node.value * factor.value) for key, node in values['numbers'].items()}
    return {'scaled': scaled, 'report': Dict({'count': len(scaled)})}


@calcfunction
def total(**values) -> Float:
    return Float(sum(node.value for node in values.values()))


def graph(process: CalcFunctionNode) -> dict:
    """What an engine run and a bulk run must agree on, without pks, uuids and times."""
    attributes = process.base.attributes.all
    incoming = {
        (link.link_type.value, link.link_label, link.node.uuid)
        for link in process.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    }
    outgoing = {
        (link.link_type.value, link.link_label, link.node.node_type, repr(link.node.base.attributes.all))
        for link in process.base.links.get_outgoing().all()
    }
    output_hashes = sorted(
        link.node.base.caching.get_hash() for link in process.base.links.get_outgoing().all()
    )
    return {
        'node': (process.node_type, process.process_type, process.process_label, process.exit_status),
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
    engine_result, engine_node = total.run_get_node(**values)
    assert graph(node) == graph(engine_node) | {'node': graph(node)['node']}
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
