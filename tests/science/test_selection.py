"""Selection: filters, Φ_adj ranking and the non-dominated front, checked against brute force."""

import numpy as np
import pandas as pd
import pytest

from aiida_dielectrics.science.selection import filter_mask, pareto_front, pareto_ranks, rank, select


def brute_force_front(x, y):
    """O(n²) definition: i is on the front unless some j is >= in both and > in one."""
    points = list(zip(x, y, strict=True))
    return np.array(
        [
            not (np.isnan(xi) or np.isnan(yi))
            and not any(
                xj >= xi and yj >= yi and (xj > xi or yj > yi)
                for j, (xj, yj) in enumerate(points)
                if j != i and not (np.isnan(xj) or np.isnan(yj))
            )
            for i, (xi, yi) in enumerate(points)
        ]
    )


@pytest.mark.parametrize('seed', range(20))
def test_front_matches_brute_force_with_ties_and_nan(seed):
    rng = np.random.default_rng(seed)
    # A small integer grid forces ties in x, in y and exact duplicates.
    x = rng.integers(0, 6, 40).astype(float)
    y = rng.integers(0, 6, 40).astype(float)
    x[rng.integers(0, 40, 3)] = np.nan
    np.testing.assert_array_equal(pareto_front(x, y), brute_force_front(x, y))


def test_front_edge_cases():
    assert pareto_front([], []).tolist() == []
    # Duplicates of the best point are both kept; equal x with lower y and equal y with lower x are not.
    assert pareto_front([2, 2, 2, 1, 3], [5, 5, 4, 5, 1]).tolist() == [True, True, False, False, True]


def test_ranks_peel_fronts():
    x = np.array([3.0, 2.0, 1.0, 2.0, 1.0, np.nan])
    y = np.array([1.0, 2.0, 3.0, 1.0, 1.0, 9.0])
    assert pareto_ranks(x, y).tolist() == [0, 0, 0, 1, 2, -1]


@pytest.fixture
def table():
    return pd.DataFrame(
        {
            'formula': ['MgO', 'SrTiO3', 'BaTiO3', 'KNbO3', 'LiNbO3', 'Cs'],
            'e_above_hull': [0.0, 0.05, 0.1, np.nan, 0.02, 0.0],
            'band_gap': [5.0, 2.0, 2.5, 2.0, 0.5, 0.0],
            'diel_total': [10.0, 100.0, 40.0, 80.0, 30.0, 1.0],
            'fom_adj': [45.0, 150.0, 90.0, 120.0, 15.0, np.nan],
        }
    )


def test_filters_are_strict_for_hull_inclusive_for_gap(table):
    assert filter_mask(table).tolist() == [True, True, False, False, True, False]
    assert filter_mask(table, e_hull_max=None, band_gap_min=None, elements_min=3).tolist() == [
        False,
        True,
        True,
        True,
        True,
        False,
    ]
    assert filter_mask(table, None, None, elements_max=2).tolist() == [True, False, False, False, False, True]


def test_rank_by_fom_adj_puts_nan_last_and_keeps_ties_in_order(table):
    assert rank(table).tolist() == [1, 3, 2, 0, 4, 5]
    tied = table.assign(fom_adj=[1.0, 2.0, 2.0, 1.0, 2.0, 2.0])
    assert rank(tied).tolist() == [1, 2, 4, 5, 0, 3]


def test_rank_by_pareto_front_then_fom_adj(table):
    # Front of (gap, ε): MgO (5, 10), BaTiO3 (2.5, 40), SrTiO3 (2, 100); then KNbO3, LiNbO3; Cs last.
    assert rank(table, 'pareto').tolist() == [1, 2, 0, 3, 4, 5]
    with pytest.raises(ValueError, match='ranking'):
        rank(table, 'fom')


def test_select_filters_before_ranking(table):
    assert select(table, count=2).tolist() == [1, 0]
    assert select(table, ranking='pareto', e_hull_max=None).tolist() == [1, 2, 0, 3, 4]
