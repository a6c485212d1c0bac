"""Target transforms: models learn ε in log space because it spans ~1–300.

``log`` suits ε_elec (≥ 1 physically, so log ε ≥ 0), ``log1p`` suits ε_ionic (≥ 0, often exactly 0) and
the band gap (eV, ≥ 0; expm1 of any model output is > -1 and ≥ 0 for outputs ≥ 0, and the ensemble mean of
log1p-trained members never predicts the large negative gaps an identity read-out can; the compression of
wide gaps also weights the 0–3 eV range that matters for the E_gap ≥ 0.5 eV filter).
Ensemble means and standard deviations are taken after :func:`inverse_transform`, in the original space.
"""

from __future__ import annotations

import numpy as np

#: name -> (forward, inverse); the forward function requires values in its domain.
TRANSFORMS = {
    'identity': (lambda x: x, lambda y: y),
    'log': (np.log, np.exp),
    'log1p': (np.log1p, np.expm1),
}

#: The transform each target is trained with by default.
DEFAULT_TRANSFORM = {'diel_elec': 'log', 'diel_ionic': 'log1p', 'band_gap': 'log1p'}


def _get(name: str):
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise ValueError(f'unknown transform {name!r}; choose from {", ".join(TRANSFORMS)}') from None


def transform(name: str, values) -> np.ndarray:
    """Map ``values`` into the space a model is trained in; raises on values outside the domain."""
    values = np.asarray(values, dtype=float)
    if name == 'log' and np.any(values <= 0):
        raise ValueError('log transform needs positive values')
    if name == 'log1p' and np.any(values <= -1):
        raise ValueError('log1p transform needs values > -1')
    return _get(name)[0](values)


def inverse_transform(name: str, values) -> np.ndarray:
    """Map model outputs back to the original space (ε itself)."""
    return _get(name)[1](np.asarray(values, dtype=float))


class MemberSpread:
    """Mean and σ over ensemble members in the original space, for a class with ``transform`` (a name in
    :data:`TRANSFORMS`) and ``sigma_scale`` (the factor that calibrates the member spread)."""

    def summarize(self, outputs, calibrated: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Mean and σ over members (rows of transformed ``outputs``) in the original space; σ times
        ``sigma_scale`` unless ``calibrated`` is false (the raw member spread)."""
        values = inverse_transform(self.transform, outputs)
        scale = self.sigma_scale if calibrated else 1.0
        return values.mean(axis=0), scale * values.std(axis=0)
