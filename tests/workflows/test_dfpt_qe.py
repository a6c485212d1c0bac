"""``DfptQeWorkChain``: the early failure modes and the protocol builder (the real MgO run, relax and DFPT, is
``tests/cli/test_dfpt_as_user.py``)."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_dielectrics.tools import environment
from aiida_dielectrics.workflows.dfpt.qe.workchain import DfptQeWorkChain, dielectric_from_ph
from tests.qe_setup import FAMILY, builder_for, fcc_binary


def expect_early_exit(qe, structure, exit_code, match):
    results, node = run_get_node(builder_for(qe, structure))
    assert node.exit_status == DfptQeWorkChain.exit_codes[exit_code].status, node.exit_message
    assert match in node.exit_message
    assert [child.process_label for child in node.called] == ['symmetrize_structure']  # no calculation ran
    assert 'dielectric' not in results


def expect_refused(qe, structure, match):
    """Bad input is refused at submission by the port validator: no process node is created."""
    count = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match=match):
        run_get_node(builder_for(qe, structure))
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == count


def test_unsupported_element(qe):
    """The shared PseudoDojo family has no Li: LiF is refused at submission."""
    expect_refused(qe, fcc_binary(['Li', 'F'], 4.03), 'has no pseudo for Li')


def test_overlapping_atoms(qe):
    structure = fcc_binary(['Mg', 'O'], 4.212, second=(0.05, 0.0, 0.0))  # 0.15 Å apart
    expect_refused(qe, structure, r'invalid structure: atoms 0\.149 Å apart')


def test_atom_too_close_to_its_own_image(qe):
    structure = orm.StructureData(cell=[[0.3, 0, 0], [0, 4, 0], [0, 0, 4]])
    structure.append_atom(position=(0, 0, 0), symbols='Mg')
    expect_refused(qe, structure, r'0\.300 Å apart')


def test_odd_electron_count_is_a_metal(qe):
    """Na (9 valence electrons in this family) cannot be a spin-unpolarised insulator: no scf is run."""
    structure = orm.StructureData(cell=(2.1 * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])).tolist())
    structure.append_atom(position=(0, 0, 0), symbols='Na')
    expect_early_exit(qe, structure, 'ERROR_METAL', 'half filled')


def test_metal_detected_after_scf(qe):
    """Two-atom Al (6 electrons, so fixed occupations are allowed) has no gap: ph.x never runs."""
    structure = fcc_binary(['Al', 'Al'], 5.72, second=(0.5, 0.0, 0.0))  # simple-cubic-like Al₂ cell
    builder = builder_for(qe, structure)
    # symmetrised, the cell would halve to one atom with an odd electron count
    builder.symmetrize = orm.Bool(False)
    _, node = run_get_node(builder)
    assert node.exit_status == DfptQeWorkChain.exit_codes.ERROR_METAL.status, node.exit_message
    assert 'band gap' in node.exit_message
    labels = [child.process_label for child in node.called]
    assert labels == ['PwBaseWorkChain']


def test_builder_cutoffs_from_family_or_protocol(qe, tmp_path, shared):
    """The family's low/normal/high hints set the cutoffs; a family without them falls back to the protocol."""
    structure = fcc_binary(['Mg', 'O'], 4.212)
    codes = dict(zip(('pw', 'ph'), qe, strict=True))
    fast = DfptQeWorkChain.get_builder_from_protocol(
        structure, codes=codes, protocol='fast', potential_family=FAMILY
    )
    precise = DfptQeWorkChain.get_builder_from_protocol(
        structure, codes=codes, protocol='precise', potential_family=FAMILY
    )
    assert fast.scf.pw.parameters['SYSTEM']['ecutwfc'] == pytest.approx(76.0)  # Mg low hint 38 Ha
    assert precise.scf.pw.parameters['SYSTEM']['ecutwfc'] == pytest.approx(96.0)  # 48 Ha
    assert fast.scf.pw.parameters['SYSTEM']['ecutrho'] == pytest.approx(4 * 76.0)
    assert fast.scf.pw.parameters['SYSTEM']['occupations'] == 'fixed'
    assert fast.ph.ph.parameters['INPUTPH']['epsil'] is True
    assert fast.scf.kpoints_distance.value > precise.scf.kpoints_distance.value

    source = shared / 'pseudos' / 'PseudoDojo-0.4-PBE-SR-noCC-standard'
    for name in ('Mg-sp.upf', 'O.upf'):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    environment.install_pseudo_family(tmp_path, 'no-cutoffs-family')
    fallback = DfptQeWorkChain.get_builder_from_protocol(
        structure,
        codes=codes,
        protocol='moderate',
        potential_family='no-cutoffs-family',
        overrides={'ecutwfc': 70.0},
    )
    assert fallback.scf.pw.parameters['SYSTEM']['ecutwfc'] == 70.0
    assert fallback.scf.pw.parameters['SYSTEM']['ecutrho'] == 320.0

    with pytest.raises(ValueError, match='not installed'):
        DfptQeWorkChain.get_builder_from_protocol(structure, codes=codes, potential_family='no-such-family')
    with pytest.raises(ValueError, match=r'unknown protocol override scf\.kpoint_distance'):
        DfptQeWorkChain.get_builder_from_protocol(
            structure, codes=codes, potential_family=FAMILY, overrides={'scf': {'kpoint_distance': 0.2}}
        )
    with pytest.raises(ValueError, match='needs codes for ph'):
        DfptQeWorkChain.get_builder_from_protocol(structure, codes={'pw': qe[0]}, potential_family=FAMILY)
    free_form = {'scf': {'pw': {'parameters': {'SYSTEM': {'nosym': True}}}}}  # any pw.x keyword may be added
    builder = DfptQeWorkChain.get_builder_from_protocol(
        structure, codes=codes, potential_family=FAMILY, overrides=free_form
    )
    assert builder.scf.pw.parameters['SYSTEM']['nosym'] is True


