"""The `stl` detector: chunked == whole, thread/chunk invariance, detection quality, params."""

from __future__ import annotations

import json

import numpy as np
import pytest

import consumer
import producer
from consumer.detectors.registry import make_detector
from consumer.detectors.stl import estimate_period
from consumer.kernels.stl import stl_decompose
from shared.errors import UsageError

SEASON = {"amplitude": 5.0, "period": 200}
SPIKES = {"rate": 1e-4, "magnitude": 8.0}


def mad_flags(x, period, threshold, block, **stl_kw):
    """Independent whole-series reference: batch STL residuals, MAD per absolute block."""
    _, _, resid = stl_decompose(x, period, **stl_kw)
    flags = []
    for lo in range(0, len(x), block):
        r = resid[lo : lo + block]
        scale = 1.4826 * np.median(np.abs(r - np.median(r)))
        flags.append(np.nonzero(np.abs(r) > threshold * scale)[0] + lo)
    return np.concatenate(flags)


def chunked(x, det, chunk):
    """Run a detector chunk by chunk the way the consumer does (window_for + process)."""
    out = []
    for start in range(0, len(x), chunk):
        stop = min(len(x), start + chunk)
        ws, we = det.window_for(start, stop)
        idx, _, _ = det.process(x[ws:we], ws, start, stop, False)
        out.append(idx)
    return np.concatenate(out)


@pytest.fixture(scope="module")
def spiky():
    return producer.generate_with_labels(600_000, seed=7, seasonality=SEASON, anomalies=SPIKES)


def test_whole_series_equals_batch_stl_reference(spiky):
    x, _ = spiky
    got = consumer.detect(x, type="stl", threshold=4, period=200, block=50_000)
    want = mad_flags(x, 200, 4.0, 50_000, seasonal=25, inner_iter=2)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("chunk", [65_536, 100_003, 250_000])
def test_chunked_equals_whole(spiky, chunk):
    x, _ = spiky
    det = make_detector("stl", {"threshold": 3.5, "period": 200}, len(x))
    whole = consumer.detect(x, type="stl", threshold=3.5, period=200)
    np.testing.assert_array_equal(chunked(x, det, chunk), whole)


def test_chunk_residuals_equal_whole_series_residuals():
    """Each window's residuals over the scored range equal the batch ones (<= 1e-9 rel)."""
    x = producer.generate(300_000, seed=3, seasonality={"amplitude": 2.0, "period": 24})
    det = make_detector("stl", {"period": 24, "seasonal": 7, "inner_iter": 3}, len(x))
    _, _, whole = stl_decompose(x, 24, seasonal=7, inner_iter=3)
    for start in range(0, len(x), 70_000):
        stop = min(len(x), start + 70_000)
        ws, we = det.window_for(start, stop)
        _, _, r = stl_decompose(
            x[ws:we], 24, seasonal=7, inner_iter=3, offset=ws, total_length=len(x)
        )
        a, b = start - ws, stop - ws
        scale = 1 + np.abs(x).max()
        assert np.abs(r[a:b] - whole[start:stop]).max() <= 1e-9 * scale


def test_detection_quality_beats_zscore(spiky):
    """The issue's scenario at 6e5 samples: STL finds the spikes, z-score does not."""
    x, labels = spiky
    idx = consumer.detect(x, type="stl", threshold=5, period=200)
    recall = np.isin(labels, idx).mean()
    precision = np.isin(idx, labels).mean()
    assert recall >= 0.99 and precision >= 0.95, (recall, precision)
    z = consumer.detect(x, type="zscore", threshold=5)
    z_recall = np.isin(labels, z).mean() if len(z) else 0.0
    assert z_recall < 0.5


def test_cli_stl_1e6_recall_precision_and_threads(tmp_path, run_producer, run_consumer):
    """The issue's acceptance test: 1e6 samples, amplitude 5, period 200, spikes 8 sigma."""
    rc, _, err = run_producer(
        "--num_samples",
        "1000000",
        "--file",
        "s.npy",
        "--seasonality",
        json.dumps(SEASON),
        "--anomalies",
        json.dumps(SPIKES),
        "--chunk_size",
        "131072",
    )
    assert rc == 0, err
    results = {}
    for threads in ("1", "2"):
        rc, out, err = run_consumer(
            "--file",
            "s.npy",
            "--type",
            "stl",
            "--params",
            '{"threshold": 5}',
            "--labels",
            "s.labels.npy",
            "--threads",
            threads,
            "--indices",
            f"i{threads}.npy",
            "--out",
            f"o{threads}.parquet",
            "--summary",
            f"s{threads}.json",
        )
        assert rc == 0, err
        results[threads] = np.load(tmp_path / f"i{threads}.npy")
        summary = json.loads((tmp_path / f"s{threads}.json").read_text())
        assert summary["recall"] >= 0.99 and summary["precision"] >= 0.95, summary
        assert summary["detector"]["period"] == 200  # taken from the stream
    np.testing.assert_array_equal(results["1"], results["2"])
    x = np.load(tmp_path / "s.npy")
    np.testing.assert_array_equal(
        results["1"], consumer.detect(x, type="stl", threshold=5, period=200)
    )


