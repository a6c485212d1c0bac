"""Step through ``DfptQeWorkChain``'s outline with fake child nodes: every inspect step, no external code."""

import types

import numpy as np
import pytest
from aiida import orm
from aiida.plugins import WorkflowFactory

from tests.qe_setup import builder_for, fcc_binary

DfptQeWorkChain = WorkflowFactory('dielectrics.dfpt.qe')


@pytest.fixture
def process(request, generate_workchain):
    """A DfptQeWorkChain for MgO, instantiated but not run, past its engine checks."""
    builder = builder_for(request.getfixturevalue('qe'), fcc_binary(['Mg', 'O'], 4.212))
    workchain = generate_workchain(builder)
    workchain.setup()
    assert workchain.validate_engine_inputs() is None
    return workchain


def capture(_, **inputs):
    return types.SimpleNamespace(pk=0, inputs=inputs)


def scf_child(child, top_bands, occupations='fixed'):
    """An scf with 16 electrons (8 occupied bands) whose bands 8 and 9 are ``top_bands`` at two k points."""
    bands = orm.BandsData()
    bands.set_kpoints([[0, 0, 0], [0.5, 0, 0]])
    values = np.tile(np.linspace(-20, 0, 10), (2, 1))
    values[:, 7:9] = top_bands
    bands.set_bands(values[:, : 7 + len(top_bands[0])], units='eV')
    parameters = orm.Dict({'SYSTEM': {'occupations': occupations}})
    return child(
        inputs={'pw__parameters': parameters},
        outputs={'output_band': bands, 'output_parameters': orm.Dict({'number_of_electrons': 16.0})},
    )


def test_validation_prepares_pseudos_and_electrons(process):
    assert set(process.ctx.pseudos) == {'Mg', 'O'}
    assert process.ctx.num_electrons == 16  # Mg 2s2p3s (10) + O (6) in PseudoDojo
    assert not process.should_relax()


def test_scf_inputs_have_fixed_occupations_and_empty_bands(process):
    process.submit = capture  # record the inputs instead of launching
    context = process.run_scf()
    inputs = context['workchain_scf'].inputs
    parameters = inputs['pw']['parameters'].get_dict()
    assert parameters['SYSTEM']['occupations'] == 'fixed'
    assert parameters['SYSTEM']['nbnd'] == 8 + 4
    assert inputs['pw']['pseudos'] is process.ctx.pseudos
    assert inputs['pw']['structure'] is process.inputs.structure


def test_failed_scf(process, generate_workflow_node):
    process.ctx.workchain_scf = generate_workflow_node(exit_status=300)
    assert process.inspect_scf().status == DfptQeWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_SCF.status


@pytest.mark.parametrize(
    ('top_bands', 'occupations', 'reason'),
    [
        ([[0.0, 0.05], [-0.5, 1.0]], 'fixed', 'band gap 0.050 eV'),
        ([[0.0], [-0.5]], 'fixed', 'no empty band'),
        ([[0.0, 3.0], [-0.5, 4.0]], 'smearing', 'occupations `smearing`'),
    ],
)
def test_metal_after_scf(process, top_bands, occupations, reason, generate_workflow_node):
    process.ctx.workchain_scf = scf_child(generate_workflow_node, top_bands, occupations)
    exit_code = process.inspect_scf()
    assert exit_code.status == DfptQeWorkChain.exit_codes.ERROR_METAL.status
    assert reason in exit_code.message


def test_insulator_after_scf_goes_on(process, generate_workflow_node):
    process.ctx.workchain_scf = scf_child(
        generate_workflow_node, [[0.0, 3.0], [-0.5, 4.0]]
    )  # VBM 0 (Γ), CBM 3 (Γ)
    assert process.inspect_scf() is None


