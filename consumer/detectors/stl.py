"""The ``stl`` detector: STL residuals scaled by a block-wise robust scale.

Flags ``|resid| > threshold * scale`` where ``scale = 1.4826 * MAD`` of the
residuals over fixed blocks ``[k*block, (k+1)*block)`` aligned to the absolute
sample index, so results depend neither on chunking nor on threads.

Exactness (``robust=False``): a chunk is decomposed over a window that extends
``stl_radius(...)`` samples (plus the fill reach below) beyond the MAD blocks it
scores, starting on a multiple of ``stl_alignment(...)``; the residuals of the
scored samples then equal those of ``stl_decompose`` over the whole series.

``robust=True``: batch STL's robustness weights use the median of *all*
residuals, which no finite window reproduces.  The streamed version decomposes
each MAD block separately over its own window (block plus halo), so the median
is that of a fixed, index-aligned window: chunk- and thread-invariant, but not
equal to batch robust STL (the tests bound the difference).

Defaults differ from ``stl_decompose`` in two places, for detection at stream
rates: ``seasonal=25`` (a wider seasonal smoother absorbs less of a spike into
the seasonal component: on 1e6 samples with period 200, the median spike
keeps 71% of its size in the residual with 7 and 92% with 25) and ``inner_iter=2``.

Non-finite samples are never flagged; for the decomposition they are replaced
by the nearest finite sample of the same phase (``i -+ period``, ``i -+ 2
period``), else 0, which depends only on samples within two periods.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from consumer.detectors.base import MAD_TO_SIGMA, Detector, SeriesInfo, aligned_blocks
from consumer.kernels.stl import stl_alignment, stl_decompose, stl_default_lengths, stl_radius
from shared.params import ParamError, Params, boolean, integer, number, optional, param

PERIOD_PREFIX = 1 << 20  # samples used to estimate a missing period
SEGMENT = 1 << 18  # samples per decomposition (bounds per-thread memory)


@njit(cache=True, nogil=True)
def _fill_nonfinite(x, period):
    """Copy of ``x`` with non-finite samples replaced by a same-phase neighbour (else 0)."""
    y = x.copy()
    n = x.shape[0]
    for i in range(n):
        if not math.isfinite(x[i]):
            v = 0.0
            for k in (-period, period, -2 * period, 2 * period):
                j = i + k
                if 0 <= j < n and math.isfinite(x[j]):
                    v = x[j]
                    break
            y[i] = v
    return y


@njit(cache=True, nogil=True)
def _flag_blocks(x, resid, x0, start, stop, block, threshold, idx, score, dense):
    """MAD scale per absolute block, then flag ``|resid| > threshold * scale`` in [start, stop).

    ``resid``/``x`` cover absolute samples [x0, x0 + len); every block that
    overlaps [start, stop) must lie inside (clipped to the series end).
    """
    nflag = 0
    want_dense = dense.shape[0] > 0
    n_end = x0 + resid.shape[0]
    for b in range(start // block, (stop - 1) // block + 1):
        lo = b * block
        hi = min(lo + block, n_end)
        r = resid[lo - x0 : hi - x0]
        med = np.median(r)
        mad = np.median(np.abs(r - med))
        scale = MAD_TO_SIGMA * mad
        for j in range(max(lo, start), min(hi, stop)):
            a = abs(resid[j - x0])
            finite = math.isfinite(x[j - x0])
            if scale > 0.0:
                sc = a / scale
            else:
                sc = 0.0 if a == 0.0 else np.inf
            if finite and sc > threshold:
                idx[nflag] = j
                score[nflag] = sc
                nflag += 1
            if want_dense:
                dense[j - start] = sc if finite else np.nan
    return nflag


def estimate_period(x: np.ndarray, max_period: int | None = None) -> int | None:
    """Dominant period of ``x`` from its autocorrelation (FFT), or None if none is evident.

    The period is the lag of the highest autocorrelation peak after the first
    zero crossing, accepted if that peak exceeds 0.3.
    """
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 8:
        return None
    x = x - x.mean()
    # Remove a linear trend so that it does not masquerade as a long period.
    t = np.arange(n, dtype=np.float64)
    t -= t.mean()
    denom = float((t * t).sum())
    if denom > 0:
        x = x - t * float((t * x).sum()) / denom
    size = 1 << int(math.ceil(math.log2(2 * n)))
    f = np.fft.rfft(x, size)
    acf = np.fft.irfft(f * np.conj(f), size)[:n]
    if acf[0] <= 0:
        return None
    acf = acf / np.arange(n, 0, -1)  # unbiased: lag k sums n - k products
    acf = acf / acf[0]
    limit = min(n // 4, max_period or n)
    below = np.nonzero(acf[1:limit] < 0)[0]
    if len(below) == 0:
        return None
    first = int(below[0]) + 1
    if first >= limit - 1:
        return None
    best = float(acf[first:limit].max())
    if best < 0.3:
        return None
    # The highest point of the first hump above half the best peak: a multiple of the
    # period can score as high as the period itself, so the global maximum will not do.
    high = acf[first:limit] >= 0.5 * best
    a = int(np.argmax(high))
    b = a + (int(np.argmin(high[a:])) if not high[a:].all() else len(high) - a)
    lag = first + a + int(np.argmax(acf[first + a : first + b]))

    # Refine on the multiples of the candidate: near a flat peak, noise decides
    # between neighbouring lags, but at m * period the neighbours are far apart.
    def score(p: int) -> float:
        lags = np.arange(p, limit, p)
        return float(acf[lags].mean()) if len(lags) else -1.0

    spread = max(2, lag // 50)
    candidates = list(range(max(2, lag - spread), lag + spread + 1))
    lag = max(candidates, key=score)
    return lag if lag >= 2 else None


@dataclass(frozen=True)
class StlParams(Params):
    """Parameters of the ``stl`` detector (names as in ``stl_decompose``).

    Parameters
    ----------
    period
        Seasonal period in samples; None: the stream's recorded period, else
        estimated from the first 2^20 samples.
    seasonal, trend, low_pass
        Smoother lengths (odd; ``trend``/``low_pass`` None: STL's defaults).
    robust, inner_iter, outer_iter
        Robust fitting and iteration counts (``outer_iter`` None: 15 if robust, else 0).
    threshold
        Flag ``|resid| > threshold * 1.4826 * MAD`` (> 0).
    block
        Samples per MAD block, aligned to the absolute index (>= 16).
    """

    period: int | None = param(None, optional(integer()))
    seasonal: int = param(25, integer())
    trend: int | None = param(None, optional(integer()))
    low_pass: int | None = param(None, optional(integer()))
    robust: bool = param(False, boolean())
    inner_iter: int = param(2, integer(1))
    outer_iter: int | None = param(None, optional(integer()))
    threshold: float = param(3.0, number(above=0))
    block: int = param(1 << 16, integer(16))


class StlDetector(Detector):
    """STL (Cleveland et al. 1990) residual detector with a block-wise MAD scale."""

    name = "stl"
    Params = StlParams

    def __init__(self, params: StlParams, series: SeriesInfo) -> None:
        n = series.num_samples
        period = params.period if params.period is not None else _default_period(series)
        if n < 2 * period:
            raise ParamError(
                "period",
                f"({period}) is too long: the series ({n} samples) must span at least two "
                f"periods ({2 * period} samples)",
            )
        # stl_radius validates the smoother lengths as stl_decompose does (odd, > period...).
        self.radius = stl_radius(
            period, params.seasonal, params.trend, params.low_pass, 1, 1, 1, params.inner_iter
        )
        self.radius += 2 * period  # reach of the non-finite fill
        trend, low_pass = stl_default_lengths(
            period, params.seasonal, params.trend, params.low_pass
        )
        outer = params.outer_iter if params.outer_iter is not None else 15
        resolved = dataclasses.replace(
            params,
            period=period,
            trend=trend,
            low_pass=low_pass,
            outer_iter=outer if params.robust else 0,
        )
        super().__init__(resolved, series)
        self.p = resolved
        self.align = stl_alignment(period, 1, 1, 1)

    def _stl_kwargs(self) -> dict:
        p = self.p
        return {
            "period": p.period,
            "seasonal": p.seasonal,
            "trend": p.trend,
            "low_pass": p.low_pass,
            "robust": p.robust,
            "inner_iter": p.inner_iter,
            "outer_iter": p.outer_iter,
        }

    def _window(self, lo: int, hi: int) -> tuple[int, int]:
        """Decomposition window for the absolute range [lo, hi)."""
        ws = max(0, lo - self.radius)
        ws -= ws % self.align
        we = min(self.num_samples, hi + self.radius)
        return ws, we

    def window_for(self, start: int, stop: int) -> tuple[int, int]:
        """MAD blocks overlapping ``[start, stop)``, extended by the STL radius."""
        return self._window(*aligned_blocks(start, stop, self.num_samples, self.p.block))

    def process(self, data, data_start, start, stop, dense):
        """STL residuals of the MAD blocks over their windows, then the block-wise flags."""
        x = data if data.dtype == np.float64 else data.astype(np.float64)
        p = self.p
        idx, sc, d = self._buffers(stop - start, dense)
        kw = self._stl_kwargs()
        lo, hi = aligned_blocks(start, stop, self.num_samples, p.block)
        resid = np.empty(hi - lo)
        # Robust: one decomposition per MAD block, so the robustness median is that of a
        # fixed, index-aligned window.  Otherwise: segments of whole blocks, small enough
        # to bound each worker's memory (any segmentation gives the same residuals).
        step = p.block if p.robust else max(p.block, SEGMENT // p.block * p.block)
        for b0 in range(lo, hi, step):
            b1 = min(hi, b0 + step)
            ws, we = self._window(b0, b1)
            seg = _fill_nonfinite(x[ws - data_start : we - data_start], p.period)
            r = stl_decompose(seg, **kw, threads=1, offset=ws, total_length=self.num_samples)[2]
            resid[b0 - lo : b1 - lo] = r[b0 - ws : b1 - ws]
        k = _flag_blocks(
            x[lo - data_start : hi - data_start],
            resid,
            lo,
            start,
            stop,
            p.block,
            p.threshold,
            idx,
            sc,
            d,
        )
        return self._result(idx, sc, d, k, dense)


def _default_period(series: SeriesInfo) -> int:
    """The recorded seasonality period, else one estimated from the series' first samples."""
    if series.seasonality_period is not None:
        period = float(series.seasonality_period)
        if period.is_integer():
            return int(period)
        raise ParamError(
            "period",
            f"is required: the stream's seasonality period {period:g} is not an integer",
        )
    prefix = series.prefix(PERIOD_PREFIX) if series.prefix is not None else np.empty(0)
    period = estimate_period(prefix)
    if period is None:
        raise ParamError(
            "period",
            f"is required: none was given and no period is evident in the first "
            f"{len(prefix)} samples",
        )
    if series.log is not None:
        series.log(f"stl: estimated period {period} from the first {len(prefix)} samples")
    return period