def test_robust_mode_is_chunk_invariant_and_close_to_batch():
    """Streamed robust STL uses a median per fixed block; bound its gap to batch robust STL."""
    x = producer.generate(
        140_000,
        seed=11,
        seasonality={"amplitude": 3.0, "period": 50},
        anomalies={"rate": 1e-3, "magnitude": 10},
    )
    params = {"period": 50, "robust": True, "seasonal": 7, "outer_iter": 3, "block": 20_000}
    det = make_detector("stl", params, len(x))
    a = chunked(x, det, 30_000)
    b = chunked(x, det, 70_000)
    np.testing.assert_array_equal(a, b)
    # Residuals of the streamed robust fit vs batch robust STL over the whole series.
    _, _, batch = stl_decompose(x, 50, seasonal=7, robust=True, inner_iter=2, outer_iter=3)
    streamed = np.empty_like(batch)
    for b0 in range(0, len(x), 20_000):
        b1 = min(len(x), b0 + 20_000)
        ws, we = det._window(b0, b1)
        _, _, r = stl_decompose(
            x[ws:we],
            50,
            seasonal=7,
            robust=True,
            inner_iter=2,
            outer_iter=3,
            offset=ws,
            total_length=len(x),
        )
        streamed[b0:b1] = r[b0 - ws : b1 - ws]
    noise = 1.4826 * np.median(np.abs(batch - np.median(batch)))
    gap = np.abs(streamed - batch)
    assert np.median(gap) <= 0.05 * noise and gap.max() <= 1.0 * noise, (gap.max(), noise)


def test_period_estimation():
    x = producer.generate(100_000, seed=5, seasonality={"amplitude": 2.0, "period": 144})
    assert estimate_period(x) == 144
    assert estimate_period(producer.generate(100_000, seed=5)) is None
    # A plain array without a period given: estimated from the prefix.
    idx = consumer.detect(x, type="stl", threshold=5)
    assert np.array_equal(idx, consumer.detect(x, type="stl", threshold=5, period=144))
    # No period given, recorded or evident: no seasonal component (trend Loess only).
    noise = producer.generate(50_000, seed=1)
    det = make_detector("stl", {}, len(noise))
    assert det.mode == "trend" and det.p.period is None and det.p.trend == 101


def test_nan_samples_are_not_flagged_and_do_not_crash():
    x = producer.generate(200_000, seed=9, seasonality=SEASON)
    x[[10, 5000, 5001, 123_456]] = [np.nan, np.inf, -np.inf, np.nan]
    idx = consumer.detect(x, type="stl", threshold=4, period=200)
    assert not np.isin([10, 5000, 5001, 123_456], idx).any()
    det = make_detector("stl", {"threshold": 4, "period": 200}, len(x))
    np.testing.assert_array_equal(chunked(x, det, 65_536), idx)


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"period": 200, "seasonal": 8}, "seasonal"),
        ({"period": 1}, "period"),
        ({"period": 200, "threshold": 0}, "threshold"),
        ({"period": 200, "trend": 100}, "trend"),
        ({"period": 200, "inner_iter": 0}, "inner_iter"),
        ({"period": 200, "bogus": 1}, "bogus"),
        ({"period": 60_000}, "period"),
        ({"period": 24.5}, "period"),
        ({"period": "1 fortnight"}, "period"),
        ({"period": "1d"}, "period"),  # a duration without timestamps
        ({"periods": [24, 24]}, "periods"),
        ({"periods": [24, 1]}, "periods"),
        ({"periods": [24, 60_000]}, "periods"),
        ({"periods": []}, "periods"),
        ({"period": 24, "periods": [24, 168]}, "periods"),
        ({"periods": [24, 168], "windows": [7]}, "windows"),
        ({"periods": [24, 168], "windows": [7, 8]}, "windows"),
    ],
)
def test_bad_params(params, word):
    with pytest.raises(UsageError, match=word):
        make_detector("stl", params, 100_000)


