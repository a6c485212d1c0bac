"""One shard of a campaign's GNN predictions as a process of its own, so that the daemon spreads the shards
of a stage over its workers (the screening work chain submits several at a time).

Its structures come as a ``Dict`` of UUIDs by key, not as links, so a shard costs a few links whatever
its size; the prediction batch it runs (:func:`.calculations.predictions.run_prediction`) links every
structure to its prediction, as when the screening work chain ran the batch itself.
"""

from __future__ import annotations

from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import WorkChain

from aiida_dielectrics.calculations.predictions import run_prediction
from aiida_dielectrics.data.model import ModelData

#: The call link label of the shard's prediction batch: a step run again after a worker died finds it.
BATCH_LABEL = 'batch'


class PredictionShardWorkChain(WorkChain):
    """Predict a shard of structures (given by UUID) with the GNN models, in whichever daemon worker takes it."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input(
            'structures', valid_type=orm.Dict, validator=validate_uuids, help='StructureData UUIDs by key.'
        )
        spec.input(
            'e_above_hull',
            valid_type=orm.Dict,
            required=False,
            validator=validate_uuids,
            help='UUIDs of Float hull energies (eV/atom) by key, recorded on the predictions of those keys.',
        )
        spec.input_namespace('models', valid_type=ModelData, dynamic=True, help='Models by target.')
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            help='`batch_size` and `labels` (:func:`.calculations.predictions.prediction_inputs`).',
        )
        spec.outline(cls.predict)
        spec.exit_code(300, 'ERROR_PREDICTION_FAILED', message='the prediction batch raised {reason}')

    def predict(self):
        """Run the batch unless a run of this step before a worker died made it already (it is stored in
        one transaction, so it is there whole or not at all)."""
        if prediction_batch(self.node) is not None:
            return None
        try:
            structures = load_by_uuid(self.inputs.structures.get_dict())
            hull = (
                load_by_uuid(self.inputs.e_above_hull.get_dict()) if 'e_above_hull' in self.inputs else None
            )
            run_prediction(
                structures,
                dict(self.inputs.models),
                **self.inputs.parameters.get_dict(),
                e_above_hull=hull,
                metadata={'call_link_label': BATCH_LABEL},
            )
        except Exception as exception:  # a shard's failure is reported to the campaign, which goes on
            return self.exit_codes.ERROR_PREDICTION_FAILED.format(
                reason=f'{type(exception).__name__}: {exception}'[:300]
            )
        return None


def prediction_batch(shard: orm.ProcessNode) -> orm.CalculationNode | None:
    """The process that made a shard's predictions: a job itself, or a shard work chain's batch (``None``
    while it has made none)."""
    if isinstance(shard, orm.CalculationNode):
        return shard
    links = shard.base.links.get_outgoing(link_type=LinkType.CALL_CALC, link_label_filter=BATCH_LABEL).all()
    return links[0].node if links else None


def load_by_uuid(uuids: dict[str, str]) -> dict[str, orm.Node]:
    """The nodes of ``uuids`` (by key) in one query."""
    query = orm.QueryBuilder().append(orm.Node, filters={'uuid': {'in': list(uuids.values())}}, project='*')
    nodes = {node.uuid: node for node in query.all(flat=True)}
    missing = [key for key, uuid in uuids.items() if uuid not in nodes]
    if missing:
        raise ValueError(f'no node for {", ".join(missing[:5])}')
    return {key: nodes[uuid] for key, uuid in uuids.items()}


def validate_uuids(value, _):
    """A non-empty mapping of keys to node UUIDs."""
    uuids = value.get_dict()
    if not uuids or not all(isinstance(uuid, str) for uuid in uuids.values()):
        return 'give at least one key with the UUID of its node'
    return None
