"""``predict``, ``train`` and ``retrain`` as a user runs them: subprocesses on the fresh profile of ``setup``.

What a command stored is read back by other commands (``aiida-dielectrics query``, ``verdi``), as a user
would check it. The campaign for ``retrain`` holds a real DFPT result: the VASP run of wurtzite AlN in
``shared/fixtures/vasp``, recorded by the work chain's own calcfunction in a ``verdi run`` script (running
DFPT itself is tested in ``test_dfpt_as_user.py``).
"""

import json
import re

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.ml import inference, loading
from aiida_dielectrics.ml.files import tree_sha256

EFORM = 'MEGNet-MP-2018.6.1-Eform'

#: ``verdi run`` script: the AlN VASP DFPT result as ``dielectric_from_vasp`` makes it, in group ``campaign-aln``.
RECORD_ALN = """
import numpy as np
from aiida import orm
from pymatgen.io.vasp import Vasprun

from aiida_dielectrics.workflows.dfpt.vasp.workchain import dielectric_from_vasp

run = Vasprun('{vasprun}', parse_potcar_file=False)
arrays = orm.ArrayData()
arrays.set_array('epsilon', np.array(run.epsilon_static))
arrays.set_array('epsilon_ion', np.array(run.epsilon_ionic))
misc = orm.Dict({{'band_properties': {{'band_gap': float(run.eigenvalue_band_properties[0])}}}})
dielectric = dielectric_from_vasp(orm.StructureData(pymatgen=run.final_structure), arrays, misc)
group, _ = orm.Group.collection.get_or_create('campaign-aln')
group.add_nodes(dielectric)
print(dielectric.pk)
"""

#: ``verdi run`` script: the inputs of the process that created node ``pk``, as JSON.
CREATOR_INPUTS = """
import json
from aiida import orm
from aiida.common.links import LinkType

creator = orm.load_node({pk}).creator
links = creator.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
print(json.dumps({{'process': creator.process_label, 'exit_status': creator.exit_status,
                   'inputs': {{link.link_label: link.node.pk for link in links}}}}))
"""


def rocksalt(cation, anion, a):
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def verdi_run(shell, name: str, script: str):
    path = shell.home / name
    path.write_text(script)
    return shell.run('verdi', 'run', path, check=True).stdout


@pytest.fixture(scope='module')
def base_group(user_shell, petousis_head):
    """The first 8 Petousis materials imported by ``aiida-dielectrics import petousis2017`` as group head8."""
    path = petousis_head(user_shell.home / 'petousis-head8.csv', 8)
    result = user_shell.run('aiida-dielectrics', 'import', 'petousis2017', path, '-G', 'head8', check=True)
    assert 'Imported 8 entries into group `head8`' in result.stdout
    return 'head8'


def test_predict_store_then_query(user_shell):
    inputs = user_shell.home / 'to-predict'
    inputs.mkdir()
    rocksalt('K', 'Br', 6.60).to(filename=str(inputs / 'KBr.cif'))
    overlapping = rocksalt('Na', 'Cl', 5.64)
    overlapping.append('Na', overlapping[0].coords + np.array([0.04, 0, 0]), coords_are_cartesian=True)
    overlapping.to(filename=str(inputs / 'overlapping.cif'))
    (inputs / 'notes.csv').write_text('formula,band_gap\nKBr,7.4\n')
    result = user_shell.run('aiida-dielectrics', 'predict', inputs, '--store', '-o', 'predicted.csv')
    assert result.returncode == 0, result.stderr
    assert 'stored 1 predictions from process' in result.stderr
    assert '1 of 2 structures predicted -> predicted.csv' in result.stderr
    assert f'skipped {inputs / "overlapping.cif"}: atoms 0.040 Å apart (minimum 0.5 Å)' in result.stderr
    assert 'notes.csv' not in result.stderr
    table = pd.read_csv(user_shell.home / 'predicted.csv').set_index('file')
    predicted = table.loc[str(inputs / 'KBr.cif')]
    assert predicted['band_gap'] > 2 and predicted['diel_elec'] > 1  # a wide-gap ionic insulator

    query = user_shell.run(
        'aiida-dielectrics', 'query', '--kind', 'prediction', '--formula', 'KBr', '-f', 'json', check=True
    )
    rows = json.loads(query.stdout)
    assert len(rows) == 1
    for column in ('band_gap', 'diel_total', 'fom', 'fom_adj'):
        assert rows[0][column] == pytest.approx(predicted[column], rel=1e-6)


