"""The `likelihood` detector: oracle, chunked == whole, CLI == API, NaN, quality, params, NAB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from oracles import naive_likelihood

import consumer
import producer
from consumer import nab
from consumer.detectors.base import SeriesInfo
from consumer.detectors.registry import make_detector
from consumer.kernels import likelihood as lk
from shared.params import ParamError

SEASON = {"amplitude": 5.0, "period": 200}
SPIKES = {"rate": 1e-4, "magnitude": 8.0}
NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"


def scores64(det, x, start=0, stop=None, data_start=0):
    """The kernel's emitted scores in float64 (the detector hands out float32) and flags."""
    stop = len(x) + data_start if stop is None else stop
    n = stop - start
    idx, sc, dense = np.empty(n, np.int64), np.empty(n), np.empty(n)
    k = lk._likelihood(x, data_start, start, stop, *det.kernel_args, idx, sc, dense)
    return dense, idx[:k].copy()


def chunked(x, det, chunk, dense=True):
    """Run a detector chunk by chunk the way the consumer does (window_for + process)."""
    flags, scores = [], []
    for start in range(0, len(x), chunk):
        stop = min(len(x), start + chunk)
        ws, we = det.window_for(start, stop)
        idx, _, d = det.process(x[ws:we], ws, start, stop, dense)
        flags.append(idx)
        scores.append(d)
    return np.concatenate(flags), (np.concatenate(scores) if dense else None)


