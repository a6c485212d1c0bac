"""Training data as plain arrays: structures, material ids and scalar targets (mean eigenvalues).

Built from data files (:func:`from_files`: the Petousis 2017 CSV, the mp-dfpt-extra extended XYZ, or both
together) or from imported AiiDA nodes (the AiiDA layer passes the same fields to :class:`Dataset`), so
training never depends on where the data came from. A material without a band gap (mp-dfpt-extra) has
``band_gap`` NaN: it is trained on for ε and left out of band-gap training and of Φ.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib

import numpy as np
from pymatgen.core import Structure

from aiida_dielectrics.science import tensors
from aiida_dielectrics.science.datasets import RowError, mp_dfpt_extra, petousis2017

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
    #: The data set(s), for the model card: ``petousis2017``, ``mp-dfpt-extra``, joined by ``+``.
    source: str = 'unspecified'

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
            source=self.source,
        )


def clip_ionic(values) -> np.ndarray:
    """ε_ionic below zero is DFPT noise (``|ε| ≲ 0.1`` in the Petousis data); clip so log1p stays defined."""
    return np.clip(np.asarray(values, dtype=float), 0.0, None)


#: Reader of each data-file format, by file extension.
READERS = {
    '.csv': (petousis2017.SOURCE, petousis2017.read_rows),
    '.extxyz': (mp_dfpt_extra.SOURCE, mp_dfpt_extra.read_rows),
    '.xyz': (mp_dfpt_extra.SOURCE, mp_dfpt_extra.read_rows),
}


def from_rows(rows, source: str, limit: int | None = None) -> Dataset:
    """The rows of a data-set reader as a :class:`Dataset`; unreadable rows are listed in ``skipped``."""
    ids, structures, elec, ionic, gaps, skipped = [], [], [], [], [], []
    for row in rows:
        if isinstance(row, RowError):
            skipped.append(f'{source} line {row.line}: {row.reason}')
            continue
        ids.append(row.material_id)
        structures.append(row.structure)
        elec.append(tensors.mean_eigenvalue(row.epsilon_electronic))
        ionic.append(tensors.mean_eigenvalue(row.epsilon_ionic))
        gaps.append(getattr(row, 'band_gap', np.nan))  # mp-dfpt-extra has no gaps
        if limit is not None and len(ids) >= limit:
            break
    return Dataset(
        ids, structures, np.asarray(elec), clip_ionic(ionic), np.asarray(gaps), skipped, source=source
    )


def from_petousis(path: str | pathlib.Path, limit: int | None = None) -> Dataset:
    """The Petousis CSV as a :class:`Dataset`."""
    return from_rows(petousis2017.read_rows(path), petousis2017.SOURCE, limit)


def from_files(paths, limit: int | None = None) -> Dataset:
    """The data files ``paths`` (format by extension, :data:`READERS`) as one :class:`Dataset`, in the
    order given; ``limit`` caps the entries taken from each file. A material in two files is an error."""
    parts = []
    for path in map(pathlib.Path, paths):
        if path.suffix.lower() not in READERS:
            raise ValueError(f'{path}: unknown data format (expected one of {", ".join(READERS)})')
        source, read_rows = READERS[path.suffix.lower()]
        parts.append(from_rows(read_rows(path), source, limit))
    return concatenate(parts)


def concatenate(parts: list[Dataset]) -> Dataset:
    """One :class:`Dataset` with the entries of ``parts`` in order (``ValueError`` on a repeated material)."""
    ids = [material for part in parts for material in part.material_ids]
    repeated = sorted(material for material, count in collections.Counter(ids).items() if count > 1)
    if repeated:
        raise ValueError(f'materials in more than one data file: {", ".join(repeated[:5])}')
    return Dataset(
        material_ids=ids,
        structures=[structure for part in parts for structure in part.structures],
        diel_elec=np.concatenate([part.diel_elec for part in parts]),
        diel_ionic=np.concatenate([part.diel_ionic for part in parts]),
        band_gap=np.concatenate([part.band_gap for part in parts]),
        skipped=[reason for part in parts for reason in part.skipped],
        source='+'.join(dict.fromkeys(part.source for part in parts)),
    )
