"""Maps of detector scores into [0, 1]."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_LN10 = math.log(10.0)
_HALF_LOG_PI_OVER_2 = 0.5 * math.log(math.pi / 2.0)


@njit(cache=True, nogil=True)
def _gaussian_surprise(z, out):
    """``s / (1 + s)`` with ``s = -log10(P(|N(0, 1)| >= z))``, per element; NaN stays NaN.

    The two-sided tail mass ``erfc(z / sqrt 2)`` underflows near z = 38; beyond
    z = 30 its logarithm comes from the asymptotic Mills-ratio expansion
    ``log Q(z) ~ -z^2/2 - log(z) - log(sqrt(2 pi))`` (relative error < 1e-3 there),
    so the score keeps ranking extreme samples instead of saturating at 1.
    """
    for i in range(z.shape[0]):
        v = abs(z[i])
        if math.isnan(v):
            out[i] = np.nan
        elif math.isinf(v):
            out[i] = 1.0
        else:
            if v < 30.0:
                s = -math.log10(math.erfc(v * 0.7071067811865476))
            else:
                s = (0.5 * v * v + math.log(v) + _HALF_LOG_PI_OVER_2) / _LN10
            s = max(s, 0.0)  # -log10(1) is -0.0
            out[i] = s / (1.0 + s)
    return out


def gaussian_surprise(z: np.ndarray) -> np.ndarray:
    """Scores in noise standard deviations mapped to [0, 1] by their Gaussian tail mass.

    ``u = s / (1 + s)`` where ``s = -log10 p`` and ``p`` is the probability that
    Gaussian noise is at least as extreme (two-sided): u = 0.5 at p = 0.1,
    0.75 at p = 1e-3, 0.9 at p = 1e-9.  Monotone in ``|z|``, and unlike the
    tail mass itself it does not round to 1 for ``|z|`` above 8.
    """
    z = np.ascontiguousarray(z, np.float64)
    return _gaussian_surprise(z, np.empty_like(z))
