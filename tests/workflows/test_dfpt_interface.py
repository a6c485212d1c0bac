"""Every registered DFPT engine honours the common interface: ports, outputs, exit codes, protocols, builder."""

import inspect

import pytest
from aiida import orm

from aiida_dielectrics.workflows.dfpt import engines, load_engine
from aiida_dielectrics.workflows.dfpt.common import DfptWorkChain
from tests.qe_setup import fcc_binary

COMMON_INPUTS = ('structure', 'symmetrize', 'symprec', 'min_interatomic_distance', 'relax')
COMMON_EXIT_CODES = (
    'ERROR_METAL',
    'ERROR_SYMMETRIZATION',
    'ERROR_SUB_PROCESS_FAILED_RELAX',
    'ERROR_SUB_PROCESS_FAILED_DFPT',
    'ERROR_MISSING_DIELECTRIC_OUTPUT',
)


def test_both_engines_are_registered():
    assert {'qe', 'vasp'} <= set(engines())
    with pytest.raises(ValueError, match='unknown DFPT engine `abinit`; installed: qe, vasp'):
        load_engine('abinit')


@pytest.mark.parametrize('engine', engines())
def test_engine_implements_the_interface(engine):
    workchain = load_engine(engine)
    assert issubclass(workchain, DfptWorkChain)
    spec = workchain.spec()
    assert set(COMMON_INPUTS) <= set(spec.inputs)
    assert {'dielectric', 'structure'} <= set(spec.outputs)
    for name in COMMON_EXIT_CODES:  # same name, same status for every engine
        assert spec.exit_codes[name].status == DfptWorkChain.spec().exit_codes[name].status
    assert {'fast', 'moderate', 'precise'} <= set(workchain.get_available_protocols())
    for protocol, about in workchain.get_available_protocols().items():
        assert about['description'], f'{engine} protocol {protocol} has no description'
    signature = inspect.signature(workchain.get_builder_from_protocol)
    assert list(signature.parameters) == list(
        inspect.signature(DfptWorkChain.get_builder_from_protocol).parameters
    )
    assert workchain.CODES and workchain.DEFAULT_POTENTIAL_FAMILY
    with pytest.raises(ValueError, match='unknown protocol override no_such_key'):
        workchain.get_protocol_inputs('fast', {'no_such_key': 1})


@pytest.mark.parametrize('engine', engines())
def test_overlapping_atoms_are_refused_by_every_engine(engine, aiida_localhost):
    """The common port validator runs whatever the engine, before any engine-specific check."""
    workchain = load_engine(engine)
    structure = fcc_binary(['Mg', 'O'], 4.212, second=(0.05, 0.0, 0.0))
    inputs = {'structure': structure, 'min_interatomic_distance': orm.Float(0.5)}
    message = workchain.spec().inputs.validator(inputs, workchain.spec().inputs)
    assert message == 'invalid structure: atoms 0.149 Å apart (minimum 0.5 Å)'
