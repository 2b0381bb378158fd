"""Z-score kernels: rolling (trailing window) and fixed-block.

The rolling z-score has two kernels with the same bits: ``_rolling_zscore``, one
sample after another (also the dense-score path), and ``_rolling_zscore_lanes``,
which runs 16 independent resynchronisation segments in lockstep as SIMD lanes
(the flags-only path where the native kernel of ``consumer.kernels.zscore_native``,
a C twin of ``_rolling_zscore`` with the same bits, is not available).  All are
written so that the flags of sample
``i`` depend only on the data and on ``i`` itself, never on where a chunk starts:
that is what makes chunked, threaded and tailed runs produce exactly the indices
of one whole-series call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from consumer.kernels.zscore_native import RESYNC, rolling_zscore_window  # noqa: F401


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
def _rolling_run(x, x0, lo, hi, i, window, k, c, s1, s2, thr2, idx, score, nflag, dense, start):
    """Run the rolling sums over absolute samples [lo, hi), flagging those >= ``i``.

    The per-sample loop of ``_rolling_zscore`` from a given state (shift ``k``,
    finite count ``c``, shifted sums ``s1``/``s2`` of the window before ``lo``);
    returns ``(c, s1, s2, nflag)`` after ``hi - 1``.  Both kernels run every
    sample they do not vectorise through this one loop, so their bits agree.
    """
    want_dense = dense.shape[0] > 0
    two_k = 2.0 * k
    inv = 1.0 / c if c > 0 else 0.0
    for j in range(lo, hi):
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
    return c, s1, s2, nflag


@njit(cache=True, nogil=True)
def _segments(start, stop, window, resync):
    """The resynchronisation segments covering [start, stop): rows (g, i, e).

    Segment ``[g, e)`` starts its sums exactly at ``g`` (a multiple of
    ``resync``, or ``window`` for the first) and flags samples ``[i, e)``.
    """
    first = max(start, window)
    n = 0 if first >= stop else (stop - 1) // resync - first // resync + 1
    seg = np.empty((n, 3), np.int64)
    i = first
    for s in range(n):
        g = max(window, (i // resync) * resync)
        e = min(stop, (g // resync + 1) * resync)
        seg[s, 0], seg[s, 1], seg[s, 2] = g, i, e
        i = e
    return seg


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
    The reference for ``_rolling_zscore_lanes``, which returns the same bits.
    """
    nflag = 0
    thr2 = threshold * threshold
    if dense.shape[0] > 0:
        for t in range(start, min(stop, window)):
            dense[t - start] = np.nan
    seg = _segments(start, stop, window, resync)
    for s in range(seg.shape[0]):
        g, i, e = seg[s, 0], seg[s, 1], seg[s, 2]
        k, c, s1, s2 = _exact_window(x, g - window - x0, g - x0)
        _, _, _, nflag = _rolling_run(
            x, x0, g, e, i, window, k, c, s1, s2, thr2, idx, score, nflag, dense, start
        )
    return nflag


# The lanes kernel: 16 resync segments in lockstep, 4 groups of 4 lanes.
_T = 64  # steps per block of the vector loop (its buffers stay in L1)
_TF = 1024  # steps per fill of the ring (long runs of each segment, for the prefetcher)
_NG = 4  # groups of 4 lanes
_NL = 4 * _NG
_HS = 4 * _T + 16  # stride of one group's sums in the history buffer (padded)
_CS = 4 * _T  # stride of one group's constants, replicated per step
_MAX_WINDOW = 4096  # longer windows run the scalar loop
_GS = 4 * (_MAX_WINDOW + 2 * _TF) + 8  # stride of one group in the ring: a compile-time
# constant, as the others, so that LLVM sees one buffer at fixed offsets, not 16 pointers
_MIN_ROUND = 4  # fewer segments than this run as scalar loops


@njit(cache=True, nogil=True)
def _fill4(x, b0, b1, b2, b3, n, ring, o0):
    """``ring[o0 + 4t + q] = x[b_q + t]`` for t < n: four streams interleaved.

    LLVM turns the four strided stores into a 4x4 register transpose.
    """
    x0 = x[b0 : b0 + n]
    x1 = x[b1 : b1 + n]
    x2 = x[b2 : b2 + n]
    x3 = x[b3 : b3 + n]
    o = ring[o0 : o0 + 4 * n]
    for t in range(n):
        o[4 * t] = x0[t]
        o[4 * t + 1] = x1[t]
        o[4 * t + 2] = x2[t]
        o[4 * t + 3] = x3[t]


