"""Training data as plain arrays: structures, material ids and scalar targets (mean eigenvalues).

Built from the Petousis 2017 CSV (:func:`from_petousis`) or from imported AiiDA nodes (the AiiDA layer
passes the same fields to :class:`Dataset`), so training never depends on where the data came from.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import numpy as np
from pymatgen.core import Structure

from aiida_dielectrics.science import tensors
from aiida_dielectrics.science.datasets import petousis2017

#: The quantities a model can be trained on: ε (attribute names of ``dielectrics.dielectric``) and the PBE
#: band gap in eV (the Petousis ``band_gap`` column).
TARGETS = ('diel_elec', 'diel_ionic', 'band_gap')


@dataclasses.dataclass
class Dataset:
    """One entry per material; arrays are aligned with ``material_ids``."""

    material_ids: list[str]
    structures: list[Structure]
    diel_elec: np.ndarray
    diel_ionic: np.ndarray
    band_gap: np.ndarray
    skipped: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        for name in ('diel_elec', 'diel_ionic', 'band_gap'):
            setattr(self, name, np.asarray(getattr(self, name), dtype=float))
        sizes = {len(self.material_ids), len(self.structures), *(len(getattr(self, n)) for n in TARGETS)}
        if len(sizes) != 1:
            raise ValueError(f'dataset arrays differ in length: {sorted(sizes)}')
        if len(set(self.material_ids)) != len(self.material_ids):
            raise ValueError('material ids are not unique')

    def __len__(self) -> int:
        return len(self.material_ids)

    @property
    def diel_total(self) -> np.ndarray:
        return self.diel_elec + self.diel_ionic

    @functools.cached_property
    def formulas(self) -> list[str]:
        """Reduced formulas, the grouping key of the split (computed once: it is read per index)."""
        return [structure.composition.reduced_formula for structure in self.structures]

    def target(self, name: str) -> np.ndarray:
        if name not in TARGETS:
            raise ValueError(f'unknown target {name!r}; choose from {", ".join(TARGETS)}')
        return getattr(self, name)

    def subset(self, indices) -> Dataset:
        indices = np.asarray(indices, dtype=int)
        return Dataset(
            material_ids=[self.material_ids[i] for i in indices],
            structures=[self.structures[i] for i in indices],
            diel_elec=self.diel_elec[indices],
            diel_ionic=self.diel_ionic[indices],
            band_gap=self.band_gap[indices],
        )


def clip_ionic(values) -> np.ndarray:
    """ε_ionic below zero is DFPT noise (``|ε| ≲ 0.1`` in the Petousis data); clip so log1p stays defined."""
    return np.clip(np.asarray(values, dtype=float), 0.0, None)


def from_petousis(path: str | pathlib.Path, limit: int | None = None) -> Dataset:
    """The Petousis CSV as a :class:`Dataset`; unreadable rows are listed in ``skipped``."""
    ids, structures, elec, ionic, gaps, skipped = [], [], [], [], [], []
    for row in petousis2017.read_rows(path):
        if isinstance(row, petousis2017.RowError):
            skipped.append(f'line {row.line}: {row.reason}')
            continue
        ids.append(row.material_id)
        structures.append(row.structure)
        elec.append(tensors.mean_eigenvalue(row.epsilon_electronic))
        ionic.append(tensors.mean_eigenvalue(row.epsilon_ionic))
        gaps.append(row.band_gap)
        if limit is not None and len(ids) >= limit:
            break
    return Dataset(ids, structures, np.asarray(elec), clip_ionic(ionic), np.asarray(gaps), skipped)
