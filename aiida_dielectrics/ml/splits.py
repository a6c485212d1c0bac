"""A fixed, seeded split by material: train/validation/test plus k-fold CV over train+validation.

Entries are grouped by reduced formula before splitting, so polymorphs of one composition never sit on
both sides of a split (a stricter test than splitting by material id alone). Groups are shuffled with
``numpy.random.default_rng(seed)`` after sorting, so the split depends only on the seed and the set of
formulas, not on the row order. :func:`split_hash` fingerprints a split for the model card.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

SEED = 2017
FRACTIONS = (0.75, 0.10, 0.15)
FOLDS = 5


@dataclasses.dataclass
class Split:
    """Indices into the dataset (sorted) for each part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _shuffled_groups(groups, seed: int) -> list[str]:
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    return [unique[i] for i in order]


def _indices(groups, chosen: set) -> np.ndarray:
    return np.array(sorted(i for i, group in enumerate(groups) if group in chosen), dtype=int)


def train_val_test(groups, seed: int = SEED, fractions=FRACTIONS) -> Split:
    """Split entries (given by their group, e.g. reduced formula) so that each group lands in one part.

    Groups are assigned in shuffled order until each part holds its fraction of *entries*.
    """
    if len(fractions) != 3 or not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f'fractions must be three non-negative numbers summing to 1, got {fractions}')
    groups = list(groups)
    counts: dict[str, int] = {}
    for group in groups:
        counts[group] = counts.get(group, 0) + 1
    bounds = np.cumsum(fractions) * len(groups)
    parts: list[set] = [set(), set(), set()]
    assigned = 0
    for group in _shuffled_groups(groups, seed):
        part = int(np.searchsorted(bounds, assigned, side='right'))
        parts[min(part, 2)].add(group)
        assigned += counts[group]
    return Split(*(_indices(groups, part) for part in parts))


def kfold(groups, indices, folds: int = FOLDS, seed: int = SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, held-out) index pairs over ``indices``, groups kept whole, folds of ~equal size."""
    indices = np.asarray(indices, dtype=int)
    groups = list(groups)
    members: dict[str, list[int]] = {}
    for index in indices:
        members.setdefault(groups[index], []).append(int(index))
    bins: list[list[int]] = [[] for _ in range(folds)]
    for group in _shuffled_groups([groups[i] for i in indices], seed + 1):
        min(bins, key=len).extend(members[group])
    result = []
    for k in range(folds):
        held = np.array(sorted(bins[k]), dtype=int)
        rest = np.array(sorted(i for j, b in enumerate(bins) if j != k for i in b), dtype=int)
        result.append((rest, held))
    return result


def split_hash(material_ids, split: Split) -> str:
    """sha256 of the material ids in each part, to check that two models used the same split."""
    payload = {
        name: sorted(material_ids[i] for i in getattr(split, name)) for name in ('train', 'val', 'test')
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
