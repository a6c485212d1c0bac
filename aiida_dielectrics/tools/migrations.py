"""Stored process nodes whose entry point moved get the new one, so AiiDA finds their class again.

A process node names its class by ``process_type`` (``aiida.calculations:<entry point>``). The prediction
calcfunction was ``dielectrics.predict`` until that name went to the ``CalcJob``
(:class:`.predict_job.PredictCalculation`); its older nodes would then load as that class (``verdi process
show``, caching's validity check, ``node.process_class``). ``aiida-dielectrics setup`` runs
:func:`migrate_process_types`; run it again after importing an archive made before the move.
"""

from __future__ import annotations

from aiida.manage import get_manager
from aiida.orm import CalcFunctionNode, QueryBuilder
from aiida.orm.entities import EntityTypes

#: ``(node class, old process type, new process type)`` for each entry point that moved.
MOVES = (
    (
        CalcFunctionNode,
        'aiida.calculations:dielectrics.predict',
        'aiida.calculations:dielectrics.predict_structures',
    ),
)


def migrate_process_types() -> int:
    """Give the stored nodes of every moved process their new process type; returns how many changed."""
    backend = get_manager().get_profile_storage()
    changed = 0
    for node_class, old, new in MOVES:
        query = QueryBuilder().append(
            node_class, filters={'process_type': old}, subclassing=False, project='id'
        )
        pks = query.all(flat=True)
        backend.bulk_update(EntityTypes.NODE, [{'id': pk, 'process_type': new} for pk in pks])
        changed += len(pks)
    return changed
