"""Training as an AiiDA process: data nodes in, a ``dielectrics.model`` node out.

:func:`train_model` is a calcfunction, so the model node's provenance reaches back to every structure
and dielectric node it was trained on (and through them to the imported CSV or the DFPT calculations).
Inputs come in two namespaces with the same keys, ``structures.<key>`` and ``dielectrics.<key>``, as the
importer creates them.
"""

from __future__ import annotations

import pathlib
import tempfile

from aiida.common.links import LinkType
from aiida.engine import calcfunction
from aiida.orm import Dict, Group, Int, QueryBuilder, Str, StructureData

from aiida_dielectrics.data.dielectric import DielectricData
from aiida_dielectrics.data.model import ModelData


def dataset_from_nodes(structures: dict, dielectrics: dict):
    """A :class:`~.ml.dataset.Dataset` from ``{key: StructureData}`` and ``{key: DielectricData}`` (band gap
    NaN where a node has none)."""
    import numpy as np

    from aiida_dielectrics.ml.dataset import Dataset, clip_ionic

    if set(structures) != set(dielectrics):
        raise ValueError('structures and dielectrics must have the same keys')
    keys = sorted(structures)
    nodes = [dielectrics[key] for key in keys]
    return Dataset(
        material_ids=[
            node.base.attributes.get('source_id', key) for key, node in zip(keys, nodes, strict=True)
        ],
        structures=[structures[key].get_pymatgen() for key in keys],
        diel_elec=[node.diel_elec for node in nodes],
        diel_ionic=clip_ionic([node.diel_ionic for node in nodes]),
        band_gap=[np.nan if node.band_gap is None else node.band_gap for node in nodes],
        # The data sets of imported nodes, the engine of DFPT results: petousis2017+mp-dfpt-extra+qe, say.
        source='+'.join(sorted({node.base.attributes.get('source', node.engine) for node in nodes})),
    )


@calcfunction
def train_model(
    target: Str,
    architecture: Str,
    members: Int,
    seed: Int,
    hyperparameters: Dict,
    calibration: Str | None = None,
    **data,
) -> ModelData:
    """Train an ε ensemble on ``data['structures']``/``data['dielectrics']`` and return it as a model node
    (σ calibrated on ``calibration``: ``val``, the default, or ``cv``, see :func:`.ml.training.calibrate`)."""
    from aiida_dielectrics.ml import training

    dataset = dataset_from_nodes(data['structures'], data['dielectrics'])
    ensemble = training.train_ensemble(
        dataset,
        target.value,
        architecture.value,
        members.value,
        seed.value,
        hyperparameters=hyperparameters.get_dict(),
        calibration=calibration.value if calibration is not None else 'val',
    )
    with tempfile.TemporaryDirectory() as folder:
        ensemble.save(folder)
        card = ensemble.card
        split = {key: value for key, value in card['split'].items() if key != 'test_ids'}
        return ModelData(
            folder=folder,
            target=card['target'],
            architecture=card['architecture'],
            metrics=card['metrics'],
            hyperparameters={**card['hyperparameters'], 'transform': card['transform'], 'split': split},
        )


class TrainingDataError(ValueError):
    """Training cannot start: an unknown group, or a group without the data it needs."""


def load_group(group: Group | str) -> Group:
    """``group`` itself, or the group with that label (:class:`TrainingDataError` if there is none)."""
    from aiida.common.exceptions import NotExistent

    if isinstance(group, Group):
        return group
    try:
        return Group.collection.get(label=group)
    except NotExistent:
        raise TrainingDataError(f'no group with label {group!r}') from None


