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

Missing samples (NaN, and inf taken as NaN) are never flagged: the
decomposition treats them as missing values (``stl_decompose``'s rule: weight 0
in the Loess fits, components estimated there too, NaN residual), and each MAD
block's scale uses its available residuals only.

Several periods (``periods``): MSTL (``mstl_decompose``) instead of STL, halo
``mstl_radius``.  No period given, recorded or evident: a decomposition
without a seasonal component (the trend Loess alone, ``trend_decompose``).

Segments.  A chunk's MAD blocks are decomposed in segments fixed in absolute
index (``[k * S, (k + 1) * S)``, ``S`` a multiple of ``block``), each over the
same window whatever the chunking, so chunked == whole holds bit for bit for
any input, missing values included; for complete data the halo makes every
segment equal the whole-series decomposition as well.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from consumer.detectors.base import MAD_TO_SIGMA, Detector, SeriesInfo
from consumer.kernels.stl import (
    stl_alignment,
    stl_decompose,
    stl_default_lengths,
    stl_radius,
    trend_decompose,
)
from shared.params import (
    ParamError,
    Params,
    ParamTypeError,
    boolean,
    integer,
    number,
    optional,
    param,
)

PERIOD_PREFIX = 1 << 20  # samples used to estimate a missing period
SEGMENT = 1 << 18  # samples per decomposition (bounds per-thread memory)


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
        fin = np.isfinite(r)
        if not fin.all():
            r = r[fin]  # missing samples: the scale of the available residuals
        if r.shape[0] == 0:
            scale = np.nan  # nothing available: nothing flagged
        else:
            med = np.median(r)
            mad = np.median(np.abs(r - med))
            scale = MAD_TO_SIGMA * mad
        for j in range(max(lo, start), min(hi, stop)):
            a = abs(resid[j - x0])
            finite = math.isfinite(x[j - x0]) and math.isfinite(a)
            if scale > 0.0:
                sc = a / scale
            elif scale == 0.0:
                sc = 0.0 if a == 0.0 else np.inf
            else:
                sc = np.nan
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


def _default_periods(series: SeriesInfo) -> tuple[int, ...]:
    """The recorded seasonality period(s), else one estimated from the series' first
    samples, else ``()``: no seasonal component."""
    rec = series.seasonality_period
    if rec is not None:
        out = []
        for period in rec if isinstance(rec, (list, tuple)) else [rec]:
            period = float(period)
            if not period.is_integer():
                raise ParamError(
                    "period",
                    f"is required: the stream's seasonality period {period:g} is not an integer",
                )
            out.append(int(period))
        return tuple(sorted(set(out)))
    prefix = series.prefix(PERIOD_PREFIX) if series.prefix is not None else np.empty(0)
    period = estimate_period(prefix)
    if period is None:
        return ()
    if series.log is not None:
        series.log(f"stl: estimated period {period} from the first {len(prefix)} samples")
    return (period,)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|m|min|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
NO_SEASON_TREND = 101  # trend Loess length when the series has no seasonality


def _period_value(name: str, value: Any) -> int | str:
    """A period: an integer >= 2 (samples) or a duration such as ``"1d"``, ``"30min"``."""
    if isinstance(value, str):
        if not _DURATION.match(value):
            raise ParamError(
                name,
                f'must be an integer >= 2 or a duration like "1d", "12h", "30min", not {value!r}',
            )
        return value
    return integer(2)(name, value)


