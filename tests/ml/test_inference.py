"""Inference: model loading, batched = naive predictions, bad inputs, the predict CLI and the AiiDA process."""

import itertools
import json
import shutil

import ase
import ase.io
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

from aiida_dielectrics.cli import cli
from aiida_dielectrics.ml import inference, loading
from aiida_dielectrics.ml.files import tree_sha256
from aiida_dielectrics.science import hull
from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows

EFORM = 'MEGNet-MP-2018.6.1-Eform'
GAP = 'MEGNet-MP-2019.4.1-BandGap-mfi'


@pytest.fixture(scope='module')
def models(shared):
    return shared / 'models' / 'matgl'


@pytest.fixture(scope='module')
def model_dir(models, tmp_path_factory):
    """The pretrained MEGNets plus stand-in ε "ensembles" of two members with different cutoffs (4 and 5 Å).

    The stand-ins make the ensemble code path testable without the shipped ε models; the ``log``
    transform checks that mean and σ are taken in the original space. The pretrained gap MEGNet is also
    copied as ``band_gap``: a model folder overrides the shipped band-gap ensemble, and its known CsCl
    value (2.72 eV) pins the tests below.
    """
    root = tmp_path_factory.mktemp('models')
    for name in (EFORM, GAP):
        shutil.copytree(models / name, root / name)
    shutil.copytree(models / GAP, root / 'band_gap')
    for target in ('diel_elec', 'diel_ionic'):
        for i, name in enumerate((EFORM, GAP)):
            shutil.copytree(models / name, root / target / f'member_{i}')
        card = {'target': target, 'architecture': 'megnet', 'transform': 'log', 'members': 2}
        (root / target / 'model_card.json').write_text(json.dumps(card))
    return root


@pytest.fixture(scope='module')
def model_sets(model_dir):
    return loading.load_predictors(model_dir)


@pytest.fixture(scope='module')
def petousis_structures(petousis_csv):
    rows = itertools.islice(read_rows(petousis_csv), 8)
    return [row.structure for row in rows if isinstance(row, Row)]


