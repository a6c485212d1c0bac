"""``DielectricPhWorkChain``'s restart handlers, each on a real failed ph.x output parsed by aiida-quantumespresso.

``tests/fixtures/qe/AlN-ph-divide-class`` is the ph.x run (QE 6.7) on the unsymmetrised VASP-relaxed
wurtzite AlN cell of ``shared/fixtures/vasp/AlN-wurtzite-dfpt``, kept as it failed; the walltime case is
aiida-quantumespresso's own parser fixture.
"""

import pathlib
import shutil

import pytest
from aiida import orm
from aiida.plugins import CalculationFactory

from aiida_dielectrics.workflows.dfpt.qe.ph import WALLTIME_FACTOR, DielectricPhWorkChain

FIXTURES = pathlib.Path(__file__).parents[1] / 'fixtures' / 'qe'
PhCalculation = CalculationFactory('quantumespresso.ph')


@pytest.fixture
def process(qe, aiida_localhost, generate_workchain):
    """A DielectricPhWorkChain at Γ with ε, set up as for its first ph.x run, not run."""
    _, ph = qe
    builder = DielectricPhWorkChain.get_builder()
    builder.ph.code = ph
    builder.ph.parameters = orm.Dict({'INPUTPH': {'epsil': True}})
    builder.ph.parent_folder = orm.RemoteData(remote_path='/tmp', computer=aiida_localhost)
    builder.ph.metadata.options = {'resources': {'num_machines': 1}, 'max_wallclock_seconds': 1800}
    qpoints = orm.KpointsData()
    qpoints.set_kpoints_mesh([1, 1, 1])
    builder.qpoints = qpoints
    workchain = generate_workchain(builder)
    workchain.setup()
    workchain.validate_parameters()
    workchain.set_qpoints()
    workchain.prepare_process()
    return workchain


@pytest.fixture
def failed_calculation(generate_calc_job_node):
    """A finished PhCalculation whose retrieved files are a folder, parsed by aiida-quantumespresso's PhParser."""

    def factory(folder: pathlib.Path):
        return generate_calc_job_node(
            'quantumespresso.ph', folder, {'parameters': orm.Dict({'INPUTPH': {'epsil': True}})}
        )

    return factory


def inspect(process, node):
    """What the work chain does when ``node`` comes back as its latest child (as ``run_process`` records it)."""
    process.ctx.setdefault('children', []).append(node)
    process.ctx.iteration += 1
    return process.inspect_process()


def test_divide_class_is_retried_without_symmetry_analysis(process, failed_calculation):
    node = failed_calculation(FIXTURES / 'AlN-ph-divide-class')
    assert node.exit_status == PhCalculation.exit_codes.ERROR_OUTPUT_STDOUT_INCOMPLETE.status
    assert inspect(process, node).status == 0  # handled: the next iteration runs
    assert process.ctx.inputs.parameters['INPUTPH']['search_sym'] is False
    assert process.ctx.inputs.parameters['INPUTPH']['epsil'] is True
    assert (
        process.ctx.inputs.parent_folder.get_remote_path() == '/tmp'
    )  # from the scf, not from the failed run
    # the same failure again with search_sym off: nothing left to try
    second = failed_calculation(FIXTURES / 'AlN-ph-divide-class')
    assert inspect(process, second) == DielectricPhWorkChain.exit_codes.ERROR_UNRECOVERABLE_FAILURE


def test_incomplete_output_without_symmetry_error_is_not_handled(process, failed_calculation, tmp_path):
    """An interrupted run for another reason is left to the base work chain (unhandled → it gives up)."""
    shutil.copytree(FIXTURES / 'AlN-ph-divide-class', tmp_path, dirs_exist_ok=True)
    (tmp_path / 'aiida.out').write_text((tmp_path / 'aiida.out').read_text().split('%%%%')[0])
    node = failed_calculation(tmp_path)
    assert node.exit_status == PhCalculation.exit_codes.ERROR_OUTPUT_STDOUT_INCOMPLETE.status
    assert process.handle_symmetry_analysis_error(node) is None
    assert 'search_sym' not in process.ctx.inputs.parameters['INPUTPH']


def test_out_of_walltime_restarts_from_the_scf_with_more_time(process, failed_calculation, shared, tmp_path):
    """aiida-qe's walltime fixture holds only the stdout; ph.x writes the q-point list first, so it is added."""
    shutil.copy(shared / 'fixtures' / 'qe' / 'aiida-qe-ph-si-walltime' / 'aiida.out', tmp_path)
    shutil.copytree(FIXTURES / 'AlN-ph-divide-class' / 'DYN_MAT', tmp_path / 'DYN_MAT')
    node = failed_calculation(tmp_path)
    assert node.exit_status == PhCalculation.exit_codes.ERROR_OUT_OF_WALLTIME.status
    assert inspect(process, node).status == 0
    assert process.ctx.inputs.metadata.options['max_wallclock_seconds'] == int(1800 * WALLTIME_FACTOR)
    assert 'max_seconds' not in process.ctx.inputs.parameters['INPUTPH']
    process.prepare_process()  # what the next iteration does: no ph.x parent folder (aiida-qe #1212)
    assert process.ctx.inputs.parent_folder.get_remote_path() == '/tmp'
    assert process.ctx.inputs.parameters['INPUTPH']['max_seconds'] < 1800 * WALLTIME_FACTOR