def test_bad_params_cli(tmp_path, run_producer, run_consumer):
    rc, _, err = run_producer("--num_samples", "100000", "--file", "s.npy")
    assert rc == 0, err
    rc, _, err = run_consumer("--file", "s.npy", "--type", "stl", "--params", '{"seasonal": 4}')
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    rc, _, err = run_consumer("--file", "s.npy", "--type", "stl", "--params", '{"period": 1}')
    assert rc == 2 and "period" in err and "Traceback" not in err, err
    rc, _, err = run_consumer("--file", "s.npy", "--type", "stl", "--params", '{"period": 60000}')
    assert rc == 2 and "period" in err and "too long" in err, err
    rc, _, err = run_consumer("--file", "s.npy", "--type", "stl", "--params", '{"period": "1d"}')
    assert rc == 2 and "timestamps" in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = run_consumer(
        "--file", "s.npy", "--type", "stl", "--params", '{"periods": [24, 24]}'
    )
    assert rc == 2 and "distinct" in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------- missing values


def test_missing_samples_chunked_equals_whole_and_never_flagged():
    x = producer.generate_with_labels(
        310_000, seed=21, seasonality={"amplitude": 5.0, "period": 200}, anomalies=SPIKES
    )[0]
    rng = np.random.default_rng(0)
    miss = rng.choice(len(x), 4000, replace=False)
    x[miss] = np.nan
    x[150_000:151_300] = np.nan  # a gap of 6.5 periods across a chunk boundary
    x[[7, 8, 9]] = [np.inf, -np.inf, np.nan]
    whole = consumer.detect(x, type="stl", threshold=4, period=200)
    assert np.isfinite(x[whole]).all()
    det = make_detector("stl", {"threshold": 4, "period": 200}, len(x))
    for chunk in (65_536, 100_003, 150_500):
        np.testing.assert_array_equal(chunked(x, det, chunk), whole)
    s = consumer.score(x, type="stl", period=200)
    assert np.isnan(s[~np.isfinite(x)]).all()


@pytest.mark.parametrize("robust", [False, True])
def test_gap_does_not_create_false_flags(robust):
    """A level far from 0 and a gap of several periods: no flags around the gap."""
    n, p = 130_000, 200  # robust STL is slow (about 20k samples/s): no longer than needed
    x = producer.generate(n, seed=4, seasonality={"amplitude": 5.0, "period": p}) + 1000.0
    for lo, length in ((60_000, 5 * p + 37), (120_000, 12 * p)):
        x[lo : lo + length] = np.nan
    # Robust residuals are tighter (README): robust mode needs a higher threshold.
    params = {"period": p, "threshold": 6 if robust else 5, "robust": robust, "block": 50_000}
    flags = consumer.detect(x, type="stl", **params)
    # Pure Gaussian noise: 5 sigma flags are ~0.6 per 1e6 samples; none near the gaps.
    near = [(59_000, 62_300), (119_000, 123_500)]
    for a, b in near:
        assert not ((flags >= a) & (flags < b)).any(), flags
    assert len(flags) <= 3, flags
    # The residuals beside the gaps keep the noise level (no leak of the level 1000).
    _, _, resid = stl_decompose(x, p, seasonal=25, inner_iter=2)
    beside = np.r_[resid[59_000:60_000], resid[61_037:62_000]]
    assert np.abs(beside).max() < 5.0


def test_gap_longer_than_the_halo_and_all_missing_segments():
    x = producer.generate(1_200_000, seed=8, seasonality={"amplitude": 3.0, "period": 50})
    x[300_000:900_000] = np.nan  # segments entirely missing
    whole = consumer.detect(x, type="stl", threshold=4, period=50)
    assert not ((whole >= 300_000) & (whole < 900_000)).any()
    det = make_detector("stl", {"threshold": 4, "period": 50}, len(x))
    np.testing.assert_array_equal(chunked(x, det, 262_144 + 5), whole)


def test_entirely_missing_series_is_not_flagged():
    x = np.full(10_000, np.nan)
    assert len(consumer.detect(x, type="stl", period=24)) == 0


# --------------------------------------------------------------------- no seasonality


def test_no_seasonality_mode_finds_spikes_and_is_chunk_exact():
    x, labels = producer.generate_with_labels(
        500_000, seed=3, params={"mean": 40.0, "std": 1.0}, anomalies={"rate": 1e-4, "magnitude": 8}
    )
    logs = []
    from consumer.detectors.base import SeriesInfo

    info = SeriesInfo(len(x), prefix=lambda k: x[:k], log=logs.append)
    det = make_detector("stl", {"threshold": 5}, info)
    assert det.mode == "trend" and len(logs) == 1 and "without a seasonal component" in logs[0]
    whole = consumer.detect(x, type="stl", threshold=5)
    assert np.isin(labels, whole).mean() >= 0.99 and np.isin(whole, labels).mean() >= 0.95
    np.testing.assert_array_equal(chunked(x, det, 100_001), whole)
    # An explicit period that does not fit the series stays an error.
    with pytest.raises(UsageError, match="too long"):
        consumer.detect(x[:1000], type="stl", period=600)


