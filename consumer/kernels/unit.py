"""Maps of detector scores into [0, 1]."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _gaussian_mass_within(z, out):
    """``out[i] = erf(z[i] / sqrt(2))``: P(|N(0, 1)| < z[i]); NaN stays NaN."""
    for i in range(z.shape[0]):
        out[i] = math.erf(z[i] * 0.7071067811865476)
    return out


def gaussian_mass_within(z: np.ndarray) -> np.ndarray:
    """float64 ``erf(z / sqrt(2))`` of a 1-D array of non-negative scores."""
    z = np.ascontiguousarray(z, np.float64)
    return _gaussian_mass_within(z, np.empty_like(z))
