"""``aiida-dielectrics setup`` on the test profile: pseudo family with cutoffs, codes, idempotence."""

import shutil

import pytest
from aiida.orm import Group, load_code
from click.testing import CliRunner

from aiida_dielectrics.cli import cli
from aiida_dielectrics.tools import environment

FAMILY = 'test-setup-family'


@pytest.fixture
def pseudo_dir(shared):
    return shared / 'pseudos' / 'PseudoDojo-0.4-PBE-SR-noCC-standard'


@pytest.fixture
def hints(shared):
    return shared / 'pseudos' / 'PseudoDojo-0.4-PBE-SR-standard-hints.djson'


@pytest.fixture
def setup_arguments(pseudo_dir, hints):
    """``setup`` with the shared pseudos and their hints, as family :data:`FAMILY`."""
    return ['setup', '--pseudo-dir', str(pseudo_dir), '--pseudo-hints', str(hints), '--pseudo-family', FAMILY]


def test_setup_is_idempotent_and_installs_cutoffs(aiida_profile, aiida_localhost, setup_arguments):
    arguments = setup_arguments
    first = CliRunner().invoke(cli, arguments, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert f'Pseudo family `{FAMILY}`: installed.' in first.output
    second = CliRunner().invoke(cli, arguments, catch_exceptions=False)
    assert f'Pseudo family `{FAMILY}`: exists.' in second.output
    assert 'registered' not in second.output

    family = Group.collection.get(label=FAMILY)
    assert len(family.elements) == 69
    # PseudoDojo's normal hint for Mg and O is 42 Ha = 84 Ry, four times that for the density.
    cutoffs = family.get_recommended_cutoffs(elements=('Mg', 'O'), unit='Ry')
    assert cutoffs == pytest.approx((84.0, 336.0))
    if shutil.which('pw.x'):
        code = load_code('pw@localhost')
        assert code.default_calc_job_plugin == 'quantumespresso.pw'
        assert 'OMP_NUM_THREADS=1' in code.prepend_text


def test_pseudo_folder_with_other_files_is_refused(aiida_profile, tmp_path, pseudo_dir):
    shutil.copy(pseudo_dir / 'O.upf', tmp_path / 'O.upf')
    (tmp_path / 'README').write_text('not a pseudo')
    with pytest.raises(environment.SetupError, match='must hold only UPF files; found README'):
        environment.install_pseudo_family(tmp_path, 'mixed-folder')
    result = CliRunner().invoke(
        cli, ['setup', '--pseudo-dir', str(tmp_path), '--pseudo-family', 'mixed-folder']
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith('Error: ')
    assert not Group.collection.find(filters={'label': 'mixed-folder'})


def test_hints_missing_elements_are_refused(aiida_profile, tmp_path, pseudo_dir):
    shutil.copy(pseudo_dir / 'O.upf', tmp_path / 'O.upf')
    empty_hints = tmp_path.parent / 'hints.djson'
    empty_hints.write_text('{"pseudos_metadata": {}}')
    with pytest.raises(environment.SetupError, match='no cutoffs for O'):
        environment.install_pseudo_family(tmp_path, 'no-hints', hints=empty_hints)
    assert not Group.collection.find(filters={'label': 'no-hints'})


def test_hints_need_a_pseudo_dir(aiida_profile, hints):
    result = CliRunner().invoke(cli, ['setup', '--pseudo-hints', str(hints)])
    assert result.exit_code == 2
    assert '--pseudo-hints needs --pseudo-dir' in result.output


def test_setup_creates_localhost_on_a_profile_without_one(aiida_profile_tmp, setup_arguments):
    """Any profile, not only `verdi presto`'s: a computer-less profile gets `localhost` and the codes."""
    from aiida.manage.configuration import get_config
    from aiida.orm import Computer

    assert not Computer.collection.all()
    arguments = ['--profile', aiida_profile_tmp.name, *setup_arguments]
    first = CliRunner().invoke(cli, arguments, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert f'Profile `{aiida_profile_tmp.name}`: exists.' in first.output
    computer = Computer.collection.get(label='localhost')
    workdir = get_config().dirpath + f'/scratch/{aiida_profile_tmp.name}'
    assert f'Computer `localhost`: created (work dir {workdir}).' in first.output
    assert (computer.transport_type, computer.scheduler_type) == ('core.local', 'core.direct')
    assert computer.is_configured and computer.get_default_mpiprocs_per_machine() == 1
    assert computer.get_minimum_job_poll_interval() == 1
    if shutil.which('pw.x'):
        assert 'Code `pw@localhost`: registered.' in first.output
        assert load_code('pw@localhost').computer.pk == computer.pk
    second = CliRunner().invoke(cli, arguments, catch_exceptions=False)
    assert 'Computer `localhost`: exists' in second.output and 'registered' not in second.output


def test_existing_computer_is_configured(aiida_profile_tmp):
    """A computer that exists but has no authinfo for this user (e.g. from an archive) is configured."""
    from aiida.orm import Computer

    Computer(
        label='localhost', hostname='localhost', transport_type='core.local', scheduler_type='core.direct'
    ).store()
    computer, created = environment.ensure_localhost()
    assert not created and computer.is_configured
