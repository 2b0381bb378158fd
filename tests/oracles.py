"""Plain-numpy reference implementations ("oracles") that the tests compare against.

They are deliberately naive (loops, direct formulas, no numba) so that they are
independent of the code under test.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- producer


def naive_producer_series(
    n: int,
    *,
    seed: int = 42,
    type: str = "normal",
    params: dict | None = None,
    seasonality: dict | None = None,
    trend: dict | None = None,
    anomalies: dict | None = None,
    dtype: str = "float64",
    block_size: int = 1 << 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference for ``producer.generate_with_labels``: (values, sorted anomaly indices).

    Written from the specification of generation algorithm 2, block by block
    (``B = block_size`` samples per block).  Block ``b`` has keys
    ``k0, k1, ka = SeedSequence(seed, spawn_key=(b,)).generate_state(3, uint64)``;
    draws are SplitMix64 counters ``draw(k, n) = mix(k + (n + 1) * G)``.  Sample ``t``
    of a block takes the word ``r = draw(k0, t)``: uniform ``(r >> 11) * 2**-53``, or
    normal through a 256-layer Marsaglia-Tsang ziggurat (fast path on ``r``; a
    rejected sample continues on its own sub-stream ``draw(draw(k1, t), 0, 1, ...)``
    through the wedge / tail slow path).  Anomalies: geometric gaps
    ``floor(log(open01(d)) / log1p(-rate))`` between positions from
    ``draw(ka, 0, 1, ...)``, sign ``-1`` if ``d & 1``, drawn over the full block;
    positions past the stream's end are dropped.  The seasonal term is ``np.sin``
    evaluated per sample (no table), so compare to ~1e-12 when seasonality is on.
    """
    import math

    mask = (1 << 64) - 1
    gamma = 0x9E3779B97F4A7C15
    two53 = float(1 << 53)
    inv53 = 1.0 / two53  # 2**-53, exact

    # ---- SplitMix64, scalar (Python ints) and array (numpy uint64, wraps mod 2**64)
    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    def draw(k: int, c: int) -> int:
        return mix((k + (c + 1) * gamma) & mask)

    def draw_array(k: int, count: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            c = np.arange(1, count + 1, dtype=np.uint64)  # n + 1
            z = np.uint64(k) + c * np.uint64(gamma)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))

    def open01(d: int) -> float:
        return float((d >> 11) + 1) * inv53

    # ---- ziggurat tables (plain float64 / libm, in the specified order of operations)
    zr = 3.6541528853610088
    zv = 0.00492867323399

    def f(x: float) -> float:
        return math.exp(-0.5 * x * x)

    xs = [0.0] * 257
    xs[0] = zv / f(zr)
    xs[1] = zr
    for k in range(1, 255):
        xs[k + 1] = math.sqrt(-2.0 * math.log(zv / xs[k] + f(xs[k])))
    xs[256] = 0.0
    ws = [xs[k] * inv53 for k in range(256)]
    ks = [math.floor(two53 * (xs[k + 1] / xs[k])) for k in range(256)]
    fs = [f(xs[k]) for k in range(256)] + [1.0]

    def decode(d: int) -> tuple[int, int, int, float]:
        i = d & 255
        s = (d >> 8) & 1
        j = d >> 11
        return i, s, j, float(j) * ws[i]

    def slow_normal(k1: int, t: int, i: int, s: int, x: float) -> float:
        """The rejected sample ``t`` (fast-path decode i, s, x) on its own sub-stream."""
        c = draw(k1, t)
        cnt = 0

        def nxt() -> int:
            nonlocal cnt
            d = draw(c, cnt)
            cnt += 1
            return d

        while True:
            if i == 0:  # tail beyond R
                while True:
                    a = -math.log(open01(nxt())) / zr
                    e = -math.log(open01(nxt()))
                    if e + e > a * a:
                        break
                v = zr + a
                return -v if s == 1 else v
            y = fs[i] + open01(nxt()) * (fs[i + 1] - fs[i])  # wedge of layer i
            if y < math.exp(-0.5 * x * x):
                return -x if s == 1 else x
            i, s, j, x = decode(nxt())
            if j < ks[i]:
                return -x if s == 1 else x

    # ---- distribution parameters
    params = dict(params or {})
    if type == "normal":
        loc = float(params.get("mean", 0.0))
        scale = float(params.get("std", 1.0))
        spike_unit = scale
    elif type == "uniform":
        low = float(params.get("low", 0.0))
        high = float(params.get("high", 1.0))
        loc, scale = low, high - low
        spike_unit = (high - low) / np.sqrt(12.0)
    else:
        raise ValueError(type)
    rate = float(anomalies["rate"]) if anomalies else 0.0
    if rate > 1.0:
        raise ValueError(f"anomaly rate {rate} > 1")

    w_arr = np.asarray(ws, dtype=np.float64)
    k_arr = np.asarray(ks, dtype=np.uint64)
    values = np.empty(n, np.float64)
    labels: list[int] = []
    num_blocks = -(-n // block_size)
    for b in range(num_blocks):
        first = b * block_size
        m = min(block_size, n - first)
        seq = np.random.SeedSequence(seed, spawn_key=(b,))
        k0, k1, ka = (int(v) for v in seq.generate_state(3, np.uint64))
        r = draw_array(k0, m)
        if type == "normal":
            li = (r & np.uint64(255)).astype(np.intp)
            neg = ((r >> np.uint64(8)) & np.uint64(1)) == np.uint64(1)
            jj = r >> np.uint64(11)
            xx = jj.astype(np.float64) * w_arr[li]
            u = np.where(neg, -xx, xx)
            for t in np.nonzero(~(jj < k_arr[li]))[0].tolist():
                i0, s0, _, x0 = decode(int(r[t]))
                u[t] = slow_normal(k1, t, i0, s0, x0)
        else:
            u = (r >> np.uint64(11)).astype(np.float64) * inv53
        i = np.arange(first, first + m, dtype=np.float64)
        x = loc + scale * u
        if seasonality:
            amplitude = float(seasonality.get("amplitude", 1.0))
            period = float(seasonality["period"])
            phase = float(seasonality.get("phase", 0.0))
            x = x + amplitude * np.sin(2.0 * np.pi * (i % period) / period + phase)
        if trend:
            x = x + float(trend["slope"]) * i
        if rate > 0:
            magnitude = float(anomalies.get("magnitude", 6.0))
            big_l = math.log1p(-rate) if rate < 1.0 else -math.inf  # log1p(-1) = -inf
            cnt, p = 0, -1
            while True:
                d = draw(ka, cnt)
                cnt += 1
                g = float(np.floor(math.log(open01(d)) / big_l))  # float64 floor
                if p + 1 + g >= block_size:  # float64 compare, before int conversion
                    break
                p = p + 1 + int(g)
                if p < m:
                    sign = -1.0 if (d & 1) == 1 else 1.0
                    x[p] = x[p] + sign * magnitude * spike_unit
                    labels.append(first + p)
        values[first : first + m] = x
    return values.astype(dtype), np.asarray(labels, dtype=np.int64)


# --------------------------------------------------------------------------- consumer z-score


def _naive_window_stats(w: np.ndarray) -> tuple[float, float] | None:
    """(mean, population std) of the finite values of ``w``, or None if fewer than 2."""
    w = np.asarray(w, dtype=np.float64)
    w = w[np.isfinite(w)]
    if len(w) < 2:
        return None
    return float(w.mean()), float(w.std())


def naive_rolling_zscore(
    x: np.ndarray, window: int, threshold: float, *, scores: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Reference rolling z-score: sorted int64 indices i >= window with x[i] finite and
    ``|x[i] - mean| > threshold * std`` over the finite values of the trailing window
    ``x[i-window:i]`` (population std, at least 2 finite values).

    With ``scores=True`` also returns the dense float64 ``|x - mean| / std`` per sample
    (NaN where undefined: i < window, x[i] not finite, or < 2 finite window values).
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    flags: list[int] = []
    dense = np.full(n, np.nan)
    for i in range(window, n):
        st = _naive_window_stats(x[i - window : i])
        if st is None or not np.isfinite(x[i]):
            continue
        mean, std = st
        dev = abs(x[i] - mean)
        if dev > threshold * std:
            flags.append(i)
        if scores:
            dense[i] = dev / std if std > 0 else (0.0 if dev == 0 else np.inf)
    idx = np.asarray(flags, dtype=np.int64)
    return (idx, dense) if scores else idx


def naive_block_zscore(
    x: np.ndarray, block: int, threshold: float, *, scores: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Reference block z-score: blocks ``[b*block, (b+1)*block)`` in absolute index (the
    last one clipped at the end), each sample judged against its own block's finite
    mean and population std (at least 2 finite values), same rule as the rolling one."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    flags: list[int] = []
    dense = np.full(n, np.nan)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        st = _naive_window_stats(x[lo:hi])
        if st is None:
            continue
        mean, std = st
        for i in range(lo, hi):
            if not np.isfinite(x[i]):
                continue
            dev = abs(x[i] - mean)
            if dev > threshold * std:
                flags.append(i)
            if scores:
                dense[i] = dev / std if std > 0 else (0.0 if dev == 0 else np.inf)
    idx = np.asarray(flags, dtype=np.int64)
    return (idx, dense) if scores else idx


def naive_rolling_zscore_batched(x: np.ndarray, window: int, threshold: float) -> np.ndarray:
    """``naive_rolling_zscore`` (indices only) with the same per-window formula, evaluated
    for many windows at once through ``sliding_window_view`` (for long series / windows).
    Batches that hold a non-finite sample fall back to the per-window loop."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n <= window:
        return np.empty(0, np.int64)
    views = np.lib.stride_tricks.sliding_window_view(x, window)  # row r = x[r:r+window]
    finite = np.isfinite(x)
    rows = max(1, (1 << 22) // window)
    flags: list[np.ndarray] = []
    for i0 in range(window, n, rows):
        i1 = min(n, i0 + rows)
        if finite[i0 - window : i1].all():
            w = views[i0 - window : i1 - window]
            mean = w.mean(axis=1)
            std = w.std(axis=1)
            hit = np.abs(x[i0:i1] - mean) > threshold * std
            flags.append(np.nonzero(hit)[0].astype(np.int64) + i0)
        else:
            sub = naive_rolling_zscore(x[i0 - window : i1], window, threshold)
            flags.append(np.asarray(sub, np.int64) + (i0 - window))
    return np.concatenate(flags)


# --------------------------------------------------------------------------- NAB scoring


def naive_nab_raw_score(
    timestamps: list,
    scores: list,
    windows: list,
    threshold: float,
    tp_weight: float,
    fp_weight: float,
    fn_weight: float,
) -> float:
    """Reference for ``consumer.nab.score_file(...).raw``, one row and one window at a time.

    Written from NAB's rule (Lavin & Ahmad 2015 and NAB's scorer): the first
    ``min(floor(0.15 n), 0.15 * 5000)`` rows are never detections; a row detects when
    ``score >= threshold`` (NaN never does); a window's rows are those with
    ``start <= t <= end``; its first detection scores
    ``tp_weight * sigma(-(last - i + 1) / length) / sigma(-1)`` and a window without one
    ``-fn_weight``; a detection outside every window scores
    ``fp_weight * sigma((i - last) / (length - 1))`` of the closest window ending before
    it (a one-row window counts as two rows), or ``-fp_weight`` if none;
    ``sigma(p) = 2 / (1 + exp(5 p)) - 1``, and ``-1`` for ``p > 3``.
    """
    import math

    def sigma(p: float) -> float:
        if p > 3.0:
            return -1.0
        return 2.0 / (1.0 + math.exp(5.0 * p)) - 1.0

    n = len(timestamps)
    probation = min(math.floor(0.15 * n), 0.15 * 5000)

    def detects(i: int) -> bool:
        return i >= probation and scores[i] >= threshold  # False for NaN

    window_rows = []
    for start, end in windows:
        window_rows.append([i for i in range(n) if start <= timestamps[i] <= end])
    in_a_window = {i for rows in window_rows for i in rows}

    total = 0.0
    for rows in window_rows:
        hits = [i for i in rows if detects(i)]
        if not hits:
            total -= fn_weight
            continue
        first, last, length = hits[0], rows[-1], len(rows)
        total += tp_weight * sigma(-(last - first + 1) / length) / sigma(-1.0)

    for i in range(n):
        if i in in_a_window or not detects(i):
            continue
        closest = None
        for rows in window_rows:
            if rows and rows[-1] < i and (closest is None or rows[-1] > closest[-1]):
                closest = rows
        if closest is None:
            total -= fp_weight
        else:
            total += fp_weight * sigma((i - closest[-1]) / max(len(closest) - 1, 1))
    return total


# --------------------------------------------------------------------------- consumer likelihood


def naive_likelihood(
    x: np.ndarray,
    *,
    period: int,
    lags: int = 10,
    scale_window: int = 1000,
    short_window: int = 10,
    long_window: int = 8640,
    floor: float = 0.1,
    point_weight: float = 0.5,
    gate_z: float = 3.0,
    gate_count: int = 10,
    mean_min: float = 0.03,
    var_min: float = 3e-4,
    min_count: int = 100,
    onset: float = 0.3,
    quiet: int = 10,
    threshold: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference ``likelihood`` detector: (emitted score per sample, flagged indices).

    Written from the specification (``consumer.kernels.likelihood``), one sample and one window at
    a time with exact window sums.  Windows clip at index 0 and leave non-finite values
    out.  ``r[i] = x[i] - mean(finite x[i - k P], k = 1..lags)`` (``P = 0``: ``x[i] -
    x[i-1]``), NaN without a lag or for a non-finite ``x[i]``.  ``sc = sqrt(pi/2) *
    mean |r|`` over ``[i - Ws, i)``, floored at ``1e-9 |x[i] - r[i]|`` and ``1e-300``;
    ``z = |r| / sc``; ``a = T_A(z)``, 0 when below ``floor`` or with fewer than
    ``min_count`` known ``|r|``.  ``T_A``/``T_L``: linear interpolation on nodes
    ``k / 128`` of ``min(1, -log10(erfc(z / sqrt 2)) / 10)`` up to 6.5 and of ``min(1,
    -log10(erfc(z / sqrt 2) / 2 + 1e-10) / 10)`` up to 8.5, constant beyond.  ``al =
    max(0, a - floor) / (1 - floor)``; ``ma`` = mean of ``al`` over ``[i - w + 1, i]``
    (NaN where ``a`` is); ``mu``, ``var`` = mean, population variance of ``ma`` over
    ``[i - w - Wl + 1, i - w]`` (``min_count`` values needed), then floored;
    ``L = T_L((ma - mu) / sqrt var)`` if ``ma > mu``.  ``s = max(point_weight * a *
    [#{z > gate_z in [i - Ws + 1, i]} <= gate_count], L)``; ``s = 0`` where ``x`` is
    finite but ``ma`` is not; NaN where ``x`` is not finite.  Emitted ``e = s`` if no
    ``s >= onset`` in ``[i - quiet, i)``, else 0 (NaN stays NaN); flags ``e >= threshold``.
    """
    import math

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    P, m, Ws, w, Wl = period, lags, scale_window, short_window, long_window

    def node_table(top: float, one_sided: bool) -> list[float]:
        nodes = []
        for k in range(int(math.ceil(top * 128)) + 1):
            tail = math.erfc(k / 128 / math.sqrt(2.0))
            v = -math.log10(tail / 2 + 1e-10) if one_sided else -math.log10(tail)
            nodes.append(min(1.0, max(0.0, v / 10.0)))
        return nodes

    def interp(nodes: list[float], z: float) -> float:
        u = z * 128
        if u >= len(nodes) - 1:
            return nodes[-1]
        k = math.floor(u)
        return nodes[k] + (u - k) * (nodes[k + 1] - nodes[k])

    ta, tl = node_table(6.5, False), node_table(8.5, True)

    def finite(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return values[np.isfinite(values)]

    r = np.full(n, np.nan)
    for i in range(n):
        if not math.isfinite(x[i]):
            continue
        if P == 0:
            if i >= 1:
                r[i] = x[i] - x[i - 1]
            continue
        known = finite([x[i - k * P] for k in range(1, m + 1) if i - k * P >= 0])
        if len(known):
            r[i] = x[i] - known.mean()

    a = np.full(n, np.nan)
    z = np.zeros(n)
    for i in range(n):
        if not math.isfinite(r[i]):
            continue
        a[i] = 0.0
        past = finite(np.abs(r[max(0, i - Ws) : i]))
        if len(past) < min_count:
            continue
        sc = max(math.sqrt(math.pi / 2) * past.mean(), 1e-9 * abs(x[i] - r[i]), 1e-300)
        z[i] = abs(r[i]) / sc
        v = interp(ta, z[i])
        a[i] = v if v >= floor else 0.0

    al = np.where(np.isfinite(a), np.maximum(a - floor, 0.0) / (1.0 - floor), np.nan)
    ma = np.full(n, np.nan)
    for i in range(n):
        if math.isfinite(al[i]):
            ma[i] = finite(al[max(0, i - w + 1) : i + 1]).mean()

    s = np.full(n, np.nan)
    for i in range(n):
        if not math.isfinite(x[i]):
            continue
        s[i] = 0.0
        if not math.isfinite(ma[i]):
            continue
        gate = int(np.sum(z[max(0, i - Ws + 1) : i + 1] > gate_z))
        point = point_weight * a[i] if gate <= gate_count else 0.0
        like = 0.0
        hist = finite(ma[max(0, i - w - Wl + 1) : max(0, i - w + 1)])
        if len(hist) >= min_count:
            mu = hist.mean()
            var = max(float(np.mean(hist * hist)) - mu * mu, var_min)
            mu = max(mu, mean_min)
            if ma[i] > mu:
                like = interp(tl, (ma[i] - mu) / math.sqrt(var))
        s[i] = max(point, like)

    e = s.copy()
    for i in range(n):
        before = s[max(0, i - quiet) : i]
        if math.isfinite(s[i]) and np.any(before[np.isfinite(before)] >= onset):
            e[i] = 0.0
    flags = [i for i in range(n) if math.isfinite(e[i]) and e[i] >= threshold]
    return e, np.asarray(flags, dtype=np.int64)


def _naive_loess(y, w, length, deg, xs, rng):
    """Loess fits of ``y`` (weights ``w``, 0 for a missing value) at the abscissae ``xs``.

    The paper's neighbourhood of ``xs`` is the ``length`` positions nearest it,
    clipped to the series (positions, whether available or not); tricube weights
    with bandwidth ``h = max(xs - left, right - xs)`` (+ ``(length - n) // 2``
    when ``length > n``), 1 below ``0.001 h`` and 0 above ``0.999 h``, times
    ``w``; degree 1 drops the slope when ``sqrt(var) <= 0.001 rng``.  Returns
    the fits and whether each had a positive total weight.
    """
    n = len(y)
    q = (length - 1) // 2
    out = np.zeros(len(xs))
    ok = np.zeros(len(xs), bool)
    for t, x0 in enumerate(xs):
        centre = min(max(x0, 0), n - 1)
        left = max(0, min(centre - q, n - length))
        right = min(n - 1, left + length - 1)
        h = max(x0 - left, right - x0) + ((length - n) // 2 if length > n else 0)
        j = np.arange(left, right + 1)
        r = np.abs(j - x0).astype(float)
        u = r / h if h > 0 else np.zeros_like(r)
        tw = np.where(r <= 0.001 * h, 1.0, (1 - u**3) ** 3)
        tw = np.where(r <= 0.999 * h, tw, 0.0) * w[j]
        if tw.sum() <= 0:
            continue
        yj = np.where(tw > 0, y[j], 0.0)
        s0 = tw.sum()
        m0 = (tw * yj).sum() / s0
        ok[t] = True
        out[t] = m0
        if deg > 0 and h > 0:
            d = (j - x0).astype(float)
            a = (tw * d).sum() / s0
            c = (tw * d * d).sum() / s0 - a * a
            if np.sqrt(max(c, 0.0)) > 0.001 * rng:
                out[t] = m0 + (-a / c) * ((tw * d * yj).sum() / s0 - a * m0)
    return out, ok


def _naive_nearest(v, ok):
    """Positions without a fit take the nearest fitted value (the left one on a tie)."""
    have = np.nonzero(ok)[0]
    out = v.copy()
    for i in np.nonzero(~ok)[0]:
        k = np.searchsorted(have, i)
        cands = []
        if k > 0:
            cands.append(have[k - 1])
        if k < len(have):
            cands.append(have[k])
        out[i] = v[min(cands, key=lambda c: (abs(c - i), c))]
    return out


def naive_stl_missing(
    x,
    period,
    seasonal=7,
    trend=None,
    low_pass=None,
    seasonal_deg=1,
    trend_deg=1,
    low_pass_deg=1,
    robust=False,
    inner_iter=None,
    outer_iter=None,
):
    """STL with missing values (NaN), written from the rule in ``stl_decompose``'s docstring.

    Plain numpy, one Loess fit at a time (jumps 1).  Steps 2 and 6 weight a
    missing sample 0; a fit without any positive weight is missing too (at an
    available sample under robustness weights: the data value, as in the
    paper) and takes the nearest fitted value of its (sub)series; the
    one-period extensions fall back to the subseries' end value; the
    robustness median is over available remainders, a missing sample's weight
    is 0; the remainder is NaN at missing samples.
    """
    x = np.asarray(x, float)
    n, p = len(x), period
    if trend is None:
        trend = int(np.ceil(1.5 * p / (1 - 1.5 / seasonal)))
        trend += trend % 2 == 0
    if low_pass is None:
        low_pass = p + 1 + ((p + 1) % 2 == 0)
    ni = (2 if robust else 5) if inner_iter is None else inner_iter
    no = (15 if robust else 0) if outer_iter is None else outer_iter
    avail = ~np.isnan(x)
    rw = avail.astype(float)
    T = np.zeros(n)
    S = np.zeros(n)
    idx = np.arange(n)
    for k in range(no + 1):
        for _ in range(ni):
            D = x - T
            C = np.empty(n + 2 * p)
            for j in range(p):
                sub, ws = D[j::p], rw[j::p]
                m = len(sub)
                fit, ok = _naive_loess(sub, ws, seasonal, seasonal_deg, np.arange(m), m - 1)
                fit = np.where(ok | ~np.isnan(sub), np.where(ok, fit, sub), np.nan)
                fit = _naive_nearest(fit, ~np.isnan(fit))
                ext, eok = _naive_loess(sub, ws, seasonal, seasonal_deg, np.array([-1, m]), m - 1)
                C[j] = ext[0] if eok[0] else fit[0]
                C[j + p :: p][:m] = fit
                C[j + (m + 1) * p] = ext[1] if eok[1] else fit[-1]
            ma = np.convolve(C, np.ones(p) / p, "valid")
            ma = np.convolve(ma, np.ones(p) / p, "valid")
            ma = np.convolve(ma, np.ones(3) / 3, "valid")
            L, _ = _naive_loess(ma, np.ones(n), low_pass, low_pass_deg, idx, n - 1)
            S = C[p : p + n] - L
            fit, ok = _naive_loess(x - S, rw, trend, trend_deg, idx, n - 1)
            fit = np.where(ok, fit, np.where(avail, x - S, np.nan))
            T = _naive_nearest(fit, ~np.isnan(fit))
        if k < no:
            r = np.abs(x - S - T)
            h = 6 * np.median(r[avail])
            u = r / h
            w = np.where(r <= 0.001 * h, 1.0, (1 - u**2) ** 2)
            rw = np.where(avail & (r <= 0.999 * h), w, 0.0)
    return S, T, x - S - T
