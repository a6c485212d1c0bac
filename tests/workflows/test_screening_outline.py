"""Step through ``ScreeningWorkChain``'s funnel with fake child nodes: no GNN, no potential, no DFPT code.

The GNN batches and the relaxations are stand-in calcfunctions with the real ones' link labels, so the
steps find predictions, candidates and relaxed structures as in a campaign; the shard work chains the
daemon would take are run at once where the work chain submits them; the hull from a user's entries file
and the selections are the real calcfunctions.
"""

import copy
import uuid

import numpy as np
import pytest
from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import ToContext, calcfunction, run_get_node
from monty.serialization import dumpfn
from plumpy import ProcessState
from plumpy.processes import PROCESS_STACK
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from aiida_dielectrics.calculations import hull as hulls
from aiida_dielectrics.calculations import relax as relaxations
from aiida_dielectrics.calculations.predictions import model_node
from aiida_dielectrics.data import DielectricData, PredictionData
from aiida_dielectrics.ml.loading import PACKAGED_MODELS
from aiida_dielectrics.tools.provenance import run_in_bulk
from aiida_dielectrics.tools.query import STAGE_EXTRA, batch_predictions, campaign_predictions
from aiida_dielectrics.workflows import prediction_shard, screening
from aiida_dielectrics.workflows.prediction_shard import PredictionShardWorkChain
from aiida_dielectrics.workflows.screening import ScreeningWorkChain
from tests.qe_setup import FAMILY, OPTIONS

#: formula → predicted (gap, ε_elec, ε_ionic): Al is a metal, BaO the best Φ, CaO next, MgO last.
VALUES = {'Al': (0.0, 1.0, 0.0), 'MgO': (5.0, 3.0, 7.0), 'CaO': (4.0, 3.5, 12.0), 'BaO': (3.0, 4.0, 40.0)}
#: formula → relaxed energy (eV/atom, MP2020 scale) against the entries below: MgO 0.02 above the
#: known MgO, CaO 0.3 above the known CaO; BaO does not converge.
RELAXED = {'MgO': -5.98, 'CaO': -5.7}


