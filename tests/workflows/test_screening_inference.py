"""Where a campaign's GNNs run: stage 1 of one small campaign in shard work chains (the daemon's way) and as a
``dielectrics.predict`` job on ``localhost`` (direct scheduler) give the same prediction nodes; a job that
fails runs once more. Several jobs at a time, and a shard that fails twice: ``test_screening_outline.py``."""

import sys

import pytest
from aiida import orm
from aiida.engine import run_get_node
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.calculations.predictions import model_node
from aiida_dielectrics.ml.loading import PACKAGED_MODELS
from aiida_dielectrics.tools.query import batch_skipped, campaign_batches, campaign_predictions
from aiida_dielectrics.workflows.screening import ScreeningWorkChain
from tests.qe_setup import FAMILY

#: A code that fails the first job it runs (no predictions.json: exit 300), then runs this Python.
FLAKY = """#!/bin/bash
mkdir {marker} 2>/dev/null && exit 1
exec {python} "$@"
"""


def rocksalt(cation, anion, a):
    cell = Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return orm.StructureData(pymatgen=cell.get_primitive_structure())


def candidates():
    """Two sulfides, a metal and overlapping atoms (skipped with its reason): one shard (a job starts in
    tens of seconds on a busy machine)."""
    overlapping = Structure(Lattice.cubic(4.0), ['Na', 'Cl'], [[0, 0, 0], [0.01, 0, 0]])
    return {
        'MgS': rocksalt('Mg', 'S', 5.20),
        'CaS': rocksalt('Ca', 'S', 5.69),
        'Al': orm.StructureData(pymatgen=Structure(Lattice.cubic(2.86), ['Al'], [[0, 0, 0]])),
        'bad': orm.StructureData(pymatgen=overlapping),
    }


def stage_one(inference: dict, qe, shared):
    """Stage 1 only: no candidate passes the loose gap filter, so the campaign stops before relaxing."""
    matgl = shared / 'models' / 'matgl'
    models = {'e_form': model_node('e_form', matgl / 'MEGNet-MP-2018.6.1-Eform')}
    models.update(
        {
            target: model_node(target, PACKAGED_MODELS / target)
            for target in ('band_gap', 'diel_elec', 'diel_ionic')
        }
    )
    _, node = run_get_node(
        ScreeningWorkChain,
        candidates=candidates(),
        models=models,
        inference=inference,
        loose_filters=orm.Dict({'band_gap_min': 100.0}),
        dfpt={'potential_family': orm.Str(FAMILY), 'codes': dict(zip(('pw', 'ph'), qe, strict=True))},
    )
    assert node.exit_status == ScreeningWorkChain.exit_codes.ERROR_NOTHING_TO_RELAX.status, node.exit_message
    return node


def shards(node) -> dict[str, orm.ProcessNode]:
    return {
        link.link_label: link.node
        for link in node.base.links.get_outgoing().all()
        if '_shard' in link.link_label
    }


def test_jobs_on_localhost_give_the_daemons_nodes(aiida_localhost, qe, shared, tmp_path):
    """The first job fails and runs again. The nodes are the same, attribute by attribute."""
    here = stage_one({}, qe, shared)
    script = tmp_path / 'python-once-failing'
    script.write_text(FLAKY.format(marker=tmp_path / 'failed-once', python=sys.executable))
    script.chmod(0o755)
    code = orm.InstalledCode(computer=aiida_localhost, filepath_executable=str(script), label='flaky').store()
    jobs = stage_one({'code': code}, qe, shared)

    assert {label: shard.process_label for label, shard in shards(here).items()} == {
        'stage1_shard0_1': 'PredictionShardWorkChain'
    }
    made = shards(jobs)
    assert sorted(made) == ['stage1_shard0_1', 'stage1_shard0_2']
    assert made['stage1_shard0_1'].exit_status == 300 and made['stage1_shard0_2'].is_finished_ok
    assert {shard.process_label for shard in made.values()} == {'PredictCalculation'}

    expected, predicted = campaign_predictions(here), campaign_predictions(jobs)
    assert sorted(predicted) == sorted(expected) == ['Al', 'CaS', 'MgS']
    for key, prediction in predicted.items():
        assert prediction.base.attributes.all == pytest.approx(expected[key].base.attributes.all, rel=1e-5)
        assert prediction.creator.inputs.structures[key].uuid == jobs.inputs.candidates[key].uuid
    assert (
        list(batch_skipped(campaign_batches(jobs))) == list(batch_skipped(campaign_batches(here))) == ['bad']
    )