def test_predict_store_with_e_form_downloaded_by_matgl(user_shell, matgl_hub_cache, shared, tmp_path):
    """No model folder, offline, E_form in matgl's Hub cache as a download leaves it (issue: the name was
    taken for a folder). The model node is built from that folder."""
    shell = user_shell.__class__(user_shell.home, user_shell.shared)
    home = tmp_path / 'home'
    matgl_hub_cache(home / '.cache' / 'matgl', EFORM)
    shell.env = {**user_shell.env, 'HOME': str(home), 'HF_HUB_OFFLINE': '1'}
    del shell.env['AIIDA_DIELECTRICS_MODEL_DIR']
    rbi = rocksalt('Rb', 'I', 7.34)
    rbi.to(filename=str(shell.home / 'RbI.cif'))
    result = shell.run('aiida-dielectrics', 'predict', 'RbI.cif', '--store', '-o', 'rbi.csv')
    assert result.returncode == 0, result.stderr
    assert '1 of 1 structures predicted' in result.stderr
    model = loading.load_model_set('e_form', shared / 'models' / 'matgl' / EFORM)
    expected = inference.predict([rbi], {'e_form': model}, labels=False).loc[0, 'e_form']
    assert pd.read_csv(shell.home / 'rbi.csv')['e_form'].iloc[0] == pytest.approx(expected, rel=1e-5)
    query = shell.run('aiida-dielectrics', 'query', '--kind', 'prediction', '--formula', 'RbI', '-f', 'json')
    assert len(json.loads(query.stdout)) == 1
    sha256 = tree_sha256(shared / 'models' / 'matgl' / EFORM)
    nodes = verdi_run(
        shell,
        'e_form_nodes.py',
        'from aiida import orm\nfrom aiida_dielectrics.data.model import ModelData\n'
        f"print(orm.QueryBuilder().append(ModelData, filters={{'attributes.sha256': '{sha256}'}}).count())\n",
    )
    assert nodes.strip() == '1'


def test_train_on_an_imported_group(user_shell, base_group):
    output = user_shell.home / 'trained'
    result = user_shell.run(
        'aiida-dielectrics', 'train', '--group', base_group, '--target', 'diel_elec',
        '--members', '1', '--epochs', '1', '--batch-size', '8', '-o', output,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f'training diel_elec on 8 materials of group {base_group}' in result.stderr
    pk = int(re.search(r'stored ModelData<(\d+)> \(1 members', result.stderr).group(1))
    assert json.loads((output / 'model_card.json').read_text())['target'] == 'diel_elec'
    creator = json.loads(verdi_run(user_shell, 'train_inputs.py', CREATOR_INPUTS.format(pk=pk)))
    assert creator['process'] == 'train_model' and creator['exit_status'] == 0
    assert len(creator['inputs']) == 2 * 8 + 6  # structures, dielectrics and the six parameter nodes


def test_train_and_retrain_mistakes_are_one_error_line(user_shell, base_group):
    cases = {
        ('train', '--group', 'nope', '--target', 'diel_elec', '-o', 'x'): "Invalid value for '--group'",
        ('retrain', '--campaign', 'nope', '--target', 'diel_elec'): "Invalid value for '--campaign'",
        ('retrain', '--campaign', base_group, '--base-group', base_group, '--target', 'diel_elec'): (
            f'campaign group {base_group} holds no DFPT results'
        ),
        ('evaluate', '--data', 'petousis-head8.csv', '--models', '.', '-o', 'e.md'): 'no model_card.json',
    }
    for arguments, message in cases.items():
        result = user_shell.run('aiida-dielectrics', *arguments)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith('Error: ') and message in lines[0]


def test_retrain_on_a_campaign_with_a_dfpt_result(user_shell, base_group, shared):
    vasprun = shared / 'fixtures' / 'vasp' / 'AlN-wurtzite-dfpt' / 'vasprun.xml'
    dielectric = int(verdi_run(user_shell, 'record_aln.py', RECORD_ALN.format(vasprun=vasprun)).split()[-1])
    campaign = user_shell.run(
        'aiida-dielectrics', 'query', '--group', 'campaign-aln', '--engine', 'vasp', '-f', 'json', check=True
    )
    (row,) = json.loads(campaign.stdout)
    assert (
        row['pk'] == dielectric
        and row['formula'] == 'AlN'
        and row['diel_elec'] == pytest.approx(4.44, abs=0.01)
    )

    output = user_shell.home / 'retrained'
    result = user_shell.run(
        'aiida-dielectrics', 'retrain', '--campaign', 'campaign-aln', '--base-group', base_group,
        '--target', 'diel_ionic', '--members', '1', '--epochs', '1', '--batch-size', '8', '-o', output,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        'retraining diel_ionic on 1 DFPT results of campaign campaign-aln plus 8 materials' in result.stderr
    )
    pk = int(result.stdout.strip().splitlines()[-1])
    assert (output / 'model_card.json').is_file()
    creator = json.loads(verdi_run(user_shell, 'retrain_inputs.py', CREATOR_INPUTS.format(pk=pk)))
    assert creator['process'] == 'train_model' and creator['exit_status'] == 0
    assert creator['inputs'][f'dielectrics__campaign_{dielectric}'] == dielectric
    assert len(creator['inputs']) == 2 * (8 + 1) + 6


def test_retrain_without_a_profile_is_one_clear_line(tmp_path, shared):
    """The group options resolve in the profile, so without one the user is told to run ``setup``."""
    from tests.conftest import UserShell

    result = UserShell(tmp_path, shared).run(
        'aiida-dielectrics', 'retrain', '--campaign', 'c', '--target', 'diel_elec'
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith('Error: no usable AiiDA profile')
    assert lines[0].endswith('run `aiida-dielectrics setup` first')
