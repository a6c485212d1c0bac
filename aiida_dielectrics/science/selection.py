"""Selection of candidates to verify by DFPT: filters, ranking by Φ_adj, the non-dominated front.

Pure numpy/pandas on a table with one row per prediction (columns named like the node attributes:
``e_above_hull``, ``band_gap``, ``diel_total``, ``fom_adj``, ``formula``…); functions return positional
indices into that table, so the caller maps them back to its nodes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pymatgen.core import Composition

#: The study's defaults: likely stable (E_hull < 0.1 eV/atom) and not a metal (E_gap ≥ 0.5 eV).
DEFAULT_E_HULL_MAX = 0.1
DEFAULT_BAND_GAP_MIN = 0.5
RANKINGS = ('fom_adj', 'pareto')


def element_count(formula: str) -> int:
    """Number of distinct elements in a formula."""
    return len(Composition(formula).elements)


def filter_mask(
    table: pd.DataFrame,
    e_hull_max: float | None = DEFAULT_E_HULL_MAX,
    band_gap_min: float | None = DEFAULT_BAND_GAP_MIN,
    elements_min: int | None = None,
    elements_max: int | None = None,
) -> np.ndarray:
    """Boolean mask of rows that pass; ``None`` switches a filter off.

    As in :func:`aiida_dielectrics.tools.query.dielectric_filters`: E_hull is strict (``<``), the gap
    inclusive; a missing value (NaN) fails any filter on it.
    """
    mask = np.ones(len(table), dtype=bool)
    if e_hull_max is not None:
        mask &= table['e_above_hull'].to_numpy(dtype=float) < e_hull_max
    if band_gap_min is not None:
        mask &= table['band_gap'].to_numpy(dtype=float) >= band_gap_min
    if elements_min is not None or elements_max is not None:
        counts = np.array([element_count(formula) for formula in table['formula']], dtype=int)
        if elements_min is not None:
            mask &= counts >= elements_min
        if elements_max is not None:
            mask &= counts <= elements_max
    return mask


def pareto_front(x, y) -> np.ndarray:
    """Mask of the points not dominated when maximising both ``x`` and ``y`` (O(n log n)).

    A point is dominated when another is at least as good in both and better in one. Identical points
    do not dominate each other, so duplicates on the front are all kept; NaN points are never on it.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    front = np.zeros(len(x), dtype=bool)
    valid = np.flatnonzero(~(np.isnan(x) | np.isnan(y)))
    order = valid[np.lexsort((-y[valid], -x[valid]))]  # x descending, then y descending
    best_y = -np.inf  # the best y among points with strictly larger x
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and x[order[stop]] == x[order[start]]:
            stop += 1
        group = order[start:stop]
        group_best = y[group[0]]
        if group_best > best_y:
            front[group[y[group] == group_best]] = True
            best_y = group_best
        start = stop
    return front


def pareto_ranks(x, y) -> np.ndarray:
    """Non-dominated sorting: 0 for the front, 1 for the front of the rest, …; NaN points get -1."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ranks = np.full(len(x), -1, dtype=int)
    remaining = np.flatnonzero(~(np.isnan(x) | np.isnan(y)))
    rank = 0
    while len(remaining):
        front = pareto_front(x[remaining], y[remaining])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def rank(table: pd.DataFrame, by: str = 'fom_adj') -> np.ndarray:
    """Row indices best first: by ``fom_adj`` (descending), or ``pareto``: by front of (E_gap, ε_total).

    Within a Pareto front rows are ordered by ``fom_adj``; ties keep the table order; NaN goes last.
    """
    if by not in RANKINGS:
        raise ValueError(f'ranking must be one of {", ".join(RANKINGS)}, got {by!r}')
    score = table['fom_adj'].to_numpy(dtype=float)
    score = np.where(np.isnan(score), -np.inf, score)
    if by == 'fom_adj':
        return np.lexsort((np.arange(len(table)), -score))
    ranks = pareto_ranks(table['band_gap'], table['diel_total']).astype(float)
    ranks[ranks < 0] = np.inf
    return np.lexsort((np.arange(len(table)), -score, ranks))


def select(
    table: pd.DataFrame,
    count: int | None = None,
    ranking: str = 'fom_adj',
    e_hull_max: float | None = DEFAULT_E_HULL_MAX,
    band_gap_min: float | None = DEFAULT_BAND_GAP_MIN,
    elements_min: int | None = None,
    elements_max: int | None = None,
) -> np.ndarray:
    """Indices of the best ``count`` rows that pass the filters, best first (all if ``count`` is None)."""
    passed = np.flatnonzero(filter_mask(table, e_hull_max, band_gap_min, elements_min, elements_max))
    ordered = passed[rank(table.iloc[passed], ranking)]
    return ordered if count is None else ordered[:count]
