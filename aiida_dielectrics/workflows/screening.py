"""``dielectrics.screening``: a funnel from many candidates to a few DFPT verifications.

1. every candidate: GNN predictions on the generated structure, in shards of ``inference.shard_size``,
   ``inference.max_concurrent`` at a time (in the daemon one
   :class:`~aiida_dielectrics.workflows.prediction_shard.PredictionShardWorkChain` per shard, which any
   worker takes; with ``inference.code`` one
   :class:`~aiida_dielectrics.calculations.predict_job.PredictCalculation` job per shard on that code's
   computer), the loose filters
   (``loose_filters``: no hull yet), the best ``relax_count`` by Φ_adj go on (``preselection``);
2. those: relaxation with a universal potential (:func:`aiida_dielectrics.calculations.relax.relax`: each
   relaxed structure links to its candidate through a ``relax_structures`` process, and a structure
   relaxed before with the same settings is not relaxed again), E_hull of the relaxed energy against the
   campaign's hull (``hull``: the user's ``hull_entries``, else the offline default of
   :func:`~aiida_dielectrics.calculations.hull.build_default_hull`), and the GNNs again on the relaxed
   structures, each prediction carrying its E_hull;
3. the best ``num_verify`` of those by ``ranking`` among the ones that pass ``filters`` (E_hull <
   ``e_hull_max`` …) (``selection``): a DFPT child work chain of the chosen engine
   (:mod:`aiida_dielectrics.workflows.dfpt`) each, on the relaxed structure node.

The predictions are outputs of the processes that made them (the job, or the shard work chain's
``predict_structures`` batch), not linked again to this work chain, and found by
:func:`aiida_dielectrics.tools.query.campaign_predictions` with their stage (those processes carry the
extra ``screening_stage``; the shards' call link label ``stage<s>_shard<i>_<attempt>`` names them, so
that a step run again after a restart finds the shards already made and does not make them again). A
failed shard runs once more, then its keys are reported in the summary as not predicted; with
``campaign_group`` the stage-1 predictions join the group
``<label>/stage-1`` and the relaxed predictions and DFPT results the group ``<label>``. Provenance is
written in bulk (:func:`aiida_dielectrics.tools.provenance.run_in_bulk`). A failed DFPT child is
reported in the summary (:func:`summarize_campaign`, with the counts of every stage); neither stops
the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, while_

from aiida_dielectrics.calculations import hull as hulls
from aiida_dielectrics.calculations import relax as relaxations
from aiida_dielectrics.calculations.predict_job import PredictCalculation
from aiida_dielectrics.calculations.predictions import prediction_inputs, structure_of
from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.data.model import ModelData
from aiida_dielectrics.science import selection
from aiida_dielectrics.science.hull import load_entries
from aiida_dielectrics.science.relax import DEFAULT_POTENTIAL, FMAX, MAX_STEPS, POTENTIALS
from aiida_dielectrics.tools.provenance import load_nodes, run_in_bulk
from aiida_dielectrics.tools.query import STAGE_EXTRA, batch_predictions, batch_skipped
from aiida_dielectrics.workflows.dfpt import engines, load_engine
from aiida_dielectrics.workflows.prediction_shard import PredictionShardWorkChain, prediction_batch

#: The original study counted a DFPT Φ above 240 eV as a hit (155/2532 ≈ 6 %).
DEFAULT_HIT_THRESHOLD = 240.0
#: Before relaxation there is no hull and the gap is that of a guessed cell: only clear metals go.
LOOSE_FILTERS = {'band_gap_min': selection.DEFAULT_BAND_GAP_MIN / 2}
#: Filters ``select_candidates`` knows; the loose ones cannot use the hull (stage 1 has none).
FILTERS = ('e_hull_max', 'band_gap_min', 'elements_min', 'elements_max')
#: A prediction shard that fails runs this many times in all before its keys are reported as not predicted.
SHARD_ATTEMPTS = 2
#: Columns of the selection table, read from the prediction nodes' attributes.
TABLE_COLUMNS = ('formula', 'e_above_hull', 'band_gap', 'diel_total', 'fom', 'fom_std', 'fom_adj')


def prediction_table(predictions: dict) -> pd.DataFrame:
    """One row per prediction (index: its key); missing attributes are NaN."""
    rows = {
        key: {name: node.base.attributes.get(name, np.nan) for name in TABLE_COLUMNS}
        for key, node in predictions.items()
    }
    return pd.DataFrame.from_dict(rows, orient='index', columns=list(TABLE_COLUMNS))


@calcfunction
def select_candidates(parameters: orm.Dict, **predictions) -> orm.Dict:
    """Rank the predictions that pass the filters; ``selected`` are the best ``count`` keys, best first.

    ``parameters``: ``count``, ``ranking`` (``fom_adj`` or ``pareto``) and the :data:`FILTERS`
    (absent or ``None`` switches a filter off).
    """
    options = parameters.get_dict()
    table = prediction_table(predictions)
    ranked = selection.select(
        table, None, options.get('ranking', 'fom_adj'), **{name: options.get(name) for name in FILTERS}
    )
    keys = [str(key) for key in table.index[ranked]]
    front = selection.pareto_front(table['band_gap'], table['diel_total'])
    return orm.Dict(
        {
            'candidates': len(table),
            'passed_filters': len(keys),
            'ranked': keys,
            'selected': keys[: options['count']],
            'pareto_front': sorted(str(key) for key in table.index[front]),
            'parameters': options,
        }
    )


@calcfunction
def summarize_campaign(
    preselection: orm.Dict, selection_node: orm.Dict, funnel: orm.Dict, hit_threshold: orm.Float, **nodes
) -> orm.Dict:
    """The counts of every stage, ML-vs-DFPT errors and the DFPT hit rate (Φ_DFPT > threshold).

    ``funnel``: the counts the work chain kept (``candidates``, ``relaxed``, ``relax_failed``,
    ``with_e_above_hull``, ``hull_source``, ``not_predicted``: by stage, the keys of failed shards with
    the reason); ``nodes`` holds ``prediction_<key>`` (on the relaxed
    structure) and ``dielectric_<key>`` for every verified key.
    """
    verified = sorted(name.removeprefix('dielectric_') for name in nodes if name.startswith('dielectric_'))
    rows = []
    for key in verified:
        predicted, computed = nodes[f'prediction_{key}'], nodes[f'dielectric_{key}']
        rows.append(
            {
                'key': key,
                'formula': computed.formula,
                'e_above_hull': predicted.e_above_hull,
                'fom_ml': predicted.fom,
                'fom_dfpt': computed.fom,
                'diel_total_ml': predicted.diel_total,
                'diel_total_dfpt': computed.diel_total,
                'band_gap_ml': predicted.band_gap,
                'band_gap_dfpt': computed.band_gap,
            }
        )
    counts = funnel.get_dict()
    selected = selection_node['selected']
    summary = {
        'stages': {
            'predict': {
                'candidates': counts['candidates'],
                'predicted': preselection['candidates'],
                'passed_filters': preselection['passed_filters'],
                'selected': len(preselection['selected']),
                'not_predicted': counts['not_predicted']['1'],
            },
            'relax': {
                'relaxed': counts['relaxed'],
                'failed': counts['relax_failed'],
                'with_e_above_hull': counts['with_e_above_hull'],
                'predicted': selection_node['candidates'],
                'passed_filters': selection_node['passed_filters'],
                'selected': len(selected),
                'not_predicted': counts['not_predicted']['2'],
            },
            'verify': {'verified': len(rows), 'failed': sorted(set(selected) - set(verified))},
        },
        'hull_source': counts['hull_source'],
        'selected': len(selected),
        'verified': len(rows),
        'failed': sorted(set(selected) - set(verified)),
        'hit_threshold': hit_threshold.value,
        'hits': sum(row['fom_dfpt'] > hit_threshold.value for row in rows),
        'results': rows,
    }
    if rows:
        summary['hit_rate'] = summary['hits'] / len(rows)
        for name in ('fom', 'diel_total', 'band_gap'):
            errors = [row[f'{name}_ml'] - row[f'{name}_dfpt'] for row in rows]
            summary[f'mae_{name}'] = float(np.mean(np.abs(errors)))
    return orm.Dict(summary)


class ScreeningWorkChain(WorkChain):
    """Screen candidate structures through the funnel: GNNs, relaxation and hull, DFPT of the best."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace(
            'candidates',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Candidates by key: for small campaigns (each is a link of the work chain).',
        )
        spec.input(
            'candidates_group',
            valid_type=orm.Str,
            required=False,
            help='Label of a group of StructureData: the candidates of a large campaign, read in the work '
            'chain (keys `n<pk>`), so that they cost no link each. Give this or `candidates`.',
        )
        spec.input_namespace('models', valid_type=ModelData, dynamic=True, help='Models by target.')
        spec.input(
            'loose_filters',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(LOOSE_FILTERS),
            validator=validate_loose_filters,
            help='Stage 1, on the generated structures: band_gap_min (eV), elements_min, elements_max; '
            'no e_hull_max (there is no hull before relaxation).',
        )
        spec.input(
            'relax_count',
            valid_type=orm.Int,
            default=lambda: orm.Int(20),
            validator=validate_positive,
            help='How many of stage 1 (best Φ_adj) to relax and predict again.',
        )
        spec.input_namespace('relaxation', help='Stage 2: how to relax (universal potential, settings).')
        spec.input(
            'relaxation.potential',
            valid_type=orm.Str,
            default=lambda: orm.Str(DEFAULT_POTENTIAL),
            help=f'One of {", ".join(POTENTIALS)}.',
        )
        spec.input('relaxation.fmax', valid_type=orm.Float, default=lambda: orm.Float(FMAX))
        spec.input('relaxation.max_steps', valid_type=orm.Int, default=lambda: orm.Int(MAX_STEPS))
        spec.inputs['relaxation'].validator = validate_relaxation
        spec.input(
            'hull_entries',
            valid_type=orm.SinglefileData,
            required=False,
            validator=validate_hull_entries,
            help='JSON file of pymatgen entries (e.g. Materials Project entries from mp-api) for the hull; '
            "default: the offline hull of the potential's element references and the stored known "
            "structures of the candidates' chemical systems.",
        )
        spec.input(
            'filters',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(
                {'e_hull_max': selection.DEFAULT_E_HULL_MAX, 'band_gap_min': selection.DEFAULT_BAND_GAP_MIN}
            ),
            validator=validate_filters,
            help='Stage 3, on the relaxed structures: e_hull_max (eV/atom), band_gap_min (eV), '
            'elements_min, elements_max; null switches one off.',
        )
        spec.input(
            'ranking',
            valid_type=orm.Str,
            default=lambda: orm.Str('fom_adj'),
            validator=lambda value, _: (
                None
                if value.value in selection.RANKINGS
                else f'ranking must be one of {", ".join(selection.RANKINGS)}'
            ),
        )
        spec.input(
            'num_verify',
            valid_type=orm.Int,
            default=lambda: orm.Int(5),
            validator=validate_positive,
            help='How many to verify by DFPT.',
        )
        spec.input(
            'max_concurrent',
            valid_type=orm.Int,
            default=lambda: orm.Int(2),
            validator=validate_positive,
            help='DFPT runs at the same time.',
        )
        spec.input(
            'batch_size',
            valid_type=orm.Int,
            default=lambda: orm.Int(64),
            validator=validate_positive,
            help='Structures per GNN forward pass (inside a shard).',
        )
        spec.input_namespace(
            'inference',
            help='Where the GNNs run and in what shards: in the daemon worker (default), or with `code` as '
            '`dielectrics.predict` jobs on its computer (a GPU node).',
        )
        spec.input(
            'inference.code',
            valid_type=orm.AbstractCode,
            required=False,
            help='Python of an environment with aiida-dielectrics on the computer that runs the jobs.',
        )
        spec.input(
            'inference.options',
            valid_type=orm.Dict,
            required=False,
            help="The jobs' `metadata.options` (resources, queue_name, max_wallclock_seconds, "
            'custom_scheduler_commands…).',
        )
        spec.input(
            'inference.shard_size',
            valid_type=orm.Int,
            default=lambda: orm.Int(64),
            validator=validate_positive,
            help='Structures per shard (a shard work chain in the daemon, or a job).',
        )
        spec.input(
            'inference.max_concurrent',
            valid_type=orm.Int,
            default=lambda: orm.Int(4),
            validator=validate_positive,
            help='Shards at the same time (spread over the daemon workers, or jobs with a code).',
        )
        spec.inputs['inference'].validator = validate_inference
        spec.input(
            'hit_threshold',
            valid_type=orm.Float,
            default=lambda: orm.Float(DEFAULT_HIT_THRESHOLD),
            help='A DFPT Φ (eV) above this counts as a hit.',
        )
        spec.input(
            'campaign_group',
            valid_type=orm.Str,
            required=False,
            help='Label of a group that collects the relaxed predictions and DFPT results (for query, '
            'plot, export); the stage-1 predictions go to `<label>/stage-1`.',
        )
        spec.input_namespace('dfpt', help='How to verify: the engine and its protocol inputs.')
        spec.input(
            'dfpt.engine',
            valid_type=orm.Str,
            default=lambda: orm.Str('qe'),
            validator=validate_engine,
            help='A DFPT engine (entry point `dielectrics.dfpt.<engine>`), e.g. qe or vasp.',
        )
        spec.input('dfpt.protocol', valid_type=orm.Str, default=lambda: orm.Str('fast'))
        spec.input(
            'dfpt.potential_family',
            valid_type=orm.Str,
            required=False,
            help="Pseudo family (qe) or POTCAR family (vasp) label; default: the engine's.",
        )
        spec.input_namespace(
            'dfpt.codes', valid_type=orm.AbstractCode, dynamic=True, help="The engine's codes by role."
        )
        spec.input(
            'dfpt.relax',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='Relax at the DFT level before the DFPT (off only for structures already at equilibrium).',
        )
        spec.input(
            'dfpt.options', valid_type=orm.Dict, required=False, help='Scheduler options for every job.'
        )
        spec.input('dfpt.overrides', valid_type=orm.Dict, required=False, help='Protocol overrides.')
        spec.inputs['dfpt'].validator = validate_dfpt
        spec.inputs.validator = validate_candidates
        spec.inputs['models'].validator = validate_models
        spec.outline(
            cls.predict,
            while_(cls.has_shards)(cls.run_shards, cls.inspect_shards),
            cls.preselect,
            cls.relax,
            cls.measure_hull,
            cls.predict_relaxed,
            while_(cls.has_shards)(cls.run_shards, cls.inspect_shards),
            cls.select,
            while_(cls.has_unverified)(cls.run_dfpt, cls.inspect_dfpt),
            cls.summarize,
        )
        spec.output('preselection', valid_type=orm.Dict, help='Stage 1: the ranking, and who is relaxed.')
        spec.output_namespace(
            'relaxed', valid_type=orm.StructureData, dynamic=True, help='Stage 2: the relaxed candidates.'
        )
        spec.output('hull', valid_type=orm.Dict, required=False, help='The reference hull of stage 2.')
        spec.output('selection', valid_type=orm.Dict, help='Stage 2: the ranking, and who is verified.')
        spec.output_namespace('dielectrics', valid_type=DielectricData, dynamic=True, help='Stage 3: DFPT.')
        spec.output('summary', valid_type=orm.Dict)
        spec.exit_code(310, 'ERROR_NOTHING_PREDICTED', message='No candidate could be predicted: {reasons}.')
        spec.exit_code(
            311, 'ERROR_NOTHING_TO_RELAX', message='No candidate passed the loose filters {filters}.'
        )
        spec.exit_code(312, 'ERROR_NOTHING_RELAXED', message='No candidate could be relaxed: {reasons}.')
        spec.exit_code(320, 'ERROR_NOTHING_SELECTED', message='No candidate passed the filters {filters}.')
        spec.exit_code(400, 'ERROR_ALL_DFPT_FAILED', message='Every DFPT verification failed.')

    def candidate_keys(self) -> list[str]:
        """The candidates' keys, sorted: from the input namespace or the group (``n<pk>``, read as pks only)."""
        if 'candidates_group' not in self.inputs:
            return sorted(self.inputs.candidates)
        group = orm.load_group(self.inputs.candidates_group.value)
        query = orm.QueryBuilder().append(orm.Group, filters={'id': group.pk}, tag='group')
        query.append(orm.StructureData, with_group='group', project='id')
        return sorted(f'n{pk}' for pk in query.all(flat=True))

    def campaign_group(self, suffix: str = '') -> orm.Group | None:
        if 'campaign_group' not in self.inputs:
            return None
        return orm.Group.collection.get_or_create(label=self.inputs.campaign_group.value + suffix)[0]

    def predict(self):
        """Stage 1: every candidate through the GNNs, as generated, in shards (:meth:`run_shards`)."""
        self.ctx.candidates = len(self.candidate_keys())
        self.ctx.not_predicted = {'1': {}, '2': {}}
        self.start_stage(1, self.ctx.candidates)

    def start_stage(self, stage: int, count: int):
        """Shard ``count`` structures; the checkpoint holds shard indices only, not keys."""
        self.ctx.stage = stage
        self.ctx.shard_count = -(-count // self.inputs.inference.shard_size.value)
        self.ctx.next_shard = 0
        self.ctx.retry = []  # [index, attempt] of the shards to run again
        self.ctx[f'stage{stage}_batches'] = []

    def stage_keys(self) -> list[str]:
        return self.candidate_keys() if self.ctx.stage == 1 else sorted(self.ctx.relaxed)

    def shard_keys(self, keys: list[str], index: int) -> list[str]:
        size = self.inputs.inference.shard_size.value
        return keys[index * size : (index + 1) * size]

    def shard_inputs(self, keys: list[str]) -> dict:
        """The inputs of a shard's process: a :class:`.PredictionShardWorkChain` in the daemon (structures by
        UUID, no link each), or a :class:`.PredictCalculation` job (:func:`.predictions.prediction_inputs`)."""
        if self.ctx.stage == 2:
            structures = {key: orm.load_node(self.ctx.relaxed[key]['structure']) for key in keys}
            e_above_hull = {
                key: orm.load_node(self.ctx.e_above_hull[key]) for key in keys if key in self.ctx.e_above_hull
            }
        elif 'candidates_group' in self.inputs:
            nodes = load_nodes([int(key[1:]) for key in keys])
            structures, e_above_hull = {key: nodes[int(key[1:])] for key in keys}, None
        else:
            structures, e_above_hull = {key: self.inputs.candidates[key] for key in keys}, None
        inputs = prediction_inputs(
            structures, dict(self.inputs.models), self.inputs.batch_size.value, True, e_above_hull
        )
        if 'code' in self.inputs.inference:
            options = self.inputs.inference.options.get_dict() if 'options' in self.inputs.inference else {}
            return {**inputs, 'code': self.inputs.inference.code, 'metadata': {'options': options}}
        for name in ('structures', 'e_above_hull'):
            if name in inputs:
                inputs[name] = orm.Dict({key: node.uuid for key, node in inputs[name].items()})
        return {**inputs, 'metadata': {}}

    def called_shards(self) -> dict[str, dict]:
        """The shard processes of the current stage this work chain called, by call link label."""
        query = orm.QueryBuilder().append(orm.WorkflowNode, filters={'id': self.node.pk}, tag='campaign')
        query.append(
            orm.ProcessNode,
            with_incoming='campaign',
            edge_filters={'label': {'like': f'stage{self.ctx.stage}_shard%'}},
            edge_project='label',
            project=['id', 'attributes.process_state', 'attributes.exit_status'],
        )
        names = ('pk', 'state', 'exit_status')
        return {label: dict(zip(names, row, strict=True)) for *row, label in query.all()}

    def has_shards(self):
        return bool(self.ctx.retry) or self.ctx.next_shard < self.ctx.shard_count

    def run_shards(self):
        """Submit the next ``inference.max_concurrent`` shards (jobs with ``inference.code``, else shard work
        chains that the daemon spreads over its workers) and wait for them. A shard this work chain made
        already (this step running again from the checkpoint after a worker died) is found by its call link
        label and awaited, not made again."""
        limit = self.inputs.inference.max_concurrent.value
        self.ctx.batch = self.ctx.retry[:limit]
        self.ctx.retry = self.ctx.retry[limit:]
        while len(self.ctx.batch) < limit and self.ctx.next_shard < self.ctx.shard_count:
            self.ctx.batch.append([self.ctx.next_shard, 1])
            self.ctx.next_shard += 1
        process_class = PredictCalculation if 'code' in self.inputs.inference else PredictionShardWorkChain
        made, keys, launched = self.called_shards(), self.stage_keys(), {}
        for index, attempt in self.ctx.batch:
            label = shard_label(self.ctx.stage, index, attempt)
            if label in made:
                launched[label] = orm.load_node(made[label]['pk'])
                continue
            inputs = self.shard_inputs(self.shard_keys(keys, index))
            inputs['metadata']['call_link_label'] = label
            launched[label] = self.submit(process_class, **inputs)
        return ToContext(**launched)

    def inspect_shards(self):
        """Collect the shards just run: a failed one goes back in the queue once, then its keys are reported
        as not predicted (``summary``); the others go on. The process that made a shard's predictions (the
        job, or the shard work chain's batch) gets the extra ``screening_stage``."""
        stage, made, keys = self.ctx.stage, self.called_shards(), self.stage_keys()
        finished = []
        for index, attempt in self.ctx.batch:
            label = shard_label(stage, index, attempt)
            self.ctx.pop(label, None)  # the awaited process: its batch's pk stays in `stage<s>_batches`
            shard = made.get(label)
            if shard is not None and shard['state'] == 'finished' and shard['exit_status'] == 0:
                batch = prediction_batch(orm.load_node(shard['pk']))
                batch.base.extras.set(STAGE_EXTRA, stage)
                finished.append(batch.pk)
                continue
            reason = shard_failure(shard)
            shard_keys = self.shard_keys(keys, index)
            if attempt < SHARD_ATTEMPTS:
                self.report(f'stage {stage}: shard {index} failed, running it again: {reason}')
                self.ctx.retry.append([index, attempt + 1])
            else:
                self.report(
                    f'stage {stage}: shard {index} failed {attempt} times, {len(shard_keys)} not predicted '
                    f'({", ".join(shard_keys[:5])}{"…" if len(shard_keys) > 5 else ""}): {reason}'
                )
                self.ctx.not_predicted[str(stage)].update(dict.fromkeys(shard_keys, reason))
        self.ctx[f'stage{stage}_batches'].extend(finished)
        for key, reason in batch_skipped(finished).items():
            self.report(f'stage {stage}: {key} not predicted: {reason}')
        group = self.campaign_group('/stage-1' if stage == 1 else '')
        if group is not None and finished:
            group.add_nodes(list(batch_predictions(finished).values()))

    def nothing_predicted(self, stage: int):
        """Exit 310 with the reasons: the structures' (their shards' reports) and the failed shards'."""
        reasons = set(batch_skipped(self.ctx[f'stage{stage}_batches']).values())
        reasons |= set(self.ctx.not_predicted[str(stage)].values())
        return self.exit_codes.ERROR_NOTHING_PREDICTED.format(reasons='; '.join(sorted(reasons))[:300])

    def preselect(self):
        """Stage 1 → 2: the loose filters, then the best ``relax_count`` by Φ_adj."""
        parameters = {
            **self.inputs.loose_filters.get_dict(),
            'count': self.inputs.relax_count.value,
            'ranking': 'fom_adj',
        }
        predictions = batch_predictions(self.ctx.stage1_batches)
        self.report(f'stage 1: {len(predictions)} of {self.ctx.candidates} candidates predicted')
        if not predictions:
            return self.nothing_predicted(1)
        chosen, _ = run_in_bulk(select_candidates, parameters=orm.Dict(parameters), **predictions)
        self.out('preselection', chosen)
        self.ctx.preselection = chosen
        self.ctx.to_relax = {key: predictions[key].pk for key in chosen['selected']}
        self.report(
            f'stage 1: {chosen["passed_filters"]} of {chosen["candidates"]} pass the loose filters; '
            f'relaxing {len(self.ctx.to_relax)}'
        )
        if not self.ctx.to_relax:
            return self.exit_codes.ERROR_NOTHING_TO_RELAX.format(filters=self.inputs.loose_filters.get_dict())

    def relaxation_settings(self) -> dict:
        return {name: port.value for name, port in self.inputs.relaxation.items()}

    def relax(self):
        """Stage 2: relax the preselected candidates (or find their relaxation already stored); only
        converged relaxations go on."""
        structures = {key: structure_of(orm.load_node(pk)) for key, pk in self.ctx.to_relax.items()}
        found = relaxations.relax(structures, **self.relaxation_settings())
        self.ctx.relaxed, self.ctx.relax_failed = {}, {}
        for key in sorted(found):
            result = found[key]['results']
            if 'relaxed' in found[key] and result['reason'] is None:
                self.ctx.relaxed[key] = {'structure': found[key]['relaxed'].pk, 'results': result.pk}
                self.out(f'relaxed.{key}', found[key]['relaxed'])
            else:
                self.ctx.relax_failed[key] = result['reason']
                self.report(f'stage 2: {key} not relaxed: {result["reason"]}')
        self.report(f'stage 2: {len(self.ctx.relaxed)} of {len(structures)} relaxed')
        if not self.ctx.relaxed:
            reasons = '; '.join(sorted(set(self.ctx.relax_failed.values())))[:300]
            return self.exit_codes.ERROR_NOTHING_RELAXED.format(reasons=reasons)

    def measure_hull(self):
        """Stage 2: the campaign's hull (the user's entries, else the default) and E_hull of the relaxed
        energies against it (the relaxed candidates compete with each other too)."""
        results = {key: orm.load_node(value['results']) for key, value in self.ctx.relaxed.items()}
        if 'hull_entries' in self.inputs:
            reference = hulls.hull_from_entries(self.inputs.hull_entries)
        else:
            settings = self.relaxation_settings()
            reference = hulls.build_default_hull(
                [result['composition'] for result in results.values()], **settings
            )
        self.out('hull', reference)
        outputs, _ = hulls.run_hull_energies(reference, results)
        self.ctx.hull_source = reference['source']
        self.ctx.e_above_hull = {key: node.pk for key, node in outputs.get('e_above_hull', {}).items()}
        for key, reason in outputs['report']['missing'].items():
            self.report(f'stage 2: no E_hull for {key}: {reason}')
        self.report(
            f'stage 2: E_hull of {len(self.ctx.e_above_hull)} of {len(results)} against the '
            f'{reference["source"]} hull<{reference.pk}>'
        )

    def predict_relaxed(self):
        """Stage 2: the GNNs again, on the relaxed structures, each prediction with its E_hull, in shards."""
        self.start_stage(2, len(self.ctx.relaxed))

    def select(self):
        """Stage 2 → 3: ``filters`` (with the hull now), then the best ``num_verify``."""
        parameters = {
            **self.inputs.filters.get_dict(),
            'count': self.inputs.num_verify.value,
            'ranking': self.inputs.ranking.value,
        }
        predictions = batch_predictions(self.ctx.stage2_batches)
        if not predictions:
            return self.nothing_predicted(2)
        chosen, _ = run_in_bulk(select_candidates, parameters=orm.Dict(parameters), **predictions)
        self.out('selection', chosen)
        self.ctx.selection = chosen
        self.ctx.queue = list(chosen['selected'])
        self.ctx.selected = {key: predictions[key].pk for key in self.ctx.queue}  # the checkpoint stays small
        self.ctx.verified = {}
        self.report(
            f'stage 2: {chosen["passed_filters"]} of {chosen["candidates"]} relaxed candidates pass the '
            f'filters; verifying {len(self.ctx.queue)}: {", ".join(self.ctx.queue)}'
        )
        if not self.ctx.queue:
            return self.exit_codes.ERROR_NOTHING_SELECTED.format(filters=self.inputs.filters.get_dict())

    def has_unverified(self):
        return bool(self.ctx.queue)

    def run_dfpt(self):
        """Stage 3: launch up to ``max_concurrent`` DFPT work chains on the relaxed structures; the next
        batch starts when these finish."""
        self.ctx.batch = [
            self.ctx.queue.pop(0) for _ in range(min(self.inputs.max_concurrent.value, len(self.ctx.queue)))
        ]
        launched = {}
        for key in self.ctx.batch:
            prediction = orm.load_node(self.ctx.selected[key])
            try:
                node = self.submit(dfpt_builder(self.inputs.dfpt, structure_of(prediction)))
            except ValueError as exception:  # refused by the engine's input validation
                self.report(f'DFPT of {key} refused: {str(exception).splitlines()[-1]}')
                continue
            node.base.extras.set('candidate', key)
            self.report(f'DFPT of {key} ({prediction.formula}): {node.process_label}<{node.pk}>')
            launched[f'dfpt_{key}'] = node
        return ToContext(**launched)

    def inspect_dfpt(self):
        for key in self.ctx.batch:
            if f'dfpt_{key}' not in self.ctx:
                continue  # refused at submission, reported by run_dfpt
            child = self.ctx[f'dfpt_{key}']
            if child.is_finished_ok:
                self.ctx.verified[key] = child.outputs.dielectric
                self.out(f'dielectrics.{key}', child.outputs.dielectric)
            else:
                self.report(f'DFPT of {key} failed: exit status {child.exit_status} ({child.exit_message})')

    def summarize(self):
        verified = self.ctx.verified
        nodes = {f'dielectric_{key}': node for key, node in verified.items()}
        nodes.update({f'prediction_{key}': orm.load_node(self.ctx.selected[key]) for key in verified})
        funnel = {
            'candidates': self.ctx.candidates,
            'relaxed': len(self.ctx.relaxed),
            'relax_failed': self.ctx.relax_failed,
            'with_e_above_hull': len(self.ctx.e_above_hull),
            'hull_source': self.ctx.hull_source,
            'not_predicted': self.ctx.not_predicted,
        }
        summary = summarize_campaign(
            preselection=self.ctx.preselection,
            selection_node=self.ctx.selection,
            funnel=orm.Dict(funnel),
            hit_threshold=self.inputs.hit_threshold,
            **nodes,
        )
        self.out('summary', summary)
        group = self.campaign_group()
        if group is not None:
            group.add_nodes(list(verified.values()))
        self.report(
            f'verified {summary["verified"]} of {summary["selected"]}; hits (Φ_DFPT > {summary["hit_threshold"]:g} eV): '
            f'{summary["hits"]}'
        )
        if not verified:
            return self.exit_codes.ERROR_ALL_DFPT_FAILED


def shard_label(stage: int, index: int, attempt: int) -> str:
    """The call link label of a shard's process: what a step run again finds it by."""
    return f'stage{stage}_shard{index}_{attempt}'


def shard_failure(shard: dict | None) -> str:
    """Why a shard's process (a row of :meth:`ScreeningWorkChain.called_shards`) did not finish well."""
    if shard is None:
        return 'no process was made'
    node = orm.load_node(shard['pk'])
    status = '' if node.exit_status is None else f' [{node.exit_status}]'
    message = f': {node.exit_message}' if node.exit_message else ''
    return f'{node.process_label}<{node.pk}> {node.process_state.value}{status}{message}'[:300]


def validate_inference(namespace, _):
    """Scheduler options need a code (without one the shards run in the daemon) and must be the job's options."""
    if 'options' not in namespace:
        return None
    if 'code' not in namespace:
        return 'inference.options needs inference.code: without a code the shards run in the daemon worker'
    ports = PredictCalculation.spec().inputs['metadata']['options']
    problem = ports.validate(ports.pre_process(namespace['options'].get_dict()))  # with the job's defaults
    return f'inference.options: {problem.message}' if problem is not None else None


def validate_candidates(inputs, _):
    """Candidates come from the namespace or from a group of structures, not both and not neither."""
    given = [name for name in ('candidates', 'candidates_group') if inputs.get(name)]
    if len(given) != 1:
        return 'give the candidates either as `candidates` (a namespace) or as `candidates_group` (a label)'
    if given == ['candidates_group']:
        label = inputs['candidates_group'].value
        group = orm.Group.collection.find(filters={'label': label})
        if not group:
            return f'no group `{label}`'
        query = orm.QueryBuilder().append(orm.Group, filters={'id': group[0].pk}, tag='group')
        if not query.append(orm.StructureData, with_group='group').count():
            return f'group `{label}` holds no StructureData'
    return None


def validate_positive(value, port):
    return None if value.value >= 1 else f'{port.name} must be at least 1, got {value.value}'


def validate_filters(value, _, allowed=FILTERS):
    unknown = sorted(set(value.get_dict()) - set(allowed))
    return f'unknown filter(s) {", ".join(unknown)}; known: {", ".join(allowed)}' if unknown else None


def validate_loose_filters(value, port):
    if 'e_hull_max' in value.get_dict():
        return 'loose_filters cannot use e_hull_max: there is no hull before relaxation (use `filters`)'
    return validate_filters(value, port, allowed=FILTERS[1:])


def validate_relaxation(namespace, _):
    """The potential must be known, ``fmax`` positive and ``max_steps`` at least 1."""
    try:
        relaxations.settings(**{name: port.value for name, port in namespace.items()})
    except ValueError as exception:
        return str(exception)
    return None


def validate_hull_entries(value, _):
    """The file must hold pymatgen entries (read now, so that a bad file fails at submission)."""
    try:
        with value.as_path() as path:
            load_entries(path)
    except ValueError as exception:
        return f'hull_entries: {str(exception).replace(str(path), value.filename)}'
    return None


def validate_engine(value, _):
    return None if value.value in engines() else f'engine must be one of {", ".join(engines())}'


def validate_models(models, _):
    """Every quantity the screening predicts needs a model."""
    from aiida_dielectrics.calculations.predictions import REQUIRED_MODELS

    missing = [target for target in REQUIRED_MODELS if target not in models]
    return f'models missing for: {", ".join(missing)}' if missing else None


def validate_dfpt(namespace, _):
    """The engine's codes must be there."""
    engine = namespace['engine'].value if 'engine' in namespace else 'qe'
    if engine not in engines():
        return None  # the engine port says why
    missing = sorted(set(load_engine(engine).CODES) - set(namespace.get('codes', {})))
    if missing:
        return f'engine {engine} needs dfpt.codes.{", dfpt.codes.".join(missing)}'
    return None


def dfpt_builder(dfpt, structure: orm.StructureData):
    """The child's builder from its engine's protocol."""
    return load_engine(dfpt['engine'].value).get_builder_from_protocol(
        structure,
        codes=dict(dfpt['codes']),
        protocol=dfpt['protocol'].value,
        potential_family=dfpt['potential_family'].value if 'potential_family' in dfpt else None,
        relax=dfpt['relax'].value,
        options=dfpt['options'].get_dict() if 'options' in dfpt else None,
        overrides=dfpt['overrides'].get_dict() if 'overrides' in dfpt else None,
    )