@njit(cache=True, nogil=True)
def _fill_rows(x, off, ln, s0, n, ring, row0):
    """Ring rows ``row0 + t`` (t < n) get step ``s0 + t`` of every lane.

    Lane ``lane`` reads ``x[off[lane] + s]`` for steps ``s < ln[lane]``, and 0.0 past its end.
    """
    for g in range(_NG):
        l0 = 4 * g
        full = True
        for q in range(4):
            full = full and s0 + n <= ln[l0 + q]
        if full:
            _fill4(
                x,
                off[l0] + s0,
                off[l0 + 1] + s0,
                off[l0 + 2] + s0,
                off[l0 + 3] + s0,
                n,
                ring,
                g * _GS + 4 * row0,
            )
            continue
        for q in range(4):
            for t in range(n):
                s = s0 + t
                ring[g * _GS + 4 * (row0 + t) + q] = x[off[l0 + q] + s] if s < ln[l0 + q] else 0.0


@njit(cache=True, nogil=True)
def _lane_steps(ring, vz, oz, H, C, thr2, nz, hit):
    """Advance 16 lanes by ``nz / 4`` steps; ``hit[4t + q]``: a lane ``4g + q`` may be over.

    Trick: the index ``z = 4t + q`` runs over 4 lanes of a step, so the loop
    vectorises across lanes (LLVM's loop vectoriser; the sums of step t + 1
    depend on step t at distance 4), and the 4 groups in the body are 4
    independent dependency chains.  The sums take exactly the operations of
    ``_rolling_run``'s finite branch, so their bits are the same.  The test
    skips the clamp of a negative variance: it then flags a superset (there
    ``thr2 * var <= 0``), which ``_lane_flag`` re-tests exactly, for one
    operation fewer per lane-step.
    """
    vv = ring[vz : vz + 3 * _GS + nz]
    vo = ring[oz : oz + 3 * _GS + nz]
    for z in range(nz):
        h = False
        for g in range(_NG):
            v = vv[g * _GS + z]
            o = vo[g * _GS + z]
            s1 = H[g * _HS + z]
            s2 = H[(_NG + g) * _HS + z]
            k = C[g * _CS + z]
            inv = C[(_NG + g) * _CS + z]
            m = s1 * inv
            d = v - k - m
            h |= d * d > thr2 * (s2 * inv - m * m)
            delta = v - o
            H[g * _HS + z + 4] = s1 + delta
            H[(_NG + g) * _HS + z + 4] = s2 + delta * (v + o - 2.0 * k)
        hit[z] = h


@njit(cache=True, nogil=True)
def _set_lane(H, C, row, lane, k, c, s1, s2):
    """The sums of ``lane`` at history row ``row``, and its constants k and 1/c."""
    g, q = lane // 4, lane % 4
    H[g * _HS + 4 * row + q] = s1
    H[(_NG + g) * _HS + 4 * row + q] = s2
    inv = 1.0 / c if c > 0 else 0.0
    for t in range(_T):
        C[g * _CS + 4 * t + q] = k
        C[(_NG + g) * _CS + 4 * t + q] = inv


@njit(cache=True, nogil=True)
def _lane_init(x, x0, seg, s_lo, nl, window, start, geo, kk, cc, H, C):
    """Give ``lane`` < nl segment ``s_lo + lane``: exact sums, geometry, flag region.

    ``geo`` rows: x offset of step 0, active steps, first flagged step, region
    start in ``idx``, flags so far.  Idle lanes read zeros and never flag.
    """
    row0 = s_lo - s_lo  # history row 0, as an int64 (a literal 0 would compile _set_lane twice)
    for lane in range(_NL):
        k, c, s1, s2 = 0.0, 0, 0.0, 0.0
        geo[:, lane] = 0
        geo[1, lane] = -(window + 1)  # no step is active
        if lane < nl:
            g, i, e = seg[s_lo + lane, 0], seg[s_lo + lane, 1], seg[s_lo + lane, 2]
            k, c, s1, s2 = _exact_window(x, g - window - x0, g - x0)
            geo[0, lane], geo[1, lane], geo[2, lane], geo[3, lane] = g - x0, e - g, i - g, i - start
        kk[lane], cc[lane] = k, c
        _set_lane(H, C, row0, lane, k, c, s1, s2)


