"""Validation and scalar summaries of dielectric tensors (plain numpy, no AiiDA).

DFPT codes print dielectric tensors that are symmetric only up to numerical noise (the Materials
Project data carry relative asymmetries up to ~2 %). Such noise is removed by symmetrising; anything
larger means the tensor is wrong (a transposed block, a mis-parsed file) and is refused.
"""

from __future__ import annotations

import numpy as np

#: Largest accepted asymmetry, relative to the largest absolute element of the tensor.
SYMMETRY_TOLERANCE = 0.05


class TensorError(ValueError):
    """A tensor or scalar that cannot be a physical dielectric result."""


def as_finite_array(value, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Return ``value`` as a float array of ``shape`` (``None`` matches any length), all finite."""
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exception:
        raise TensorError(f'{name} is not numeric: {exception}') from exception
    if array.ndim != len(shape) or any(
        want not in (None, got) for want, got in zip(shape, array.shape, strict=False)
    ):
        wanted = '×'.join('N' if axis is None else str(axis) for axis in shape)
        raise TensorError(f'{name} must have shape {wanted}, got {array.shape}')
    if not np.all(np.isfinite(array)):
        raise TensorError(f'{name} contains NaN or infinite values')
    return array


def symmetric_tensor(value, name: str, tolerance: float = SYMMETRY_TOLERANCE) -> np.ndarray:
    """Return the symmetrised 3×3 tensor, refusing asymmetries above ``tolerance`` (relative)."""
    tensor = as_finite_array(value, name, (3, 3))
    scale = max(np.abs(tensor).max(), 1e-12)
    asymmetry = np.abs(tensor - tensor.T).max() / scale
    if asymmetry > tolerance:
        raise TensorError(
            f'{name} is not symmetric: relative asymmetry {asymmetry:.3g} exceeds the tolerance {tolerance:g}'
        )
    return (tensor + tensor.T) / 2


def born_charges(value, num_sites: int | None = None) -> np.ndarray:
    """Return Born effective charges as an N×3×3 array, checking N against the structure if given."""
    charges = as_finite_array(value, 'born_charges', (None, 3, 3))
    if num_sites is not None and charges.shape[0] != num_sites:
        raise TensorError(f'born_charges has {charges.shape[0]} sites but the structure has {num_sites}')
    return charges


def band_gap(value) -> float:
    """Return the band gap (eV) as a float, refusing negative or non-finite values."""
    gap = float(as_finite_array(value, 'band_gap', ()))
    if gap < 0:
        raise TensorError(f'band_gap must be >= 0 eV, got {gap}')
    return gap


def mean_eigenvalue(tensor: np.ndarray) -> float:
    """Scalar dielectric constant: the mean eigenvalue (one third of the trace) of a symmetric tensor."""
    return float(np.linalg.eigvalsh(tensor).mean())
