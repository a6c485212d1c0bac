"""``dielectrics.screening``: a small real campaign through the funnel (GNNs, relaxation and the default
hull, GNNs again, QE DFPT), the same campaign again with caching on, and failure modes; the steps one by one
are in ``test_screening_outline.py``."""

import time

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import enable_caching
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.calculations.predictions import model_node
from aiida_dielectrics.ml.loading import PACKAGED_MODELS
from aiida_dielectrics.tools.query import campaign_batches, campaign_predictions
from aiida_dielectrics.workflows.screening import ScreeningWorkChain
from tests.qe_setup import FAMILY, OPTIONS


@pytest.fixture
def models(aiida_profile, shared):
    matgl = shared / 'models' / 'matgl'
    return {
        'e_form': model_node('e_form', matgl / 'MEGNet-MP-2018.6.1-Eform'),
        'band_gap': model_node('band_gap', PACKAGED_MODELS / 'band_gap'),
        'diel_elec': model_node('diel_elec', PACKAGED_MODELS / 'diel_elec'),
        'diel_ionic': model_node('diel_ionic', PACKAGED_MODELS / 'diel_ionic'),
    }


@pytest.fixture
def dfpt(qe):
    pw, ph = qe
    return {
        'engine': orm.Str('qe'),
        'protocol': orm.Str('fast'),
        'potential_family': orm.Str(FAMILY),
        'codes': {'pw': pw, 'ph': ph},
        'relax': orm.Bool(
            False
        ),  # SevenNet-0's lattices are close to PBE's; test_dfpt_qe tests the relaxation
        'options': orm.Dict(OPTIONS),
    }


