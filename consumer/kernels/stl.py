"""STL: Seasonal-Trend decomposition based on Loess, as numba kernels.

Reference: R. B. Cleveland, W. S. Cleveland, J. E. McRae and I. Terpenning (1990),
"STL: A Seasonal-Trend Decomposition Procedure Based on Loess", Journal of
Official Statistics 6(1), 3-73 (below: "the paper").  The procedure, its
parameters (n_p, n_s, n_t, n_l, the jumps, n_i, n_o) and the numerical details
of its reference implementation (tricube weights with the 0.001/0.999 cut-offs,
the degeneracy test of the local-linear fit, end-point extrapolation of the
cycle-subseries, robustness bisquare weights on 6 * median |residual|) follow
the paper; results agree with ``statsmodels.tsa.seasonal.STL`` (itself a port
of the paper's Fortran) to rounding error.

Names.  The arguments are statsmodels'; the kernels use the paper's (and its
Fortran's) short names, and :class:`_Config` carries the arguments to them:

=================  ===============  =================================================
paper              argument         in the kernels
=================  ===============  =================================================
n_p                period           ``period`` (``p`` in derivations)
n_s                seasonal         ``ns``: cycle-subseries Loess length (step 2)
n_l                low_pass         ``nl``: low-pass Loess length (step 3)
n_t                trend            ``ntr``: trend Loess length (step 6; ``nt`` is
                                    the thread count here)
n_i                inner_iter       ``ni``: passes of the inner loop
n_o                outer_iter       ``no``: robustness iterations (outer loop)
jumps (the         seasonal_jump,   ``nsjump``, ``nljump``, ``ntjump`` / ``jump``,
paper's shortcut)  low_pass_jump,   ``nj`` (Loess evaluated every ``nj``-th point,
                   trend_jump       linear interpolation in between)
degrees            seasonal_deg,    ``isdeg``, ``ildeg``, ``itdeg`` / ``deg`` (0 or 1:
                   low_pass_deg,    locally constant or linear fits)
                   trend_deg
rho (weights)      --               ``rw`` (robustness weights, outer loop);
                                    ``userw``: whether a fit uses them
Y, T, S, R         x, trend,        ``y``, ``trend``, ``season``, ``resid``
                   seasonal, resid
C, L               --               ``c`` (smoothed cycle-subseries, extended by one
                                    period at both ends), the low-pass ``L``
q (neighbours)     --               a Loess ``length``; ``q`` here is the half-window
                                    ``(length - 1) // 2``
lambda_q(x)        --               ``h``: bandwidth of the tricube weights ``W``
                                    (``tab``, ``taps`` for symmetric windows)
=================  ===============  =================================================

Layout (house style): each numba kernel is a private ``_name`` function whose
docstring cites the step of the paper it implements and the trick it uses; the
public wrappers (:func:`stl_decompose`, :func:`stl_radius`,
:func:`stl_alignment`) validate arguments and pick a kernel.

The speed trick.  With equally spaced abscissae, unit robustness weights and a
Loess window lying fully inside the series, the window of point ``i`` is
``[i - q, i + q]`` (``q = (len - 1) // 2``), the tricube weights depend on
``|j - i|`` only and, the window being symmetric, the weighted mean of the
abscissae is ``i`` itself, so the slope term of a degree-1 fit vanishes at the
centre.  The Loess fit is then a fixed symmetric FIR filter with the normalised
tricube taps (the two end taps are 0 because the paper's weights vanish for
``|j - i| > 0.999 h``), for degree 0 and 1 alike.  All interior points are thus
computed as a convolution (blocked, vectorised by LLVM, symmetric pairs
``x[i-d] + x[i+d]`` share one multiply); the general weighted local regression
runs only for jumped evaluation grids, when robustness weights are in use, and
for the ends of the cycle-subseries.  The ``q`` first and last points of the
low-pass and trend smoothers are linear in the data too, with weights that do
not depend on it: they are built once ("end kernels") and applied as a small
matrix product in every pass.  The cycle-subseries smoothing is the same
convolution on the flat series with stride ``period``: its interior is the
contiguous flat range ``[q_s * period, n - q_s * period)``.  The three moving
averages of the low-pass filter are O(1) per sample, with running sums
anchored at absolute positions (:func:`_window_sum`).  The element-wise
steps (detrend, ``S = C - L``, deseasonalise, remainder) ride on the
smoothers' blocks, so one inner pass costs four sweeps over memory.

Canonical arithmetic.  Every output sample is a fixed expression of the data
in its dependency window: the convolutions sum their taps in a fixed order,
the moving averages restart their sums at absolute positions, and nothing
depends on block boundaries or on where the computation started.  Hence:

* chunked use: :func:`stl_radius` and :func:`stl_alignment` say which samples
  of a window ``x[a:b]`` equal, bit for bit, the whole-series decomposition
  (non-robust STL), so that a long stream can be decomposed chunk by chunk
  with a halo and give exactly the result of one whole-series call;
* threads: the serial kernel is ``nogil`` and safe to run on several Python
  threads at once (one series each).  For one long non-robust series,
  ``threads=k`` decomposes ``k`` haloed windows on ``k`` Python threads (one
  fork/join per call); robust or short series use the ``prange`` twins of the
  block drivers.  Both return the serial kernel's bits.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numba
import numpy as np
from numba import njit, prange

from shared.params import ParamError, Rule, integer

__all__ = [
    "STLResult",
    "stl_alignment",
    "stl_decompose",
    "stl_default_lengths",
    "stl_radius",
    "trend_decompose",
]

# Outputs per block of the FIR convolutions (8 KiB of float64: the block and
# the input it reads stay in L1) and of the restarted running sums.  The block
# partition is a function of the series length only, never of the number of
# threads, which is what makes the serial and threaded results bit-identical.
_FIR_BLOCK = 1024
_MA_BLOCK = 16384

# Epilogue modes of :func:`_epilogue_block`: the element-wise steps of the
# paper fused behind a smoother's blocks.  Numba reads module-level ints as
# compile-time constants; callers pass them as ``zero + _EPI_...`` (a runtime
# value), as a literal argument would compile an extra specialisation.
_TILE = 32  # end-kernel columns computed together (:func:`_apply_end_direct`, :func:`_end_moments`)
_EPI_NONE = 0  # nothing (the strided FIR of the cycle-subseries, step 2)
_EPI_DETREND = 1  # after the trend Loess (step 6): next pass's detrended series (step 1)
_EPI_SEASONAL = 2  # after the low-pass Loess: S = C - L (step 4), deseasonalised Y - S (step 5)
_EPI_REMAINDER = 3  # after the last trend Loess: the remainder R = Y - S - T


class _Config(NamedTuple):
    """The validated parameters of one decomposition, as :func:`_stl_kernel` takes them.

    Python ints, so numba types it as one homogeneous named tuple of int64
    (a single compiled signature); fields named as :func:`stl_decompose`'s
    arguments, with the paper's names (module docstring) alongside.
    """

    period: int  # n_p
    seasonal: int  # n_s
    trend: int  # n_t
    low_pass: int  # n_l
    seasonal_deg: int
    trend_deg: int
    low_pass_deg: int
    seasonal_jump: int
    trend_jump: int
    low_pass_jump: int
    inner_iter: int  # n_i
    outer_iter: int  # n_o
    missing: int  # 1 when x holds NaN (missing values): every fit of steps 2 and 6 is weighted


# --------------------------------------------------------------------------
# Loess building blocks
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _tricube(r, h):
    """Tricube neighbourhood weight of the paper's Loess.

    ``W(u) = (1 - u^3)^3`` with ``u = r / h``; as in the paper's reference code
    a distance ``r <= 0.001 h`` gets weight exactly 1 and ``r > 0.999 h`` weight
    exactly 0 (so the two outermost points of a full window never contribute).
    """
    if r <= 0.999 * h:
        if r <= 0.001 * h:
            return 1.0
        u = r / h
        t = 1.0 - u * u * u
        return t * t * t
    return 0.0


@njit(cache=True, nogil=True)
def _tricube_table(q):
    """Unnormalised tricube weights ``W(d / q)`` for ``d = 0..q`` (``h = q``).

    Trick: every window that is symmetric about its point (the interior of a
    series) has ``h = q``, so its weights are read from this table instead of
    being recomputed per point.
    """
    tab = np.empty(q + 1)
    hf = float(q)
    for d in range(q + 1):
        tab[d] = _tricube(float(d), hf)
    return tab


@njit(cache=True, nogil=True)
def _sym_taps(tab, q):
    """Normalised symmetric FIR taps of an interior Loess fit (see module doc).

    ``taps[d]`` multiplies ``x[i - d] + x[i + d]`` (``taps[0]`` multiplies
    ``x[i]``); the tap at ``d = q`` is 0 and dropped.  Degree 0 and degree 1
    share the taps: with a symmetric window the local slope does not change the
    fitted value at the centre.
    """
    taps = np.empty(max(q, 1))
    if q == 0:
        taps[0] = 1.0
        return taps
    s = tab[0]
    for d in range(1, q):
        s += 2.0 * tab[d]
    for d in range(q):
        taps[d] = tab[d] / s
    return taps


@njit(cache=True, nogil=True)
def _est(y, rw, userw, n, length, deg, xs, nleft, nright, rng, tab, q):
    """One local regression of the paper (Loess at abscissa ``xs``).

    Fits a weighted polynomial of degree ``deg`` (0 or 1) to ``y[nleft..nright]``
    with tricube weights of bandwidth ``h = max(xs - nleft, nright - xs)``
    (widened by ``(length - n) // 2`` when the requested window exceeds the
    series) times the robustness weights ``rw`` when ``userw``, and returns
    ``(fitted value, ok)``; ``ok`` is False when all weights vanish.  As in the
    paper's reference code the slope is dropped when the weighted spread of the
    abscissae is degenerate, ``sqrt(c) <= 0.001 * rng`` (``rng`` = series
    length - 1).

    Trick: one pass accumulating the five weighted moments in abscissae centred
    on ``xs`` (no cancellation), then the closed form of the local-linear fit
    evaluated at ``xs``; symmetric windows read their weights from ``tab``.
    """
    h = max(xs - nleft, nright - xs)
    if length > n:
        h += (length - n) // 2
    hf = float(h)
    h9 = 0.999 * hf
    h1 = 0.001 * hf
    ih = 1.0 / hf if h > 0 else 0.0
    use_tab = h == q
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    t0 = 0.0
    t1 = 0.0
    for j in range(nleft, nright + 1):
        d = j - xs
        if use_tab:
            w = tab[abs(d)]
        else:
            r = float(abs(d))
            if r > h9:
                continue
            if r <= h1:
                w = 1.0
            else:
                u = r * ih
                t = 1.0 - u * u * u
                w = t * t * t
        if userw:
            w *= rw[j]
            if w == 0.0:
                continue  # adds +-0 to every sum (bit-identical), and skips missing y[j]
        df = float(d)
        wd = w * df
        yj = y[j]
        s0 += w
        s1 += wd
        s2 += wd * df
        t0 += w * yj
        t1 += wd * yj
    if s0 <= 0.0:
        return 0.0, False
    m0 = t0 / s0
    if h > 0 and deg > 0:
        a = s1 / s0
        c = s2 / s0 - a * a
        if math.sqrt(c) > 0.001 * rng:
            return m0 + (-a / c) * (t1 / s0 - a * m0), True
    return m0, True


@njit(cache=True, nogil=True)
def _point(y, rw, userw, n, length, deg, xs, centre, rng, tab, taps, q):
    """Loess value at ``xs`` using the window the paper assigns to ``centre``.

    The window is the ``length`` points nearest ``centre``, clipped to the
    series (the whole series when ``length >= n``); ``centre != xs`` only for
    the last point of a jumped grid, which reuses the last grid point's window.
    When the fit fails (all weights zero) the data value is returned, as in the
    paper.  Trick: an unweighted symmetric window is the FIR dot product.
    """
    nleft = max(0, min(centre - q, n - length))
    nright = min(n - 1, nleft + length - 1)
    if (not userw) and length < n and nleft == xs - q:
        v = taps[0] * y[xs]
        for d in range(1, q):
            v += taps[d] * (y[xs - d] + y[xs + d])
        return v
    v, ok = _est(y, rw, userw, n, length, deg, xs, nleft, nright, rng, tab, q)
    if ok:
        return v
    return y[xs]


@njit(cache=True, nogil=True)
def _interpolate_tail(y, rw, userw, n, length, deg, nj, rng, tab, taps, q, out):
    """Jumped grid: fit the last point with the last grid point's window.

    Also fills the points between the last grid point and the last point by
    linear interpolation (the paper's reference code does the same).
    """
    last = ((n - 1) // nj) * nj
    if last != n - 1:
        out[n - 1] = _point(y, rw, userw, n, length, deg, n - 1, last, rng, tab, taps, q)
        if last != n - 2:
            delta = (out[n - 1] - out[last]) / (n - 1 - last)
            for j in range(last + 1, n - 1):
                out[j] = out[last] + delta * (j - last)


@njit(cache=True, nogil=True)
def _interpolate_range(out, n, nj, lo, hi):
    """Linear interpolation between consecutive grid points ``g, g + nj``.

    The paper's jumps (fit every ``nj``-th point, interpolate in between):
    fills the non-grid points ``j`` with ``lo <= j < hi`` whose right grid
    point ``g + nj`` exists (``g + nj <= n - 1``); the tail after the last grid
    point is handled by :func:`_interpolate_tail`.
    """
    g = (lo // nj) * nj
    while g < hi and g + nj <= n - 1:
        delta = (out[g + nj] - out[g]) / nj
        j0 = max(g + 1, lo)
        j1 = min(g + nj, hi)
        for j in range(j0, j1):
            out[j] = out[g] + delta * (j - g)
        g += nj


@njit(cache=True, nogil=True)
def _fill_nearest(out, n):
    """Missing values: a position without a fit takes the nearest fitted value.

    ``out[:n]`` is a smoothed (sub)series in which NaN marks the positions whose
    Loess neighbourhood holds no available point with a positive weight; each
    takes the value of the nearest position that has a fit (the left one on a
    tie).  Nothing changes when every position has a fit.
    """
    last = -1  # last fitted position seen from the left
    i = 0
    while i < n:
        if out[i] == out[i]:
            last = i
            i += 1
            continue
        j = i
        while j < n and out[j] != out[j]:
            j += 1
        # out[i:j] has no fit; neighbours last (< i, or -1) and j (< n, or n)
        for t in range(i, j):
            if last < 0:
                if j < n:
                    out[t] = out[j]
            elif j >= n or t - last <= j - t:
                out[t] = out[last]
            else:
                out[t] = out[j]
        i = j


@njit(cache=True, nogil=True)
def _loess_serial(y, rw, userw, n, length, deg, jump, rng, tab, taps, out):
    """Loess smoothing of a whole (sub)series, the paper's inner-loop smoother.

    Evaluates the fit at every ``nj``-th point (``nj = min(jump, n - 1)``),
    always at the last point, and fills the gaps by linear interpolation.
    Used for the cycle-subseries when robustness weights or a seasonal jump
    rule out the strided FIR.
    """
    q = (length - 1) // 2
    if n < 2:
        out[0] = y[0]
        return
    nj = min(jump, n - 1)
    for i in range(0, n, nj):
        out[i] = _point(y, rw, userw, n, length, deg, i, i, rng, tab, taps, q)
    if nj > 1:
        _interpolate_tail(y, rw, userw, n, length, deg, nj, rng, tab, taps, q, out)
        _interpolate_range(out, n, nj, 0 * n, n)
    if userw:
        _fill_nearest(out, n)  # missing values: positions without a fit


# --------------------------------------------------------------------------
# The FIR fast path
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _fir_block(x, out, taps, q, stride, lo, hi):
    """Interior Loess as a symmetric FIR filter over outputs ``lo <= i < hi``.

    ``out[i] = taps[0] x[i] + sum_{d=1}^{q-1} taps[d] (x[i - d s] + x[i + d s])``
    with stride ``s`` (1 for the low-pass and trend smoothers, ``period`` for the
    cycle-subseries: the paper's subseries Loess on the flat series, see the
    module docstring).  Trick: tap-outer / sample-inner loops over contiguous
    views, so the inner loop is an axpy that LLVM vectorises without any
    reassociation (fastmath stays off), four symmetric tap pairs per sweep to
    cut the load/store traffic on ``out``; blocks of ``_FIR_BLOCK`` outputs
    keep ``out`` and the input it reads in L1.
    """
    m = hi - lo
    ob = out[lo:hi]
    xc = x[lo:hi]
    w0 = taps[0]
    for t in range(m):
        ob[t] = w0 * xc[t]
    d = 1
    while d + 3 < q:
        wa = taps[d]
        wb = taps[d + 1]
        wc = taps[d + 2]
        wd = taps[d + 3]
        oa = d * stride
        xam = x[lo - oa : hi - oa]
        xap = x[lo + oa : hi + oa]
        oa += stride
        xbm = x[lo - oa : hi - oa]
        xbp = x[lo + oa : hi + oa]
        oa += stride
        xcm = x[lo - oa : hi - oa]
        xcp = x[lo + oa : hi + oa]
        oa += stride
        xdm = x[lo - oa : hi - oa]
        xdp = x[lo + oa : hi + oa]
        for t in range(m):
            ob[t] = ob[t] + (
                (wa * (xam[t] + xap[t]) + wb * (xbm[t] + xbp[t]))
                + (wc * (xcm[t] + xcp[t]) + wd * (xdm[t] + xdp[t]))
            )
        d += 4
    while d < q:
        wa = taps[d]
        oa = d * stride
        xam = x[lo - oa : hi - oa]
        xap = x[lo + oa : hi + oa]
        for t in range(m):
            ob[t] = ob[t] + wa * (xam[t] + xap[t])
        d += 1


@njit(cache=True, nogil=True)
def _epilogue_block(mode, out, y, aux, aux_off, dout, lo, hi):
    """Element-wise steps fused behind a smoother, on ``lo <= i < hi``.

    ``mode`` ``_EPI_NONE``: nothing.  ``_EPI_DETREND`` (after the trend, step
    6): the next inner pass's detrended series (step 1), ``dout = y - out``.
    ``_EPI_SEASONAL`` (after the low-pass Loess, steps 4 and 5): ``out = C - L``
    is the seasonal (``aux = C`` read at ``aux_off + i``) and ``dout = y - out``
    the deseasonalised series.  ``_EPI_REMAINDER`` (last trend): the remainder
    ``dout = y - aux - out`` (``aux`` = seasonal).  Trick: run on a block just
    written by :func:`_fir_block`, so it costs no extra pass over memory.
    """
    if mode == _EPI_DETREND:
        for i in range(lo, hi):
            dout[i] = y[i] - out[i]
    elif mode == _EPI_SEASONAL:
        for i in range(lo, hi):
            v = aux[aux_off + i] - out[i]
            out[i] = v
            dout[i] = y[i] - v
    elif mode == _EPI_REMAINDER:
        for i in range(lo, hi):
            dout[i] = y[i] - aux[i] - out[i]


@njit(cache=True, nogil=True)
def _fir_group(x, out, taps, q, stride, lo, hi, b0, b1, mode, y, aux, aux_off, dout):
    """FIR blocks ``b0 <= b < b1`` of ``[lo, hi)``, each followed by its epilogue."""
    for b in range(b0, b1):
        s = lo + b * _FIR_BLOCK
        e = min(s + _FIR_BLOCK, hi)
        _fir_block(x, out, taps, q, stride, s, e)
        _epilogue_block(mode, out, y, aux, aux_off, dout, s, e)


@njit(cache=True, nogil=True, parallel=True)
def _fir_parallel(x, out, taps, q, stride, lo, hi, mode, y, aux, aux_off, dout, nt):
    """Threaded driver of :func:`_fir_group`: one contiguous run of blocks per
    thread (same block partition as the serial call, hence the same bits)."""
    nb = (hi - lo + _FIR_BLOCK - 1) // _FIR_BLOCK
    for g in prange(nt):
        _fir_group(
            x,
            out,
            taps,
            q,
            stride,
            lo,
            hi,
            g * nb // nt,
            (g + 1) * nb // nt,
            mode,
            y,
            aux,
            aux_off,
            dout,
        )


@njit(cache=True, nogil=True)
def _fir(x, out, taps, q, stride, lo, hi, mode, y, aux, aux_off, dout, nt):
    """Blocked FIR + epilogue over ``[lo, hi)``, serial or threaded."""
    if hi <= lo:
        return
    if nt > 1:
        _fir_parallel(x, out, taps, q, stride, lo, hi, mode, y, aux, aux_off, dout, nt)
    else:
        nb = (hi - lo + _FIR_BLOCK - 1) // _FIR_BLOCK
        _fir_group(x, out, taps, q, stride, lo, hi, 0 * nb, nb, mode, y, aux, aux_off, dout)


# --------------------------------------------------------------------------
# The general path (robustness weights, jumps, short series), threaded twins
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _points_range(y, rw, userw, n, length, deg, nj, rng, tab, taps, out, g0, g1):
    """General Loess at the grid points ``i = g * nj``, ``g0 <= g < g1``."""
    q = (length - 1) // 2
    for g in range(g0, g1):
        i = g * nj
        out[i] = _point(y, rw, userw, n, length, deg, i, i, rng, tab, taps, q)


@njit(cache=True, nogil=True, parallel=True)
def _points_parallel(y, rw, userw, n, length, deg, nj, rng, tab, taps, out, ng, nt):
    """Threaded driver of :func:`_points_range` (points are independent)."""
    for g in prange(nt):
        _points_range(
            y, rw, userw, n, length, deg, nj, rng, tab, taps, out, g * ng // nt, (g + 1) * ng // nt
        )


@njit(cache=True, nogil=True)
def _after_range(mode, out, y, aux, aux_off, dout, n, nj, lo, hi):
    """Interpolation of a jumped grid then the epilogue, on ``[lo, hi)``."""
    if nj > 1:
        _interpolate_range(out, n, nj, lo, hi)
    _epilogue_block(mode, out, y, aux, aux_off, dout, lo, hi)


@njit(cache=True, nogil=True, parallel=True)
def _after_parallel(mode, out, y, aux, aux_off, dout, n, nj, nt):
    """Threaded :func:`_after_range`: all interpolation before any epilogue.

    ``_EPI_SEASONAL`` rewrites ``out`` in place, and the interpolation of one
    range reads the grid point just past its end, so the two run as separate
    parallel loops (a barrier in between).
    """
    if nj > 1:
        for g in prange(nt):
            _interpolate_range(out, n, nj, g * n // nt, (g + 1) * n // nt)
    for g in prange(nt):
        _epilogue_block(mode, out, y, aux, aux_off, dout, g * n // nt, (g + 1) * n // nt)


@njit(cache=True, nogil=True)
def _end_kernel(kt, length, deg, rng):
    """Weights of the unweighted Loess fits at the ``q`` first points, into ``kt``.

    Near the ends of a series (longer than ``length``) the paper's window is
    the first ``length`` points for every ``xs < q``, with bandwidth
    ``h = length - 1 - xs``; the fit is linear in the data,
    ``fit[xs] = sum_j K[j, xs] y[j]``, with ``K`` built from the tricube
    weights and the local-linear correction (degeneracy scale ``rng``) as
    :func:`_est` applies them.  Trick: ``K`` does not depend on the data, so it
    is built once (the public wrapper even keeps it across calls) and reused
    by every inner pass, and by mirror symmetry (``d -> -d`` leaves the
    weights and the fitted value unchanged) it also serves the last ``q``
    points.  Stored transposed, ``kt`` is ``(length, q)``, so that applying it
    is a vectorised axpy per data point.
    """
    q = (length - 1) // 2
    tile = 8  # columns built together, so that writes to ``kt`` fill cache lines
    w = np.empty((tile, length))
    coef = np.empty((tile, 3))
    for x0 in range(0, q, tile):
        nx = min(tile, q - x0)
        for t in range(nx):
            xs = x0 + t
            h = length - 1 - xs
            hf = float(h)
            h9 = 0.999 * hf
            h1 = 0.001 * hf
            ih = 1.0 / hf
            wt = w[t]
            for j in range(length):  # branch-free: vectorised
                r = abs(float(j - xs))
                u = r * ih
                v = 1.0 - u * u * u
                wj = 1.0 if r <= h1 else v * v * v
                wt[j] = wj if r <= h9 else 0.0
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            for j in range(length):
                df = float(j - xs)
                wd = wt[j] * df
                s0 += wt[j]
                s1 += wd
                s2 += wd * df
            slope = 0.0
            a = 0.0
            if deg > 0:
                a = s1 / s0
                c = s2 / s0 - a * a
                if math.sqrt(c) > 0.001 * rng:
                    slope = -a / c
            coef[t, 0] = 1.0 / s0
            coef[t, 1] = slope
            coef[t, 2] = a
        for t in range(nx):  # the tile's columns stay in L2 while being filled
            xs = x0 + t
            c0 = coef[t, 0]
            c1 = coef[t, 1]
            c2 = coef[t, 2]
            wt = w[t]
            for j in range(length):
                kt[j, xs] = wt[j] * c0 * (1.0 + c1 * (float(j - xs) - c2))
    return kt


@njit(cache=True, nogil=True)
def _end_moments(length, mom):
    """Moments ``s0, s1, s2`` of the tricube weights of the ``q`` end columns, into ``mom``.

    Column ``xs < q`` of :func:`_end_kernel` fits the first ``length`` points
    with bandwidth ``h = length - 1 - xs``; ``mom[:, xs]`` are its weighted
    moments ``sum w``, ``sum w d``, ``sum w d^2`` (``d = j - xs``), summed over
    ``j`` in order as :func:`_end_kernel` sums them.  They depend on ``length``
    only (the public wrapper keeps them across calls), and
    :func:`_end_coefficients` turns them into a column's fit coefficients.
    Trick: ``j`` outer and a tile of ``_TILE`` columns inner, so the moment
    sums are independent chains that vectorise without reassociation.
    """
    q = (length - 1) // 2
    tile = _TILE
    ih = np.empty(tile)
    h9 = np.empty(tile)
    h1 = np.empty(tile)
    xsf = np.empty(tile)
    s0 = np.empty(tile)
    s1 = np.empty(tile)
    s2 = np.empty(tile)
    for x0 in range(0, q, tile):
        nx = min(tile, q - x0)
        for t in range(tile):
            xs = min(x0 + t, q - 1)  # a short last tile repeats its last column
            hf = float(length - 1 - xs)
            ih[t] = 1.0 / hf
            h9[t] = 0.999 * hf
            h1[t] = 0.001 * hf
            xsf[t] = float(xs)
            s0[t] = 0.0
            s1[t] = 0.0
            s2[t] = 0.0
        for j in range(length):
            fj = float(j)
            for t in range(_TILE):
                df = fj - xsf[t]
                r = abs(df)
                u = r * ih[t]
                v = 1.0 - u * u * u
                wv = 1.0 if r <= h1[t] else v * v * v
                wv = wv if r <= h9[t] else 0.0
                wd = wv * df
                s0[t] += wv
                s1[t] += wd
                s2[t] += wd * df
        for t in range(nx):
            mom[0, x0 + t] = s0[t]
            mom[1, x0 + t] = s1[t]
            mom[2, x0 + t] = s2[t]
    return mom


@njit(cache=True, nogil=True)
def _end_coefficients(mom, deg, rng, coef):
    """Fit coefficients ``1 / s0``, slope, ``a`` of each end column, into ``coef`` (``3 x q``).

    From the moments of :func:`_end_moments`, with the local-linear correction
    and its degeneracy test (scale ``rng``) as :func:`_end_kernel` applies them:
    the kernel weight of column ``xs`` at ``j`` is
    ``w * coef[0] * (1 + coef[1] * ((j - xs) - coef[2]))``.
    """
    q = mom.shape[1]
    for t in range(q):
        slope = 0.0
        a = 0.0
        if deg > 0:
            a = mom[1, t] / mom[0, t]
            c = mom[2, t] / mom[0, t] - a * a
            if math.sqrt(c) > 0.001 * rng:
                slope = -a / c
        coef[0, t] = 1.0 / mom[0, t]
        coef[1, t] = slope
        coef[2, t] = a
    return coef


@njit(cache=True, nogil=True)
def _apply_end_direct(length, coef, y, n, out):
    """:func:`_apply_end_kernel` without storing the kernel, from the columns' coefficients.

    For long smoothers (the kernel is ``length x q`` float64: 1.5 GB for a trend
    of 19 000 samples) each tile of ``_TILE`` columns recomputes its tricube
    weights and kernel values as :func:`_end_kernel` does, from the cached fit
    coefficients ``coef`` (:func:`_end_coefficients`), and applies them at once,
    accumulating over ``j`` in the same order as :func:`_apply_end_kernel`: the
    same bits, memory ``O(q)``.  Trick: ``j`` outer and the tile's columns
    inner, so the head/tail sums are independent chains that vectorise without
    reassociation (a tile of 32 columns: LLVM vectorises the column loop,
    where 8 columns were unrolled into scalar code at a quarter of the speed).
    """
    q = (length - 1) // 2
    tile = _TILE
    ih = np.empty(tile)
    h9 = np.empty(tile)
    h1 = np.empty(tile)
    xsf = np.empty(tile)
    c0 = np.empty(tile)
    c1 = np.empty(tile)
    c2 = np.empty(tile)
    head = np.empty(tile)
    tail = np.empty(tile)
    for x0 in range(0, q, tile):
        nx = min(tile, q - x0)
        for t in range(tile):
            xs = min(x0 + t, q - 1)  # a short last tile repeats its last column
            hf = float(length - 1 - xs)
            ih[t] = 1.0 / hf
            h9[t] = 0.999 * hf
            h1[t] = 0.001 * hf
            xsf[t] = float(xs)
            c0[t] = coef[0, xs]
            c1[t] = coef[1, xs]
            c2[t] = coef[2, xs]
            head[t] = 0.0
            tail[t] = 0.0
        for j in range(length):
            fj = float(j)
            a_ = y[j]
            b_ = y[n - 1 - j]
            for t in range(_TILE):
                df = fj - xsf[t]
                r = abs(df)
                u = r * ih[t]
                v = 1.0 - u * u * u
                wv = 1.0 if r <= h1[t] else v * v * v
                wv = wv if r <= h9[t] else 0.0
                k = wv * c0[t] * (1.0 + c1[t] * (df - c2[t]))
                head[t] += k * a_
                tail[t] += k * b_
        for t in range(nx):
            out[x0 + t] = head[t]
            out[n - 1 - (x0 + t)] = tail[t]


@njit(cache=True, nogil=True)
def _apply_end_kernel(kt, y, n, out):
    """``out[:q]`` and ``out[n - q:]`` from the end kernel of :func:`_end_kernel`."""
    length, q = kt.shape
    head = out[0:q]
    tail = np.zeros(q)
    for t in range(q):
        head[t] = 0.0
    for j in range(length):
        row = kt[j]
        a = y[j]
        b = y[n - 1 - j]
        for t in range(q):
            head[t] += row[t] * a
            tail[t] += row[t] * b
    for t in range(q):
        out[n - 1 - t] = tail[t]


@njit(cache=True, nogil=True)
def _smooth(y, rw, userw, n, length, deg, jump, rng, out, nt, mode, ey, aux, aux_off, dout, kt):
    """Loess smoother of a contiguous series (low-pass step 3, trend step 6).

    Fast path (unit weights, no jump, window shorter than the series): the
    interior ``q <= i < n - q`` is the FIR convolution and the ``2 q`` end
    points apply the precomputed end kernel ``kt`` (:func:`_end_kernel`), or,
    for a kernel too big to store, recompute it from its columns' coefficients
    (``kt`` is then ``3 x q``, :func:`_apply_end_direct`).
    Otherwise every (grid) point is a general fit.  Either way the epilogue ``mode`` (see
    :func:`_epilogue_block`, with ``ey`` as ``y``) follows.
    """
    q = (length - 1) // 2
    tab = _tricube_table(q)
    taps = _sym_taps(tab, q)
    # The general fits take strided ("A" layout) views like the cycle-subseries
    # do, so that numba compiles them once.
    ya = y[::1]
    rwa = rw[::1]
    zero = 0 * n  # runtime constants: literals would add specialisations
    nj = max(1, min(jump, n - 1))
    if (not userw) and nj == 1 and length < n:
        _fir(y, out, taps, q, zero + 1, q, n - q, mode, ey, aux, aux_off, dout, nt)
        if kt.shape[0] == length:
            _apply_end_kernel(kt, y, n, out)
        elif kt.shape[0] == 3 and kt.shape[1] == q:  # too long to store: coefficients
            _apply_end_direct(length, kt, y, n, out)
        else:
            for i in range(q):
                out[i] = _point(ya, rwa, userw, n, length, deg, i, i, rng, tab, taps, q)
            for i in range(n - q, n):
                out[i] = _point(ya, rwa, userw, n, length, deg, i, i, rng, tab, taps, q)
        _epilogue_block(mode, out, ey, aux, aux_off, dout, zero, min(q, n))
        _epilogue_block(mode, out, ey, aux, aux_off, dout, max(n - q, q), n)
        return
    ng = (n - 1) // nj + 1
    if nt > 1:
        _points_parallel(ya, rwa, userw, n, length, deg, nj, rng, tab, taps, out, ng, nt)
    else:
        _points_range(ya, rwa, userw, n, length, deg, nj, rng, tab, taps, out, zero, ng)
    if nj > 1:
        _interpolate_tail(ya, rwa, userw, n, length, deg, nj, rng, tab, taps, q, out)
    if userw:
        # Missing values: positions whose neighbourhood has no available point take the
        # nearest fitted value, after the interpolation of a jumped grid.
        if nj > 1:
            _interpolate_range(out, n, nj, zero, n)
        _fill_nearest(out, n)
        nj = 1
    if nt > 1:
        _after_parallel(mode, out, ey, aux, aux_off, dout, n, nj, nt)
    else:
        _after_range(mode, out, ey, aux, aux_off, dout, n, nj, zero, n)


# --------------------------------------------------------------------------
# Step 2: cycle-subseries smoothing
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _subseries_one(d, rw, userw, n, period, j, ns, deg, jump, rng, tab, taps, fast, c, work):
    """Smooth cycle-subseries ``j`` and extend it by one period at both ends.

    Step 2 of the paper's inner loop: the subseries ``d[j::period]`` (length
    ``k``) is Loess-smoothed and the fit is extrapolated to positions ``-1``
    and ``k``; the result goes to ``c[j + (m + 1) * period]`` for
    ``m = -1..k`` (``c`` has ``n + 2 period`` entries).  With ``fast`` the
    interior positions ``q <= m < k - q`` were already written by the strided
    FIR convolution and only the ``2 q`` end positions are fitted here.
    """
    k = (n - 1 - j) // period + 1
    sub = d[j::period]
    srw = rw[j::period]
    q = (ns - 1) // 2
    if fast:
        for m in range(min(q, k)):
            c[j + (m + 1) * period] = _point(sub, srw, userw, k, ns, deg, m, m, rng, tab, taps, q)
        for m in range(max(q, k - q), k):
            c[j + (m + 1) * period] = _point(sub, srw, userw, k, ns, deg, m, m, rng, tab, taps, q)
    else:
        _loess_serial(sub, srw, userw, k, ns, deg, jump, rng, tab, taps, work)
        for m in range(k):
            c[j + (m + 1) * period] = work[m]
    zero = 0 * k  # runtime constants: literals would add specialisations
    nright = min(ns, k) - 1
    v, ok = _est(sub, srw, userw, k, ns, deg, zero - 1, zero, nright, rng, tab, q)
    c[j] = v if ok else c[j + period]
    nleft = max(0, k - ns)
    v, ok = _est(sub, srw, userw, k, ns, deg, k, nleft, k - 1, rng, tab, q)
    c[j + (k + 1) * period] = v if ok else c[j + k * period]


@njit(cache=True, nogil=True)
def _subseries_range(
    d, rw, userw, n, period, ns, deg, jump, tab, taps, fast, c, lo, hi, offset, total
):
    """Run :func:`_subseries_one` for the subseries ``lo <= j < hi``.

    Each subseries' degeneracy scale is ``k - 1`` for its length ``k`` in the
    whole series: for a window ``x[offset:offset + n]`` of a series of
    ``total`` samples, the window's subseries ``j`` is the whole series'
    subseries ``(offset + j) % period``.
    """
    work = np.empty((n - 1) // period + 1)
    for j in range(lo, hi):
        g = (offset + j) % period
        rng = float((total - 1 - g) // period)
        _subseries_one(d, rw, userw, n, period, j, ns, deg, jump, rng, tab, taps, fast, c, work)


@njit(cache=True, nogil=True, parallel=True)
def _subseries_parallel(
    d, rw, userw, n, period, ns, deg, jump, tab, taps, fast, c, offset, total, nt
):
    """Threaded driver of :func:`_subseries_range` (subseries are independent)."""
    for g in prange(nt):
        _subseries_range(
            d,
            rw,
            userw,
            n,
            period,
            ns,
            deg,
            jump,
            tab,
            taps,
            fast,
            c,
            g * period // nt,
            (g + 1) * period // nt,
            offset,
            total,
        )


@njit(cache=True, nogil=True)
def _cycle_subseries(d, rw, userw, n, period, ns, deg, jump, c, nt, offset, total):
    """Step 2 of the paper: smooth all cycle-subseries of ``d`` into ``c``.

    Trick: without robustness weights or jumps, the interior of every subseries
    is one strided FIR convolution over the contiguous flat range
    ``q * period <= i < n - q * period`` (written to ``c[period + i]``), and
    only the ``q`` first and last points of each subseries plus the two
    extrapolated points need a general fit.
    """
    q = (ns - 1) // 2
    tab = _tricube_table(q)
    taps = _sym_taps(tab, q)
    fast = (not userw) and jump == 1
    zero = 0 * n  # runtime constants: literals would add specialisations
    if fast:
        cv = c[period:]
        lo, hi = q * period, n - q * period
        _fir(d, cv, taps, q, period, lo, hi, zero + _EPI_NONE, d, d, zero, d, nt)
    if nt > 1:
        _subseries_parallel(
            d, rw, userw, n, period, ns, deg, jump, tab, taps, fast, c, offset, total, nt
        )
    else:
        _subseries_range(
            d, rw, userw, n, period, ns, deg, jump, tab, taps, fast, c, zero, period, offset, total
        )


# --------------------------------------------------------------------------
# Step 3: the moving averages of the low-pass filter
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _window_sum(x, x0, out, count, length, phase, pre):
    """``out[k] = sum(x[x0 + k : x0 + k + length])`` for ``0 <= k < count``.

    The paper's moving averages, O(1) per output and canonical.  Trick (the
    van Herk / Gil-Werman decomposition, applied to sums): cut the axis into
    lanes of ``length`` samples at the absolute positions where
    ``(phase + s) % length == 0`` (``s`` counted from ``x0``).  A window is
    either one whole lane or straddles exactly one cut ``B``; it is then the
    sum of its lane from ``B - 1`` down to ``k`` plus the sum of the
    next lane from ``B`` up to ``k + length - 1`` (``pre``).  Both are running
    sums restarted at the cuts, without subtraction (no cancellation), and
    every output is a fixed expression of the data of its own window: it does
    not depend on where the computation started (block, thread, chunk of a
    stream), so chunked decompositions equal the whole-series one bit for bit.
    Four lanes are scanned together so that their add chains overlap.
    ``pre`` is scratch of at least ``count + length - 1``.
    """
    L = length
    m = count + L - 1
    f0 = (L - phase % L) % L  # first cut at or after s = 0
    # Forward sums from each cut (the positions before the first cut are never
    # read).  Views keep the indices non-negative for LLVM.
    xv = x[x0 : x0 + m]
    nf = (m - f0 + L - 1) // L if m > f0 else 0
    i = 0
    while i + 4 <= nf and f0 + (i + 4) * L <= m:
        s0 = f0 + i * L
        x_0 = xv[s0 : s0 + L]
        x_1 = xv[s0 + L : s0 + 2 * L]
        x_2 = xv[s0 + 2 * L : s0 + 3 * L]
        x_3 = xv[s0 + 3 * L : s0 + 4 * L]
        p_0 = pre[s0 : s0 + L]
        p_1 = pre[s0 + L : s0 + 2 * L]
        p_2 = pre[s0 + 2 * L : s0 + 3 * L]
        p_3 = pre[s0 + 3 * L : s0 + 4 * L]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for u in range(L):
            a0 += x_0[u]
            p_0[u] = a0
            a1 += x_1[u]
            p_1[u] = a1
            a2 += x_2[u]
            p_2[u] = a2
            a3 += x_3[u]
            p_3[u] = a3
        i += 4
    while i < nf:
        s0 = f0 + i * L
        a0 = 0.0
        for t in range(s0, min(s0 + L, m)):
            a0 += xv[t]
            pre[t] = a0
        i += 1
    # Backward sums down from each cut give the window starts 0..count-1,
    # added to the forward sum of the next lane as they go; a window starting
    # at a cut is a whole lane, the forward sum alone.
    a0 = 0.0
    for t in range(f0 - 1, -1, -1):
        a0 += xv[t]
        if t < count:
            out[t] = a0 + pre[t + L - 1]
    nb = (count - f0 + L - 1) // L if count > f0 else 0
    i = 0
    while i + 4 <= nb and f0 + (i + 4) * L <= count:
        s0 = f0 + i * L
        x_0 = xv[s0 : s0 + L]
        x_1 = xv[s0 + L : s0 + 2 * L]
        x_2 = xv[s0 + 2 * L : s0 + 3 * L]
        x_3 = xv[s0 + 3 * L : s0 + 4 * L]
        p_0 = pre[s0 + L - 1 : s0 + 2 * L - 1]
        p_1 = pre[s0 + 2 * L - 1 : s0 + 3 * L - 1]
        p_2 = pre[s0 + 3 * L - 1 : s0 + 4 * L - 1]
        p_3 = pre[s0 + 4 * L - 1 : s0 + 5 * L - 1]
        o_0 = out[s0 : s0 + L]
        o_1 = out[s0 + L : s0 + 2 * L]
        o_2 = out[s0 + 2 * L : s0 + 3 * L]
        o_3 = out[s0 + 3 * L : s0 + 4 * L]
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        for v in range(L - 1):
            u = L - 1 - v
            a0 += x_0[u]
            o_0[u] = a0 + p_0[u]
            a1 += x_1[u]
            o_1[u] = a1 + p_1[u]
            a2 += x_2[u]
            o_2[u] = a2 + p_2[u]
            a3 += x_3[u]
            o_3[u] = a3 + p_3[u]
        o_0[0] = p_0[0]
        o_1[0] = p_1[0]
        o_2[0] = p_2[0]
        o_3[0] = p_3[0]
        i += 4
    while i < nb:
        s0 = f0 + i * L
        a0 = 0.0
        for v in range(L - 1):
            u = s0 + L - 1 - v
            a0 += xv[u]
            if u < count:
                out[u] = a0 + pre[u + L - 1]
        out[s0] = pre[s0 + L - 1]
        i += 1


@njit(cache=True, nogil=True)
def _lowpass_ma_block(c, m3, period, lo, hi, b1, b2, pre, phase):
    """Step 3's three moving averages (``period``, ``period``, 3) for ``m3[lo:hi]``.

    ``m3[t] = mean of M2[t..t+2]``, ``M2[r] = mean of M1[r..r+period-1]``,
    ``M1[s] = mean of c[s..s+period-1]`` (``c`` is the extended subseries fit,
    ``n + 2 period`` long, so ``m3`` is aligned with the series; ``c[lo]`` sits
    at the absolute position ``phase`` modulo ``period``).  Trick: fused per
    block with its halo in small scratch buffers (``b1``, ``b2``), canonical
    window sums (:func:`_window_sum`); the sums stay unscaled and one division
    by ``3 period^2`` per output, in a vectorised loop, replaces the three
    divisions.
    """
    m = hi - lo
    _window_sum(c, lo, b1, m + period + 1, period, phase, pre)
    _window_sum(b1, 0 * lo, b2, m + 2, period, phase, pre)
    scale = 3.0 * float(period) * float(period)
    ob = m3[lo:hi]
    for t in range(m):
        ob[t] = (b2[t] + b2[t + 1] + b2[t + 2]) / scale


@njit(cache=True, nogil=True)
def _ma_group(c, m3, period, n, blk, b0, b1_, offset):
    """Moving-average blocks ``b0 <= b < b1_`` with one scratch allocation."""
    s1 = np.empty(blk + period + 1)
    s2 = np.empty(blk + 2)
    pre = np.empty(blk + 2 * period + 1)
    for b in range(b0, b1_):
        lo = b * blk
        _lowpass_ma_block(c, m3, period, lo, min(lo + blk, n), s1, s2, pre, (offset + lo) % period)


@njit(cache=True, nogil=True, parallel=True)
def _ma_parallel(c, m3, period, n, blk, nt, offset):
    """Threaded driver of :func:`_ma_group`."""
    nb = (n + blk - 1) // blk
    for g in prange(nt):
        _ma_group(c, m3, period, n, blk, g * nb // nt, (g + 1) * nb // nt, offset)


@njit(cache=True, nogil=True)
def _lowpass_ma(c, m3, period, n, nt, offset):
    """The three moving averages of step 3 over the whole series.

    ``offset`` is the absolute position of ``c[0]`` (the window's offset in
    the whole series), which anchors the canonical lanes of
    :func:`_window_sum`.
    """
    blk = max(_MA_BLOCK, 16 * period)
    if nt > 1:
        _ma_parallel(c, m3, period, n, blk, nt, offset)
    else:
        _ma_group(c, m3, period, n, blk, 0 * n, (n + blk - 1) // blk, offset)


# --------------------------------------------------------------------------
# Robustness weights and the whole procedure
# --------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _robustness_weights(y, season, trend, rw, missing):
    """Outer loop of the paper: bisquare weights of the remainder.

    ``h = 6 median |R|`` (the true median, as in the corrected reference code
    statsmodels follows), ``rho = B(|R| / h)`` with ``B(u) = (1 - u^2)^2`` and
    the same 0.001/0.999 cut-offs as the tricube.
    """
    n = y.shape[0]
    r = np.empty(n)
    for i in range(n):
        r[i] = abs(y[i] - (trend[i] + season[i]))
    if missing:
        # The median of the available remainders; a missing sample's weight stays 0.
        cmad = 6.0 * np.median(r[np.isfinite(y)])
    else:
        cmad = 6.0 * np.median(r)
    c9 = 0.999 * cmad
    c1 = 0.001 * cmad
    for i in range(n):
        ri = r[i]
        if ri != ri:
            rw[i] = 0.0  # missing sample
        elif ri <= c1:
            rw[i] = 1.0
        elif ri <= c9:
            u = ri / cmad
            t = 1.0 - u * u
            rw[i] = t * t
        else:
            rw[i] = 0.0


@njit(cache=True, nogil=True)
def _stl_kernel(y, cfg, nt, offset, total, season, trend, resid, c, ds, rw, klp, ktr):
    """The STL procedure of the paper (inner loop ``n_i`` times, outer ``n_o``).

    ``cfg`` is a :class:`_Config`.  The paper's inner loop: 1 detrend,
    2 cycle-subseries smoothing (Loess ``n_s``) with one-period extension at
    both ends, 3 low-pass filter of the smoothed subseries (moving averages of
    length ``n_p``, ``n_p``, 3, then Loess ``n_l``), 4 ``S = C - L``,
    5 deseasonalise, 6 trend Loess ``n_t``.  Outer loop: robustness weights
    from the remainder, used by steps 2 and 6 (the low-pass Loess of step 3
    never uses them).  ``nt`` is the number of threads (1: serial drivers
    only).

    Buffers (all preallocated by the caller): ``season``, ``trend``, ``resid``
    (results, ``n``), ``c`` (``n + 2 period``), ``ds`` (``n``), ``rw`` (``n``, or
    1 when no outer iteration runs; left holding the weights of the last pass);
    ``klp`` and ``ktr`` are the end kernels (:func:`_end_kernel`) of the
    low-pass and trend smoothers, used by their FIR fast path (unused, any
    shape, when that path cannot apply).  ``resid`` doubles as the detrended
    series of step 1 and the moving-average output of step 3 until the last
    pass writes the remainder into it; steps 1, 4 and 5 are fused into the
    passes of the smoothers (see :func:`_epilogue_block`).  The block partition
    (hence every floating-point operation) is the same for every ``nt``.
    ``offset`` and ``total`` only set the degeneracy scale of the local-linear
    fits (the whole-series length).
    """
    n = y.shape[0]
    zero = 0 * n  # runtime constants: literals would add specialisations
    period = cfg.period  # n_p
    ni = cfg.inner_iter  # n_i
    no = cfg.outer_iter  # n_o
    if ni <= 0:
        for i in range(n):
            season[i] = 0.0
            trend[i] = 0.0
            resid[i] = y[i]
        return
    rng = float(total - 1)
    # Robustness weights (``userw``): none in the first outer pass, and never
    # in the low-pass Loess (step 3).  ``no_rw`` is a runtime False, like ``zero``.
    no_rw = zero != 0
    userw = cfg.missing != 0  # missing values: ``rw`` starts as the availability (1 or 0)
    for k in range(no + 1):
        for it in range(ni):
            # 1: the detrended series (trend = 0 on the very first pass)
            d = y if (k == 0 and it == 0) else resid
            # 2: cycle-subseries smoothing (n_s) -> c
            _cycle_subseries(
                d,
                rw,
                userw,
                n,
                period,
                cfg.seasonal,
                cfg.seasonal_deg,
                cfg.seasonal_jump,
                c,
                nt,
                offset,
                total,
            )
            # 3: moving averages -> resid (scratch)
            _lowpass_ma(c, resid, period, n, nt, offset)
            # 3, 4, 5: low-pass Loess (n_l); season = c - low-pass; ds = y - season
            _smooth(
                resid,
                rw,
                no_rw,
                n,
                cfg.low_pass,
                cfg.low_pass_deg,
                cfg.low_pass_jump,
                rng,
                season,
                nt,
                zero + _EPI_SEASONAL,
                y,
                c,
                zero + period,
                ds,
                klp,
            )
            # 6: trend Loess (n_t); then step 1 of the next pass, or the remainder
            last = k == no and it == ni - 1
            _smooth(
                ds,
                rw,
                userw,
                n,
                cfg.trend,
                cfg.trend_deg,
                cfg.trend_jump,
                rng,
                trend,
                nt,
                zero + (_EPI_REMAINDER if last else _EPI_DETREND),
                y,
                season,
                zero,
                resid,
                ktr,
            )
        if k < no:
            _robustness_weights(y, season, trend, rw, cfg.missing != 0)
            userw = True


def _trend_kernel(y, length, deg, no, missing, rng, season, trend, resid, rw, kt):
    """No seasonal component: the trend Loess (step 6) alone, ``no`` robustness iterations.

    ``season`` is all zeros; the remainder ``resid = y - trend`` (NaN where ``y``
    is missing).  The same smoother, missing-value rule and robustness weights
    as :func:`_stl_kernel`.  (A Python loop over the cached kernels: an njit
    wrapper loaded from numba's cache crashed here.)
    """
    n = y.shape[0]
    userw = bool(missing)
    for k in range(no + 1):
        _smooth(
            y, rw, userw, n, length, deg, 1, rng, trend, 1, _EPI_REMAINDER, y, season, 0, resid, kt
        )
        if k < no:
            _robustness_weights(y, season, trend, rw, bool(missing))
            userw = True


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


class _Components(NamedTuple):
    seasonal: np.ndarray
    trend: np.ndarray
    resid: np.ndarray


class STLResult(_Components):
    """What :func:`stl_decompose` returns: ``(seasonal, trend, resid)`` plus ``weights``.

    A named 3-tuple, so ``seasonal, trend, resid = stl_decompose(...)`` and
    ``stl_decompose(...)[2]`` work as for a plain tuple; ``weights`` is an extra
    attribute, not an element.  ``weights`` holds the robustness weights (the
    paper's rho, float64, one per sample) that the last pass used, equal to
    ``statsmodels``' ``STL(...).fit().weights`` to rounding error, whenever an
    outer iteration ran (``outer_iter > 0``, the default with ``robust=True``,
    and ``inner_iter > 0``); otherwise it is ``None``: no fit used robustness
    weights, which is what statsmodels reports as all ones.
    """

    weights: np.ndarray | None

    def __new__(
        cls,
        seasonal: np.ndarray,
        trend: np.ndarray,
        resid: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> STLResult:
        self = super().__new__(cls, seasonal, trend, resid)
        self.weights = weights
        return self

    def __repr__(self) -> str:
        w = "None" if self.weights is None else repr(self.weights)
        return f"{super().__repr__()[:-1]}, weights={w})"


# End kernels (:func:`_end_kernel`) depend on (length, degree, degeneracy scale)
# only: keep the recent ones, within a memory budget, so that a stream of
# chunks (same parameters every time) builds them once.
_END_KERNEL_BUDGET = 64 << 20
_end_kernels: OrderedDict[tuple[int, int, float], np.ndarray] = OrderedDict()
_end_kernels_lock = threading.Lock()
_NO_KERNEL = np.zeros((1, 1))


# Above the budget the kernel is recomputed tile by tile in each pass from its columns'
# fit coefficients (``3 x q``, :func:`_end_coefficients`), whose weight moments depend on
# the length only: they are kept here (a few recent lengths, O(length) floats each).
_end_moments_cache: OrderedDict[int, np.ndarray] = OrderedDict()
_END_MOMENTS_KEEP = 16


def _direct_end_coefficients(length: int, deg: int, rng: float) -> np.ndarray:
    with _end_kernels_lock:
        mom = _end_moments_cache.get(length)
        if mom is not None:
            _end_moments_cache.move_to_end(length)
    if mom is None:
        mom = _end_moments(length, np.empty((3, (length - 1) // 2)))
        with _end_kernels_lock:
            _end_moments_cache[length] = mom
            while len(_end_moments_cache) > _END_MOMENTS_KEEP:
                _end_moments_cache.popitem(last=False)
    return _end_coefficients(mom, deg, rng, np.empty_like(mom))


def _cached_end_kernel(length: int, deg: int, rng: float) -> np.ndarray:
    if length * ((length - 1) // 2) * 8 > _END_KERNEL_BUDGET:
        return _direct_end_coefficients(length, deg, rng)
    key = (length, deg, rng)
    with _end_kernels_lock:
        kt = _end_kernels.get(key)
        if kt is not None:
            _end_kernels.move_to_end(key)
            return kt
    kt = np.empty((length, (length - 1) // 2))  # numpy memory: huge pages, cheap faults
    _end_kernel(kt, length, deg, rng)
    if kt.nbytes <= _END_KERNEL_BUDGET:
        with _end_kernels_lock:
            _end_kernels[key] = kt
            total = sum(a.nbytes for a in _end_kernels.values())
            while total > _END_KERNEL_BUDGET:
                total -= _end_kernels.popitem(last=False)[1].nbytes
    return kt


# Argument rules (shared.params, one validation path for the project); the
# messages name the Python argument: "period must be an integer >= 2, got 1".
_PERIOD = integer(2, strict=True, what="an integer >= 2")
_SEASONAL = integer(3, odd=True, strict=True, what="an odd integer >= 3")
_DEGREE = integer(0, strict=True, what="0 or 1")
_AT_LEAST_1 = integer(1, strict=True, what="an integer >= 1")  # jumps, threads, total_length
_AT_LEAST_0 = integer(0, strict=True, what="an integer >= 0")  # iterations, offset


def _check(rule: Rule, name: str, value: Any) -> int:
    """``rule(name, value)``, taking numpy integers as the Python ints they hold."""
    return rule(name, int(value) if isinstance(value, np.integer) else value)


def _smoother_length(name: str, value: Any, period: int) -> int:
    """``trend`` or ``low_pass``: odd and longer than the period."""
    what = f"an odd integer >= 3 and > period ({period})"
    return _check(integer(max(3, period + 1), odd=True, strict=True, what=what), name, value)


def _degree(name: str, value: Any) -> int:
    deg = _check(_DEGREE, name, value)
    if deg > 1:
        raise ParamError(name, f"must be 0 or 1, got {value!r}")
    return deg


def _check_missing(y: np.ndarray, period: int) -> bool:
    """Whether ``y`` has missing values (NaN); refuse infinities and unusable series."""
    nan = np.isnan(y)
    if not nan.any():
        if not np.isfinite(y).all():
            raise ParamError("x", "must hold finite values or NaN (missing), not infinities")
        return False
    if np.isinf(y).any():
        raise ParamError("x", "must hold finite values or NaN (missing), not infinities")
    n = y.shape[0]
    if nan.all():
        raise ParamError("x", "is entirely missing (NaN)")
    # Every cycle-subseries needs an available value (counted per phase of the window).
    pad = (-n) % period
    per_phase = np.concatenate([~nan, np.zeros(pad, bool)]).reshape(-1, period).any(axis=0)
    if not per_phase.all():
        j = int(np.argmin(per_phase))
        raise ParamError(
            "x",
            f"has no available value at phase {j} of the period ({period}): every one of "
            f"x[{j}::{period}] is missing",
        )
    return True


def stl_default_lengths(
    period: int, seasonal: int = 7, trend: int | None = None, low_pass: int | None = None
) -> tuple[int, int]:
    """The ``(trend, low_pass)`` smoother lengths with statsmodels' defaults filled in.

    ``trend``: the smallest odd integer ``>= 1.5 period / (1 - 1.5 / seasonal)``;
    ``low_pass``: the smallest odd integer ``> period``.  Given values are
    returned unchanged (not validated: see :func:`stl_decompose`).
    """
    if trend is None:
        trend = int(math.ceil(1.5 * period / (1.0 - 1.5 / seasonal)))
        trend += trend % 2 == 0
    if low_pass is None:
        low_pass = period + 1
        low_pass += low_pass % 2 == 0
    return int(trend), int(low_pass)


def _check_lengths(
    period: object, seasonal: object, trend: object, low_pass: object
) -> tuple[int, int, int, int]:
    """Validated ``(period, seasonal, trend, low_pass)``, defaults filled in."""
    p = _check(_PERIOD, "period", period)
    s = _check(_SEASONAL, "seasonal", seasonal)
    t, lp = stl_default_lengths(
        p,
        s,
        None if trend is None else _smoother_length("trend", trend, p),
        None if low_pass is None else _smoother_length("low_pass", low_pass, p),
    )
    return p, s, t, lp


def _check_jumps(
    seasonal_jump: object, trend_jump: object, low_pass_jump: object
) -> tuple[int, int, int]:
    """Validated ``(seasonal_jump, trend_jump, low_pass_jump)``."""
    return (
        _check(_AT_LEAST_1, "seasonal_jump", seasonal_jump),
        _check(_AT_LEAST_1, "trend_jump", trend_jump),
        _check(_AT_LEAST_1, "low_pass_jump", low_pass_jump),
    )


def as_series(x: Any) -> np.ndarray:
    """``x`` as a contiguous float64 1-D array, or a ``ParamError`` naming ``x``."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ParamError("x", f"must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ParamError("x", f"must hold real numbers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def stl_decompose(
    x: np.ndarray,
    period: int,
    seasonal: int = 7,
    trend: int | None = None,
    low_pass: int | None = None,
    seasonal_deg: int = 1,
    trend_deg: int = 1,
    low_pass_deg: int = 1,
    robust: bool = False,
    seasonal_jump: int = 1,
    trend_jump: int = 1,
    low_pass_jump: int = 1,
    inner_iter: int | None = None,
    outer_iter: int | None = None,
    *,
    threads: int | None = 1,
    offset: int = 0,
    total_length: int | None = None,
) -> STLResult:
    """STL decomposition of ``x`` into ``(seasonal, trend, resid)`` (float64 arrays).

    Parameters, defaults and results are those of
    ``statsmodels.tsa.seasonal.STL(x, period, seasonal, trend, low_pass,
    seasonal_deg, trend_deg, low_pass_deg, robust, seasonal_jump, trend_jump,
    low_pass_jump).fit(inner_iter, outer_iter)`` to rounding error: ``trend``
    defaults to the smallest odd integer ``>= 1.5 period / (1 - 1.5 /
    seasonal)``, ``low_pass`` to the smallest odd integer ``> period``,
    ``inner_iter`` to 2 if ``robust`` else 5, ``outer_iter`` to 15 if ``robust``
    else 0.  ``resid = x - seasonal - trend``.  The result is an
    :class:`STLResult`: it unpacks as the 3-tuple ``(seasonal, trend, resid)``
    and also carries the robustness ``weights`` (``None`` when no outer
    iteration ran).

    Keyword-only extras:

    ``threads``: 1 (default) runs the serial ``nogil`` kernel, which may be
    called from several Python threads at once (one series each).  ``k > 1``
    uses ``min(k, numba.config.NUMBA_NUM_THREADS)`` threads, ``None`` all of
    them: a non-robust series of at least ``k * (2 R + 1)`` samples (``R`` from
    :func:`stl_radius`) is cut into ``k`` windows with halo ``R`` that run the
    serial kernel on Python threads; otherwise the kernel's ``prange`` drivers
    split each sweep (that path must not be entered from two Python threads at
    the same time: numba's threading layers are not all re-entrant).  Either
    way the result is bit-identical to ``threads=1``.

    ``offset``, ``total_length``: declare ``x`` to be the window
    ``full[offset:offset + len(x)]`` of a series of ``total_length`` samples
    (defaults: ``0`` and ``offset + len(x)``).  They only set the scale of the
    paper's degeneracy test of the local-linear fits, which drops the slope
    when the weighted spread of the abscissae is ``<= 0.001 (m - 1)`` for the
    length ``m`` of the (sub)series smoothed: with them, a window that touches
    an end of the whole series reproduces the whole series' values there (see
    :func:`stl_radius`).  Every ``total_length >= 1000 * max(seasonal *
    period, trend, low_pass) + 2 * period`` gives the same result, so a stream
    of unknown length may pass any such value.

    Missing values: NaN samples of ``x`` are missing (Cleveland et al. 1990,
    section on missing values), which statsmodels refuses.  The rule:

    1. The Loess fits of the cycle-subseries (step 2) and of the trend (step 6)
       give a missing sample weight 0 (its robustness weight is 0 as well); a
       neighbourhood is the same set of positions as for complete data (the
       ``length`` positions nearest the point, clipped to the (sub)series) with
       the same bandwidth, so the fit uses the available points in it.
    2. Every position gets a fit, missing ones included.  A fit whose
       neighbourhood holds no available point with a positive weight takes the
       fitted value of the nearest position of the same (sub)series that has
       one (the left one on a tie), after a jumped grid's interpolation.  The
       one-period extensions of a cycle-subseries fall back, as in the paper,
       to its end value.
    3. The low-pass filter (step 3) sees no missing values (the subseries fits
       are complete), so the seasonal and trend components are defined
       everywhere; ``resid`` is NaN exactly at the missing samples.
    4. Robustness weights use the median of the available ``|resid|``.

    On complete data nothing changes (the same bits as before missing values
    were accepted).  A series that is entirely missing, or in which some phase
    ``x[j::period]`` is entirely missing, is refused.  Threads give the same
    bits; the ``threads > 1`` split into haloed windows is not used with
    missing values.

    Raises :class:`shared.params.ParamError` (a
    :class:`shared.errors.UsageError` and ``ValueError``) naming the argument
    for invalid arguments: period < 2; seasonal, trend or low_pass not odd or
    < 3; trend or low_pass <= period; degrees other than 0 and 1; jumps < 1;
    negative iteration counts; ``x`` not one-dimensional, not real, holding
    infinities, entirely missing, missing a whole phase, or shorter than two
    periods.

    Returns
    -------
    STLResult
        ``seasonal``, ``trend`` and ``resid`` (float64 arrays of ``len(x)``); it
        unpacks as that 3-tuple and also carries ``weights``, the robustness
        weights of the last pass (None without a robustness iteration).

    Examples
    --------
    >>> import numpy as np
    >>> from consumer import stl_decompose
    >>> t = np.arange(240.0)
    >>> x = np.sin(2 * np.pi * t / 12) + 0.01 * t
    >>> seasonal, trend, resid = stl_decompose(x, 12)
    >>> bool(np.allclose(seasonal + trend + resid, x))
    True
    """
    period, seasonal, trend, low_pass = _check_lengths(period, seasonal, trend, low_pass)
    degs = (
        _degree("seasonal_deg", seasonal_deg),
        _degree("trend_deg", trend_deg),
        _degree("low_pass_deg", low_pass_deg),
    )
    jumps = _check_jumps(seasonal_jump, trend_jump, low_pass_jump)
    robust = bool(robust)
    ni = _check(
        _AT_LEAST_0, "inner_iter", (2 if robust else 5) if inner_iter is None else inner_iter
    )
    no = _check(
        _AT_LEAST_0, "outer_iter", (15 if robust else 0) if outer_iter is None else outer_iter
    )
    y = as_series(x)
    n = y.shape[0]
    if n < 2 * period:
        raise ParamError("x", f"must hold at least two periods ({2 * period} samples), got {n}")
    missing = _check_missing(y, period)
    off = _check(_AT_LEAST_0, "offset", offset)
    total = off + n if total_length is None else _check(_AT_LEAST_1, "total_length", total_length)
    if off + n > total:
        raise ParamError("offset", f"+ len(x) must be <= total_length, got {off} + {n} > {total}")
    if threads is None:
        nthreads = numba.config.NUMBA_NUM_THREADS
    else:
        nthreads = min(_check(_AT_LEAST_1, "threads", threads), numba.config.NUMBA_NUM_THREADS)

    cfg = _Config(
        period=period,
        seasonal=seasonal,
        trend=trend,
        low_pass=low_pass,
        seasonal_deg=degs[0],
        trend_deg=degs[1],
        low_pass_deg=degs[2],
        seasonal_jump=jumps[0],
        trend_jump=jumps[1],
        low_pass_jump=jumps[2],
        inner_iter=ni,
        outer_iter=no,
        missing=int(missing),
    )
    if nthreads > 1 and no == 0 and ni > 0 and not missing:
        # Non-robust: split the series into one window per thread, each with
        # the dependency radius as halo, and run the serial kernel on Python
        # threads (nogil).  One fork/join per call, so a busy second core only
        # slows it down in proportion; the canonical moving averages make the
        # owned parts equal the serial result bit for bit.
        radius = stl_radius(period, seasonal, trend, low_pass, *jumps, inner_iter=ni)
        if n >= nthreads * (2 * radius + 1):
            return _split_decompose(
                y, cfg, off, total, nthreads, radius, stl_alignment(period, *jumps)
            )
    return _run_kernel(y, cfg, off, total, nthreads)


def _run_kernel(y: np.ndarray, cfg: _Config, off: int, total: int, nthreads: int) -> STLResult:
    """Allocate the buffers (numpy: huge pages, cheap first touch) and run the kernel."""
    n = y.shape[0]
    ni, no = cfg.inner_iter, cfg.outer_iter
    season = np.empty(n)
    trend_out = np.empty(n)
    resid = np.empty(n)
    c = np.empty(n + 2 * cfg.period)
    ds = np.empty(n)
    if cfg.missing:
        rw = np.isfinite(y).astype(np.float64)  # availability: the weight of a missing sample is 0
    else:
        rw = np.ones(n if no > 0 else 1)
    rng = float(total - 1)
    klp = (
        _cached_end_kernel(cfg.low_pass, cfg.low_pass_deg, rng)
        if cfg.low_pass_jump == 1 and cfg.low_pass < n and ni > 0
        else _NO_KERNEL
    )
    ktr = (
        _cached_end_kernel(cfg.trend, cfg.trend_deg, rng)
        if cfg.trend_jump == 1 and cfg.trend < n and ni > 0
        else _NO_KERNEL
    )
    bufs = (season, trend_out, resid, c, ds, rw, klp, ktr)
    if ni > 0 and (
        _fft_block(cfg.low_pass, cfg.low_pass_jump) or _fft_block(cfg.trend, cfg.trend_jump)
    ):
        _stl_fft(y, cfg, nthreads, off, total, *bufs)
    elif nthreads <= 1:
        _stl_kernel(y, cfg, 1, off, total, *bufs)
    else:
        previous = numba.get_num_threads()
        numba.set_num_threads(nthreads)
        try:
            _stl_kernel(y, cfg, nthreads, off, total, *bufs)
        finally:
            numba.set_num_threads(previous)
    return STLResult(season, trend_out, resid, rw if no > 0 and ni > 0 else None)


# --------------------------------------------------------------------------
# Long smoothers: the FIR interior by FFT (overlap-save on absolute blocks)
# --------------------------------------------------------------------------

# Smoothers with a half-window q >= _FFT_MIN_Q (low-pass and trend, without jumps) compute
# their interior by FFT.  The output blocks are fixed in absolute index, [k B, (k + 1) B)
# with B from :func:`_fft_block`, so a block lying wholly in the smoother's interior gives
# the same bits in every window that holds it; blocks cut by the interior's edges use the
# direct FIR.  Below the threshold nothing changes (periods up to about 260).
_FFT_MIN_Q = 256
_fft_cache: dict[int, tuple[int, int, np.ndarray]] = {}
_fft_cache_lock = threading.Lock()


def _fft_block(length: int, jump: int = 1) -> int:
    """Output block of the FFT path for a smoother of ``length`` (0: direct FIR)."""
    q = (length - 1) // 2
    if jump != 1 or q < _FFT_MIN_Q:
        return 0
    size = 1 << int(math.ceil(math.log2(8 * q)))
    return size - (2 * q - 2)


def _fft_kernel(length: int) -> tuple[int, int, np.ndarray]:
    """``(size, block, spectrum)`` of the symmetric tricube taps of a smoother."""
    with _fft_cache_lock:
        hit = _fft_cache.get(length)
    if hit is not None:
        return hit
    from scipy import fft as sfft

    q = (length - 1) // 2
    taps = _sym_taps(_tricube_table(q), q)
    block = _fft_block(length)
    size = block + 2 * q - 2
    h = np.zeros(size)
    h[: 2 * q - 1] = np.concatenate([taps[:0:-1], taps])
    out = (size, block, sfft.rfft(h))
    with _fft_cache_lock:
        _fft_cache[length] = out
    return out


def _fft_interior(x: np.ndarray, out: np.ndarray, length: int, n: int, off: int) -> None:
    """``out[i]`` for ``q <= i < n - q`` by FFT, on output blocks fixed in absolute index.

    Each block ``[k B, (k + 1) B)`` (clipped to the interior) is one overlap-save
    transform of the inputs it reads, so a block lying wholly in a window's
    interior gives the same bits in every window; the clipped blocks at the
    interior's edges depend on where the window ends (inside the halo).
    """
    from scipy import fft as sfft

    q = (length - 1) // 2
    size, block, spec = _fft_kernel(length)
    lo, hi = q, n - q
    if hi <= lo:
        return
    s0 = lo
    while s0 < hi:
        s1 = min(hi, ((off + s0) // block + 1) * block - off)  # the end of s0's block
        seg = x[s0 - (q - 1) : s1 + (q - 1)]
        r = sfft.irfft(sfft.rfft(seg, size) * spec, size)
        out[s0:s1] = r[2 * q - 2 : 2 * q - 2 + (s1 - s0)]
        s0 = s1


def _smooth_fft(x, n, length, deg, rng, out, mode, ey, aux, aux_off, dout, kt, off):
    """:func:`_smooth`'s fast path (unit weights, no jump) with the interior by FFT."""
    q = (length - 1) // 2
    _fft_interior(x, out, length, n, off)
    if kt.shape[0] == length:
        _apply_end_kernel(kt, x, n, out)
    else:
        _apply_end_direct(length, kt, x, n, out)
    _epilogue_block(mode, out, ey, aux, aux_off, dout, 0, n)
    del q


def _stl_fft(y, cfg, nt, offset, total, season, trend, resid, c, ds, rw, klp, ktr):
    """:func:`_stl_kernel` with a Python loop, for long smoothers (FFT interiors).

    The same steps, in the same order, calling the same kernels; a smoother
    with :func:`_fft_block` > 0, no robustness weights and a window shorter
    than the series runs :func:`_smooth_fft` instead of :func:`_smooth`.
    """
    n = y.shape[0]
    period = cfg.period
    ni, no = cfg.inner_iter, cfg.outer_iter
    rng = float(total - 1)
    userw = bool(cfg.missing)
    lp_fft = _fft_block(cfg.low_pass, cfg.low_pass_jump) > 0 and cfg.low_pass < n
    for k in range(no + 1):
        tr_fft = (not userw) and _fft_block(cfg.trend, cfg.trend_jump) > 0 and cfg.trend < n
        for it in range(ni):
            d = y if (k == 0 and it == 0) else resid
            _cycle_subseries(
                d,
                rw,
                userw,
                n,
                period,
                cfg.seasonal,
                cfg.seasonal_deg,
                cfg.seasonal_jump,
                c,
                nt,
                offset,
                total,
            )
            _lowpass_ma(c, resid, period, n, nt, offset)
            if lp_fft:
                _smooth_fft(
                    resid,
                    n,
                    cfg.low_pass,
                    cfg.low_pass_deg,
                    rng,
                    season,
                    _EPI_SEASONAL,
                    y,
                    c,
                    period,
                    ds,
                    klp,
                    offset,
                )
            else:
                _smooth(
                    resid,
                    rw,
                    False,
                    n,
                    cfg.low_pass,
                    cfg.low_pass_deg,
                    cfg.low_pass_jump,
                    rng,
                    season,
                    nt,
                    _EPI_SEASONAL,
                    y,
                    c,
                    period,
                    ds,
                    klp,
                )
            last = k == no and it == ni - 1
            mode = _EPI_REMAINDER if last else _EPI_DETREND
            if tr_fft:
                _smooth_fft(
                    ds,
                    n,
                    cfg.trend,
                    cfg.trend_deg,
                    rng,
                    trend,
                    mode,
                    y,
                    season,
                    0,
                    resid,
                    ktr,
                    offset,
                )
            else:
                _smooth(
                    ds,
                    rw,
                    userw,
                    n,
                    cfg.trend,
                    cfg.trend_deg,
                    cfg.trend_jump,
                    rng,
                    trend,
                    nt,
                    mode,
                    y,
                    season,
                    0,
                    resid,
                    ktr,
                )
        if k < no:
            _robustness_weights(y, season, trend, rw, bool(cfg.missing))
            userw = True


def _split_decompose(
    y: np.ndarray,
    cfg: _Config,
    off: int,
    total: int,
    parts: int,
    radius: int,
    align: int,
) -> STLResult:
    """Decompose ``parts`` windows with halo ``radius`` concurrently, keep their middles.

    Non-robust only (no robustness weights: ``weights`` is ``None``).
    """
    n = y.shape[0]
    cuts = [0] + [(i * n // parts) // align * align for i in range(1, parts)] + [n]
    jobs = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        lo = max(0, a - radius) // align * align
        jobs.append((a, b, lo, min(n, b + radius)))
    out = STLResult(np.empty(n), np.empty(n), np.empty(n))

    def work(job: tuple[int, int, int, int]) -> None:
        a, b, lo, hi = job
        parts_ = _run_kernel(y[lo:hi], cfg, off + lo, total, 1)
        for o, p in zip(out, parts_, strict=True):
            o[a:b] = p[a - lo : b - lo]

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        list(pool.map(work, jobs))
    return out


def stl_radius(
    period: int,
    seasonal: int = 7,
    trend: int | None = None,
    low_pass: int | None = None,
    seasonal_jump: int = 1,
    trend_jump: int = 1,
    low_pass_jump: int = 1,
    inner_iter: int = 5,
) -> int:
    """Dependency radius ``R`` (samples) of non-robust STL, for chunked use.

    For ``robust=False`` and windows ``x[a:b]`` of a series ``x`` of length
    ``n`` whose start ``a`` is a multiple of :func:`stl_alignment`,
    ``stl_decompose(x[a:b], ..., offset=a, total_length=n)`` equals
    ``stl_decompose(x, ...)`` bit for bit at every sample ``i`` with
    ``a + R <= i < b - R`` (the kernel's arithmetic is canonical, see the
    module docstring); on a side where the window touches the series
    (``a == 0`` or ``b == n``) the condition on that side is void.  Windows
    must be longer than the smoothers (``b - a > 2 R`` ensures it).  Degrees
    do not matter.  With ``robust=True`` no finite radius exists: the
    robustness weights depend on the median of all residuals.

    Derivation (``q_s, q_l, q_t`` = half-windows ``(len - 1) // 2`` of the
    seasonal, low-pass and trend smoothers, ``j_s, j_l, j_t`` the jumps,
    ``p`` the period).  Say a quantity is *clean* at depth ``e`` when it equals
    the whole-series one at all ``i`` with ``a + e <= i < b - e``.  A Loess
    value equals the whole-series one when its window is the symmetric
    ``[i - q, i + q]`` in both computations and the data inside are clean;
    the tricube weight of the two outermost points is exactly 0, so only
    ``|d| <= q - 1`` matters; a jumped value interpolates grid points up to
    ``j - 1`` away.  Hence one inner pass maps a clean detrended series at
    depth ``e`` to:

    * cycle-subseries fit ``C``: depth ``max((q_s + j_s - 1) p, e + (q_s + j_s - 2) p)``
      (symmetric window: ``q_s + j_s - 1`` subseries positions from the window's
      edge; data: ``q_s - 1`` positions, plus ``j_s - 1`` for the grid);
    * the moving averages ``p, p, 3`` read ``C`` at ``i - p .. i + p``: ``+ p``;
    * low-pass Loess: ``+ q_l + j_l - 2``; ``S = C - L``: same depth;
    * trend Loess: ``+ q_t + j_t - 2``.

    The first pass starts from the trend 0 (``e = 0``) and every later pass from
    ``e >= p``, where the data term of the first bullet wins, so::

        R = inner_iter * ((q_s + j_s - 1) * p + (q_l + j_l - 2) + (q_t + j_t - 2)) + p

    (0 when ``inner_iter == 0``), plus, per pass, one FFT block ``B`` for each
    of the low-pass and trend smoothers long enough to run by FFT (half-window
    >= 256, no jump; :func:`_fft_block`): their interiors are computed on output
    blocks fixed in absolute index, and a block cut by the window's edge gives
    other bits than the whole block, up to ``B`` samples deeper.  The bound
    (without FFT blocks) is attained (a sample at depth ``R`` does change when
    the halo is one sample shorter) for one pass and,
    depending on the data, for two; deeper reaches go through products of tiny
    end taps that may round away, so the measured reach can be a little
    shorter.
    """
    period, seasonal, trend, low_pass = _check_lengths(period, seasonal, trend, low_pass)
    sj, tj, lj = _check_jumps(seasonal_jump, trend_jump, low_pass_jump)
    ni = _check(_AT_LEAST_0, "inner_iter", inner_iter)
    if ni == 0:
        return 0
    qs = (seasonal - 1) // 2
    ql = (low_pass - 1) // 2
    qt = (trend - 1) // 2
    per_pass = (qs + sj - 1) * period + (ql + lj - 2) + (qt + tj - 2)
    # Long smoothers compute their interior on absolute FFT blocks (see _fft_block): a
    # block cut by a window's edge is computed directly, so the reach grows by a block.
    per_pass += _fft_block(low_pass, lj) + _fft_block(trend, tj)
    return ni * per_pass + period


def stl_alignment(
    period: int, seasonal_jump: int = 1, trend_jump: int = 1, low_pass_jump: int = 1
) -> int:
    """Window starts that are multiples of this keep STL's evaluation grids.

    A window ``x[a:]`` has the same cycle-subseries as the whole series (its
    subseries ``j`` is the series' subseries ``(a + j) % period``), and
    without jumps every step is shift-invariant (the moving averages and
    Loess windows are defined relative to each sample), so any start works
    and the alignment is 1.  A jumped Loess evaluates at every ``jump``-th
    point counted from the start of the series smoothed, so the low-pass and
    trend grids need ``a % low_pass_jump == 0`` and ``a % trend_jump == 0``;
    the seasonal grid runs over subseries positions ``(a + j) // period``,
    which needs ``a`` to be a multiple of ``period * seasonal_jump`` when
    ``seasonal_jump > 1``.  Returns the least common multiple of these.
    """
    p = _check(_PERIOD, "period", period)
    sj, tj, lj = _check_jumps(seasonal_jump, trend_jump, low_pass_jump)
    a = math.lcm(tj, lj)
    if sj > 1:
        a = math.lcm(a, p * sj)
    return a


def trend_decompose(
    x: np.ndarray,
    trend: int = 101,
    trend_deg: int = 1,
    robust: bool = False,
    outer_iter: int | None = None,
    *,
    offset: int = 0,
    total_length: int | None = None,
) -> STLResult:
    """A decomposition without a seasonal component: ``x = trend + resid``.

    ``trend`` is STL's trend Loess (step 6 of the paper) of length ``trend``
    (odd, >= 3) and degree ``trend_deg``, over the whole series in one pass;
    with ``robust`` it is refitted ``outer_iter`` (default 15) times with
    STL's bisquare robustness weights.  ``seasonal`` is all zeros.  Missing
    values (NaN) follow :func:`stl_decompose`'s rule.  ``offset`` and
    ``total_length`` as for :func:`stl_decompose`; a non-robust window
    ``x[a:b]`` equals the whole series' result at every ``i`` with
    ``a + R <= i < b - R`` for ``R = (trend - 1) // 2``.
    """
    length = _check(_SEASONAL, "trend", trend)
    deg = _degree("trend_deg", trend_deg)
    robust = bool(robust)
    no = _check(
        _AT_LEAST_0, "outer_iter", (15 if robust else 0) if outer_iter is None else outer_iter
    )
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ParamError("x", f"must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ParamError("x", f"must hold real numbers, got dtype {arr.dtype}")
    y = np.ascontiguousarray(arr, dtype=np.float64)
    n = y.shape[0]
    if n < 2:
        raise ParamError("x", f"must hold at least 2 samples, got {n}")
    missing = _check_missing(y, 1)
    off = _check(_AT_LEAST_0, "offset", offset)
    total = off + n if total_length is None else _check(_AT_LEAST_1, "total_length", total_length)
    if off + n > total:
        raise ParamError("offset", f"+ len(x) must be <= total_length, got {off} + {n} > {total}")
    rng = float(total - 1)
    kt = _cached_end_kernel(length, deg, rng) if length < n else _NO_KERNEL
    season = np.zeros(n)
    trend_out = np.empty(n)
    resid = np.empty(n)
    rw = np.isfinite(y).astype(np.float64) if missing or no > 0 else np.ones(1)
    _trend_kernel(y, length, deg, no, missing, rng, season, trend_out, resid, rw, kt)
    return STLResult(season, trend_out, resid, rw if no > 0 else None)
