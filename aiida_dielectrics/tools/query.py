"""Queries over dielectric results and predictions: the ``QueryBuilder`` behind ``aiida-dielectrics query``.

The original study kept its results in MongoDB and selected candidates with
``{"e_above_hull_pbe": {"$lt": 0.1}, "fom_pbe": {"$gt": 200}}``. Here the same is one line::

    QueryBuilder().append(DielectricData, filters={'attributes.e_above_hull': {'<': 0.1},
                                                   'attributes.fom': {'>': 200}}).all(flat=True)

A filter on an attribute a node does not have excludes that node: imported data sets without hull
energies (such as Petousis 2017) never pass an ``e_above_hull`` filter.
"""

from __future__ import annotations

from aiida.orm import CalculationNode, Dict, Group, QueryBuilder, WorkflowNode

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.data.prediction import PredictionData

#: Node kinds the query understands.
NODE_CLASSES = {'dielectric': DielectricData, 'prediction': PredictionData}

#: Columns returned for each node kind, in order.
COLUMNS = {
    'dielectric': (
        'formula',
        'engine',
        'band_gap',
        'diel_elec',
        'diel_ionic',
        'diel_total',
        'fom',
        'e_above_hull',
    ),
    'prediction': (
        'formula',
        'protostructure',
        'e_above_hull',
        'band_gap',
        'diel_total',
        'fom',
        'fom_std',
        'fom_adj',
    ),
}

TEXT_COLUMNS = ('formula', 'engine', 'protostructure')

#: Extra of a screening campaign's prediction processes: 1 on the generated structures, 2 on the relaxed.
STAGE_EXTRA = 'screening_stage'


def dielectric_filters(
    fom_min: float | None = None,
    e_hull_max: float | None = None,
    band_gap_min: float | None = None,
    band_gap_max: float | None = None,
    diel_total_min: float | None = None,
    formula: str | None = None,
    engine: str | None = None,
) -> dict:
    """``QueryBuilder`` filters on the queryable attributes; ``None`` means no filter.

    Bounds are strict for ``fom_min`` and ``e_hull_max`` (as in the original study's query) and
    inclusive for the others.
    """
    bounds = {
        'attributes.fom': {'>': fom_min},
        'attributes.e_above_hull': {'<': e_hull_max},
        'attributes.diel_total': {'>=': diel_total_min},
        'attributes.formula': {'==': formula},
        'attributes.engine': {'==': engine},
    }
    filters = {
        key: condition for key, condition in bounds.items() if next(iter(condition.values())) is not None
    }
    gap = {
        operator: value
        for operator, value in (('>=', band_gap_min), ('<=', band_gap_max))
        if value is not None
    }
    if gap:
        filters['attributes.band_gap'] = {'and': [{operator: value} for operator, value in gap.items()]}
    return filters


def query_dielectrics(
    kind: str = 'dielectric',
    group: str | None = None,
    order_by: str = 'fom',
    limit: int | None = None,
    **bounds,
) -> list[dict]:
    """Rows (``pk``, ``uuid`` and :data:`COLUMNS`) of the nodes that pass the filters, best ``order_by`` first.

    ``bounds`` are the keyword arguments of :func:`dielectric_filters`; ``group`` restricts to a group's
    nodes. A missing attribute comes back as ``None``.
    """
    if kind not in NODE_CLASSES:
        raise ValueError(f'kind must be one of {", ".join(NODE_CLASSES)}, got {kind!r}')
    if kind == 'prediction' and bounds.get('engine'):
        raise ValueError('predictions have no engine: the engine filter applies to dielectric results only')
    columns = COLUMNS[kind]
    builder = QueryBuilder()
    if group is not None:
        if not QueryBuilder().append(Group, filters={'label': group}).count():
            raise ValueError(f'no group with label {group!r}')
        builder.append(Group, filters={'label': group}, tag='group')
    relation = {'with_group': 'group'} if group is not None else {}
    builder.append(
        NODE_CLASSES[kind],
        filters=dielectric_filters(**bounds),
        project=['id', 'uuid', *(f'attributes.{column}' for column in columns)],
        tag='node',
        **relation,
    )
    cast = 't' if order_by in TEXT_COLUMNS else 'f'
    builder.order_by({'node': [{f'attributes.{order_by}': {'order': 'desc', 'cast': cast}}]})
    if limit is not None:
        builder.limit(limit)
    return [dict(zip(('pk', 'uuid', *columns), row, strict=True)) for row in builder.iterall()]


def batch_predictions(process_pks) -> dict[str, PredictionData]:
    """The predictions made by the prediction processes ``process_pks`` (calcfunctions or jobs), by candidate key."""
    if not process_pks:
        return {}
    query = QueryBuilder()
    query.append(CalculationNode, filters={'id': {'in': list(process_pks)}}, tag='batch')
    query.append(PredictionData, with_incoming='batch', edge_project='label', project='*')
    return {label.removeprefix('predictions__'): node for node, label in query.all()}


def batch_skipped(process_pks) -> dict[str, str]:
    """The structures the prediction processes ``process_pks`` could not predict: reasons by key (their ``report``)."""
    if not process_pks:
        return {}
    query = QueryBuilder()
    query.append(CalculationNode, filters={'id': {'in': list(process_pks)}}, tag='batch')
    query.append(Dict, with_incoming='batch', edge_filters={'label': 'report'}, project='attributes.skipped')
    return {key: reason for skipped in query.all(flat=True) for key, reason in (skipped or {}).items()}


def campaign_predictions(workchain, stage: int = 1) -> dict[str, PredictionData]:
    """A screening campaign's predictions by candidate key, found from its work chain node (or pk):
    ``stage`` 1 on the generated structures (every candidate), 2 on the relaxed ones.

    They are outputs of the processes that made them (:func:`campaign_batches`), not of the work chain
    itself. In the daemon, the campaign calls a shard work chain, which calls the batch::

        QueryBuilder().append(WorkflowNode, filters={'id': pk}, tag='campaign').append(
            WorkflowNode, with_incoming='campaign', tag='shard').append(
            CalculationNode, with_incoming='shard', filters={'extras.screening_stage': 2}, tag='batch'
            ).append(PredictionData, with_incoming='batch', edge_project='label')

    with ``inference.code`` the campaign calls the ``dielectrics.predict`` jobs, which make them.
    """
    return batch_predictions(campaign_batches(workchain, stage))


def campaign_batches(workchain, stage: int = 1) -> list[int]:
    """The pks of the processes that made a campaign's predictions of ``stage``: the batches of its shard
    work chains (in the daemon) and its ``dielectrics.predict`` jobs (with ``inference.code``)."""
    pk = workchain if isinstance(workchain, int) else workchain.pk
    filters = {f'extras.{STAGE_EXTRA}': stage}
    jobs = QueryBuilder().append(WorkflowNode, filters={'id': pk}, tag='campaign')
    jobs.append(CalculationNode, with_incoming='campaign', filters=filters, project='id')
    batches = QueryBuilder().append(WorkflowNode, filters={'id': pk}, tag='campaign')
    batches.append(WorkflowNode, with_incoming='campaign', tag='shard')
    batches.append(CalculationNode, with_incoming='shard', filters=filters, project='id')
    return [*jobs.all(flat=True), *batches.all(flat=True)]