def _periods_rule(name: str, value: Any) -> tuple[int | str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ParamTypeError(name, f"must be a non-empty list of periods, not {value!r}")
    out = tuple(_period_value(name, v) for v in value)
    dup = [v for v in out if out.count(v) > 1]
    if dup:
        raise ParamError(name, f"must be distinct, got {dup[0]!r} twice")
    return out


def _windows_rule(name: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ParamTypeError(name, f"must be a non-empty list of odd integers, not {value!r}")
    return tuple(integer(3, odd=True, what="an odd integer >= 3")(name, v) for v in value)


def duration_seconds(text: str) -> float:
    """``"1d"``, ``"12h"``, ``"30min"`` (or ``"30m"``), ``"90s"``, ``"1w"`` in seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise ParamError("period", f'must be a duration like "1d", "12h", "30min", not {text!r}')
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


@dataclass(frozen=True)
class StlParams(Params):
    """Parameters of the ``stl`` detector (names as in ``stl_decompose``).

    Parameters
    ----------
    period
        Seasonal period: samples (an integer >= 2) or, for an input with
        timestamps, a duration (``"1d"``, ``"7d"``, ``"1h"``, ``"30min"``).
        None: the stream's recorded period, else one estimated from the first
        2^20 samples, else no seasonal component (trend Loess only).
    periods
        Several periods (samples or durations): MSTL; excludes ``period``.
    windows, iterate
        MSTL's seasonal smoother lengths (None: ``seasonal`` for every period)
        and rounds.
    seasonal, trend, low_pass
        Smoother lengths (odd; ``trend``/``low_pass`` None: STL's defaults;
        without seasonality ``trend`` defaults to 101).
    robust, inner_iter, outer_iter
        Robust fitting and iteration counts (``outer_iter`` None: 15 if robust, else 0).
    threshold
        Flag ``|resid| > threshold * 1.4826 * MAD`` (> 0).
    block
        Samples per MAD block, aligned to the absolute index (>= 16).
    """

    period: int | str | None = param(None, optional(_period_value))
    periods: tuple[int | str, ...] | None = param(None, optional(_periods_rule))
    windows: tuple[int, ...] | None = param(None, optional(_windows_rule))
    iterate: int = param(2, integer(1))
    seasonal: int = param(25, integer(3, odd=True, what="an odd integer >= 3"))
    trend: int | None = param(None, optional(integer()))
    low_pass: int | None = param(None, optional(integer()))
    robust: bool = param(False, boolean())
    inner_iter: int = param(2, integer(1))
    outer_iter: int | None = param(None, optional(integer()))
    threshold: float = param(3.0, number(above=0))
    block: int = param(1 << 16, integer(16))

    def check(self) -> None:
        """``period`` and ``periods`` exclude each other; one window per period."""
        if self.period is not None and self.periods is not None:
            raise ParamError("periods", "and 'period' cannot both be given")
        if self.windows is not None:
            if self.periods is None:
                raise ParamError("windows", "needs 'periods' (several seasonal periods)")
            if len(self.windows) != len(self.periods):
                raise ParamError(
                    "windows",
                    f"must give one window per period ({len(self.periods)}), "
                    f"got {len(self.windows)}",
                )


class StlDetector(Detector):
    """STL (Cleveland et al. 1990) residual detector with a block-wise MAD scale.

    Three modes: one period (STL), several (MSTL), none (trend Loess only).
    """

    name = "stl"
    Params = StlParams

    def __init__(self, params: StlParams, series: SeriesInfo) -> None:
        n = series.num_samples
        periods = _resolve_periods(params, series)
        for p in periods:
            if n < 2 * p:
                raise ParamError(
                    "periods" if params.periods is not None else "period",
                    f"({p}) is too long: the series ({n} samples) must span at least two "
                    f"periods ({2 * p} samples)",
                )
        outer = params.outer_iter if params.outer_iter is not None else 15
        outer = outer if params.robust else 0
        self.mode = "stl" if len(periods) == 1 else ("mstl" if periods else "trend")
        if self.mode == "trend":
            trend = params.trend if params.trend is not None else NO_SEASON_TREND
            integer(3, odd=True, what="an odd integer >= 3")("trend", trend)
            if n < trend:
                trend = max(3, n - 1 if n % 2 == 0 else n)
            self.radius = trend
            resolved = dataclasses.replace(
                params, period=None, periods=None, trend=trend, outer_iter=outer
            )
            self.align = 1
            if series.log is not None:
                series.log(
                    f"stl: no seasonality recorded or evident; decomposing without a seasonal "
                    f"component (trend Loess of {trend} samples)"
                )
        elif self.mode == "stl":
            period = periods[0]
            # stl_radius validates the smoother lengths as stl_decompose does (odd, > period...).
            self.radius = stl_radius(
                period, params.seasonal, params.trend, params.low_pass, 1, 1, 1, params.inner_iter
            )
            trend, low_pass = stl_default_lengths(
                period, params.seasonal, params.trend, params.low_pass
            )
            resolved = dataclasses.replace(
                params,
                period=period,
                periods=None,
                trend=trend,
                low_pass=low_pass,
                outer_iter=outer,
            )
            self.align = stl_alignment(period, 1, 1, 1)
        else:
            from consumer.kernels.mstl import mstl_alignment, mstl_periods, mstl_radius

            windows = params.windows
            if windows is None:
                windows = (params.seasonal,) * len(periods)
            else:  # windows follow the periods as given, then both are sorted
                windows = tuple(w for _, w in sorted(zip(periods, windows, strict=True)))
            ps, ws = mstl_periods(sorted(periods), list(windows), n)
            kw = self._mstl_stl_kwargs(params, outer)
            self.radius = mstl_radius(ps, ws, params.iterate, kw)
            self.align = mstl_alignment(ps, kw)
            resolved = dataclasses.replace(
                params, period=None, periods=ps, windows=ws, outer_iter=outer
            )
        super().__init__(resolved, series)
        self.p = resolved
        # Segments of whole MAD blocks, fixed in absolute index (bounds per-thread memory).
        self.step = (
            resolved.block
            if resolved.robust
            else max(resolved.block, SEGMENT // resolved.block * resolved.block)
        )

    @staticmethod
    def _mstl_stl_kwargs(p: StlParams, outer: int) -> dict:
        return {
            "trend": p.trend,
            "low_pass": p.low_pass,
            "robust": p.robust,
            "inner_iter": p.inner_iter,
            "outer_iter": outer,
        }

    def _window(self, lo: int, hi: int) -> tuple[int, int]:
        """Decomposition window for the absolute range [lo, hi)."""
        ws = max(0, lo - self.radius)
        ws -= ws % self.align
        we = min(self.num_samples, hi + self.radius)
        return ws, we

    def _segments(self, start: int, stop: int) -> tuple[int, int]:
        """The fixed segments ``[k * step, (k + 1) * step)`` covering ``[start, stop)``."""
        lo = start // self.step * self.step
        return lo, min(self.num_samples, -(-stop // self.step) * self.step)

    def window_for(self, start: int, stop: int) -> tuple[int, int]:
        """The segments over ``[start, stop)``'s MAD blocks, extended by the halo."""
        return self._window(*self._segments(start, stop))

    def _decompose(self, seg: np.ndarray, ws: int) -> np.ndarray:
        """Residuals of one segment window (all NaN where nothing can be decomposed)."""
        p = self.p
        n_total = self.num_samples
        nan = np.isnan(seg)
        if nan.any():
            if nan.all():
                return np.full(seg.shape[0], np.nan)
            for q in [p.period] if self.mode == "stl" else (p.periods or ()):
                pad = (-seg.shape[0]) % q
                have = np.concatenate([~nan, np.zeros(pad, bool)]).reshape(-1, q).any(axis=0)
                if not have.all():  # a phase with no available sample in this window
                    return np.full(seg.shape[0], np.nan)
        if self.mode == "trend":
            return trend_decompose(
                seg, p.trend, 1, p.robust, p.outer_iter, offset=ws, total_length=n_total
            )[2]
        if self.mode == "stl":
            return stl_decompose(
                seg,
                p.period,
                p.seasonal,
                p.trend,
                p.low_pass,
                robust=p.robust,
                inner_iter=p.inner_iter,
                outer_iter=p.outer_iter,
                threads=1,
                offset=ws,
                total_length=n_total,
            )[2]
        from consumer.kernels.mstl import mstl_decompose

        return mstl_decompose(
            seg,
            list(p.periods),
            list(p.windows),
            p.iterate,
            self._mstl_stl_kwargs(p, p.outer_iter),
            threads=1,
            offset=ws,
            total_length=n_total,
        )[2]

    def process(self, data, data_start, start, stop, dense):
        """Residuals of the segments over their windows, then the block-wise flags."""
        x = data if data.dtype == np.float64 else data.astype(np.float64)
        if not np.isfinite(x).all():
            x = np.where(np.isfinite(x), x, np.nan)  # inf: missing too
        p = self.p
        idx, sc, d = self._buffers(stop - start, dense)
        lo, hi = self._segments(start, stop)
        resid = np.empty(hi - lo)
        # Robust: one decomposition per MAD block, so the robustness median is that of a
        # fixed, index-aligned window.  Either way every segment is fixed in absolute
        # index, so its residuals do not depend on the chunking.
        for b0 in range(lo, hi, self.step):
            b1 = min(hi, b0 + self.step)
            ws, we = self._window(b0, b1)
            r = self._decompose(x[ws - data_start : we - data_start], ws)
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


def _to_samples(name: str, value: int | str, series: SeriesInfo) -> int:
    """A period in samples; a duration needs the input's cadence."""
    if not isinstance(value, str):
        return int(value)
    seconds = duration_seconds(value)
    if series.cadence_seconds is None:
        raise ParamError(
            name,
            f"{value!r} is a duration, which needs an input with timestamps; "
            f"give the period in samples",
        )
    samples = seconds / float(series.cadence_seconds)
    k = round(samples)
    if k < 2:
        raise ParamError(
            name,
            f"{value!r} is under two samples at this input's cadence of "
            f"{series.cadence_seconds:g} s",
        )
    if abs(samples - k) > 1e-6 * samples:
        raise ParamError(
            name,
            f"{value!r} is not a whole number of samples at this input's cadence of "
            f"{series.cadence_seconds:g} s ({samples:g})",
        )
    return k


def _resolve_periods(params: StlParams, series: SeriesInfo) -> tuple[int, ...]:
    """The periods in samples: given, recorded, estimated, or () for no seasonality."""
    if params.periods is not None:
        ps = tuple(_to_samples("periods", v, series) for v in params.periods)
        if len(set(ps)) != len(ps):
            raise ParamError("periods", f"must be distinct, got {list(ps)} in samples")
        return ps
    if params.period is not None:
        return (_to_samples("period", params.period, series),)
    return _default_periods(series)