def rocksalt(cation, anion, a):
    return orm.StructureData(
        pymatgen=Structure.from_spacegroup(
            'Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ).get_primitive_structure()
    )


def candidates():
    """Rocksalt sulfides and a metal; the gap filter (≥ 0.5 eV, shipped band-gap ensemble) drops the metal.

    Sulfides date from the pretrained gap MEGNet, which put MgO and CaO at ~0 eV; the shipped ensemble
    gives them wide gaps (docs/topics/models.md#band-gap), but the sulfides and their expected DFPT values stay."""
    aluminium = Structure(
        Lattice.cubic(4.05), ['Al'] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    return {
        'MgS': rocksalt('Mg', 'S', 5.20),
        'CaS': rocksalt('Ca', 'S', 5.69),
        'Al': orm.StructureData(pymatgen=aluminium.get_primitive_structure()),
    }


def test_campaign_predicts_selects_and_verifies(models, dfpt):
    """The cheapest funnel: three candidates predicted, the best one relaxed (SevenNet-0) and measured
    against the default hull (the element references of its system: no known structure is stored
    here), predicted again and verified. Then the same campaign with caching on reuses it all."""
    structures = candidates()
    inputs = {
        'candidates': structures,
        'models': models,
        'relax_count': orm.Int(1),
        'num_verify': orm.Int(1),
        'dfpt': dfpt,
    }
    start = time.perf_counter()
    results, node = run_get_node(ScreeningWorkChain, **inputs)
    first_time = time.perf_counter() - start
    assert node.is_finished_ok, node.exit_message
    assert 'predictions' not in results  # outputs of the prediction processes, not linked again
    predictions = campaign_predictions(node)
    assert sorted(predictions) == ['Al', 'CaS', 'MgS']
    assert results['preselection']['ranked'][-1] == 'Al'  # the metal: lowest Φ_adj
    # Every prediction links to its candidate structure and to the four model nodes.
    for key, prediction in predictions.items():
        creator = prediction.creator
        assert (
            creator.base.links.get_incoming(link_label_filter=f'structures__{key}').one().node.uuid
            == structures[key].uuid
        )
        assert {
            link.node.uuid for link in creator.base.links.get_incoming(link_label_filter='models__%').all()
        } == {model.uuid for model in models.values()}
    (key,) = results['preselection']['selected']
    # Stage 2: the relaxed structure links to its candidate through the relax process.
    relaxed = results['relaxed'][key]
    assert relaxed.creator.process_label == 'relax_structures'
    assert relaxed.creator.base.links.get_incoming(
        link_label_filter=f'structures__{key}'
    ).one().node.uuid == (structures[key].uuid)
    assert results['hull']['source'] == 'default' and results['hull']['potential'] == 'sevennet-0'
    again = campaign_predictions(node, stage=2)
    assert list(again) == [key]
    relaxed_prediction = again[key]
    assert relaxed_prediction.creator.inputs.structures[key].uuid == relaxed.uuid
    assert relaxed_prediction.e_above_hull < 0.1  # a stable compound against its elements
    selection = results['selection']
    assert selection['selected'] == [key]
    dielectric = results['dielectrics'][key]
    assert dielectric.engine == 'qe'
    # The DFPT ran on the relaxed structure node: the relaxed prediction and the result meet there.
    dfpt_node = dielectric.creator.caller
    assert dfpt_node.inputs.structure.uuid == relaxed.uuid
    summary = results['summary'].get_dict()
    assert summary['stages']['predict'] == {
        'candidates': 3,
        'predicted': 3,
        'passed_filters': 3,  # Al too: its predicted gap (below 0.5 eV) passes the loose 0.25 eV
        'selected': 1,
        'not_predicted': {},
    }
    assert summary['stages']['relax']['relaxed'] == summary['stages']['relax']['with_e_above_hull'] == 1
    assert summary['verified'] == summary['selected'] == 1
    assert summary['results'][0]['e_above_hull'] == pytest.approx(relaxed_prediction.e_above_hull)
    assert summary['results'][0]['fom_dfpt'] == pytest.approx(dielectric.fom)
    assert summary['mae_fom'] == pytest.approx(abs(relaxed_prediction.fom - dielectric.fom))
    assert summary['hits'] == int(dielectric.fom > 240)
    assert 3.0 < dielectric.diel_elec < 7.0 and np.isfinite(dielectric.diel_total)

    with enable_caching():
        start = time.perf_counter()
        again, rerun = run_get_node(ScreeningWorkChain, **inputs)
        cached_time = time.perf_counter() - start
    assert rerun.is_finished_ok, rerun.exit_message
    for stage in (1, 2):  # every prediction batch a clone of the first campaign's
        first_batches = {orm.load_node(pk).uuid for pk in campaign_batches(node, stage)}
        sources = {orm.load_node(pk).base.caching.get_cache_source() for pk in campaign_batches(rerun, stage)}
        assert sources == first_batches, stage
    jobs = [child for child in rerun.called_descendants if isinstance(child, orm.CalcJobNode)]
    assert sorted(job.process_label for job in jobs) == ['PhCalculation', 'PwCalculation']
    assert all(job.base.caching.get_cache_source() is not None for job in jobs)  # no pw.x, no ph.x run
    assert again['relaxed'][key].uuid == relaxed.uuid  # relaxed before with the same settings: reused
    assert again['dielectrics'][key].base.attributes.all == dielectric.base.attributes.all
    print(
        f'\ncampaign {first_time:.1f} s, again with caching {cached_time:.1f} s '
        f'({cached_time / first_time:.1%} of the first)'
    )


def test_empty_candidates_and_filters_that_pass_nothing(models, dfpt):
    with pytest.raises(ValueError, match='either as `candidates`'):
        run_get_node(ScreeningWorkChain, candidates={}, models=models, dfpt=dfpt)
    _, node = run_get_node(
        ScreeningWorkChain,
        candidates={'MgO': rocksalt('Mg', 'O', 4.212)},
        models=models,
        loose_filters=orm.Dict({'band_gap_min': 100.0}),
        dfpt=dfpt,
    )
    assert node.exit_status == ScreeningWorkChain.exit_codes.ERROR_NOTHING_TO_RELAX.status
    assert 'band_gap_min' in node.exit_message
    assert list(campaign_predictions(node)) == ['MgO']


def test_candidates_from_a_group_join_the_campaign_group(models, dfpt):
    structures = {key: node.store() for key, node in candidates().items()}
    group = orm.Group('screening-candidates').store()
    group.add_nodes(list(structures.values()))
    _, node = run_get_node(
        ScreeningWorkChain,
        candidates_group=orm.Str(group.label),
        models=models,
        loose_filters=orm.Dict({'band_gap_min': 100.0}),  # stop after stage 1
        campaign_group=orm.Str('screening-campaign'),
        dfpt=dfpt,
    )
    assert node.exit_status == ScreeningWorkChain.exit_codes.ERROR_NOTHING_TO_RELAX.status
    predictions = campaign_predictions(node)
    assert set(predictions) == {f'n{structure.pk}' for structure in structures.values()}
    labels = [link.link_label for link in node.base.links.get_incoming().all()]
    assert not [label for label in labels if label.startswith('candidates__')]  # no link per candidate
    members = {member.uuid for member in orm.load_group('screening-campaign/stage-1').nodes}
    assert {prediction.uuid for prediction in predictions.values()} <= members
    with pytest.raises(ValueError, match='either as `candidates`'):
        run_get_node(
            ScreeningWorkChain,
            candidates=candidates(),
            candidates_group=orm.Str(group.label),
            models=models,
            dfpt=dfpt,
        )
    with pytest.raises(ValueError, match='no group `missing`'):
        run_get_node(ScreeningWorkChain, candidates_group=orm.Str('missing'), models=models, dfpt=dfpt)


def test_missing_models_and_codes_are_refused(models, dfpt):
    partial = {key: value for key, value in models.items() if key != 'diel_ionic'}
    with pytest.raises(ValueError, match='models missing for: diel_ionic'):
        run_get_node(ScreeningWorkChain, candidates=candidates(), models=partial, dfpt=dfpt)
    without_ph = {**dfpt, 'codes': {'pw': dfpt['codes']['pw']}}
    with pytest.raises(ValueError, match=r'engine qe needs dfpt\.codes\.ph'):
        run_get_node(ScreeningWorkChain, candidates=candidates(), models=models, dfpt=without_ph)
    with pytest.raises(ValueError, match='engine must be one of qe, vasp'):
        run_get_node(
            ScreeningWorkChain,
            candidates=candidates(),
            models=models,
            dfpt={**dfpt, 'engine': orm.Str('abinit')},
        )