@njit(cache=True, nogil=True, inline="always")  # a call would pass ~60 words per hit
def _lane_flag(z, x0, s0, n, thr2, geo, kk, cc, ring, r0, H, C, idx, score):
    """Flag the lanes ``4g + z % 4`` of step ``s0 + z // 4`` that are over, active and finite."""
    t, q = z // 4, z % 4
    s = s0 + t
    for g in range(_NG):
        lane = 4 * g + q
        s1e = H[g * _HS + 4 * n + q]
        if not (s1e - s1e == 0.0) or cc[lane] < 2 or s < geo[2, lane] or s >= geo[1, lane]:
            continue
        inv = C[(_NG + g) * _CS + q]
        m = H[g * _HS + z] * inv
        var = H[(_NG + g) * _HS + z] * inv - m * m
        if var < 0.0:
            var = 0.0
        d = ring[g * _GS + 4 * r0 + z] - kk[lane] - m
        if d * d > thr2 * var:
            sd = math.sqrt(var)
            f = geo[3, lane] + geo[4, lane]
            idx[f] = geo[0, lane] + x0 + s
            score[f] = abs(d) / sd if sd > 0.0 else np.inf
            geo[4, lane] += 1


@njit(cache=True, nogil=True)
def _lane_flags(x, x0, s0, n, window, thr2, geo, kk, cc, ring, r0, H, C, hit, idx, score):
    """Flags of one block, and its redo where a lane met a non-finite sample.

    Trick: a non-finite ``v - old`` makes the running s1 non-finite for good,
    so one test of each lane's last sum finds the blocks the vector loop got
    wrong; those lanes rerun the block through ``_rolling_run`` from the state
    saved at history row 0.  Elsewhere a flagged step is rare: recompute its
    test with the same operations and keep it if the lane is active there.
    """
    for z in range(4 * n):
        if hit[z]:
            _lane_flag(z, x0, s0, n, thr2, geo, kk, cc, ring, r0, H, C, idx, score)
    for lane in range(_NL):
        g, q = lane // 4, lane % 4
        s1e = H[g * _HS + 4 * n + q]
        lo, hi = s0, min(s0 + n, geo[1, lane])
        if not (s1e - s1e == 0.0) and lo < hi:
            j0, reg = geo[0, lane] + x0, geo[3, lane]
            c, s1, s2, nf = _rolling_run(
                x,
                x0,
                j0 + lo,
                j0 + hi,
                j0 + geo[2, lane],
                window,
                kk[lane],
                cc[lane],
                H[g * _HS + q],
                H[(_NG + g) * _HS + q],
                thr2,
                idx,
                score,
                reg + geo[4, lane],
                np.empty(0, np.float32),
                s0,  # (no dense)
            )
            geo[4, lane] = nf - reg
            cc[lane] = c
            _set_lane(H, C, n, lane, kk[lane], c, s1, s2)
    for r in range(2 * _NG):  # the sums after the block start the next one
        for q in range(4):
            H[r * _HS + q] = H[r * _HS + 4 * n + q]


