"""``dielectrics.prediction``: the ML screening prediction for one structure."""

from __future__ import annotations

import math

from aiida.orm import Data

from aiida_dielectrics.data.attributes import attribute_property
from aiida_dielectrics.science.fom import prediction_summary


class PredictionData(Data):
    """Predicted formation energy, hull energy, band gap and permittivity, each with an ensemble σ.

    ``diel_total``, ``fom``, ``fom_std`` and ``fom_adj`` are derived on construction
    (:func:`aiida_dielectrics.science.fom.prediction_summary`). A quantity that was not predicted is ``None``
    and a ``*_std`` of a single model is 0. A regressor may predict a slightly negative gap: it is
    stored as predicted and counts as 0 in Φ. The prediction links to its structure and model nodes
    through the process that made it, not through attributes.
    """

    def __init__(
        self,
        *,
        formula: str,
        band_gap: float,
        diel_elec: float,
        diel_ionic: float,
        band_gap_std: float = 0.0,
        diel_elec_std: float = 0.0,
        diel_ionic_std: float = 0.0,
        e_form: float | None = None,
        e_form_std: float | None = None,
        e_above_hull: float | None = None,
        e_above_hull_std: float | None = None,
        protostructure: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        values = {
            'band_gap': band_gap,
            'band_gap_std': band_gap_std,
            'diel_elec': diel_elec,
            'diel_elec_std': diel_elec_std,
            'diel_ionic': diel_ionic,
            'diel_ionic_std': diel_ionic_std,
            'e_form': e_form,
            'e_form_std': e_form_std,
            'e_above_hull': e_above_hull,
            'e_above_hull_std': e_above_hull_std,
        }
        for name, value in values.items():
            if value is not None:
                values[name] = float(value)
                if not math.isfinite(values[name]):
                    raise ValueError(f'{name} must be finite, got {value}')
        for name in ('band_gap_std', 'diel_elec_std', 'diel_ionic_std', 'e_form_std', 'e_above_hull_std'):
            if values[name] is not None and values[name] < 0:
                raise ValueError(f'{name} must be >= 0, got {values[name]}')
        summary = prediction_summary(
            values['diel_elec'],
            values['diel_elec_std'],
            values['diel_ionic'],
            values['diel_ionic_std'],
            max(values['band_gap'], 0.0),
            values['band_gap_std'],
        )
        values.update({name: float(value) for name, value in summary.items()})
        values['formula'] = formula
        values['protostructure'] = protostructure
        self.base.attributes.set_many({name: value for name, value in values.items() if value is not None})

    e_form = attribute_property('e_form')
    e_above_hull = attribute_property('e_above_hull')
    band_gap = attribute_property('band_gap')
    diel_elec = attribute_property('diel_elec')
    diel_ionic = attribute_property('diel_ionic')
    diel_total = attribute_property('diel_total')
    fom = attribute_property('fom')
    fom_std = attribute_property('fom_std')
    fom_adj = attribute_property('fom_adj')
    formula = attribute_property('formula')
    protostructure = attribute_property('protostructure')
