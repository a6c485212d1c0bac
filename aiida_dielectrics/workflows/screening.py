"""``dielectrics.screening``: candidates → ML predictions → selection → DFPT → summary.

One campaign in one provenance graph: the candidates are a namespace (small campaigns) or a group of
structures (``candidates_group``, large ones); the predictions come from one calcfunction per batch
(:func:`aiida_dielectrics.calculations.predictions.predict_structures`), stay its outputs (found from the
work chain by :func:`aiida_dielectrics.tools.query.campaign_predictions`) and join the campaign group, the selection from :func:`select_candidates`
(both with their links written in bulk, :func:`aiida_dielectrics.tools.provenance.run_in_bulk`),
every DFPT verification is a child work chain of the chosen engine (:mod:`aiida_dielectrics.workflows.dfpt`)
on the candidate's own structure node, relaxed at the DFT level first, and :func:`summarize_campaign` compares prediction with DFPT.
A failed DFPT child is reported in the summary; it does not stop the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction, while_

from aiida_dielectrics.calculations.predictions import predict_structures
from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.data.model import ModelData
from aiida_dielectrics.data.prediction import PredictionData
from aiida_dielectrics.science import selection
from aiida_dielectrics.tools.provenance import run_in_bulk
from aiida_dielectrics.tools.query import batch_predictions
from aiida_dielectrics.workflows.dfpt import engines, load_engine

#: The original study counted a DFPT Φ above 240 eV as a hit (155/2532 ≈ 6 %).
DEFAULT_HIT_THRESHOLD = 240.0
#: Columns of the selection table, read from the prediction nodes' attributes.
TABLE_COLUMNS = ('formula', 'e_above_hull', 'band_gap', 'diel_total', 'fom', 'fom_std', 'fom_adj')


def prediction_table(predictions: dict[str, PredictionData]) -> pd.DataFrame:
    """One row per prediction (index: its key); missing attributes are NaN."""
    rows = {
        key: {name: node.base.attributes.get(name, np.nan) for name in TABLE_COLUMNS}
        for key, node in predictions.items()
    }
    return pd.DataFrame.from_dict(rows, orient='index', columns=list(TABLE_COLUMNS))


@calcfunction
def select_candidates(parameters: orm.Dict, **predictions) -> orm.Dict:
    """Rank the predictions that pass the filters; ``selected`` are the best ``count`` keys, best first.

    ``parameters``: ``count``, ``ranking`` (``fom_adj`` or ``pareto``), ``e_hull_max``, ``band_gap_min``,
    ``elements_min``, ``elements_max`` (``None`` switches a filter off).
    """
    options = parameters.get_dict()
    table = prediction_table(predictions)
    filters = {
        name: options.get(name) for name in ('e_hull_max', 'band_gap_min', 'elements_min', 'elements_max')
    }
    ranked = selection.select(table, None, options.get('ranking', 'fom_adj'), **filters)
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
def summarize_campaign(selection_node: orm.Dict, hit_threshold: orm.Float, **nodes) -> orm.Dict:
    """ML-vs-DFPT errors and the DFPT hit rate (Φ_DFPT > threshold) over the verified candidates.

    ``nodes`` holds ``prediction_<key>`` and ``dielectric_<key>`` for every verified key.
    """
    verified = sorted(name.removeprefix('dielectric_') for name in nodes if name.startswith('dielectric_'))
    rows = []
    for key in verified:
        predicted, computed = nodes[f'prediction_{key}'], nodes[f'dielectric_{key}']
        rows.append(
            {
                'key': key,
                'formula': computed.formula,
                'fom_ml': predicted.fom,
                'fom_dfpt': computed.fom,
                'diel_total_ml': predicted.diel_total,
                'diel_total_dfpt': computed.diel_total,
                'band_gap_ml': predicted.band_gap,
                'band_gap_dfpt': computed.band_gap,
            }
        )
    selected = selection_node['selected']
    summary = {
        'candidates': selection_node['candidates'],
        'passed_filters': selection_node['passed_filters'],
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
    """Screen candidate structures with the ML models and verify the best by DFPT."""

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
            'filters',
            valid_type=orm.Dict,
            default=lambda: orm.Dict(
                {'e_hull_max': selection.DEFAULT_E_HULL_MAX, 'band_gap_min': selection.DEFAULT_BAND_GAP_MIN}
            ),
            help='e_hull_max (eV/atom), band_gap_min (eV), elements_min, elements_max; null switches one off.',
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
            'num_verify', valid_type=orm.Int, default=lambda: orm.Int(5), help='How many to verify by DFPT.'
        )
        spec.input(
            'max_concurrent',
            valid_type=orm.Int,
            default=lambda: orm.Int(2),
            help='DFPT runs at the same time.',
        )
        spec.input(
            'batch_size', valid_type=orm.Int, default=lambda: orm.Int(64), help='Structures per GNN batch.'
        )
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
            help='Label of a group that collects the predictions and DFPT results (for query, plot, export).',
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
            cls.select,
            while_(cls.has_unverified)(cls.run_dfpt, cls.inspect_dfpt),
            cls.summarize,
        )
        spec.output('selection', valid_type=orm.Dict)
        spec.output_namespace('dielectrics', valid_type=DielectricData, dynamic=True)
        spec.output('summary', valid_type=orm.Dict)
        spec.exit_code(310, 'ERROR_NOTHING_PREDICTED', message='No candidate could be predicted: {reasons}.')
        spec.exit_code(320, 'ERROR_NOTHING_SELECTED', message='No candidate passed the filters {filters}.')
        spec.exit_code(400, 'ERROR_ALL_DFPT_FAILED', message='Every DFPT verification failed.')

    def candidate_structures(self) -> dict[str, orm.StructureData]:
        """The candidates by key, from the input namespace or the group (keys ``n<pk>``)."""
        if 'candidates_group' not in self.inputs:
            return dict(self.inputs.candidates)
        group = orm.load_group(self.inputs.candidates_group.value)
        query = orm.QueryBuilder().append(orm.Group, filters={'id': group.pk}, tag='group')
        query.append(orm.StructureData, with_group='group')
        return {f'n{node.pk}': node for node in query.all(flat=True)}

    def predict(self):
        """Predict in batches; each batch is one process whose outputs are the predictions (not linked
        again to this work chain: :func:`aiida_dielectrics.tools.query.campaign_predictions` finds them)."""
        structures = self.candidate_structures()
        keys = sorted(structures)
        size = self.inputs.batch_size.value
        group = self.campaign_group()
        self.ctx.prediction_batches, skipped, predicted = [], {}, 0
        for start in range(0, len(keys), size):
            results, process = run_in_bulk(
                predict_structures,
                structures={key: structures[key] for key in keys[start : start + size]},
                models=dict(self.inputs.models),
                parameters=orm.Dict({'batch_size': size}),
            )
            self.ctx.prediction_batches.append(process.pk)
            predictions = results.get('predictions', {})
            predicted += len(predictions)
            if group is not None:
                group.add_nodes(list(predictions.values()))
            skipped.update(results['report']['skipped'])
        for key, reason in skipped.items():
            self.report(f'candidate {key} not predicted: {reason}')
        self.report(
            f'{predicted} of {len(keys)} candidates predicted in {len(self.ctx.prediction_batches)} batches'
        )
        if not predicted:
            reasons = '; '.join(sorted(set(skipped.values())))[:300]
            return self.exit_codes.ERROR_NOTHING_PREDICTED.format(reasons=reasons)

    def campaign_group(self) -> orm.Group | None:
        if 'campaign_group' not in self.inputs:
            return None
        return orm.Group.collection.get_or_create(label=self.inputs.campaign_group.value)[0]

    def select(self):
        parameters = {
            **self.inputs.filters.get_dict(),
            'count': self.inputs.num_verify.value,
            'ranking': self.inputs.ranking.value,
        }
        predictions = batch_predictions(self.ctx.prediction_batches)
        chosen, _ = run_in_bulk(select_candidates, parameters=orm.Dict(parameters), **predictions)
        self.out('selection', chosen)
        self.ctx.selection = chosen
        self.ctx.queue = list(chosen['selected'])
        self.ctx.selected = {key: predictions[key].pk for key in self.ctx.queue}  # the checkpoint stays small
        self.ctx.verified = {}
        self.report(
            f'{chosen["passed_filters"]} of {chosen["candidates"]} candidates pass the filters; '
            f'verifying {len(self.ctx.queue)}: {", ".join(self.ctx.queue)}'
        )
        if not self.ctx.queue:
            return self.exit_codes.ERROR_NOTHING_SELECTED.format(filters=self.inputs.filters.get_dict())

    def has_unverified(self):
        return bool(self.ctx.queue)

    def run_dfpt(self):
        """Launch up to ``max_concurrent`` DFPT work chains; the next batch starts when these finish."""
        self.ctx.batch = [
            self.ctx.queue.pop(0) for _ in range(min(self.inputs.max_concurrent.value, len(self.ctx.queue)))
        ]
        launched = {}
        for key in self.ctx.batch:
            prediction = orm.load_node(self.ctx.selected[key])
            structure = (
                prediction.creator.base.links.get_incoming(link_label_filter=f'structures__{key}').one().node
            )
            try:
                node = self.submit(dfpt_builder(self.inputs.dfpt, structure))
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
        summary = summarize_campaign(
            selection_node=self.ctx.selection, hit_threshold=self.inputs.hit_threshold, **nodes
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
