"""The lanes and native rolling z-score kernels return the scalar kernel's bits.

``_rolling_zscore_lanes`` (numba, 16 resynchronisation segments in lockstep) and the
native C kernel of ``consumer.kernels.zscore_native`` (the same idea, the default
flags-only path) against ``_rolling_zscore`` (the per-sample loop, and still the
dense-score path): random series with NaN/inf runs, overflowing
values, float32 data, flat runs (variances rounding below zero, which the vector test
does not clamp), windows around the vector block (64 steps) and the lanes' limit
(``resync / 8``), random chunk starts, stops and buffer origins, small and real
``RESYNC``.  Scores are compared as int64 bit patterns.  One case is also checked
against the naive numpy oracle, and one runs the detector chunk by chunk.
"""

from __future__ import annotations

import os
import shutil
import zlib

import numpy as np
import pytest
from oracles import naive_rolling_zscore_batched

import consumer
from consumer.detectors.base import SeriesInfo
from consumer.detectors.zscore import ZScoreDetector, ZScoreParams
from consumer.kernels import zscore as zk
from consumer.kernels import zscore_native as zn


def native_kernel():
    """The native kernel; a test that needs it skips only where no C compiler exists."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler on PATH: the native z-score kernel cannot be built")
    fn = zn.flags_kernel()
    assert fn is not None, "a C compiler exists but the native z-score kernel did not build"
    return fn


def _stale_work():
    """The lanes kernel's scratch holding garbage, as a buffer reused between calls
    would: its contents on entry must not matter."""
    work = zk.lane_work()
    for a in work:
        a.fill(True if a.dtype == np.bool_ else (-7 if a.dtype.kind == "i" else np.nan))
    return work


def kernels(x, x0, start, stop, window, threshold, resync):
    """(indices, score bits) of the scalar, the lanes and the native kernel."""
    n = max(stop - start, 1)
    out = []
    for kind in ("scalar", "lanes", "native"):
        idx, sc = np.full(n, -3, np.int64), np.full(n, np.nan)  # stale buffers
        if kind == "lanes":
            work = _stale_work()
            k = zk._rolling_zscore_lanes(
                x, x0, start, stop, window, threshold, resync, idx, sc, work
            )
        elif kind == "native":
            x = np.ascontiguousarray(x, np.float64)
            fn = native_kernel()
            work = np.full(fn.work_len(window) + 3, np.nan)[3:]  # stale, 8-byte aligned only
            args = (x.ctypes.data, x0, start, stop, window, threshold, resync)
            k = fn(*args, idx.ctypes.data, sc.ctypes.data, work.ctypes.data, len(work))
        else:
            dense = np.empty(0, np.float32)
            k = zk._rolling_zscore(x, x0, start, stop, window, threshold, resync, idx, sc, dense)
        out.append((idx[:k].copy(), sc[:k].view(np.int64).copy()))
    return out


def both(x, x0, start, stop, window, threshold, resync):
    """(indices, score bits) of the scalar and of the lanes kernel, after checking that
    the native kernel's equal the scalar's."""
    scalar, lanes, native = kernels(x, x0, start, stop, window, threshold, resync)
    for want, got in zip(scalar, native, strict=True):
        np.testing.assert_array_equal(got, want, err_msg="native kernel")
    return scalar, lanes


def random_series(rng, n, kind):
    x = rng.standard_normal(n) * rng.choice([1.0, 1e-3, 1e6]) + rng.choice([0.0, 50.0])
    if kind == "nonfinite":  # scattered NaN/inf, and a run longer than the window
        pos = rng.choice(n, max(1, n // 300))
        x[pos] = rng.choice([np.nan, np.inf, -np.inf], len(pos))
        a = int(rng.integers(0, n))
        x[a : a + int(rng.integers(1, 400))] = np.nan
    elif kind == "overflow":  # finite samples whose difference overflows
        x[rng.integers(0, n, 3)] = 1.7e308
        x[rng.integers(0, n, 3)] = -1.7e308
    elif kind == "float32":
        x = x.astype(np.float32).astype(np.float64)
    elif kind == "spikes":
        x[rng.integers(0, n, n // 100)] += 8.0
    elif kind == "flat":  # runs an ulp apart: rolling variances round below 0, often at d = 0
        x = 1e6 + np.repeat(rng.integers(0, 3, n // 50 + 1) * 1e-10, 50)[:n]
    return x


@pytest.mark.parametrize("kind", ["normal", "spikes", "nonfinite", "overflow", "float32", "flat"])
def test_lanes_and_native_equal_scalar_on_random_chunks(kind):
    rng = np.random.default_rng(zlib.crc32(kind.encode()))  # (hash() varies by process)
    resync = 1024
    # lanes: 129 and up run the scalar fallback; native: rounds of 16 lanes for all,
    # windows longer than a segment (2500) and than its fill of 1024 steps included
    windows = [1, 2, 3, 63, 64, 65, 100, 127, 128, 129, 1000, 2500]
    for trial, window in enumerate(windows * 2):
        n = int(rng.integers(4 * resync, 40 * resync))
        x = random_series(rng, n, kind)
        start = int(rng.integers(0, n))
        if trial % 3 == 0:
            start = (start // resync) * resync  # a chunk starting on a resync point
        stop = int(rng.integers(start, n + 1))
        first = max(window, (start // resync) * resync)
        x0 = int(rng.integers(0, max(0, min(start, first) - window) + 1))
        threshold = float(rng.choice([0.5, 2.0, 3.0]))
        (i1, s1), (i2, s2) = both(x[x0:stop], x0, start, stop, window, threshold, resync)
        np.testing.assert_array_equal(i2, i1, err_msg=f"{kind} window {window}")
        np.testing.assert_array_equal(s2, s1, err_msg=f"{kind} window {window}")


def test_lanes_and_native_equal_scalar_at_real_resync_with_short_and_leftover_lanes():
    # 21 segments: the first starts at the window (a short lane), a round of 16, then 5
    # left (a round with idle lanes); and 17: a round of 16 and one scalar leftover.
    # Native rounds of 12 and 8 lanes: a short first segment and 12 whole ones; 8 whole
    # and a partial one.
    rng = np.random.default_rng(7)
    n = 21 * zk.RESYNC - 12345
    x = random_series(rng, n, "nonfinite")
    r = zk.RESYNC
    cases = [(0, n), (3 * r + 17, 20 * r + 17), (0, 13 * r), (5 * r, 13 * r + 5)]
    for (start, stop), window in zip(cases + cases[:1], [1000] * 4 + [20_000], strict=True):
        # (a window of 20000: past the native kernel's ring, two buffers per fill)
        x0 = max(0, (start // zk.RESYNC) * zk.RESYNC - window)
        (i1, s1), (i2, s2) = both(x[x0:stop], x0, start, stop, window, 3.0, zk.RESYNC)
        assert len(i1) > 1000
        np.testing.assert_array_equal(i2, i1)
        np.testing.assert_array_equal(s2, s1)


def test_native_wrapper_checks_its_arrays():
    native_kernel()
    x = np.zeros(3 * zk.RESYNC)
    idx, sc = np.empty(len(x), np.int64), np.empty(len(x))
    assert zn.rolling_zscore_flags(x, 0, 0, len(x), 100, 3.0, idx, sc) == 0
    with pytest.raises(ValueError, match=r"x covers \[1, "):
        zn.rolling_zscore_flags(x[1:], 1, 0, len(x), 100, 3.0, idx, sc)
    with pytest.raises(ValueError, match="need"):
        zn.rolling_zscore_flags(x, 0, 0, len(x), 100, 3.0, idx[:10], sc)
    with pytest.raises(TypeError, match="float64"):
        zn.rolling_zscore_flags(x.astype(np.float32), 0, 0, len(x), 100, 3.0, idx, sc)


def test_detect_equals_naive_oracle_through_lanes():
    x = random_series(np.random.default_rng(3), 5 * zk.RESYNC, "spikes")  # a round of 5 lanes
    got = consumer.detect(x, window=200, threshold=3.5)
    np.testing.assert_array_equal(got, naive_rolling_zscore_batched(x, 200, 3.5))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_detector_chunked_equals_whole(dtype):
    rng = np.random.default_rng(11)
    n = 19 * zk.RESYNC + 999
    x = random_series(rng, n, "nonfinite").astype(dtype)
    det = ZScoreDetector(ZScoreParams(window=1000, threshold=3.0), SeriesInfo(n))
    cuts = np.unique(np.r_[0, rng.integers(1, n, 5), 17 * zk.RESYNC, n])  # one 16-segment span
    got_i, got_s = [], []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        ws, we = det.window_for(int(a), int(b))
        idx, sc, _ = det.process(x[ws:we], ws, int(a), int(b), False)
        got_i.append(idx)
        got_s.append(sc)
    (want_i, want_s), _ = both(x.astype(np.float64), 0, 0, n, 1000, 3.0, zk.RESYNC)
    np.testing.assert_array_equal(np.concatenate(got_i), want_i)
    np.testing.assert_array_equal(np.concatenate(got_s).view(np.int64), want_s)