def test_k_point_pools_divide_the_ranks(qe):
    """Two pools on two ranks (measured faster for small cells); none where they would not divide."""
    two_ranks = builder_for(qe, fcc_binary(['Mg', 'O'], 4.212), relax=True)  # OPTIONS: 2 MPI ranks
    for pw in (two_ranks.scf.pw, two_ranks.relax.base_relax.pw):
        assert pw.parallelization.get_dict() == {'npool': 2}
    assert two_ranks.ph.ph.settings.get_dict() == {'cmdline': ['-nk', '2']}
    one_rank = DfptQeWorkChain.get_builder_from_protocol(
        fcc_binary(['Mg', 'O'], 4.212),
        codes=dict(zip(('pw', 'ph'), qe, strict=True)),
        potential_family=FAMILY,
    )
    assert 'parallelization' not in one_rank.scf.pw and 'settings' not in one_rank.ph.ph


def test_builder_with_relax(qe):
    builder = builder_for(qe, fcc_binary(['Mg', 'O'], 4.212), relax=True)
    parameters = builder.relax.base_relax.pw.parameters.get_dict()
    assert parameters['CONTROL']['calculation'] == 'vc-relax'
    assert parameters['SYSTEM']['occupations'] == 'fixed'
    assert parameters['SYSTEM']['ecutwfc'] == pytest.approx(76.0)
    assert 'pseudos' not in builder.relax.base_relax.pw  # the work chain takes them from the family
    default = DfptQeWorkChain.get_builder_from_protocol(
        fcc_binary(['Mg', 'O'], 4.212),
        codes=dict(zip(('pw', 'ph'), qe, strict=True)),
        potential_family=FAMILY,
    )
    assert 'relax' in default  # relaxation is the default: ε is a result at the DFT equilibrium


def test_calcfunction_on_reference_dyn_file(aiida_profile, shared):
    """The calcfunction on aiida-quantumespresso's Si fixture: sum rules imposed, gap from the bands."""
    retrieved = orm.FolderData()
    retrieved.base.repository.put_object_from_tree(
        str(shared / 'fixtures' / 'qe' / 'aiida-qe-ph-si-default' / 'DYN_MAT'), 'DYN_MAT'
    )
    structure = fcc_binary(['Si', 'Si'], 5.43, second=(0.25, 0.25, 0.25))
    bands = orm.BandsData()
    bands.set_kpoints([[0, 0, 0], [0.5, 0, 0]])
    bands.set_bands(np.array([[-5.0, 1.0, 2.0, 5.0, 6.5], [-3.0, 1.0, 2.0, 4.0, 5.2]]), units='eV')
    dielectric = dielectric_from_ph(
        structure=structure,
        scf_parameters=orm.Dict({'number_of_electrons': 8}),
        scf_bands=bands,
        ph_retrieved=retrieved,
    )
    assert dielectric.band_gap == pytest.approx(0.2)  # CBM 5.2 at X minus VBM 5.0 at Γ
    assert dielectric.diel_elec == pytest.approx(57.362560769080)  # the fixture's (unphysical) numbers
    np.testing.assert_allclose(dielectric.get_array('born_charges'), 0, atol=1e-9)  # neutrality imposed
    assert dielectric.diel_ionic == pytest.approx(0, abs=1e-9)
    assert dielectric.base.attributes.get('born_charge_neutrality_violation') == pytest.approx(
        10.702678794572
    )
    assert dielectric.creator.process_label == 'dielectric_from_ph'