def cscl():
    return Structure(Lattice.cubic(4.14), ['Cs', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def hub(tmp_path, matgl_hub_cache, monkeypatch):
    """matgl's cache holding the two pretrained MEGNets as downloaded from the Hub, offline, no model folder."""
    import huggingface_hub.constants
    import matgl.config

    cache = matgl_hub_cache(tmp_path / 'matgl', EFORM, GAP)
    monkeypatch.setattr(matgl.config, 'MATGL_CACHE', cache)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    monkeypatch.delenv(loading.MODEL_DIR_ENV, raising=False)
    return cache


def test_a_name_not_found_locally_comes_from_matgls_hub_cache(hub, models):
    folder = loading.resolve(GAP)
    assert folder.parent == hub / f'models--materialyze--{GAP}' / 'snapshots'
    assert tree_sha256(folder) == tree_sha256(models / GAP)  # the files matgl downloaded, links followed
    gap = loading.load_model_set('band_gap', GAP)
    assert gap.source == str(folder)
    table = inference.predict([cscl()], {'band_gap': gap}, labels=False)
    assert table.loc[0, 'band_gap'] == pytest.approx(2.72, abs=0.01)


def test_a_name_found_nowhere_is_a_clear_error(hub, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"no model 'MEGNet-nope'.*Hub \(materialyze/MEGNet-nope\)"):
        loading.resolve('MEGNet-nope')
    monkeypatch.setattr(loading, 'PACKAGED_MODELS', tmp_path / 'none')
    with pytest.raises(FileNotFoundError, match="no ensemble named 'diel_elec'"):
        loading.resolve('diel_elec')  # ensembles trained here are never looked for on the Hub


def test_load_from_model_dir_and_environment(models, monkeypatch):
    monkeypatch.setenv(loading.MODEL_DIR_ENV, str(models))
    assert loading.resolve(GAP) == models / GAP
    gap = loading.load_model_set('band_gap', GAP)
    eform = loading.load_model_set('e_form', EFORM, models)
    table = inference.predict([cscl()], {'band_gap': gap, 'e_form': eform}, labels=False)
    # Known values of the pretrained models for CsCl (a = 4.14 Å), band gap at PBE fidelity.
    assert table.loc[0, 'band_gap'] == pytest.approx(2.72, abs=0.01)
    assert table.loc[0, 'e_form'] == pytest.approx(-1.92, abs=0.01)
    assert gap.members[0].state.tolist() == [loading.PBE_FIDELITY]
    assert eform.members[0].state is None


def rocksalt(cation, anion, a):
    return Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_default_band_gap_is_the_shipped_ensemble_at_pbe_fidelity(models, monkeypatch):
    monkeypatch.setenv(loading.MODEL_DIR_ENV, str(models))  # holds the pretrained MEGNets, no band_gap
    sets = loading.load_predictors(names={'diel_ionic': loading.DEFAULT_MODEL_NAMES['diel_ionic']})
    gap = sets['band_gap']
    assert gap.source == str(loading.PACKAGED_MODELS / 'band_gap')
    assert gap.transform == 'log1p' and gap.is_graph and len(gap.members) == 5
    assert all(member.state.tolist() == [loading.PBE_FIDELITY] for member in gap.members)
    # The ε ensembles are heads on frozen SevenNet-0 embeddings, not crystal-graph models.
    assert sets['diel_ionic'].architecture == 'embedding-mlp' and not sets['diel_ionic'].is_graph
    aluminium = Structure.from_spacegroup('Fm-3m', Lattice.cubic(4.04), ['Al'], [[0, 0, 0]])
    structures = [rocksalt('Mg', 'O', 4.25), rocksalt('Ca', 'O', 4.83), aluminium]
    table = inference.predict(structures, {'band_gap': gap}, labels=False)
    # The pretrained MEGNet gives 0 eV for MgO and CaO (PBE gaps 4.5 and 3.6 eV); aluminium is a metal.
    assert table.loc[0, 'band_gap'] > 2.5 and table.loc[1, 'band_gap'] > 2.0
    # The training data hold no metal: aluminium is outside them and gets a small but non-zero gap
    # (0.93 eV for the shipped ensemble, docs/topics/models.md#band-gap), below every wide-gap oxide.
    assert 0 <= table.loc[2, 'band_gap'] < min(table.loc[0, 'band_gap'], table.loc[1, 'band_gap']) / 2
    assert (table['band_gap_std'] > 0).all()


def test_missing_default_ensemble_is_optional_but_a_named_one_is_not(models, tmp_path, monkeypatch):
    monkeypatch.setattr(loading, 'PACKAGED_MODELS', tmp_path / 'none')  # as before an ensemble ships
    sets = loading.load_predictors(tmp_path, {'e_form': models / EFORM, 'band_gap': models / GAP})
    assert set(sets) == {'e_form', 'band_gap'}
    with pytest.raises(FileNotFoundError):
        loading.load_predictors(
            tmp_path, {'e_form': models / EFORM, 'band_gap': models / GAP, 'diel_elec': tmp_path / 'missing'}
        )


def test_batched_equals_naive(model_sets, petousis_structures):
    table = inference.predict(petousis_structures, model_sets, batch_size=3)
    naive = inference.predict_naive(petousis_structures, model_sets)
    assert table['reason'].isna().all()
    for target, model_set in model_sets.items():
        mean, std = model_set.summarize(naive[target])
        np.testing.assert_allclose(table[target], mean, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(table[f'{target}_std'], std, rtol=1e-4, atol=1e-4)
    assert (table['diel_elec_std'] > 0).all()  # two different members
    np.testing.assert_allclose(table['diel_total'], table['diel_elec'] + table['diel_ionic'])
    np.testing.assert_allclose(table['fom'], table['diel_total'] * table['band_gap'].clip(lower=0))
    assert table['e_above_hull'].isna().all()  # no reference hull given
    assert table['protostructure'].str.contains(':').all()


def test_screening_sigma_is_the_calibrated_ensemble_sigma(petousis_structures):
    """Batched screening scales the member spread by the card's ``sigma_scale``, as ``Ensemble.predict``."""
    from aiida_dielectrics.ml.ensemble import Ensemble

    folder = loading.PACKAGED_MODELS / 'diel_ionic'
    model_set = loading.load_model_set('diel_ionic', folder)
    assert model_set.sigma_scale == json.loads((folder / 'model_card.json').read_text())['sigma_scale'] > 1
    table = inference.predict(petousis_structures[:3], {'diel_ionic': model_set}, labels=False)
    mean, std = Ensemble.load(folder).predict(petousis_structures[:3])
    np.testing.assert_allclose(table['diel_ionic'], mean, rtol=1e-4)
    np.testing.assert_allclose(table['diel_ionic_std'], std, rtol=1e-4)


def test_hull_against_predictions_and_reference():
    # A-B line: AB at -1 eV/atom is on the hull, A3B at -0.2 lies 0.3 eV/atom above A–AB.
    compositions, e_form = ['Li', 'Li3F', 'LiF'], [0.0, -0.2, -1.0]
    values = hull.e_above_hull(
        compositions, e_form, hull.entries_from_formation_energies(compositions, e_form)
    )
    np.testing.assert_allclose(values, [0.0, 0.3, 0.0], atol=1e-9)
    reference = hull.entries_from_formation_energies(['LiF'], [-0.5])
    np.testing.assert_allclose(hull.e_above_hull(['LiF', 'Li2F'], [-1.0, np.nan], reference), [-0.5, np.nan])


def bad_structures():
    overlapping = rocksalt('Na', 'Cl', 5.64)
    overlapping.append('Na', overlapping[0].coords + np.array([0.04, 0, 0]), coords_are_cartesian=True)
    return {
        'unsupported': Structure(Lattice.cubic(3.0), ['Po'], [[0, 0, 0]]),
        'isolated': Structure(Lattice.cubic(12.0), ['Na', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        'overlapping': overlapping,
    }


def test_bad_structures_get_a_reason_and_nans(model_sets):
    bad = bad_structures()
    structures = [bad['unsupported'], cscl(), bad['isolated'], bad['overlapping']]
    table = inference.predict(structures, model_sets, batch_size=2)
    assert table.loc[0, 'reason'] == 'unsupported element(s): Po'
    assert table.loc[2, 'reason'].startswith('isolated atom')
    assert table.loc[3, 'reason'] == 'atoms 0.040 Å apart (minimum 0.5 Å)'
    assert pd.isna(table.loc[1, 'reason'])
    assert table.loc[[0, 2, 3], ['e_form', 'band_gap', 'diel_elec', 'fom']].isna().all().all()
    assert table.loc[1, 'band_gap'] == pytest.approx(2.72, abs=0.01)


class Overflowing:
    """A member whose output for the second structure overflows the log transform's inverse."""

    def predict(self, structures):
        return [1.0, 1e6][: len(structures)]


def test_a_prediction_that_is_not_finite_is_a_reason_not_a_number():
    model_sets = {'diel_elec': loading.ModelSet('diel_elec', [Overflowing()], transform='log')}
    table = inference.predict([cscl(), cscl()], model_sets)
    assert pd.isna(table.loc[0, 'reason']) and table.loc[0, 'diel_elec'] == pytest.approx(np.e)
    assert table.loc[1, 'reason'] == 'the diel_elec model gives no finite value: far outside its data'
    assert table.loc[1, ['diel_elec', 'diel_elec_std']].isna().all()


def test_predict_cli_with_bad_inputs(model_dir, tmp_path):
    inputs = tmp_path / 'inputs'
    inputs.mkdir()
    cscl().to(filename=str(inputs / 'CsCl.cif'))
    cscl().to(filename=str(inputs / 'POSCAR'), fmt='poscar')
    for name, structure in bad_structures().items():
        structure.to(filename=str(inputs / f'{name}.cif'))
    (inputs / 'garbage.cif').write_text('this is not a crystal\n')
    (inputs / 'notes.csv').write_text('formula,band_gap\nCsCl,7\n')  # no structure files: not read at all
    (inputs / 'pw.out').write_text('Program PWSCF\n')
    ase.io.write(
        inputs / 'frames.extxyz', [AseAtomsAdaptor.get_atoms(s) for s in (cscl(), rocksalt('Mg', 'O', 4.25))]
    )
    ase.io.write(
        inputs / 'water.xyz', ase.Atoms('H2O', positions=[[0, 0, 0], [0.76, 0.59, 0], [-0.76, 0.59, 0]])
    )
    output = tmp_path / 'out.csv'
    result = CliRunner().invoke(
        cli, ['predict', str(inputs), '-o', str(output), '--model-dir', str(model_dir)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(output).set_index('file')
    assert not {str(inputs / 'notes.csv'), str(inputs / 'pw.out')} & set(table.index)
    assert len(table) == 9 and '4 of 9 structures predicted' in result.output  # 8 files, one with 2 frames
    frames = table.loc[[f'{inputs / "frames.extxyz"}@{i}' for i in (0, 1)]]
    assert frames['reason'].isna().all() and frames['formula'].tolist() == ['CsCl', 'MgO']
    assert frames['band_gap'].iloc[0] == pytest.approx(2.72, abs=0.01)
    assert table.loc[str(inputs / 'water.xyz'), 'reason'] == 'not a crystal: no periodic cell'
    assert table.loc[str(inputs / 'overlapping.cif'), 'reason'] == 'atoms 0.040 Å apart (minimum 0.5 Å)'
    assert table.loc[str(inputs / 'overlapping.cif'), ['band_gap', 'diel_elec', 'fom']].isna().all()
    assert list(table.columns[:2]) == ['formula', 'protostructure']
    good = table.loc[[str(inputs / 'CsCl.cif'), str(inputs / 'POSCAR')]]
    assert good['reason'].isna().all()
    assert good['band_gap'].to_numpy() == pytest.approx([2.72, 2.72], abs=0.01)
    assert table.loc[str(inputs / 'garbage.cif'), 'reason'].startswith('unreadable')
    assert table.loc[str(inputs / 'unsupported.cif'), 'reason'].startswith('unsupported element')
    assert table.loc[str(inputs / 'isolated.cif'), 'reason'].startswith('isolated atom')
    assert table.loc[str(inputs / 'garbage.cif'), ['band_gap', 'fom']].isna().all()

    only_bad = CliRunner().invoke(
        cli, ['predict', str(inputs / 'garbage.cif'), '-o', str(output), '--model-dir', str(model_dir)]
    )
    assert only_bad.exit_code == 1
    assert 'nothing could be predicted' in only_bad.output


def test_prediction_process_links_structures_and_models(aiida_profile, model_dir, petousis_structures):
    from aiida.common.links import LinkType
    from aiida.orm import StructureData

    from aiida_dielectrics.calculations import predictions
    from aiida_dielectrics.data.prediction import PredictionData

    structures = {
        'good': StructureData(pymatgen=petousis_structures[0]),
        'bad': StructureData(pymatgen=bad_structures()['isolated']),
    }
    models = {target: predictions.model_node(target, model_dir / name) for target, name in _folders().items()}
    assert predictions.model_node('band_gap', model_dir / GAP).pk == models['band_gap'].pk  # reused
    outputs, process = predictions.run_prediction(structures, models)
    assert process.is_finished_ok
    assert set(outputs['predictions']) == {'good'}
    assert outputs['report']['skipped']['bad'].startswith('isolated atom')
    prediction = outputs['predictions']['good']
    assert isinstance(prediction, PredictionData)
    inputs = {
        link.link_label: link.node.pk
        for link in process.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    }
    assert inputs['structures__good'] == structures['good'].pk
    assert predictions.structure_of(prediction).pk == structures['good'].pk
    assert {inputs[f'models__{target}'] for target in models} == {node.pk for node in models.values()}
    expected = inference.predict([petousis_structures[0]], loading.load_predictors(model_dir))
    for name in ('e_form', 'band_gap', 'diel_elec_std', 'diel_ionic', 'fom_adj'):
        assert prediction.base.attributes.get(name) == pytest.approx(expected.loc[0, name], rel=1e-5)
    assert prediction.protostructure == expected.loc[0, 'protostructure']


def test_pymatgen_structure_equals_get_pymatgen(aiida_profile, petousis_structures):
    from aiida.orm import StructureData

    from aiida_dielectrics.calculations.predictions import pymatgen_structure

    for structure in petousis_structures:
        node = StructureData(pymatgen=structure)
        assert pymatgen_structure(node) == node.get_pymatgen() == structure
    slab = StructureData(pymatgen=petousis_structures[0])
    slab.pbc = (True, True, False)
    assert pymatgen_structure(slab) == slab.get_pymatgen()  # the fallback


def _folders():
    return {'e_form': EFORM, 'band_gap': GAP, 'diel_elec': 'diel_elec', 'diel_ionic': 'diel_ionic'}


def test_predict_cli_store_writes_what_it_stored(aiida_profile, model_dir, tmp_path):
    from aiida.orm import QueryBuilder

    from aiida_dielectrics.data.prediction import PredictionData

    cscl().to(filename=str(tmp_path / 'CsCl.cif'))
    (tmp_path / 'garbage.cif').write_text('not a crystal\n')
    output = tmp_path / 'out.csv'
    before = QueryBuilder().append(PredictionData).count()
    arguments = ['predict', str(tmp_path / 'CsCl.cif'), str(tmp_path / 'garbage.cif'), '-o', str(output)]
    result = CliRunner().invoke(cli, [*arguments, '--model-dir', str(model_dir), '--store'])
    assert result.exit_code == 0, result.output
    assert QueryBuilder().append(PredictionData).count() == before + 1
    table = pd.read_csv(output)
    assert table['band_gap'].iloc[0] == pytest.approx(2.72, abs=0.01)
    assert table['reason'].iloc[1].startswith('unreadable')


def test_predict_store_takes_default_models_from_the_hub(aiida_profile, hub, models, tmp_path):
    """No model folder: E_form comes by name from matgl's Hub cache, and its node from the folder there."""
    from aiida.orm import QueryBuilder

    from aiida_dielectrics.calculations.predictions import model_node
    from aiida_dielectrics.data.model import ModelData

    cscl().to(filename=str(tmp_path / 'CsCl.cif'))
    output = tmp_path / 'out.csv'
    result = CliRunner().invoke(cli, ['predict', str(tmp_path / 'CsCl.cif'), '-o', str(output), '--store'])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(output)['e_form'].iloc[0] == pytest.approx(-1.92, abs=0.01)
    sha256 = tree_sha256(models / EFORM)
    query = QueryBuilder().append(
        ModelData, filters={'attributes.sha256': sha256, 'attributes.target': 'e_form'}
    )
    assert query.count() == 1
    assert model_node('e_form', EFORM).base.attributes.get('sha256') == sha256  # the same node, by name
