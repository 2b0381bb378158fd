"""Z-score kernels: rolling (trailing window) and fixed-block.

Both are written so that the flags of sample ``i`` depend only on the data and
on ``i`` itself, never on where a chunk starts: that is what makes chunked,
threaded and tailed runs produce exactly the indices of one whole-series call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Rolling sums are recomputed exactly at every multiple of RESYNC (absolute index),
# so rounding drift is bounded by RESYNC updates and is identical for every chunking.
RESYNC = 1 << 16


@njit(cache=True, nogil=True)
def _exact_window(x, lo, hi):
    """Shift, count, shifted sum and sum of squares of the finite samples of x[lo:hi]."""
    c = 0
    s = 0.0
    for j in range(lo, hi):
        v = x[j]
        if math.isfinite(v):
            c += 1
            s += v
    k = s / c if c > 0 else 0.0
    s1 = 0.0
    s2 = 0.0
    for j in range(lo, hi):
        v = x[j]
        if math.isfinite(v):
            d = v - k
            s1 += d
            s2 += d * d
    return k, c, s1, s2


@njit(cache=True, nogil=True)
def _rolling_zscore(x, x0, start, stop, window, threshold, resync, idx, score, dense):
    """Flag ``|x_i - mean| > threshold * std`` over the trailing window x[i-window:i].

    Trick: sliding shifted sums (the shift k is the window mean at the last
    resynchronisation point, which keeps sum-of-squares cancellation small),
    updated in O(1) per sample with one add per sum on the dependency chain
    (``s2 += (v - old) * (v + old - 2k)``), and recomputed exactly at every
    multiple of ``resync`` in absolute index, so rounding drift is bounded and
    identical whatever the chunking.  The test ``d*d > t*t*var`` needs no sqrt
    or division per sample.  Population std (ddof=0).  Non-finite samples are
    never flagged and are left out of the statistics of the windows they enter.

    ``x`` holds absolute samples [x0, x0 + len(x)) and must start at or before
    ``max(window, floor(start / resync) * resync) - window``.  Flagged absolute
    indices and scores go to ``idx``/``score`` (the count is returned); if
    ``dense`` is non-empty it receives the score of every sample of [start, stop).
    """
    nflag = 0
    want_dense = dense.shape[0] > 0
    thr2 = threshold * threshold
    if want_dense:
        for t in range(start, min(stop, window)):
            dense[t - start] = np.nan
    i = max(start, window)
    while i < stop:
        g = max(window, (i // resync) * resync)
        seg_end = min(stop, (g // resync + 1) * resync)
        k, c, s1, s2 = _exact_window(x, g - window - x0, g - x0)
        two_k = 2.0 * k
        inv = 1.0 / c if c > 0 else 0.0
        for j in range(g, seg_end):
            v = x[j - x0]
            if j >= i:
                m = s1 * inv
                var = s2 * inv - m * m
                if var < 0.0:
                    var = 0.0
                d = v - k - m
                if d * d > thr2 * var:
                    # Rare: settle finiteness and the window count only here.
                    if v - v == 0.0 and c >= 2:
                        sd = math.sqrt(var)
                        idx[nflag] = j
                        score[nflag] = abs(d) / sd if sd > 0.0 else np.inf
                        nflag += 1
                if want_dense:
                    sc = np.nan
                    if v - v == 0.0 and c >= 2:
                        sd = math.sqrt(var)
                        sc = abs(d) / sd if sd > 0.0 else (0.0 if d == 0.0 else np.inf)
                    dense[j - start] = sc
            old = x[j - window - x0]
            delta = v - old
            if delta - delta == 0.0:  # both finite (inf - inf and NaN give NaN)
                s1 += delta
                s2 += delta * (v + old - two_k)
            else:  # a non-finite sample enters or leaves: exact bookkeeping
                if v - v == 0.0:
                    s1 += v - k
                    s2 += (v - k) * (v - k)
                    c += 1
                if old - old == 0.0:
                    s1 -= old - k
                    s2 -= (old - k) * (old - k)
                    c -= 1
                inv = 1.0 / c if c > 0 else 0.0
        i = seg_end
    return nflag


@njit(cache=True, nogil=True)
def _block_zscore(x, x0, start, stop, block, threshold, idx, score, dense):
    """Flag samples whose |x - mean| > threshold * std of their fixed block.

    Blocks are ``[b*block, (b+1)*block)`` in absolute index (the original demo
    used each chunk's own mean and std, so its flags changed with the chunk
    size).  Two-pass mean/variance per block; non-finite samples are skipped.
    ``x`` must cover every block that overlaps [start, stop).
    """
    nflag = 0
    want_dense = dense.shape[0] > 0
    b0 = start // block
    b1 = (stop - 1) // block
    n_end = x0 + x.shape[0]
    for b in range(b0, b1 + 1):
        lo = b * block
        hi = min(lo + block, n_end)
        k, c, s1, s2 = _exact_window(x, lo - x0, hi - x0)
        m = s1 / c if c > 0 else 0.0
        var = s2 / c - m * m if c > 0 else 0.0
        if var < 0.0:
            var = 0.0
        sd = math.sqrt(var)
        for j in range(max(lo, start), min(hi, stop)):
            v = x[j - x0]
            sc = np.nan
            if math.isfinite(v) and c >= 2:
                dev = abs(v - (k + m))
                if dev > threshold * sd:
                    idx[nflag] = j
                    score[nflag] = dev / sd if sd > 0.0 else np.inf
                    nflag += 1
                sc = dev / sd if sd > 0.0 else (0.0 if dev == 0.0 else np.inf)
            if want_dense:
                dense[j - start] = sc
    return nflag


def rolling_zscore_window(start: int, stop: int, n: int, window: int) -> tuple[int, int]:
    """Sample range the rolling kernel reads to score [start, stop)."""
    g = max(window, (start // RESYNC) * RESYNC)
    return max(0, min(start, g) - window), stop


def zscore(
    x: np.ndarray,
    window: int = 1000,
    threshold: float = 3.0,
    mode: str = "rolling",
    block: int = 1 << 16,
    scores: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Whole-array z-score: (sorted int64 indices, their scores, dense scores or None)."""
    x = np.ascontiguousarray(x)
    n = x.shape[0]
    idx = np.empty(n, np.int64)
    sc = np.empty(n, np.float64)
    dense = np.empty(n if scores else 0, np.float32)
    if mode == "rolling":
        k = _rolling_zscore(x, 0, 0, n, window, threshold, RESYNC, idx, sc, dense)
    else:
        k = _block_zscore(x, 0, 0, n, block, threshold, idx, sc, dense)
    return idx[:k].copy(), sc[:k].copy(), (dense if scores else None)


def preload() -> None:
    """Initialise numba and load the float64 rolling kernel from its cache (tiny input)."""
    zscore(np.zeros(4), window=2)