def messy_series(n, period, seed):
    """Seasonal noise with a variance change, spikes, a level burst, NaNs, a gap and infs."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 3 * np.sin(2 * np.pi * t / period) + rng.standard_normal(n) * (1 + 0.5 * (t > n // 2))
    x[rng.choice(n, n // 300, replace=False)] += rng.choice([-1, 1], n // 300) * 9
    x[n // 3 : n // 3 + 40] += 4
    x[rng.choice(n, n // 50, replace=False)] = np.nan
    x[n // 2 : n // 2 + 30] = np.nan
    x[[n // 5, n // 5 + 1]] = [np.inf, -np.inf]
    return x


@pytest.mark.parametrize(
    "cfg",
    [
        {"period": 50, "scale_window": 200, "long_window": 500, "min_count": 20, "block": 256},
        {
            "period": 0,
            "scale_window": 150,
            "short_window": 5,
            "long_window": 400,
            "min_count": 30,
            "block": 256,
            "quiet": 3,
        },
        {
            "period": 24,
            "lags": 3,
            "scale_window": 300,
            "short_window": 1,
            "long_window": 600,
            "min_count": 10,
            "block": 512,
            "floor": 0.0,
            "gate_count": 3,
        },
        {
            "period": 50,
            "scale_window": 200,
            "long_window": 500,
            "min_count": 20,
            "block": 256,
            "threshold": 0.2,
            "onset": 0.25,
            "quiet": 25,
            "point_weight": 1.0,
        },
    ],
)
def test_kernel_matches_the_oracle(cfg):
    x = messy_series(3000, 50, seed=1)
    det = make_detector("likelihood", cfg, len(x))
    got, flags = scores64(det, x)
    want, want_flags = naive_likelihood(x, **{k: v for k, v in cfg.items() if k != "block"})
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.nanmax(np.abs(got - want)) <= 1e-12
    np.testing.assert_array_equal(flags, want_flags)
    assert len(flags) > 3
    # The detector's outputs: the same flags, their float64 scores, float32 dense scores.
    idx, sc, dense = det.process(x, 0, 0, len(x), True)
    np.testing.assert_array_equal(idx, flags)
    np.testing.assert_array_equal(sc, got[flags])
    np.testing.assert_array_equal(dense, got.astype(np.float32))


@pytest.fixture(scope="module")
def long_series():
    x = messy_series(400_000, 200, seed=2)
    return x


@pytest.mark.parametrize("period", [200, 0])
def test_chunked_equals_whole_bit_for_bit(long_series, period):
    x = long_series
    det = make_detector("likelihood", {"period": period}, len(x))
    whole_flags, _, whole = det.process(x, 0, 0, len(x), True)
    assert det.window_for(150_000, 160_000)[0] >= 150_000 - det.halo
    for chunk in (65_536, 100_003, 150_001):  # a multiple of the block and two others
        flags, dense = chunked(x, det, chunk)
        np.testing.assert_array_equal(flags, whole_flags)
        np.testing.assert_array_equal(dense.view(np.int32), whole.view(np.int32))
    # A chunk given only half a scale window of history differs.
    start = 250_000
    short = det.p.scale_window // 2
    y = x.copy()
    y[: start - short] = np.nan
    ws, we = det.window_for(start, len(x))
    _, _, d = det.process(y[ws:we], ws, start, len(x), True)
    assert not np.array_equal(d.view(np.int32), whole[start:].view(np.int32))


def test_api_equals_cli_threads_and_scores(tmp_path, run_producer, run_consumer):
    rc, _, err = run_producer(
        "--num_samples",
        "600000",
        "--file",
        "s.npy",
        "--seasonality",
        json.dumps(SEASON),
        "--anomalies",
        json.dumps(SPIKES),
        "--chunk_size",
        "65536",
    )
    assert rc == 0, err
    x = np.load(tmp_path / "s.npy")
    want = consumer.detect(x, type="likelihood", period=200)
    det = make_detector("likelihood", {"period": 200}, len(x))
    _, _, dense = det.process(x, 0, 0, len(x), True)
    for threads in ("1", "2"):
        rc, _, err = run_consumer(
            "--file",
            "s.npy",
            "--type",
            "likelihood",
            "--threads",
            threads,
            "--indices",
            f"i{threads}.npy",
            "--scores",
            f"d{threads}.npy",
            "--out",
            f"o{threads}.parquet",
            "--summary",
            f"s{threads}.json",
        )
        assert rc == 0, err
        np.testing.assert_array_equal(np.load(tmp_path / f"i{threads}.npy"), want)
        got = np.load(tmp_path / f"d{threads}.npy")
        np.testing.assert_array_equal(got.view(np.int32), dense.view(np.int32))
        summary = json.loads((tmp_path / f"s{threads}.json").read_text())
        assert summary["detector"]["period"] == 200  # the stream's recorded period
    # --indices follow the score: exactly the samples whose score reaches the threshold.
    np.testing.assert_array_equal(want, np.flatnonzero(dense >= np.float32(0.3)))


def test_nan_is_never_flagged_and_scores_nan():
    x, _ = producer.generate_with_labels(100_000, seed=4, seasonality=SEASON, anomalies=SPIKES)
    bad = [10, 5000, 5001, 42_000, 77_777]
    x[bad] = [np.nan, np.inf, -np.inf, np.nan, np.nan]
    x[60_000:60_500] = np.nan
    s = consumer.score(x, type="likelihood", period=200)
    assert np.isnan(s[bad]).all() and np.isnan(s[60_000:60_500]).all()
    finite = np.isfinite(x)
    assert np.isfinite(s[finite]).all() and s[finite].min() >= 0 and s[finite].max() <= 1
    idx = consumer.detect(x, type="likelihood", period=200)
    assert len(idx) > 0 and finite[idx].all()


def test_spikes_precision_recall():
    x, labels = producer.generate_with_labels(
        1_000_000, seed=1, seasonality=SEASON, anomalies=SPIKES
    )
    idx = consumer.detect(x, type="likelihood", period=200)
    precision = np.isin(idx, labels).mean()
    recall = np.isin(labels, idx).mean()
    assert precision >= 0.95 and recall >= 0.99, (precision, recall)


def test_period_defaults():
    x = producer.generate(100_000, seed=5, seasonality={"amplitude": 2.0, "period": 144})
    det = make_detector("likelihood", None, SeriesInfo(len(x), 144.0))
    assert det.p.period == 144
    # A plain array: estimated from its first samples; white noise: no seasonal branch.
    np.testing.assert_array_equal(
        consumer.detect(x, type="likelihood"), consumer.detect(x, type="likelihood", period=144)
    )
    noise = producer.generate(50_000, seed=1)
    np.testing.assert_array_equal(
        consumer.detect(noise, type="likelihood"),
        consumer.detect(noise, type="likelihood", period=0),
    )


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"lags": 0}, "lags"),
        ({"period": -1}, "period"),
        ({"period": 1.5}, "period"),
        ({"period": "1d"}, "period"),
        ({"threshold": 0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"floor": 1.0}, "floor"),
        ({"point_weight": -0.1}, "point_weight"),
        ({"min_count": 5000}, "min_count"),
        ({"short_window": 100, "block": 64}, "block"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_params(params, word):
    with pytest.raises(ParamError, match=word):
        make_detector("likelihood", params, 100_000)
    with pytest.raises(ValueError, match=word):
        consumer.detect(np.zeros(1000), type="likelihood", **params)


def test_bad_params_cli(tmp_path, run_producer, run_consumer):
    rc, _, err = run_producer("--num_samples", "20000", "--file", "s.npy")
    assert rc == 0, err
    for params, word in (('{"lags": 0}', "lags"), ('{"threshold": 2}', "threshold")):
        rc, _, err = run_consumer("--file", "s.npy", "--type", "likelihood", "--params", params)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert word in err and "Traceback" not in err, err


@pytest.mark.skipif(not NAB_DIR.is_dir(), reason="NAB data not present")
def test_nab_subset_beats_twitter_advec():
    from consumer.evaluate import cadence_ns

    data = NAB_DIR / "data"
    windows = NAB_DIR / "combined_windows.json"
    names = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.csv"))
    scores = {}
    for name in names:
        timestamps, values = nab.read_series(data / name)
        per_day = round(86_400 * 10**9 / cadence_ns(timestamps))
        scores[name] = np.nan_to_num(
            consumer.score(values, type="likelihood", period=per_day), nan=0.0
        )
    result = nab.evaluate(scores, data, windows)
    assert result["standard"].normalized > 33.4, result["standard"].normalized