def rocksalt(cation, anion, a):
    cell = Structure.from_spacegroup('Fm-3m', Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return orm.StructureData(pymatgen=cell.get_primitive_structure())


def candidates():
    aluminium = Structure(Lattice.cubic(2.86), ['Al'], [[0, 0, 0]])
    return {
        'al': orm.StructureData(pymatgen=aluminium),
        'bao': rocksalt('Ba', 'O', 5.5),
        'cao': rocksalt('Ca', 'O', 4.9),
        'mgo': rocksalt('Mg', 'O', 4.3),
    }


def stand_in_outputs(structures: dict, hull: dict) -> dict:
    """What the GNN batch would make: :data:`VALUES` by formula, and the hull energies it is given."""
    predictions = {}
    for key, node in structures.items():
        formula = node.get_pymatgen().composition.reduced_formula
        gap, elec, ionic = VALUES[formula]
        predictions[key] = PredictionData(
            formula=formula,
            band_gap=gap,
            band_gap_std=0.1,
            diel_elec=elec,
            diel_elec_std=0.1,
            diel_ionic=ionic,
            diel_ionic_std=1.0,
            e_above_hull=hull[key].value if key in hull else None,
        )
    return {'predictions': predictions, 'report': orm.Dict({'predicted': len(predictions), 'skipped': {}})}


@calcfunction
def predict_structures(**inputs):
    """Stand-in for the GNN batch (:func:`stand_in_outputs`)."""
    return stand_in_outputs(inputs['structures'], inputs.get('e_above_hull', {}))


def run_prediction(structures, models, batch_size, labels=True, e_above_hull=None, metadata=None):
    extra = {'e_above_hull': e_above_hull} if e_above_hull else {}
    return run_in_bulk(predict_structures, metadata, structures=structures, **extra)


@calcfunction
def relax_structures(**inputs):
    """Stand-in for the relaxation batch: cells shrunk by 1 %, energies from :data:`RELAXED`."""
    relaxed, results = {}, {}
    for key, node in inputs['structures'].items():
        structure = node.get_pymatgen()
        formula = structure.composition.reduced_formula
        energy = RELAXED.get(formula)
        results[key] = orm.Dict(
            {
                'composition': {str(el): float(n) for el, n in structure.composition.items()},
                'energy_mp': energy,
                'potential': 'sevennet-0',
                'reason': None if energy is not None else 'not converged within 500 steps (fmax 0.05 eV/Å)',
                'mp_reason': None,
                'volume_change': -0.03,
            }
        )
        relaxed[key] = orm.StructureData(pymatgen=structure.scale_lattice(0.97 * structure.volume))
    return {'relaxed': relaxed, 'results': results}


def relax(structures, **settings):
    outputs, _ = run_in_bulk(relax_structures, structures=structures)
    return {
        key: {'results': outputs['results'][key], 'relaxed': outputs['relaxed'][key]} for key in structures
    }


@pytest.fixture
def entries_file(tmp_path):
    """A user's MP-style entries: the elements at 0 and −5 eV/atom (O), rocksalt MgO and CaO known."""
    path = tmp_path / 'entries.json'
    dumpfn(
        [
            ComputedEntry('Mg', 0.0, entry_id='mp-153'),
            ComputedEntry('Ca', 0.0, entry_id='mp-45'),
            ComputedEntry('Ba', 0.0, entry_id='mp-122'),
            ComputedEntry('O2', -10.0, entry_id='mp-12957'),
            ComputedEntry('MgO', -12.0, entry_id='mp-1265'),
            ComputedEntry('CaO', -12.0, entry_id='mp-2605'),
        ],
        path,
    )
    return orm.SinglefileData(path)


@pytest.fixture
def builder(qe):
    pw, ph = qe
    builder = ScreeningWorkChain.get_builder()
    builder.candidates = candidates()
    builder.models = {
        target: model_node(target, PACKAGED_MODELS / target)
        for target in ('band_gap', 'diel_elec', 'diel_ionic')
    }
    builder.relax_count = orm.Int(2)
    builder.num_verify = orm.Int(1)
    builder.campaign_group = orm.Str(f'funnel-{uuid.uuid4().hex[:8]}')  # no profile reset: fast
    builder.dfpt = {
        'potential_family': orm.Str(FAMILY),
        'codes': {'pw': pw, 'ph': ph},
        'options': orm.Dict(OPTIONS),
    }
    return builder


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(prediction_shard, 'run_prediction', run_prediction)
    monkeypatch.setattr(relaxations, 'relax', relax)


@pytest.fixture
def generate_workchain(generate_workchain):
    """The work chain is the current process, as when a worker runs its steps: the shards it makes are
    CALLed by it, which is how its steps find them. A shard work chain it submits runs at once."""
    tokens = []

    def factory(builder):
        process = generate_workchain(builder)
        tokens.append(PROCESS_STACK.set([process]))
        process.submit = run_shard
        return process

    yield factory
    for token in reversed(tokens):
        PROCESS_STACK.reset(token)


def run_shard(process_class, **inputs):
    """Stand-in for ``self.submit``: the shard work chain runs to its end, CALLed by the current process."""
    assert process_class is PredictionShardWorkChain
    return run_get_node(process_class, **inputs).node


def predict_shards(process) -> list[list[str]]:
    """The loop over the shards of a stage: the labels awaited in each round (the engine would put the
    finished processes in the context)."""
    rounds = []
    while process.has_shards():
        awaited = process.run_shards()
        assert isinstance(awaited, ToContext)
        rounds.append(sorted(awaited))
        process.ctx.update(awaited)
        process.inspect_shards()
    return rounds


def stage_two(process):
    """Run the steps up to and including stage 2's predictions."""
    for step in (
        process.predict,
        lambda: predict_shards(process) and None,
        process.preselect,
        process.relax,
        process.measure_hull,
        process.predict_relaxed,
        lambda: predict_shards(process) and None,
    ):
        assert step() is None, step.__name__


def test_funnel_stages_with_a_users_hull(builder, entries_file, fakes, generate_workchain):
    builder.hull_entries = entries_file
    process = generate_workchain(builder)
    stage_two(process)

    # Stage 1: all four predicted; the metal fails the loose gap filter; the best two by Φ_adj go on.
    preselection = process.outputs['preselection']
    assert preselection['candidates'] == 4 and preselection['passed_filters'] == 3
    assert preselection['selected'] == ['bao', 'cao']
    assert len(orm.load_group(f'{builder.campaign_group.value}/stage-1').nodes) == 4

    # Stage 2: BaO did not converge; CaO relaxed, linked to its candidate through the relax process.
    assert process.ctx.relax_failed == {'bao': 'not converged within 500 steps (fmax 0.05 eV/Å)'}
    relaxed = process.outputs['relaxed']['cao']
    assert relaxed.creator.inputs.structures.cao.uuid == builder.candidates['cao'].uuid
    hull = process.outputs['hull']
    assert hull['source'] == 'entries' and hull.creator.inputs.entries.uuid == entries_file.uuid
    second = batch_predictions(process.ctx.stage2_batches)
    assert list(second) == ['cao'] and second['cao'].creator.base.extras.get(STAGE_EXTRA) == 2
    assert second['cao'].e_above_hull == pytest.approx(0.3)
    assert second['cao'].creator.inputs.structures.cao.uuid == relaxed.uuid
    assert second['cao'].creator.inputs.e_above_hull.cao.creator.inputs.hull.uuid == hull.uuid
    assert len(batch_predictions(process.ctx.stage1_batches)) == 4
    assert [node.uuid for node in orm.load_group(builder.campaign_group.value).nodes] == [second['cao'].uuid]

    # Stage 3: CaO's E_hull (0.3) fails e_hull_max 0.1: nothing to verify.
    assert process.select().status == ScreeningWorkChain.exit_codes.ERROR_NOTHING_SELECTED.status
    assert process.outputs['selection']['passed_filters'] == 0


def test_dfpt_of_the_relaxed_structure_and_the_summary(
    builder, entries_file, fakes, generate_workchain, generate_workflow_node
):
    builder.hull_entries = entries_file
    builder.relax_count = orm.Int(3)  # MgO too: 0.02 eV/atom above the known MgO
    process = generate_workchain(builder)
    stage_two(process)
    assert process.select() is None
    assert process.outputs['selection']['selected'] == ['mgo']
    prediction = orm.load_node(process.ctx.selected['mgo'])
    assert prediction.e_above_hull == pytest.approx(0.02)

    launched = []
    process.submit = lambda builder: launched.append(builder) or orm.WorkflowNode()
    process.run_dfpt()
    (child,) = launched
    assert child.structure.uuid == process.outputs['relaxed']['mgo'].uuid  # DFT starts from the relaxed

    dielectric = DielectricData(
        epsilon_electronic=np.eye(3) * 3.2,
        epsilon_ionic=np.eye(3) * 6.6,
        band_gap=4.5,
        engine='qe',
        formula='MgO',
    )
    process.ctx['dfpt_mgo'] = generate_workflow_node(outputs={'dielectric': dielectric})
    process.inspect_dfpt()
    assert process.summarize() is None
    summary = process.outputs['summary'].get_dict()
    assert summary['stages']['predict'] == {
        'candidates': 4,
        'predicted': 4,
        'passed_filters': 3,
        'selected': 3,
        'not_predicted': {},
    }
    relax_stage = summary['stages']['relax']
    assert relax_stage['relaxed'] == 2 and list(relax_stage['failed']) == ['bao']
    assert relax_stage['with_e_above_hull'] == 2 and relax_stage['passed_filters'] == 1
    assert summary['stages']['verify'] == {'verified': 1, 'failed': []}
    assert summary['hull_source'] == 'entries'
    assert summary['results'][0]['e_above_hull'] == pytest.approx(0.02)
    assert summary['results'][0]['fom_dfpt'] == pytest.approx(dielectric.fom)
    assert dielectric.uuid in {node.uuid for node in orm.load_group(builder.campaign_group.value).nodes}


def test_default_hull_of_the_relaxed_compositions(builder, fakes, generate_workchain, monkeypatch):
    """Without entries the hull is the default one, built for the relaxed candidates with their potential."""
    asked = {}

    def build_default_hull(compositions, **settings):
        asked.update(compositions=compositions, **settings)
        elements = {
            symbol: orm.Dict(
                {'composition': {symbol: 1.0}, 'energy': energy, 'reason': None, 'potential': 'chgnet'}
            )
            for symbol, energy in (('Ca', 0.0), ('Mg', 0.0), ('O', -5.0))
        }
        return hulls.default_hull(elements=elements)

    monkeypatch.setattr(hulls, 'build_default_hull', build_default_hull)
    builder.relaxation = {'potential': orm.Str('chgnet')}
    builder.relax_count = orm.Int(3)
    process = generate_workchain(builder)
    for step in (process.predict, lambda: predict_shards(process) and None, process.preselect, process.relax):
        assert step() is None
    process.measure_hull()
    assert sorted(Composition(c).reduced_formula for c in asked['compositions']) == ['CaO', 'MgO']
    assert asked['potential'] == 'chgnet' and asked['max_steps'] == relaxations.science.MAX_STEPS
    assert process.outputs['hull']['source'] == 'default'
    # The stand-in relaxations say sevennet-0, the hull chgnet: no E_hull, with the reason.
    assert process.ctx.e_above_hull == {}


def test_nothing_to_relax_and_nothing_relaxed(builder, fakes, generate_workchain, monkeypatch):
    builder.loose_filters = orm.Dict({'band_gap_min': 10.0})
    process = generate_workchain(builder)
    process.predict()
    predict_shards(process)
    exit_code = process.preselect()
    assert exit_code.status == ScreeningWorkChain.exit_codes.ERROR_NOTHING_TO_RELAX.status
    assert 'band_gap_min' in exit_code.message

    builder.loose_filters = orm.Dict({})
    builder.relax_count = orm.Int(1)  # BaO only, which does not converge
    process = generate_workchain(builder)
    process.predict()
    predict_shards(process)
    assert process.preselect() is None
    exit_code = process.relax()
    assert exit_code.status == ScreeningWorkChain.exit_codes.ERROR_NOTHING_RELAXED.status
    assert 'not converged' in exit_code.message


@pytest.mark.parametrize(
    ('name', 'value', 'message'),
    [
        ('loose_filters', orm.Dict, 'no hull before relaxation'),
        ('filters', orm.Dict, 'unknown filter'),
        ('relax_count', orm.Int, 'relax_count must be at least 1'),
        ('relaxation', 'mace', 'unknown potential'),
        ('relaxation', 0.0, 'fmax must be > 0'),
    ],
)
def test_bad_inputs_are_refused(aiida_profile, name, value, message):
    builder = ScreeningWorkChain.get_builder()  # each port is validated as it is set
    bad = {
        'loose_filters': lambda: orm.Dict({'e_hull_max': 0.1}),
        'filters': lambda: orm.Dict({'e_hull': 0.1}),
        'relax_count': lambda: orm.Int(0),
        'relaxation': lambda: (
            {'potential': orm.Str(value)} if isinstance(value, str) else {'fmax': orm.Float(value)}
        ),
    }
    with pytest.raises(ValueError, match=message):
        setattr(builder, name, bad[name]())


def test_a_bad_entries_file_is_refused(aiida_profile, tmp_path):
    builder = ScreeningWorkChain.get_builder()
    path = tmp_path / 'entries.json'
    path.write_text('{"not": "entries"}')
    with pytest.raises(ValueError, match=r'hull_entries: entries\.json holds no list of entries'):
        builder.hull_entries = orm.SinglefileData(path)


def shard_labels(process) -> list[str]:
    return sorted(
        link.link_label for link in process.node.base.links.get_outgoing().all() if 'shard' in link.link_label
    )


def test_a_failing_shard_in_the_daemon_runs_once_more_then_is_reported(
    builder, fakes, generate_workchain, monkeypatch
):
    """Shards of one, two at a time: CaO's raises twice, MgO's once; the others and MgO's second go on."""
    calls = []

    def flaky(structures, *args, **kwargs):
        calls.append(sorted(structures))
        if 'cao' in structures or calls.count(['mgo']) == 1:
            raise RuntimeError('CUDA out of memory')
        return run_prediction(structures, *args, **kwargs)

    monkeypatch.setattr(prediction_shard, 'run_prediction', flaky)
    builder.inference = {'shard_size': orm.Int(1), 'max_concurrent': orm.Int(2)}
    process = generate_workchain(builder)
    process.predict()
    rounds = predict_shards(process)
    assert rounds == [
        ['stage1_shard0_1', 'stage1_shard1_1'],
        ['stage1_shard2_1', 'stage1_shard3_1'],
        ['stage1_shard2_2', 'stage1_shard3_2'],
    ]
    assert calls == [['al'], ['bao'], ['cao'], ['mgo'], ['cao'], ['mgo']]
    (reason,) = process.ctx.not_predicted['1'].values()
    assert list(process.ctx.not_predicted['1']) == ['cao']
    assert reason.startswith('PredictionShardWorkChain<') and reason.endswith(
        'finished [300]: the prediction batch raised RuntimeError: CUDA out of memory'
    )
    assert sorted(campaign_predictions(process.node)) == ['al', 'bao', 'mgo']
    assert process.preselect() is None  # the campaign goes on with the rest
    assert process.outputs['preselection']['candidates'] == 3

    monkeypatch.setattr(prediction_shard, 'run_prediction', lambda *args, **kwargs: 1 / 0)
    process = generate_workchain(builder)
    process.predict()
    predict_shards(process)
    exit_code = process.preselect()
    assert exit_code.status == ScreeningWorkChain.exit_codes.ERROR_NOTHING_PREDICTED.status
    assert exit_code.message.startswith('No candidate could be predicted: PredictionShardWorkChain<')
    assert 'the prediction batch raised ZeroDivisionError: division by zero' in exit_code.message


def test_the_step_run_again_after_a_worker_died_makes_no_shard_twice(
    builder, fakes, generate_workchain, monkeypatch
):
    """The worker dies after the step submitted its shards, before the checkpoint: the next one loads the
    checkpoint from before the step, runs the step again and awaits the shards already made."""
    builder.inference = {'shard_size': orm.Int(1)}
    process = generate_workchain(builder)
    process.predict()
    checkpoint = copy.deepcopy(dict(process.ctx))
    first = sorted(process.run_shards())
    process.ctx.clear()
    process.ctx.update(copy.deepcopy(checkpoint))

    submitted = []

    def counting(process_class, **inputs):
        submitted.append(inputs['metadata']['call_link_label'])
        return run_shard(process_class, **inputs)

    process.submit = counting
    assert predict_shards(process) == [first]
    assert submitted == []
    assert shard_labels(process) == [f'stage1_shard{index}_1' for index in range(4)]
    query = orm.QueryBuilder().append(orm.WorkflowNode, filters={'id': process.node.pk}, tag='campaign')
    query.append(PredictionShardWorkChain, with_incoming='campaign', tag='shard')
    query.append(orm.CalculationNode, with_incoming='shard', tag='batch')
    query.append(PredictionData, with_incoming='batch', edge_project='label')
    assert sorted(query.all(flat=True)) == [f'predictions__{key}' for key in ('al', 'bao', 'cao', 'mgo')]
    assert sorted(campaign_predictions(process.node)) == ['al', 'bao', 'cao', 'mgo']
    assert len(orm.load_group(f'{builder.campaign_group.value}/stage-1').nodes) == 4


def shard_builder(**inputs):
    builder = PredictionShardWorkChain.get_builder()
    builder.update(inputs)
    return builder


def test_the_shard_step_run_again_after_a_worker_died_predicts_nothing_twice(
    builder, fakes, generate_workchain, monkeypatch
):
    """A shard work chain's worker dies after the batch was stored: the step, run again, finds the batch."""
    structures = candidates()
    inputs = {
        'structures': orm.Dict({key: node.store().uuid for key, node in structures.items()}),
        'models': dict(builder.models),
        'parameters': orm.Dict({'batch_size': 64, 'labels': True}),
    }
    calls = []

    def counting(structures, *args, **kwargs):
        calls.append(sorted(structures))
        return run_prediction(structures, *args, **kwargs)

    monkeypatch.setattr(prediction_shard, 'run_prediction', counting)
    shard = generate_workchain(shard_builder(**inputs))
    assert shard.predict() is None
    assert shard.predict() is None  # again, from the checkpoint before the step
    assert calls == [['al', 'bao', 'cao', 'mgo']]
    (link,) = shard.node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()
    assert link.link_label == prediction_shard.BATCH_LABEL
    assert sorted(batch_predictions([link.node.pk])) == ['al', 'bao', 'cao', 'mgo']


def test_a_shard_with_a_structure_that_is_gone_fails_with_the_reason(aiida_profile, generate_workchain):
    shard = generate_workchain(
        shard_builder(structures=orm.Dict({'x': str(uuid.uuid4())}), parameters=orm.Dict({'batch_size': 64}))
    )
    exit_code = shard.predict()
    assert exit_code.status == PredictionShardWorkChain.exit_codes.ERROR_PREDICTION_FAILED.status
    assert exit_code.message == 'the prediction batch raised ValueError: no node for x'


class FakeJobs:
    """Stand-in for ``self.submit(PredictCalculation, …)``: a finished ``CalcJobNode`` CALLed by the work chain under
    the shard's label, its structures linked in, with the stand-in's predictions, or exit status 300 for the labels
    in ``failing``."""

    def __init__(self, process, computer, failing=()):
        self.process, self.computer, self.failing = process, computer, set(failing)
        self.submitted = []

    def __call__(self, process_class, **inputs):
        assert process_class is screening.PredictCalculation
        label = inputs['metadata']['call_link_label']
        self.submitted.append(inputs)
        node = orm.CalcJobNode(computer=self.computer, process_type='aiida.calculations:dielectrics.predict')
        node.set_process_label('PredictCalculation')
        node.base.links.add_incoming(self.process.node, link_type=LinkType.CALL_CALC, link_label=label)
        for key, structure in inputs['structures'].items():
            node.base.links.add_incoming(
                structure, link_type=LinkType.INPUT_CALC, link_label=f'structures__{key}'
            )
        node.set_process_state(ProcessState.FINISHED)
        node.store()
        if label in self.failing:
            node.set_exit_status(300)
            node.set_exit_message('the job wrote no predictions.json')
            return node
        outputs = stand_in_outputs(inputs['structures'], inputs.get('e_above_hull', {}))
        for key, prediction in outputs['predictions'].items():
            prediction.base.links.add_incoming(
                node, link_type=LinkType.CREATE, link_label=f'predictions__{key}'
            )
            prediction.store()
        outputs['report'].base.links.add_incoming(node, link_type=LinkType.CREATE, link_label='report')
        outputs['report'].store()
        node.set_exit_status(0)
        return node


def test_shards_as_jobs_max_concurrent_at_a_time_a_failed_one_retried_once(
    builder, entries_file, fakes, generate_workchain, aiida_localhost
):
    """Shards of one, three jobs at a time: CaO's job fails twice and is reported, MgO's fails once; stage 2's
    job takes the hull energies. Run again from its checkpoint, the step submits nothing twice."""
    code = orm.InstalledCode(
        computer=aiida_localhost, filepath_executable='/usr/bin/python3', label='gpu'
    ).store()
    options = {'queue_name': 'gpu', 'max_wallclock_seconds': 600}
    builder.inference = {
        'code': code,
        'options': orm.Dict(options),
        'shard_size': orm.Int(1),
        'max_concurrent': orm.Int(3),
    }
    builder.hull_entries = entries_file
    builder.relax_count = orm.Int(3)
    process = generate_workchain(builder)
    jobs = FakeJobs(
        process, aiida_localhost, failing={'stage1_shard2_1', 'stage1_shard2_2', 'stage1_shard3_1'}
    )
    process.submit = jobs
    process.predict()

    checkpoint = copy.deepcopy(dict(process.ctx))
    first = sorted(process.run_shards())
    process.ctx.clear()
    process.ctx.update(copy.deepcopy(checkpoint))  # the worker died before the checkpoint: the step again
    rounds = predict_shards(process)
    assert first == rounds[0] == ['stage1_shard0_1', 'stage1_shard1_1', 'stage1_shard2_1']
    assert rounds[1:] == [['stage1_shard2_2', 'stage1_shard3_1'], ['stage1_shard3_2']]
    assert len(jobs.submitted) == 6  # not 9: the first round's jobs were found again
    inputs = jobs.submitted[0]
    assert inputs['code'].uuid == code.uuid and inputs['metadata']['options'] == options
    assert list(inputs['structures']) == ['al'] and 'e_above_hull' not in inputs
    assert inputs['parameters'].get_dict() == {'batch_size': 64, 'labels': True}
    assert set(inputs['models']) == {'band_gap', 'diel_elec', 'diel_ionic'}
    (reason,) = process.ctx.not_predicted['1'].values()
    assert list(process.ctx.not_predicted['1']) == ['cao']
    assert reason.startswith('PredictCalculation<') and reason.endswith(
        'finished [300]: the job wrote no predictions.json'
    )
    assert sorted(campaign_predictions(process.node)) == ['al', 'bao', 'mgo']
    assert not [
        label for label in process.ctx if label.startswith('stage1_shard')
    ]  # the checkpoint keeps no job

    for step in (process.preselect, process.relax, process.measure_hull, process.predict_relaxed):
        assert step() is None, step.__name__
    assert predict_shards(process) == [['stage2_shard0_1']]  # MgO (BaO did not converge)
    assert list(jobs.submitted[-1]['e_above_hull']) == ['mgo']
    assert campaign_predictions(process.node, stage=2)['mgo'].e_above_hull == pytest.approx(0.02)
    assert process.select() is None
    assert (
        process.summarize().status == ScreeningWorkChain.exit_codes.ERROR_ALL_DFPT_FAILED.status
    )  # no DFPT here
    summary = process.outputs['summary']['stages']
    assert summary['predict']['not_predicted'] == {'cao': reason}
    assert summary['predict']['predicted'] == 3 and summary['relax']['not_predicted'] == {}


def test_inference_options_need_a_code_and_must_be_the_jobs(aiida_profile, aiida_localhost):
    builder = ScreeningWorkChain.get_builder()
    with pytest.raises(ValueError, match=r'inference\.options needs inference\.code'):
        builder.inference = {'options': orm.Dict({'queue_name': 'gpu'})}
    code = orm.InstalledCode(computer=aiida_localhost, filepath_executable='/usr/bin/python3').store()
    with pytest.raises(ValueError, match=r"inference\.options: .*Unexpected ports \{'queue'"):
        builder.inference = {'code': code, 'options': orm.Dict({'queue': 'gpu'})}
    with pytest.raises(ValueError, match='shard_size must be at least 1'):
        builder.inference = {'shard_size': orm.Int(0)}
