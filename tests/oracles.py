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

    Written from the documented formula in producer/generate.py, block by block:
    unit draws from ``Generator(SFC64(SeedSequence(seed, spawn_key=(b,))))``
    (standard normal or U[0, 1)), anomalies from ``spawn_key=(b, 1)``: a count
    ``binomial(block_size, rate)``, then ``2k`` uniforms: position ``floor(u*block)``
    (first occurrence wins on collisions), sign ``-1`` if its partner uniform < 0.5;
    positions past the stream's end are dropped.  The seasonal term is ``np.sin``
    evaluated per sample (no table), so compare to ~1e-12 when seasonality is on.
    """
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
    values = np.empty(n, np.float64)
    labels: list[int] = []
    num_blocks = -(-n // block_size)
    for b in range(num_blocks):
        first = b * block_size
        m = min(block_size, n - first)
        rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(b,))))
        u = rng.standard_normal(m) if type == "normal" else rng.random(m)
        i = np.arange(first, first + m, dtype=np.float64)
        x = loc + scale * u
        if seasonality:
            amplitude = float(seasonality.get("amplitude", 1.0))
            period = float(seasonality["period"])
            phase = float(seasonality.get("phase", 0.0))
            x = x + amplitude * np.sin(2.0 * np.pi * (i % period) / period + phase)
        if trend:
            x = x + float(trend["slope"]) * i
        if anomalies and float(anomalies["rate"]) > 0:
            rate = float(anomalies["rate"])
            magnitude = float(anomalies.get("magnitude", 6.0))
            arng = np.random.Generator(
                np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(b, 1)))
            )
            k = int(arng.binomial(block_size, rate))
            if k:
                draws = arng.random(2 * k)
                spikes: dict[int, float] = {}
                for j in range(k):
                    pos = int(draws[j] * block_size)
                    if pos not in spikes:
                        sign = -1.0 if draws[k + j] < 0.5 else 1.0
                        spikes[pos] = sign * magnitude * spike_unit
                for pos in sorted(spikes):
                    if pos < m:
                        x[pos] += spikes[pos]
                        labels.append(first + pos)
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