@njit(cache=True, nogil=True)
def _lane_round(x, x0, seg, s_lo, nl, window, thr2, start, idx, score, nflag, work):
    """Segments ``s_lo .. s_lo + nl - 1`` (nl <= 16) in lockstep; returns the flag count.

    Each lane writes its flags to its segment's own region of ``idx`` (a
    segment has at most as many flags as samples); they are packed in
    segment order at the end, so the output is sorted as the scalar kernel's.
    """
    ring, H, C, hit, geo, kk, cc = work
    qr = -(-(window + _TF) // _TF) * _TF  # ring rows: the window and a fill
    _lane_init(x, x0, seg, s_lo, nl, window, start, geo, kk, cc, H, C)
    steps = 0
    for lane in range(nl):
        steps = max(steps, geo[1, lane])
    _fill_rows(x, geo[0], geo[1], -window, window, ring, qr - window)
    for f0 in range(0, steps, _TF):
        _fill_rows(x, geo[0], geo[1], f0, min(_TF, steps - f0), ring, f0 % qr)
        for s0 in range(f0, min(f0 + _TF, steps), _T):
            n = min(_T, steps - s0)
            r0 = s0 % qr
            t = 0
            while t < n:  # the window's oldest rows may wrap around the ring
                orow = (s0 + t - window) % qr
                m = min(n - t, qr - orow)
                hz = 4 * t
                _lane_steps(ring, 4 * (r0 + t), 4 * orow, H[hz:], C, thr2, 4 * m, hit[hz:])
                t += m
            _lane_flags(x, x0, s0, n, window, thr2, geo, kk, cc, ring, r0, H, C, hit, idx, score)
    for lane in range(nl):  # pack the regions (forwards: nflag <= each region's start)
        for f in range(geo[3, lane], geo[3, lane] + geo[4, lane]):
            idx[nflag] = idx[f]
            score[nflag] = score[f]
            nflag += 1
    return nflag


def lane_work() -> tuple[np.ndarray, ...]:
    """Scratch buffers of ``_rolling_zscore_lanes`` (about 540 KB), for a caller to keep
    per thread: allocated per call, they were fresh pages to fault in at every chunk
    wherever malloc returns freed memory at once (Dask's workers set
    ``MALLOC_TRIM_THRESHOLD_``): 5-14% of a worker's z-score time (the loop of
    ``bench/dask_worker_env.py``)."""
    return (
        np.empty(_NG * _GS),
        np.empty(2 * _NG * _HS),
        np.empty(2 * _NG * _CS),
        np.empty(4 * _T, np.bool_),
        np.empty((5, _NL), np.int64),
        np.empty(_NL),
        np.empty(_NL, np.int64),
    )


@njit(cache=True, nogil=True)
def _rolling_zscore_lanes(x, x0, start, stop, window, threshold, resync, idx, score, work):
    """``_rolling_zscore`` without dense scores, 16 segments at a time: same bits.

    Trick: the exact recomputation at every multiple of ``resync`` makes the
    segments between them independent, so 16 of them advance in lockstep as
    SIMD lanes (``_lane_steps``); their samples are interleaved into a ring of
    ``window + 256`` steps, which serves both the entering and the leaving
    sample.  Windows above ``resync / 8`` (a long pre-fill, a large ring) and
    the last few segments of a call run the scalar loop.  ``work`` is
    ``lane_work()``'s scratch (its contents on entry do not matter).
    """
    seg = _segments(start, stop, window, resync)
    thr2 = threshold * threshold
    nflag, s = np.int64(0), np.int64(0)
    if 8 * window <= resync and window <= _MAX_WINDOW and seg.shape[0] >= _MIN_ROUND:
        while seg.shape[0] - s >= _MIN_ROUND:
            nl = min(_NL, seg.shape[0] - s)
            nflag = _lane_round(x, x0, seg, s, nl, window, thr2, start, idx, score, nflag, work)
            s += nl
    for r in range(s, seg.shape[0]):
        g, i, e = seg[r, 0], seg[r, 1], seg[r, 2]
        k, c, s1, s2 = _exact_window(x, g - window - x0, g - x0)
        _, _, _, nflag = _rolling_run(
            x,
            x0,
            g,
            e,
            i,
            window,
            k,
            c,
            s1,
            s2,
            thr2,
            idx,
            score,
            nflag,
            np.empty(0, np.float32),
            start,
        )
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


def zscore(
    x: np.ndarray,
    window: int = 1000,
    threshold: float = 3.0,
    mode: str = "rolling",
    block: int = 1 << 16,
    scores: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Whole-array z-score: (sorted int64 indices, their scores, dense scores or None).

    ``x`` is taken as float64, as the detector takes it.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = x.shape[0]
    idx = np.empty(n, np.int64)
    sc = np.empty(n, np.float64)
    dense = np.empty(n if scores else 0, np.float32)
    if mode == "rolling" and not scores:
        k = _rolling_zscore_lanes(x, 0, 0, n, window, threshold, RESYNC, idx, sc, lane_work())
    elif mode == "rolling":
        k = _rolling_zscore(x, 0, 0, n, window, threshold, RESYNC, idx, sc, dense)
    else:
        k = _block_zscore(x, 0, 0, n, block, threshold, idx, sc, dense)
    return idx[:k].copy(), sc[:k].copy(), (dense if scores else None)


def preload() -> None:
    """Initialise numba and load the float64 rolling kernel from its cache (tiny input)."""
    zscore(np.zeros(4), window=2)
