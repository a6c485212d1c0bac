"""``dielectrics.dielectric``: one DFPT (or imported) dielectric result, queryable by its scalars."""

from __future__ import annotations

import numpy as np
from aiida.orm import ArrayData, StructureData
from pymatgen.core import Composition

from aiida_dielectrics.data.attributes import attribute_property
from aiida_dielectrics.science import tensors
from aiida_dielectrics.science.fom import figure_of_merit

ENGINES = ('vasp', 'qe', 'imported')


def reduced_formula(structure: StructureData) -> str:
    """Reduced formula of a ``StructureData`` in pymatgen's convention (the one MP data uses)."""
    return Composition(structure.get_composition()).reduced_formula


class DielectricData(ArrayData):
    """Electronic and ionic dielectric tensors, the band gap where known, and their queryable scalar summaries.

    Tensors are validated and symmetrised on construction (see :mod:`aiida_dielectrics.science.tensors`).
    Attributes ``diel_elec``, ``diel_ionic``, ``diel_total`` (mean eigenvalues), ``formula``, ``engine``
    and, when known, ``band_gap`` (eV), ``fom`` (eV) and ``e_above_hull`` are plain numbers and strings
    so that ``QueryBuilder`` filters on them. ``band_gap=None`` is for imported data that have no gap
    (mp-dfpt-extra): such a node has neither ``band_gap`` nor ``fom`` (Φ = ε_total·E_gap needs the gap),
    so a filter or ordering on either leaves it out, as ``e_above_hull`` does for nodes without a hull.
    """

    def __init__(
        self,
        *,
        epsilon_electronic,
        epsilon_ionic,
        band_gap: float | None,
        engine: str,
        structure: StructureData | None = None,
        formula: str | None = None,
        born_charges=None,
        phonon_frequencies_gamma=None,
        e_above_hull: float | None = None,
        source: str | None = None,
        source_id: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if engine not in ENGINES:
            raise tensors.TensorError(f'engine must be one of {ENGINES}, got {engine!r}')
        if formula is None:
            if structure is None:
                raise ValueError('give the structure or the formula')
            formula = reduced_formula(structure)

        electronic = tensors.symmetric_tensor(epsilon_electronic, 'epsilon_electronic')
        ionic = tensors.symmetric_tensor(epsilon_ionic, 'epsilon_ionic')
        self.set_array('epsilon_electronic', electronic)
        self.set_array('epsilon_ionic', ionic)
        if born_charges is not None:
            num_sites = None if structure is None else len(structure.sites)
            self.set_array('born_charges', tensors.born_charges(born_charges, num_sites))
        if phonon_frequencies_gamma is not None:
            frequencies = tensors.as_finite_array(
                phonon_frequencies_gamma, 'phonon_frequencies_gamma', (None,)
            )
            self.set_array('phonon_frequencies_gamma', frequencies)

        diel_total = tensors.mean_eigenvalue(electronic + ionic)
        attributes = {
            'diel_elec': tensors.mean_eigenvalue(electronic),
            'diel_ionic': tensors.mean_eigenvalue(ionic),
            'diel_total': diel_total,
            'formula': formula,
            'engine': engine,
        }
        if band_gap is not None:
            gap = tensors.band_gap(band_gap)
            attributes.update({'band_gap': gap, 'fom': float(figure_of_merit(diel_total, gap))})
        if e_above_hull is not None:
            attributes['e_above_hull'] = float(tensors.as_finite_array(e_above_hull, 'e_above_hull', ()))
        if source is not None:
            attributes['source'] = source
        if source_id is not None:
            attributes['source_id'] = source_id
        self.base.attributes.set_many(attributes)

    @property
    def epsilon_electronic(self) -> np.ndarray:
        return self.get_array('epsilon_electronic')

    @property
    def epsilon_ionic(self) -> np.ndarray:
        return self.get_array('epsilon_ionic')

    @property
    def epsilon_total(self) -> np.ndarray:
        """Static permittivity ε0 = ε∞ + ε_ion."""
        return self.epsilon_electronic + self.epsilon_ionic

    diel_elec = attribute_property('diel_elec')
    diel_ionic = attribute_property('diel_ionic')
    diel_total = attribute_property('diel_total')
    band_gap = attribute_property('band_gap')
    fom = attribute_property('fom')
    formula = attribute_property('formula')
    engine = attribute_property('engine')
    e_above_hull = attribute_property('e_above_hull')