def test_ph_runs_at_gamma_with_epsil(process, generate_workflow_node):
    process.ctx.workchain_scf = generate_workflow_node(
        outputs={'remote_folder': orm.RemoteData(remote_path='/tmp', computer=orm.load_computer('localhost'))}
    )
    process.submit = capture
    inputs = process.run_ph()['workchain_ph'].inputs
    assert inputs['ph']['parameters']['INPUTPH']['epsil'] is True
    assert inputs['qpoints'].get_kpoints_mesh() == ([1, 1, 1], [0.0, 0.0, 0.0])
    assert inputs['ph']['parent_folder'].uuid == process.ctx.workchain_scf.outputs.remote_folder.uuid


def test_failed_ph(process, generate_workflow_node):
    process.ctx.workchain_ph = generate_workflow_node(exit_status=410)
    assert process.inspect_ph().status == DfptQeWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_DFPT.status


def test_ph_without_dielectric_output(process, shared, generate_workflow_node):
    """A finished ph.x whose dyn file has no ε∞/Z* (ran without epsil) is a named failure, not a traceback."""
    retrieved = orm.FolderData()
    text = (
        shared / 'fixtures' / 'qe' / 'aiida-qe-ph-si-default' / 'DYN_MAT' / 'dynamical-matrix-1'
    ).read_text()
    retrieved.base.repository.put_object_from_bytes(
        text.split('Dielectric Tensor')[0].encode(), 'DYN_MAT/dynamical-matrix-1'
    )
    process.ctx.workchain_ph = generate_workflow_node(outputs={'retrieved': retrieved})
    assert process.inspect_ph().status == DfptQeWorkChain.exit_codes.ERROR_MISSING_DIELECTRIC_OUTPUT.status
    process.ctx.workchain_ph = generate_workflow_node(outputs={'retrieved': orm.FolderData()})
    assert process.inspect_ph().status == DfptQeWorkChain.exit_codes.ERROR_MISSING_DIELECTRIC_OUTPUT.status


def test_results_from_ph_outputs(process, shared, generate_workflow_node):
    retrieved = orm.FolderData()
    folder = shared / 'fixtures' / 'qe' / 'aiida-qe-ph-si-default' / 'DYN_MAT'
    retrieved.base.repository.put_object_from_tree(str(folder), 'DYN_MAT')
    process.ctx.workchain_ph = generate_workflow_node(outputs={'retrieved': retrieved})
    assert process.inspect_ph() is None
    process.ctx.workchain_scf = scf_child(generate_workflow_node, [[0.0, 3.0], [-0.5, 4.0]])
    process.ctx.structure = fcc_binary(['Si', 'Si'], 5.43, second=(0.25, 0.25, 0.25))
    process.results()
    dielectric = process.outputs['dielectric']
    assert dielectric.band_gap == pytest.approx(3.0)
    assert dielectric.diel_elec == pytest.approx(57.36256077)
    assert process.outputs['structure'] is process.ctx.structure


def test_relax_gets_family_pseudos_and_its_structure_is_used(
    request, generate_workchain, generate_workflow_node
):
    builder = builder_for(request.getfixturevalue('qe'), fcc_binary(['Mg', 'O'], 4.212), relax=True)
    workchain = generate_workchain(builder)
    workchain.setup()
    assert workchain.validate_engine_inputs() is None
    assert workchain.should_relax()
    workchain.submit = capture
    inputs = workchain.run_relax()['workchain_relax'].inputs
    assert inputs['structure'] is workchain.inputs.structure
    assert inputs['base_relax']['pw']['pseudos'] is workchain.ctx.pseudos
    assert inputs['base_relax']['pw']['parameters']['SYSTEM']['occupations'] == 'fixed'
    assert 'base_init_relax' not in inputs  # the loose first relaxation is off (protocol relax.initial_relax)

    workchain.ctx.workchain_relax = generate_workflow_node(exit_status=401)
    assert (
        workchain.inspect_relax().status == DfptQeWorkChain.exit_codes.ERROR_SUB_PROCESS_FAILED_RELAX.status
    )
    relaxed = fcc_binary(['Mg', 'O'], 4.25)
    workchain.ctx.workchain_relax = generate_workflow_node(outputs={'output_structure': relaxed})
    assert workchain.inspect_relax() is None
    assert workchain.ctx.structure.uuid == relaxed.uuid
