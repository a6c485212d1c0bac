"""A small campaign graph built the way the screening work chain will build it, for plot and export tests.

Predictions come from one batched calcfunction (``structures.<key>`` → ``predictions.<key>``, like
``aiida_dielectrics.calculations.predictions``); DFPT results from a calcfunction on a structure, one of them behind a
work chain that relaxed the structure first and returned the result (like the DFPT work chains).
"""

import itertools

import numpy as np
from aiida.common.links import LinkType
from aiida.engine import calcfunction
from aiida.orm import Dict, Group, StructureData, WorkflowNode
from pymatgen.core import Lattice, Structure

from aiida_dielectrics.data import DielectricData, PredictionData
from aiida_dielectrics.science.datasets.petousis2017 import Row, read_rows

#: key → (structure, predicted (gap, ε_elec, ε_ionic), DFPT (gap, ε_elec, ε_ionic) or None)
CAMPAIGN = {
    'mgo': (('Fm-3m', 4.21, ['Mg', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]), (5.5, 3.0, 7.0), (4.5, 3.2, 6.6)),
    'cao': (('Fm-3m', 4.81, ['Ca', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5]]), (4.0, 3.5, 12.0), (3.6, 3.8, 13.0)),
    'srtio3': (
        ('Pm-3m', 3.905, ['Sr', 'Ti', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
        (2.0, 6.0, 90.0),
        None,
    ),
    'batio3': (
        ('Pm-3m', 4.00, ['Ba', 'Ti', 'O'], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
        (1.8, 6.5, 60.0),
        (1.7, 6.9, 120.0),
    ),
}


def structure(spec) -> StructureData:
    group, a, species, coords = spec
    return StructureData(pymatgen=Structure.from_spacegroup(group, Lattice.cubic(a), species, coords))


@calcfunction
def predict(**inputs):
    """Stand-in for the ML batch: fixed predictions per key from ``parameters``."""
    values = inputs['parameters'].get_dict()
    predictions = {}
    for key, node in inputs['structures'].items():
        gap, elec, ionic = values[key]
        predictions[key] = PredictionData(
            formula=node.get_pymatgen().composition.reduced_formula,
            band_gap=gap,
            band_gap_std=0.2,
            diel_elec=elec,
            diel_elec_std=0.5,
            diel_ionic=ionic,
            diel_ionic_std=2.0,
            e_above_hull=0.02,
            protostructure=f'proto-{key}',
        )
    return {'predictions': predictions}


@calcfunction
def dfpt(structure, values):
    """Stand-in for the DFPT post-processing calcfunction: a result for one structure."""
    gap, elec, ionic = values.get_list()
    return DielectricData(
        epsilon_electronic=np.eye(3) * elec,
        epsilon_ionic=np.eye(3) * ionic,
        band_gap=gap,
        engine='qe',
        structure=structure,
    )


def build_campaign(label: str = 'campaign') -> Group:
    """Store the campaign: structures, predictions, DFPT results (one through a 'relaxing' work chain)."""
    from aiida.orm import List

    structures = {key: structure(spec) for key, (spec, _, _) in CAMPAIGN.items()}
    outputs = predict(
        structures=structures, parameters=Dict({key: list(pred) for key, (_, pred, _) in CAMPAIGN.items()})
    )
    group = Group(label).store()
    group.add_nodes(list(structures.values()) + list(outputs['predictions'].values()))
    for key, (_, _, result) in CAMPAIGN.items():
        if result is None:
            continue
        if key == 'batio3':
            # The work chain's input is the candidate; the result was computed on a relaxed copy of it.
            workflow = WorkflowNode()
            workflow.base.links.add_incoming(structures[key], LinkType.INPUT_WORK, 'structure')
            workflow.store()
            relaxed = structures[key].clone().store()
            node = dfpt(relaxed, List(list(result)))
            node.base.links.add_incoming(workflow, LinkType.RETURN, 'dielectric')
            workflow.seal()
        else:
            node = dfpt(structures[key], List(list(result)))
        group.add_nodes(node)
    return group


def build_reference(petousis_csv, count: int = 40, label: str = 'reference') -> Group:
    """The first ``count`` Petousis entries as imported-style dielectric nodes (a quick background)."""
    rows = [row for row in itertools.islice(read_rows(petousis_csv), count) if isinstance(row, Row)]
    nodes = [
        DielectricData(
            epsilon_electronic=row.epsilon_electronic,
            epsilon_ionic=row.epsilon_ionic,
            band_gap=row.band_gap,
            engine='imported',
            formula=row.structure.composition.reduced_formula,
            source_id=row.material_id,
        ).store()
        for row in rows
    ]
    group = Group(label).store()
    group.add_nodes(nodes)
    return group