def group_inputs(group: Group | str, limit: int | None = None) -> tuple[dict, dict]:
    """The paired structure and dielectric nodes of a group (or its label), keyed as their importer's
    output labels."""
    group = load_group(group)
    query = QueryBuilder().append(Group, filters={'id': group.pk}, tag='group')
    query.append(DielectricData, with_group='group', project='*')
    members = {node.uuid for node in group.nodes}
    structures, dielectrics = {}, {}
    for (dielectric,) in query.iterall():
        creator = dielectric.creator
        if creator is None:
            continue
        key = (
            dielectric.base.links.get_incoming(link_type=LinkType.CREATE).one().link_label.split('__', 1)[-1]
        )
        for link in creator.base.links.get_outgoing(
            link_type=LinkType.CREATE, link_label_filter=f'structures__{key}'
        ).all():
            if isinstance(link.node, StructureData) and link.node.uuid in members:
                structures[key], dielectrics[key] = link.node, dielectric
                break
        if limit and len(dielectrics) >= limit:
            break
    if not dielectrics:
        raise TrainingDataError(f'group {group.label} holds no dielectric data with their structures')
    return structures, dielectrics


def train_and_export(
    structures, dielectrics, target, architecture, members, seed, hyperparameters, output, calibration='val'
):
    """Run :func:`train_model` on paired nodes; optionally also export the ensemble to ``output``."""
    node = train_model(
        calibration=Str(calibration),
        target=Str(target),
        architecture=Str(architecture),
        members=Int(members),
        seed=Int(seed),
        hyperparameters=Dict(hyperparameters),
        structures=structures,
        dielectrics=dielectrics,
    )
    if output:
        node.export_to(pathlib.Path(output))
    return node


def run_training(
    group,
    target,
    architecture,
    members,
    seed,
    hyperparameters,
    output=None,
    limit=None,
    progress=print,
    calibration='val',
):
    """Run :func:`train_model` on a group's nodes; optionally also export the ensemble to ``output``."""
    structures, dielectrics = group_inputs(group, limit)
    progress(f'training {target} on {len(dielectrics)} materials of group {load_group(group).label}')
    return train_and_export(
        structures, dielectrics, target, architecture, members, seed, hyperparameters, output, calibration
    )


def campaign_inputs(campaign: Group | str, prefix: str = 'campaign_') -> tuple[dict, dict]:
    """The DFPT results of a campaign group, each with the structure its DFPT ran on.

    A DFPT ``DielectricData`` is made by a calcfunction (``dielectric_from_ph``, ``dielectric_from_vasp``)
    whose input ``structure`` is the structure it was computed for; those are paired here, keyed
    ``<prefix><pk>`` so that the keys cannot collide with an importer's. Other dielectric nodes in the group
    (imported ones, say) are left out.
    """
    group = load_group(campaign)
    query = QueryBuilder().append(Group, filters={'id': group.pk}, tag='group')
    query.append(DielectricData, with_group='group', project='*')
    structures, dielectrics = {}, {}
    for (dielectric,) in query.iterall():
        creator = dielectric.creator
        if creator is None:
            continue
        links = creator.base.links.get_incoming(
            link_type=LinkType.INPUT_CALC, link_label_filter='structure'
        ).all()
        if len(links) == 1 and isinstance(links[0].node, StructureData):
            key = f'{prefix}{dielectric.pk}'
            structures[key], dielectrics[key] = links[0].node, dielectric
    if not dielectrics:
        raise TrainingDataError(
            f'campaign group {group.label} holds no DFPT results (DielectricData made from a structure)'
        )
    return structures, dielectrics


def run_retraining(
    campaign,
    base_group,
    target,
    architecture,
    members,
    seed,
    hyperparameters,
    output=None,
    limit=None,
    progress=print,
    calibration='val',
):
    """Run :func:`train_model` once on a base group's nodes plus a campaign's DFPT results.

    ``limit`` caps the base entries only; every campaign result is used. The returned model node's creator
    has every structure and dielectric node it was trained on among its inputs.
    """
    campaign_structures, campaign_dielectrics = campaign_inputs(campaign)
    structures, dielectrics = group_inputs(base_group, limit)
    base = {node.uuid for node in dielectrics.values()}
    for key, node in campaign_dielectrics.items():
        if node.uuid not in base:  # a campaign group may also hold imported results
            structures[key], dielectrics[key] = campaign_structures[key], node
    progress(
        f'retraining {target} on {len(dielectrics) - len(base)} DFPT results of campaign '
        f'{load_group(campaign).label} plus {len(base)} materials of group {load_group(base_group).label}'
    )
    return train_and_export(
        structures, dielectrics, target, architecture, members, seed, hyperparameters, output, calibration
    )
