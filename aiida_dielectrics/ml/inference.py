"""Batched screening of many crystals through all models at once: pymatgen structures in, a table out.

Calling each model's ``predict_structure`` per crystal rebuilds the crystal graph for every model and
runs batches of one. Here each crystal graph is built once per (cutoff, element list) and shared by all
models that use it (E_form, band gap, every member of the ε ensembles), and graphs run through the
models in batches. A crystal that cannot be predicted (overlapping atoms, unsupported element, disordered
sites, an atom with no neighbour within a model's cutoff) gets a ``reason`` and NaNs; the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure

from aiida_dielectrics.ml.graphs import GraphBuilder, collate
from aiida_dielectrics.ml.loading import GraphMember, ModelSet
from aiida_dielectrics.science import hull
from aiida_dielectrics.science.candidates import protostructure_label
from aiida_dielectrics.science.fom import prediction_summary
from aiida_dielectrics.science.structures import structure_problem

#: Quantities predicted by model sets, in column order; each gets a ``*_std`` column.
TARGETS = ('e_form', 'band_gap', 'diel_elec', 'diel_ionic')
#: Columns of the prediction table (attribute names of ``dielectrics.prediction`` plus ``reason``).
COLUMNS = (
    'formula',
    'protostructure',
    'e_form',
    'e_form_std',
    'e_above_hull',
    'e_above_hull_std',
    'band_gap',
    'band_gap_std',
    'diel_elec',
    'diel_elec_std',
    'diel_ionic',
    'diel_ionic_std',
    'diel_total',
    'diel_total_std',
    'fom',
    'fom_std',
    'fom_adj',
    'reason',
)


def run_member(member: GraphMember, graph, default_states: torch.Tensor) -> np.ndarray:
    """One model on a batched graph, with its fidelity state (PBE) or the converter's default state."""
    state = default_states if member.state is None else member.state.expand(graph.num_graphs)
    return member.model(g=graph, state_attr=state).reshape(-1).numpy()


def predict(
    structures: Sequence[Structure],
    model_sets: dict[str, ModelSet],
    batch_size: int = 64,
    reference=None,
    labels: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Predict every quantity in ``model_sets`` for ``structures``; one row per structure, in order.

    ``reference``: PDEntries (formation-energy scale) for ``e_above_hull`` (:func:`.hull.e_above_hull`);
    without one it stays NaN, since a hull of the predictions alone knows no competing phase.
    ``labels=False`` skips the protostructure labels (symmetry analysis costs more than the models).
    Quantities without a model set stay NaN.
    """
    from tqdm import tqdm

    count = len(structures)
    outputs = {target: [[] for _ in model_set.members] for target, model_set in model_sets.items()}
    reasons: list[str | None] = [None] * count
    builders = {}
    for model_set in model_sets.values():
        for member in model_set.members:
            if isinstance(member, GraphMember):
                key = (member.cutoff, member.element_types)
                builders.setdefault(key, GraphBuilder(*key))
    # members that are not graph models may know inputs they cannot take (e.g. an element a potential lacks)
    member_checks = list(
        {
            (type(member).__name__, repr(getattr(member, 'potentials', None))): member.structure_problem
            for model_set in model_sets.values()
            for member in model_set.members
            if hasattr(member, 'structure_problem')
        }.values()
    )
    kept = []
    with torch.no_grad(), tqdm(total=count, desc='predict', unit=' structures', disable=not progress) as bar:
        for start in range(0, count, batch_size):
            chunk = range(start, min(start + batch_size, count))
            samples = {key: [] for key in builders}
            valid = []
            for index in chunk:
                try:
                    problem = structure_problem(structures[index]) or next(
                        filter(None, (check(structures[index]) for check in member_checks)), None
                    )
                    if problem is not None:
                        raise ValueError(problem)
                    built = {key: builder.build(structures[index]) for key, builder in builders.items()}
                except ValueError as exception:
                    reasons[index] = str(exception)
                    continue
                except Exception as exception:  # a malformed structure must not stop the batch
                    reasons[index] = f'graph construction failed: {exception}'
                    continue
                valid.append(index)
                for key, sample in built.items():
                    samples[key].append(sample)
            if valid:
                kept.extend(valid)
                batches = {key: collate(items) for key, items in samples.items()}
                for target, model_set in model_sets.items():
                    for slot, member in zip(outputs[target], model_set.members, strict=True):
                        if isinstance(member, GraphMember):
                            slot.append(run_member(member, *batches[(member.cutoff, member.element_types)]))
                        else:
                            slot.append(
                                np.asarray(member.predict([structures[i] for i in valid]), dtype=float)
                            )
            bar.update(len(chunk))

    table = pd.DataFrame(index=range(count), columns=COLUMNS, dtype=float)
    table['formula'] = [structure.composition.reduced_formula for structure in structures]
    for target, model_set in model_sets.items():
        members = np.stack([np.concatenate(slot) if slot else np.zeros(0) for slot in outputs[target]])
        with np.errstate(over='ignore', invalid='ignore'):  # refused below, with a reason
            mean, std = model_set.summarize(members)
        table.loc[kept, target] = mean
        table.loc[kept, f'{target}_std'] = std
        # a head far outside its training data can overflow the inverse transform (exp): refuse that structure
        for index in np.asarray(kept, dtype=int)[~(np.isfinite(mean) & np.isfinite(std))]:
            reasons[index] = (
                reasons[index] or f'the {target} model gives no finite value: far outside its data'
            )
    refused = [index for index in kept if reasons[index] is not None]
    table.loc[refused, list(model_sets)] = np.nan
    table.loc[refused, [f'{target}_std' for target in model_sets]] = np.nan
    table['reason'] = reasons
    if reference is not None:
        compositions = [structure.composition for structure in structures]
        table['e_above_hull'] = hull.e_above_hull(compositions, table['e_form'].to_numpy(), reference)
        table['e_above_hull_std'] = table['e_form_std']
    summary = prediction_summary(
        table['diel_elec'].to_numpy(),
        table['diel_elec_std'].to_numpy(),
        table['diel_ionic'].to_numpy(),
        table['diel_ionic_std'].to_numpy(),
        np.clip(table['band_gap'].to_numpy(), 0, None),
        table['band_gap_std'].to_numpy(),
    )
    for name, values in summary.items():
        table[name] = values
    table['protostructure'] = [
        protostructure_label(structure) if labels and reasons[i] is None else None
        for i, structure in enumerate(structures)
    ]
    return table


def predict_naive(structures: Sequence[Structure], model_sets: dict[str, ModelSet]) -> dict[str, np.ndarray]:
    """The reference: each model's own ``predict_structure`` per crystal (graph rebuilt every call).

    Returns ``{target: (members × structures)}`` in the transformed space; for checks and benchmarks.
    """
    values = {}
    with torch.no_grad():
        for target, model_set in model_sets.items():
            rows = []
            for member in model_set.members:
                rows.append(
                    [float(member.model.predict_structure(s, state_attr=member.state)) for s in structures]
                )
            values[target] = np.asarray(rows)
    return values


def is_missing(value) -> bool:
    """True for ``None`` and NaN (pandas gives either for an empty cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
