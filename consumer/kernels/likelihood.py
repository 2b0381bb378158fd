"""Anomaly-likelihood kernel: seasonal surprise, Numenta's anomaly likelihood, onset score.

After Ahmad, Lavin, Purdy & Agha (2017), "Unsupervised real-time anomaly detection for
streaming data", Neurocomputing 262: an anomaly likelihood is the Gaussian tail
probability of a short-term mean of raw anomaly scores against the mean and variance of
that short-term mean over a long trailing history.  Here the raw anomaly score is the
"surprise" of a seasonal-naive forecast residual, and the emitted score marks the onset
of an alert so that a threshold on it gives one detection per event.

Per absolute sample ``i`` (windows clip at index 0, non-finite values are left out of
every window; ``T_A``, ``T_L`` are the tables of ``surprise_table``):

* ``r = x[i] - mean(finite x[i - k P], k = 1..m)`` (``P = 0``: ``x[i] - x[i-1]``);
* ``sc = sqrt(pi / 2) * mean |r|`` over ``[i - Ws, i)`` (floored at ``1e-9 |x[i] - r|``
  and ``1e-300``), ``z = |r| / sc``; ``a = T_A(z)``, set to 0 when ``a < a0`` or when
  fewer than ``nmin`` ``|r|`` are known (``a`` is ``-log10`` of the two-sided normal tail
  of ``z``, divided by 10 and clipped to 1);
* ``al = (a - a0) / (1 - a0)`` (0 when ``a <= a0``), ``ma`` = mean of ``al`` over
  ``[i - w + 1, i]``;  ``mu``, ``var`` = mean and population variance of ``ma`` over
  ``[i - w - Wl + 1, i - w]`` (floored at ``mumin``, ``vmin``; at least ``nmin`` values);
  ``L = T_L((ma - mu) / sqrt(var))`` when ``ma > mu``, else 0;
* ``g`` = number of ``j`` in ``[i - Ws + 1, i]`` with ``z[j] > zg``;
  ``s = max(wp * a * [g <= cg], L)`` (0 where ``x[i]`` is finite but ``r`` is not);
* the emitted score ``e = s`` if no ``s[j] >= c`` for ``j`` in ``[i - K, i)``, else 0;
  NaN iff ``x[i]`` is not finite.  Flags: ``e >= thr``.

Exactness: ``e[i]`` is a deterministic function of ``x[i - H : i + 1]`` and ``i``.  The
running sums (of ``|r|``, of ``al``, of ``ma`` and ``ma^2``) are recomputed from their
rings at every absolute multiple of ``B``, and a chunk call starts its warm-up at an
absolute multiple of ``B`` early enough that every state it uses is the state of a
whole-series call (see :func:`warm_blocks`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

TABLE_STEP = 1.0 / 128.0  # grid step of the tail tables (linear interpolation between nodes)
INV_STEP = 128.0
SURPRISE_MAX_Z = 6.5  # T_A reaches 1 at z = 6.47 (two-sided tail 1e-10)
LIKELIHOOD_MAX_Z = 8.5  # T_L is within 4e-8 of 1 beyond
RESIDUAL_BLOCK = 2048  # samples per vectorised residual pass


def surprise_table(max_z: float, one_sided: bool) -> np.ndarray:
    """Nodes ``T[k] = f(k h)``, ``h = TABLE_STEP``, ``k = 0 .. ceil(max_z / h)``.

    Two-sided (``T_A``): ``f(z) = min(1, -log10(erfc(z / sqrt 2)) / 10)``, the surprise
    of a residual of ``z`` scales.  One-sided (``T_L``): ``f(z) = min(1, -log10(erfc(z /
    sqrt 2) / 2 + 1e-10) / 10)``, NAB's log-likelihood ``-log10(1 - likelihood + 1e-10)``
    over 10.  Between nodes the kernel interpolates linearly (error below 4e-7), beyond
    the last node it takes the last node's value: the tables replace ``erfc`` and
    ``log`` in the per-sample loop.
    """
    n = int(math.ceil(max_z / TABLE_STEP))
    out = np.empty(n + 1)
    for k in range(n + 1):
        tail = math.erfc(k * TABLE_STEP / math.sqrt(2.0))
        v = -math.log10(0.5 * tail + 1e-10) if one_sided else -math.log10(tail)
        out[k] = min(1.0, max(0.0, v / 10.0))
    return out


SURPRISE = surprise_table(SURPRISE_MAX_Z, one_sided=False)
LIKELIHOOD = surprise_table(LIKELIHOOD_MAX_Z, one_sided=True)


@njit(cache=True, nogil=True, inline="always")
def _interp(table, z):
    """Linear interpolation of ``table`` (nodes every ``TABLE_STEP``) at ``z >= 0``.

    The trick that makes the kernel fast: ``-log10`` of a normal tail costs an ``erfc``
    and a ``log`` per call; a 1 k-node table read costs two loads from L1.
    """
    u = z * INV_STEP
    n = table.shape[0] - 1
    if u >= n:
        return table[n]
    k = int(u)
    lo = table[k]
    return lo + (u - k) * (table[k + 1] - lo)


def surprise_cut(a0: float) -> float:
    """The largest z whose surprise ``T_A(z)`` is certainly below ``a0`` (0 if a0 <= 0).

    The kernel skips the table for ``z <= surprise_cut(a0)`` (about 90% of samples at
    a0 = 0.1) and compares ``T_A(z) < a0`` exactly above it, so the cut changes no score.
    """
    if a0 <= 0.0:
        return 0.0
    lo, hi = 0.0, SURPRISE_MAX_Z
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _interp(SURPRISE, mid) < a0:
            lo = mid
        else:
            hi = mid
    return max(0.0, lo - 1e-9)


@njit(cache=True, nogil=True, inline="always")
def _residual(x, x0, j, P, m):
    """``x[j]`` minus the mean of its finite seasonal lags ``x[j - kP]``, ``k = 1..m``.

    ``P == 0``: ``x[j] - x[j-1]``.  NaN for ``j < 0``, a non-finite ``x[j]`` or no lag.
    """
    if j < 0:
        return np.nan
    v = x[j - x0]
    if P == 0:
        if j < 1:
            return np.nan
        return v - x[j - 1 - x0]
    s = 0.0
    c = 0
    for k in range(1, m + 1):
        t = j - k * P
        if t < 0:
            break
        u = x[t - x0]
        if u - u == 0.0:
            s += u
            c += 1
    if c == 0:
        return np.nan
    return v - s / c


@njit(cache=True, nogil=True)
def _residuals(x, x0, lo, hi, P, m, acc, cnt, out):
    """``_residual`` for every ``j`` in ``[lo, hi)`` into ``out[j - lo]``.

    Lag-major loops over slices, with selects instead of branches: indices that start
    at 0 let LLVM drop numba's negative-index wraparound and vectorise (6x faster than
    the per-sample lag loop).  The lags are summed in the same order (k = 1..m) as in
    ``_residual``, so the results are the same bits.
    """
    n = hi - lo
    xv = x[lo - x0 : hi - x0]
    if P == 0:
        for q in range(n):
            out[q] = xv[q] - x[lo + q - 1 - x0] if lo + q >= 1 else np.nan
        return
    for q in range(n):
        acc[q] = 0.0
        cnt[q] = 0.0
    for k in range(1, m + 1):
        first = max(lo, k * P)
        if first >= hi:
            break
        xs = x[first - k * P - x0 : hi - k * P - x0]
        a = acc[first - lo : n]
        c = cnt[first - lo : n]
        for q in range(xs.shape[0]):
            u = xs[q]
            ok = u - u == 0.0
            a[q] += u if ok else 0.0
            c[q] += 1.0 if ok else 0.0
    for q in range(n):
        c0 = cnt[q]
        out[q] = xv[q] - acc[q] / c0 if c0 > 0.0 else np.nan


@njit(cache=True, nogil=True)
def _likelihood(
    x,
    x0,
    start,
    stop,
    P,
    m,
    Ws,
    w,
    Wl,
    a0,
    zc,
    wp,
    zg,
    cg,
    mumin,
    vmin,
    nmin,
    c,
    K,
    thr,
    B,
    nb,
    ta,
    tl,
    idx,
    score,
    dense,
):
    """Emitted scores of absolute samples ``[start, stop)``; flags where ``e >= thr``.

    Definition in the module docstring.  One fused O(1) pass per
    sample after a vectorised residual pass per block of samples:

    * rings for ``|r|`` and the gate bits (``Ws``), ``al`` (``w``) and ``ma``
      (``Wl + w``); running sums of ``|r|``, ``al``, ``ma`` and ``ma^2`` updated in O(1)
      and recomputed from the rings at every absolute multiple of ``B`` (bounded
      rounding drift, identical for every chunking); the gate count is an exact integer;
    * ``a`` only evaluated above ``zc`` (``surprise_cut(a0)``) and ``L`` only when
      ``ma > mu``, both by table interpolation (``ta``, ``tl``);
    * the onset rule keeps the last index with ``s >= c``.

    ``x`` holds absolute samples ``[x0, x0 + len(x))`` from ``first_needed(start)`` on.
    A call with ``start > 0`` starts at ``t0 = ((start - K) // B - nb) * B`` (clipped at
    0): every state is exact from ``t0 + nb * B <= start - K`` on.  Flagged indices
    and their scores go to ``idx``/``score`` (the count is returned); ``dense``, if not
    empty, receives ``float32(e)`` for every sample of ``[start, stop)``.
    """
    want_dense = dense.shape[0] > 0
    t0 = 0
    if start > 0:
        t0 = ((start - K) // B - nb) * B
        if t0 < 0:
            t0 = 0
    ra = np.empty(Ws, np.float64)
    ga = np.zeros(Ws, np.int64)
    ar = np.empty(w, np.float64)
    nm = Wl + w
    mr = np.empty(nm, np.float64)
    for q in range(nm):
        mr[q] = np.nan
    for q in range(w):
        ar[q] = np.nan
    for j in range(t0 - Ws, t0):
        ra[j % Ws] = abs(_residual(x, x0, j, P, m))
    acc = np.empty(RESIDUAL_BLOCK, np.float64)
    cnt = np.empty(RESIDUAL_BLOCK, np.float64)
    rb = np.empty(RESIDUAL_BLOCK, np.float64)
    inv_a = 1.0 / (1.0 - a0)
    sa = 0.0
    ca = 0
    sw = 0.0
    cw = 0
    s1 = 0.0
    s2 = 0.0
    cm = 0
    ng = 0
    last_hit = -(1 << 62)
    nflag = 0
    pr = t0 % Ws
    pa = t0 % w
    pm = t0 % nm
    pin = (t0 - w) % nm
    nsync = t0
    for g in range(t0, stop, RESIDUAL_BLOCK):
        g1 = min(stop, g + RESIDUAL_BLOCK)
        _residuals(x, x0, g, g1, P, m, acc, cnt, rb)
        for j in range(g, g1):
            if j == nsync:  # exact recomputation of the running sums from the rings
                nsync += B
                sa = 0.0
                ca = 0
                for q in range(j - Ws, j):
                    u = ra[q % Ws]
                    if u - u == 0.0:
                        sa += u
                        ca += 1
                sw = 0.0
                cw = 0
                for q in range(j - w, j):
                    u = ar[q % w]
                    if u - u == 0.0:
                        sw += u
                        cw += 1
                s1 = 0.0
                s2 = 0.0
                cm = 0
                for q in range(j - nm, j - w):
                    u = mr[q % nm]
                    if u - u == 0.0:
                        s1 += u
                        s2 += u * u
                        cm += 1
            # ---- surprise of the residual
            rr = rb[j - g]
            xv = x[j - x0]
            a = np.nan
            gin = 0
            if rr - rr == 0.0:
                a = 0.0
                if ca >= nmin:
                    sc = 1.2533141373155003 * sa / ca
                    fl = 1e-9 * abs(xv - rr)
                    if sc < fl:
                        sc = fl
                    if sc < 1e-300:
                        sc = 1e-300
                    z = abs(rr) / sc
                    if z > zc:
                        a = _interp(ta, z)
                        if a < a0:
                            a = 0.0
                    if z > zg:
                        gin = 1
            old = ra[pr]
            nu = abs(rr)
            ra[pr] = nu
            ng += gin - ga[pr]
            ga[pr] = gin
            pr += 1
            if pr == Ws:
                pr = 0
            if old - old == 0.0:
                sa -= old
                ca -= 1
            if nu - nu == 0.0:
                sa += nu
                ca += 1
            # ---- short mean of al over [j - w + 1, j]
            al = (a - a0) * inv_a
            if al < 0.0:
                al = 0.0
            old = ar[pa]
            ar[pa] = al
            pa += 1
            if pa == w:
                pa = 0
            if old - old == 0.0:
                sw -= old
                cw -= 1
            ma = np.nan
            if al - al == 0.0:
                sw += al
                cw += 1
                ma = sw / cw
            # ---- history of ma over [j - w - Wl + 1, j - w]
            vin = mr[pin]
            pin += 1
            if pin == nm:
                pin = 0
            vout = mr[pm]  # ma[j - nm], about to be overwritten
            if vin - vin == 0.0:
                s1 += vin
                s2 += vin * vin
                cm += 1
            if vout - vout == 0.0:
                s1 -= vout
                s2 -= vout * vout
                cm -= 1
            mr[pm] = ma
            pm += 1
            if pm == nm:
                pm = 0
            # ---- raw score s and the emitted onset score e
            s = np.nan
            if xv - xv == 0.0:
                s = 0.0
                if ma - ma == 0.0:
                    s = wp * a if ng <= cg else 0.0
                    if cm >= nmin:
                        mu = s1 / cm
                        var = s2 / cm - mu * mu
                        if mu < mumin:
                            mu = mumin
                        if var < vmin:
                            var = vmin
                        if ma > mu:
                            lk = _interp(tl, (ma - mu) / math.sqrt(var))
                            if lk > s:
                                s = lk
            e = s if last_hit < j - K else (0.0 if s - s == 0.0 else s)
            if s >= c:
                last_hit = j
            if j >= start:
                if e >= thr:
                    idx[nflag] = j
                    score[nflag] = e
                    nflag += 1
                if want_dense:
                    dense[j - start] = e
    return nflag


def warm_blocks(scale_window: int, short_window: int, long_window: int, block: int) -> int:
    """Whole blocks of warm-up before a chunk call's first exact state.

    ``|r|`` and ``a`` are exact from the warm-up start ``t0`` (its ring is prefilled from
    ``x``), the gate count from ``t0 + Ws``, ``ma`` from the first resync after ``t0``
    (``t0 + B``), and the ``ma`` history sums from the first resync whose window
    ``[t0 + kB - w - Wl, t0 + kB - w)`` starts at or after ``t0 + B``.
    """
    return max(-(-scale_window // block), 1 + -(-(long_window + short_window) // block))


def lag_reach(period: int, lags: int) -> int:
    """How far back the residual of a sample reads (``lags * period``, or 1 for P = 0)."""
    return lags * period if period > 0 else 1


def first_needed(
    start: int, period: int, lags: int, scale_window: int, quiet: int, block: int, nb: int
) -> int:
    """Smallest absolute index the kernel reads to score samples from ``start`` on."""
    t0 = max(0, ((start - quiet) // block - nb) * block) if start > 0 else 0
    return max(0, t0 - scale_window - lag_reach(period, lags))


def halo(period: int, lags: int, scale_window: int, quiet: int, block: int, nb: int) -> int:
    """Samples of history any chunk needs before its first scored sample (an upper bound)."""
    return quiet + block - 1 + nb * block + scale_window + lag_reach(period, lags)
