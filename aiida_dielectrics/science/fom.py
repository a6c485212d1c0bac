"""The figure of merit Φ = ε_total · E_gap and its uncertainty (plain floats or numpy arrays).

Large permittivity and large band gap pull against each other; their product ranks candidates for
capacitors and gate dielectrics. Predictions carry an ensemble σ, so Φ gets one by first-order error
propagation (independent errors), and the risk-adjusted ``fom_adj = fom - RISK_AVERSION * fom_std``
prefers candidates the models are sure about.
"""

from __future__ import annotations

import numpy as np

#: Weight of σ_Φ in the risk-adjusted figure of merit.
RISK_AVERSION = 0.5


def figure_of_merit(diel_total, band_gap):
    """Φ (eV) of a permittivity and a band gap (eV)."""
    return np.multiply(diel_total, band_gap)


def prediction_summary(diel_elec, diel_elec_std, diel_ionic, diel_ionic_std, band_gap, band_gap_std) -> dict:
    """Total permittivity and Φ with propagated σ, from separately predicted ε_elec, ε_ionic and E_gap.

    The electronic and ionic parts are predicted by separate models (the original study found this
    better than predicting ε_total directly), so their errors are treated as independent.
    """
    diel_total = np.add(diel_elec, diel_ionic)
    diel_total_std = np.hypot(diel_elec_std, diel_ionic_std)
    fom = figure_of_merit(diel_total, band_gap)
    fom_std = np.hypot(np.multiply(band_gap, diel_total_std), np.multiply(diel_total, band_gap_std))
    return {
        'diel_total': diel_total,
        'diel_total_std': diel_total_std,
        'fom': fom,
        'fom_std': fom_std,
        'fom_adj': fom - RISK_AVERSION * fom_std,
    }