def test_design_card_commands_work(tmp_path, run_producer, run_consumer):
    rc, _, err = run_producer("--num_samples", "1000000", "--file", "gen.npy", "--sync")
    assert rc == 0, err
    rc, out, err = run_consumer("--file", "gen.npy", "--type", "stl")
    assert rc == 0, err
    lines = [ln for ln in (out + err).splitlines() if "without a seasonal component" in ln]
    assert len(lines) == 1, (out, err)


# ------------------------------------------------------------------ period durations


def test_period_as_duration_uses_the_cadence():
    from consumer.detectors.base import SeriesInfo

    x = producer.generate(100_000, seed=2, seasonality={"amplitude": 3.0, "period": 288})
    info = SeriesInfo(len(x), cadence_seconds=300.0)  # 5-minute samples: 1d = 288
    det = make_detector("stl", {"period": "1d", "threshold": 4}, info)
    assert det.p.period == 288
    det = make_detector("stl", {"periods": ["1h", "1d"]}, info)
    assert det.p.periods == (12, 288)
    assert (
        make_detector("stl", {"period": "30min"}, SeriesInfo(10_000, cadence_seconds=60)).p.period
        == 30
    )
    with pytest.raises(UsageError, match="whole number of samples"):
        make_detector("stl", {"period": "1h"}, SeriesInfo(100_000, cadence_seconds=7.0))
    with pytest.raises(UsageError, match="under two samples"):
        make_detector("stl", {"period": "1min"}, SeriesInfo(100_000, cadence_seconds=60.0))
    with pytest.raises(UsageError, match="timestamps"):
        make_detector("stl", {"period": "1d"}, SeriesInfo(100_000))


# --------------------------------------------------------------------------- MSTL


def test_mstl_detector_chunked_equals_whole_and_batch_mstl():
    from consumer.kernels.mstl import mstl_decompose

    n = 200_000
    t = np.arange(n)
    x = producer.generate(n, seed=6, anomalies={"rate": 1e-4, "magnitude": 8})
    x = x + 3.0 * np.sin(2 * np.pi * t / 24) + 2.0 * np.sin(2 * np.pi * t / 168)
    params = {"periods": [168, 24], "threshold": 5, "block": 40_000}
    det = make_detector("stl", params, n)
    assert det.p.periods == (24, 168) and det.mode == "mstl"
    whole = consumer.detect(x, type="stl", **params)
    np.testing.assert_array_equal(chunked(x, det, 70_001), whole)
    # The segments' residuals equal batch MSTL's over the whole series.
    r = mstl_decompose(x, [24, 168], [25, 25], 2, {"inner_iter": 2})[2]
    flags = []
    for lo in range(0, n, 40_000):
        b = r[lo : lo + 40_000]
        scale = 1.4826 * np.median(np.abs(b - np.median(b)))
        flags.append(np.nonzero(np.abs(b) > 5 * scale)[0] + lo)
    np.testing.assert_array_equal(whole, np.concatenate(flags))


def test_producer_several_seasonalities_and_consumer_mstl(tmp_path, run_producer, run_consumer):
    seas = [{"amplitude": 3.0, "period": 24}, {"amplitude": 2.0, "period": 168}]
    rc, _, err = run_producer(
        "--num_samples",
        "400000",
        "--file",
        "m.npy",
        "--seasonality",
        json.dumps(seas),
        "--anomalies",
        json.dumps(SPIKES),
    )
    assert rc == 0, err
    x = np.load(tmp_path / "m.npy")
    t = np.arange(len(x))
    want = producer.generate(400_000, anomalies=SPIKES)
    want = want + (
        3.0 * np.sin(2 * np.pi * (t % 24) / 24) + 2.0 * np.sin(2 * np.pi * (t % 168) / 168)
    )
    assert np.abs(x - want).max() < 1e-12
    rc, _, err = run_consumer(
        "--file",
        "m.npy",
        "--type",
        "stl",
        "--params",
        '{"threshold": 5}',
        "--labels",
        "m.labels.npy",
        "--summary",
        "m.json",
    )
    assert rc == 0, err
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["detector"]["periods"] == [24, 168], summary["detector"]
    # 40 labelled spikes of 8 sd: at most 2 missed or spurious
    assert summary["recall"] >= 0.95 and summary["precision"] >= 0.95, summary
    rc, _, err = run_producer(
        "--num_samples", "1000", "--file", "b.npy", "--seasonality", '[{"period": 1}]'
    )
    assert rc == 2 and "--seasonality[0]" in err and len(err.strip().splitlines()) == 1, err
