"""Tests of the consumer: real ``python -m consumer`` processes on real files.

No mocks: indices are compared exactly with the naive numpy oracles in
``tests/oracles.py`` and with ``consumer.detect``; streams are written by real
``python -m producer`` processes, tailed while they are written (the producer
is slowed by alternately stopping and continuing it), and damaged on disk by
hand (stale or failed sidecars, flipped bytes, truncated files).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from oracles import naive_block_zscore, naive_rolling_zscore, naive_rolling_zscore_batched
from procutil import pause

import consumer

CHUNK = 1 << 16
ROLLING = {"window": 1000, "threshold": 3.5}
ROLLING_JSON = json.dumps(ROLLING)


# -- helpers ---------------------------------------------------------------------


def series(kind: str, n: int, seed: int = 0, dtype: str = "float64") -> np.ndarray:
    """Random test series: plain noise, seasonal + trend, spiky, or with NaN/inf."""
    rng = np.random.default_rng(seed)
    i = np.arange(n, dtype=np.float64)
    x = rng.standard_normal(n)
    if kind in ("seasonal", "seasonal_spikes"):
        x += 3.0 * np.sin(2 * np.pi * i / 500.0) + 2e-5 * i
    if kind in ("spikes", "seasonal_spikes"):
        pos = rng.choice(n, n // 100, replace=False)
        x[pos] += rng.choice([-1.0, 1.0], len(pos)) * rng.uniform(4, 12, len(pos))
    if kind == "nonfinite":
        pos = rng.choice(n, n // 50, replace=False)
        x[pos] = rng.choice([np.nan, np.inf, -np.inf], len(pos))
        x[1000:1300] = np.nan  # a run longer than small windows: < 2 finite values
        x[5000:5003] = [np.inf, 1e3, -np.inf]
        x[7000] = 50.0  # a spike right after a NaN
        x[6999] = np.nan
    return x.astype(dtype)


def oracle(x: np.ndarray, params: dict) -> np.ndarray:
    if params.get("mode", "rolling") == "block":
        return naive_block_zscore(x, params["block"], params["threshold"])
    if len(x) * params["window"] > 5e7:
        return naive_rolling_zscore_batched(x, params["window"], params["threshold"])
    return naive_rolling_zscore(x, params["window"], params["threshold"])


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def load_sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.stem + ".stream.json").read_text())


class Throttle:
    """Slow a stopped (SIGSTOP) child process down: let it run ``run`` s, then stop it
    for ``pause`` s, over and over; it is left running (SIGCONT) on exit."""

    def __init__(self, proc: subprocess.Popen, run: float, pause: float) -> None:
        self.proc, self.run, self.pause = proc, run, pause
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _signal(self, sig: int) -> None:
        if self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _loop(self) -> None:
        while True:
            self._signal(signal.SIGCONT)
            if self.stop.wait(self.run):
                return
            self._signal(signal.SIGSTOP)
            if self.stop.wait(self.pause):
                return

    def __enter__(self) -> Throttle:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._signal(signal.SIGCONT)


def committed_chunks(f: Path) -> int:
    try:
        return sum(c is not None for c in load_sidecar(f)["chunks"])
    except (FileNotFoundError, ValueError):
        return 0


def spawn_paused_producer(spawn_module, f: Path, n: int, *args) -> subprocess.Popen:
    """A real producer, stopped (SIGSTOP) as soon as it has committed its first chunk."""
    prod = spawn_module(
        "producer",
        "--num_samples",
        n,
        "--file",
        f.name,
        "--threads",
        1,
        "--chunk_size",
        CHUNK,
        "--sync",
        "--quiet",
        *args,
    )
    wait_for(lambda: committed_chunks(f) >= 1 or prod.poll() is not None, step=0.002)
    pause(prod)
    assert prod.poll() is None, "the producer finished before it could be paused"
    return prod


def wait_for(predicate, timeout: float = 60.0, step: float = 0.01) -> None:
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(step)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# -- 1. consumer.detect == naive oracle ------------------------------------------------

DETECT_CASES = [
    ("normal", 20_000, "float64", {"window": 2, "threshold": 3.0}),
    ("seasonal", 20_000, "float64", {"window": 50, "threshold": 3.0}),
    ("spikes", 30_000, "float64", {"window": 1000, "threshold": 4.0}),
    ("seasonal_spikes", 20_000, "float32", {"window": 300, "threshold": 3.0}),
    ("normal", 73_000, "float64", {"window": 70_000, "threshold": 3.0}),  # window > resync
    ("seasonal_spikes", 140_000, "float64", {"window": 1000, "threshold": 3.0}),  # 2 resyncs
    ("seasonal_spikes", 100_000, "float64", {"mode": "block", "block": 30_001, "threshold": 3.0}),
    ("spikes", 10_001, "float64", {"mode": "block", "block": 2, "threshold": 0.5}),
    ("seasonal", 50_000, "float32", {"mode": "block", "block": 7_777, "threshold": 2.5}),
    ("nonfinite", 20_000, "float64", {"window": 2, "threshold": 3.0}),
    ("nonfinite", 20_000, "float32", {"window": 100, "threshold": 3.0}),
    ("nonfinite", 20_000, "float64", {"mode": "block", "block": 300, "threshold": 2.0}),
]


@pytest.mark.parametrize(("kind", "n", "dtype", "params"), DETECT_CASES)
def test_detect_equals_naive_oracle(kind, n, dtype, params):
    x = series(kind, n, seed=n + len(params), dtype=dtype)
    got = consumer.detect(x, type="zscore", **params)
    want = oracle(x, params)
    assert got.dtype == np.int64
    assert len(want) > 0
    np.testing.assert_array_equal(got, want)
    assert np.isfinite(x[got]).all()  # NaN/inf are never flagged


def test_detect_block_with_empty_and_single_sample_blocks():
    x = series("normal", 1_000, seed=3)
    x[100:200] = np.nan  # a block with no finite value
    x[200:299] = np.inf  # a block with one finite value (x[299])
    x[305] = 40.0
    got = consumer.detect(x, mode="block", block=100, threshold=3.0)
    np.testing.assert_array_equal(got, naive_block_zscore(x, 100, 3.0))
    assert 305 in got and not ((got >= 100) & (got < 300)).any()


def test_batched_oracle_agrees_with_loop_oracle():
    x = series("nonfinite", 8_000, seed=9)
    for window in (2, 64, 1500):
        np.testing.assert_array_equal(
            naive_rolling_zscore_batched(x, window, 3.0), naive_rolling_zscore(x, window, 3.0)
        )


# -- 2. CLI == API -------------------------------------------------------------------


def row_groups(path: Path) -> int:
    """Row groups over every part of a consumer's Parquet rows dataset."""
    return sum(pq.read_metadata(q).num_row_groups for q in path.glob("*.parquet"))


def check_parquet(path: Path, x: np.ndarray, idx: np.ndarray, chunks: int) -> None:
    assert row_groups(path) == chunks  # one row group per chunk, over the parts
    t = pq.read_table(path)
    assert t.column_names == ["index", "value", "score"]
    np.testing.assert_array_equal(t["index"].to_numpy(), idx)
    np.testing.assert_array_equal(t["value"].to_numpy(), x[idx].astype(np.float64))
    assert (t["score"].to_numpy() > 0).all()


def check_summary(path: Path, n: int, idx: np.ndarray, detector: dict) -> dict:
    s = json.loads(path.read_text())
    for key in ("samples", "anomalies", "seconds", "samples_per_s", "peak_rss_bytes", "detector"):
        assert key in s, key
    assert s["samples"] == n
    assert s["anomalies"] == len(idx)
    assert s["seconds"] >= 0 and s["samples_per_s"] > 0
    assert isinstance(s["peak_rss_bytes"], int) and s["peak_rss_bytes"] > 10 * 2**20
    assert s["detector"] == detector
    return s


def rolling_score_at(x: np.ndarray, i: int, window: int) -> float:
    w = x[i - window : i].astype(np.float64)
    return abs(float(x[i]) - w.mean()) / w.std()


def test_cli_equals_api(run_producer, spawn_module, tmp_path):
    n = 300_000
    gen = [
        "--num_samples",
        n,
        "--seed",
        7,
        "--threads",
        1,
        "--quiet",
        "--seasonality",
        '{"amplitude": 2, "period": 1000}',
        "--anomalies",
        '{"rate": 0.001, "magnitude": 7}',
    ]
    for name, chunk in (("a", 65536), ("b", 131072)):
        rc, _, err = run_producer(*gen, "--file", f"{name}.npy", "--chunk_size", chunk)
        assert rc == 0, err
    x = np.load(tmp_path / "a.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), x)
    # The plain and raw copies get planted values at every chunk boundary b of their
    # runs: a big spike at b - window (the oldest sample of b's window: a halo one
    # sample short scores b as an anomaly) and a moderate one at b itself.
    y = x.copy()
    for b in [*range(CHUNK, n, CHUNK), *range(70_000, n, 70_000)]:
        y[b - 1000] += 1000.0
        y[b] += 20.0
    np.save(tmp_path / "plain.npy", y)
    y.tofile(tmp_path / "raw.f64")
    # Hand-made labelled case: five clear spikes, four labels, tolerance 1.
    h = np.random.default_rng(1).standard_normal(10_000)
    spikes = [2000, 4000, 6000, 8000, 9000]
    h[spikes] += 50.0
    np.save(tmp_path / "hand.npy", h)
    np.save(tmp_path / "hand.labels.npy", np.array([2000, 4001, 6000, 7000], np.int64))
    hand_params = {"window": 500, "threshold": 8.0}

    block = {"mode": "block", "block": 50_000, "threshold": 3.0}
    runs = {
        # name: (input, extra args, params, expected row groups)
        "a_t1": ("a.npy", ["--threads", 1, "--scores", "a_t1.scores.npy"], ROLLING, 5),
        "a_t2": ("a.npy", ["--threads", 2], ROLLING, 5),
        "b_t2": ("b.npy", ["--threads", 2, "--labels", "b.labels.npy"], ROLLING, 3),
        "a_blk": ("a.npy", ["--threads", 2, "--scores", "a_blk.scores.npy"], block, 5),
        "plain": ("plain.npy", ["--threads", 2, "--chunk_size", CHUNK], ROLLING, 5),
        "raw": (
            "raw.f64",
            ["--raw", "--dtype", "float64", "--chunk_size", 70_000, "--threads", 2],
            ROLLING,
            5,
        ),
        "hand": (
            "hand.npy",
            ["--labels", "hand.labels.npy", "--tolerance", 1, "--chunk_size", 3000],
            hand_params,
            4,
        ),
    }
    procs = {}
    for name, (src, extra, params, _) in runs.items():
        procs[name] = spawn_module(
            "consumer",
            "--file",
            src,
            "--params",
            json.dumps(params),
            "--quiet",
            "--indices",
            f"{name}.idx.npy",
            "--out",
            f"{name}.parquet",
            "--summary",
            f"{name}.summary.json",
            *extra,
        )
    for name, p in procs.items():
        rc, out, err = finish(p)
        assert rc == 0, (name, err)
        assert err == "" and out == "", name

    want_rolling = consumer.detect(x, **ROLLING)
    want_block = consumer.detect(x, **block)
    np.testing.assert_array_equal(want_block, naive_block_zscore(x, 50_000, 3.0))
    assert len(want_rolling) > 200 and len(want_block) > 200
    for name, (_, _, params, groups) in runs.items():
        data = {"hand": h, "plain": y, "raw": y}.get(name, x)
        want = consumer.detect(data, **params)
        idx = np.load(tmp_path / f"{name}.idx.npy")
        assert idx.dtype == np.int64
        np.testing.assert_array_equal(idx, want, err_msg=name)
        check_parquet(tmp_path / f"{name}.parquet", data, idx, groups)
        detector = {"type": "zscore", "window": 1000, "threshold": 3.5, "mode": "rolling"}
        if name == "a_blk":
            detector = {"type": "zscore", "threshold": 3.0, "mode": "block", "block": 50_000}
        if name == "hand":
            detector = {"type": "zscore", "window": 500, "threshold": 8.0, "mode": "rolling"}
        s = check_summary(tmp_path / f"{name}.summary.json", len(data), idx, detector)
        if name not in ("b_t2", "hand"):
            assert "precision" not in s
    np.testing.assert_array_equal(np.load(tmp_path / "a_t1.idx.npy"), want_rolling)
    want_y = naive_rolling_zscore_batched(y, 1000, 3.5)
    np.testing.assert_array_equal(np.load(tmp_path / "plain.idx.npy"), want_y)
    assert CHUNK - 1000 in want_y and CHUNK not in want_y  # the plant matters

    # Labels computed by hand: flags 2000 4000 6000 8000 9000 against labels
    # 2000 4001 6000 7000 with tolerance 1 -> 3 of 5 flags hit, 3 of 4 labels found.
    np.testing.assert_array_equal(np.load(tmp_path / "hand.idx.npy"), spikes)
    s = json.loads((tmp_path / "hand.summary.json").read_text())
    assert s["precision"] == pytest.approx(3 / 5)
    assert s["recall"] == pytest.approx(3 / 4)
    assert s["f1"] == pytest.approx(2 / 3)
    # Producer labels, tolerance 0: a flag is a hit iff it is a labelled index.
    labels = np.load(tmp_path / "b.labels.npy")
    s = json.loads((tmp_path / "b_t2.summary.json").read_text())
    hits = np.isin(want_rolling, labels)
    assert s["precision"] == pytest.approx(hits.mean())
    assert s["recall"] == pytest.approx(np.isin(labels, want_rolling).mean())
    p, r = hits.mean(), np.isin(labels, want_rolling).mean()
    assert s["f1"] == pytest.approx(2 * p * r / (p + r))

    # Dense scores: float32 |x - mean| / std, NaN before the first full window.
    dense = np.load(tmp_path / "a_t1.scores.npy")
    assert dense.dtype == np.float32 and dense.shape == (n,)
    assert np.isnan(dense[:1000]).all() and np.isfinite(dense[1000:]).all()
    rng = np.random.default_rng(5)
    for i in np.concatenate([rng.integers(1000, n, 300), want_rolling[:50], [1000, n - 1]]):
        assert dense[i] == pytest.approx(rolling_score_at(x, int(i), 1000), rel=1e-5)
    _, want_dense = naive_block_zscore(x, 50_000, 3.0, scores=True)
    dense = np.load(tmp_path / "a_blk.scores.npy")
    np.testing.assert_allclose(dense, want_dense, rtol=1e-5)
    # Parquet scores are those same scores, in float64.
    t = pq.read_table(tmp_path / "a_blk.parquet")
    np.testing.assert_allclose(t["score"].to_numpy(), want_dense[want_block], rtol=1e-9)


def test_default_output_names_and_time_json(run_producer, run_consumer, tmp_path):
    rc, _, err = run_producer(
        "--num_samples", 200_000, "--file", "g.npy", "--chunk_size", CHUNK, "--quiet"
    )
    assert rc == 0, err
    rc, out, err = run_consumer("--file", "g.npy", "--params", ROLLING_JSON, "--time")
    assert rc == 0, err
    want = consumer.detect(np.load(tmp_path / "g.npy"), **ROLLING)
    np.testing.assert_array_equal(np.load(tmp_path / "g.anomalies.npy"), want)
    assert row_groups(tmp_path / "g.anomalies.parquet") == 4
    summary = json.loads((tmp_path / "g.summary.json").read_text())
    printed = json.loads(out.strip().splitlines()[-1])
    assert printed["anomalies"] == summary["anomalies"] == len(want)
    assert out.strip().splitlines()[0].startswith("consumer: 200000 samples")


# -- 3. tailing a live producer --------------------------------------------------------


def test_tails_a_running_producer(spawn_module, run_consumer, tmp_path):
    n = 20_000_000
    f = tmp_path / "live.npy"
    prod = spawn_paused_producer(
        spawn_module, f, n, "--anomalies", '{"rate": 0.0002, "magnitude": 8}'
    )
    cons = spawn_module(
        "consumer",
        "--file",
        f.name,
        "--params",
        ROLLING_JSON,
        "--threads",
        2,
        "--quiet",
        "--timeout",
        30,
    )
    doc = load_sidecar(f)
    assert doc["status"] == "running"
    assert None in doc["chunks"]
    # Let the producer go once the consumer is up (its outputs exist), slowed down.
    wait_for(lambda: (tmp_path / "live.anomalies.npy").exists() or cons.poll() is not None)
    with Throttle(prod, run=0.02, pause=0.05):
        rc, _, err = finish(prod)
        assert rc == 0, err
    rc, _, err = finish(cons)
    assert rc == 0, err
    assert load_sidecar(f)["status"] == "complete"
    live = np.load(tmp_path / "live.anomalies.npy")
    rc, _, err = run_consumer(
        "--file",
        f.name,
        "--params",
        ROLLING_JSON,
        "--quiet",
        "--indices",
        "again.npy",
        "--out",
        "again.parquet",
        "--summary",
        "again.json",
    )
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "again.npy"), live)
    want = consumer.detect(np.load(f), **ROLLING)
    assert len(want) > 1000
    np.testing.assert_array_equal(live, want)
    assert json.loads((tmp_path / "live.summary.json").read_text())["samples"] == n


# -- 4. stale or failed producer -------------------------------------------------------


@pytest.fixture
def stalled_stream(run_producer, tmp_path):
    """A finished 20-chunk stream whose sidecar is rewritten to say that only the
    first 12 chunks are committed; returns (path, data, flags of the committed prefix)."""
    f = tmp_path / "s.npy"
    rc, _, err = run_producer(
        "--num_samples",
        20 * CHUNK,
        "--file",
        f.name,
        "--chunk_size",
        CHUNK,
        "--quiet",
        "--anomalies",
        '{"rate": 0.001}',
    )
    assert rc == 0, err
    x = np.load(f)
    want = consumer.detect(x, **ROLLING)
    return f, x, want[want < 12 * CHUNK]


def rewrite_sidecar(f: Path, **fields) -> None:
    side = f.with_name(f.stem + ".stream.json")
    doc = json.loads(side.read_text())
    doc.update(fields)
    doc["chunks"][12:] = [None] * (len(doc["chunks"]) - 12)
    side.write_text(json.dumps(doc))


@pytest.mark.parametrize("threads", [1, 2])
def test_stale_heartbeat_exits_1_and_keeps_committed_results(
    threads, stalled_stream, run_consumer, tmp_path
):
    f, _, want = stalled_stream
    rewrite_sidecar(f, status="running", heartbeat=time.time() - 100)
    t0 = time.monotonic()
    rc, out, err = run_consumer(
        "--file", f.name, "--params", ROLLING_JSON, "--timeout", 1, "--threads", threads, "--quiet"
    )
    assert time.monotonic() - t0 < 10
    assert rc == 1
    line = one_line_error(err)
    assert line.startswith("consumer: error:") and "heartbeat" in line
    idx = np.load(tmp_path / "s.anomalies.npy")
    assert len(want) > 20
    np.testing.assert_array_equal(idx, want)
    t = pq.read_table(tmp_path / "s.anomalies.parquet")
    np.testing.assert_array_equal(t["index"].to_numpy(), want)


def test_failed_producer_exits_1_with_its_message(stalled_stream, run_consumer, tmp_path):
    f, _, want = stalled_stream
    rewrite_sidecar(f, status="failed", message="disk on fire at chunk 12", heartbeat=time.time())
    rc, out, err = run_consumer("--file", f.name, "--params", ROLLING_JSON, "--quiet")
    assert rc == 1
    line = one_line_error(err)
    assert "disk on fire at chunk 12" in line
    np.testing.assert_array_equal(np.load(tmp_path / "s.anomalies.npy"), want)


# -- 5. outputs readable while the consumer runs ----------------------------------------


def test_outputs_are_readable_prefixes_mid_run(spawn_module, tmp_path):
    n = 10_000_000
    f = tmp_path / "m.npy"
    prod = spawn_paused_producer(
        spawn_module, f, n, "--anomalies", '{"rate": 0.002, "magnitude": 8}'
    )
    idx_path = tmp_path / "m.anomalies.npy"
    pq_path = tmp_path / "m.anomalies.parquet"
    cons = spawn_module(
        "consumer",
        "--file",
        f.name,
        "--params",
        ROLLING_JSON,
        "--threads",
        2,
        "--quiet",
        "--timeout",
        30,
    )
    wait_for(lambda: idx_path.exists() and pq_path.exists() or cons.poll() is not None)
    reads: list[tuple[np.ndarray, np.ndarray]] = []
    with Throttle(prod, run=0.004, pause=0.1):  # stretches ~0.1 s of work to seconds
        while cons.poll() is None:
            a = np.load(idx_path)
            b = pq.read_table(pq_path)["index"].to_numpy()
            reads.append((a, b))
            time.sleep(0.1)
        rc, _, err = finish(prod)
        assert rc == 0, err
    rc, _, err = finish(cons)
    assert rc == 0, err
    final = np.load(idx_path)
    np.testing.assert_array_equal(final, consumer.detect(np.load(f), **ROLLING))
    np.testing.assert_array_equal(pq.read_table(pq_path)["index"].to_numpy(), final)
    for a, b in reads:
        assert a.dtype == np.int64
        np.testing.assert_array_equal(a, final[: len(a)])
        np.testing.assert_array_equal(b, final[: len(b)])
    partial = {len(a) for a, _ in reads if len(a) < len(final)}
    partial_pq = {len(b) for _, b in reads if len(b) < len(final)}
    assert len(reads) >= 5
    assert len(partial - {0}) >= 2 and len(partial_pq - {0}) >= 1, (partial, partial_pq)


# -- 6. bad input ----------------------------------------------------------------------


def _make_bad_inputs(d: Path) -> None:
    np.save(d / "good.npy", np.random.default_rng(0).standard_normal(5000))
    (d / "adir").mkdir()
    (d / "noise.npy").write_bytes(np.random.default_rng(1).bytes(4096))
    np.save(d / "trunc.npy", np.arange(1000, dtype=np.float64))
    with open(d / "trunc.npy", "r+b") as fh:
        fh.truncate(128 + 8 * 500)  # the header still says 1000 samples
    np.save(d / "twod.npy", np.zeros((100, 2)))
    np.save(d / "ints.npy", np.arange(100))


_GOOD = ["--file", "good.npy"]
BAD_INPUTS = {  # case -> (consumer args, exit status, text the message must contain)
    "missing": (["--file", "nope.npy"], 2, "nope.npy"),
    "directory": (["--file", "adir"], 2, "directory"),
    "not_npy": (["--file", "noise.npy"], 1, "NPY"),
    "truncated": (["--file", "trunc.npy"], 1, "trunc.npy"),
    "two_d": (["--file", "twod.npy"], 2, "1-D"),
    "integer": (["--file", "ints.npy"], 2, "float"),
    "bad_json": ([*_GOOD, "--params", '{"window": 10,'], 2, "--params"),
    "window_1": ([*_GOOD, "--params", '{"window": 1}'], 2, "window"),
    "threshold_0": ([*_GOOD, "--params", '{"threshold": 0}'], 2, "threshold"),
    "threshold_neg": ([*_GOOD, "--params", '{"threshold": -2}'], 2, "threshold"),
    "unknown_type": ([*_GOOD, "--type", "bogus"], 2, "bogus"),
    "unknown_key": ([*_GOOD, "--params", '{"windw": 10}'], 2, "windw"),
    "outputs_exist": (_GOOD, 2, "--overwrite"),
}


def test_bad_input_exits_with_one_line_and_clobbers_nothing(spawn_module, tmp_path):
    procs = {}
    before = {}
    for name, (args, _, _) in BAD_INPUTS.items():  # all at once: they are independent
        d = tmp_path / name
        d.mkdir()
        _make_bad_inputs(d)
        stem = Path(args[1]).stem
        for suffix in (".anomalies.npy", ".anomalies.parquet", ".summary.json"):
            (d / (stem + suffix)).write_bytes(b"precious " + suffix.encode())
        before[name] = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
        procs[name] = spawn_module("consumer", *args, cwd=d)
    for name, p in procs.items():
        _, status, text = BAD_INPUTS[name]
        rc, out, err = finish(p)
        line = one_line_error(err)
        assert rc == status, (name, line)
        assert text in line, (name, line)
        assert line.startswith("consumer: "), line
        after = {q.name: q.read_bytes() for q in (tmp_path / name).iterdir() if q.is_file()}
        assert after == before[name], name


# -- 7. --verify -----------------------------------------------------------------------


def test_verify_names_the_corrupted_chunk(run_producer, run_consumer, tmp_path):
    f = tmp_path / "v.npy"
    n = 5 * CHUNK - 1234
    rc, _, err = run_producer(
        "--num_samples", n, "--file", f.name, "--chunk_size", CHUNK, "--quiet"
    )
    assert rc == 0, err
    rc, out, err = run_consumer("--file", f.name, "--verify")
    assert rc == 0, err
    assert consumer.verify(str(f)) == []
    header_len = load_sidecar(f)["header_len"]
    k = 3
    with open(f, "r+b") as fh:
        fh.seek(header_len + k * CHUNK * 8 + 54_321)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x10]))
    rc, out, err = run_consumer("--file", f.name, "--verify")
    assert rc == 1
    text = (out + err).strip()
    assert len(text.splitlines()) == 1 and "Traceback" not in text
    assert text.rsplit(":", 1)[1].split() == [str(k)], text
    assert consumer.verify(str(f)) == [k]
    assert not list(tmp_path.glob("v.anomalies*"))  # --verify writes no outputs


# -- 8. console script -----------------------------------------------------------------


def test_console_script_installed(tmp_path):
    exe = shutil.which("consumer", path=str(Path(sys.executable).parent))
    assert exe is not None
    np.save(tmp_path / "c.npy", series("spikes", 20_000, seed=4))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run(
        [exe, "--file", "c.npy", "--params", ROLLING_JSON, "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    x = np.load(tmp_path / "c.npy")
    np.testing.assert_array_equal(
        np.load(tmp_path / "c.anomalies.npy"), naive_rolling_zscore(x, 1000, 3.5)
    )
    # The installed package (outside the repository, no PYTHONPATH) exposes the API.
    code = "import consumer, numpy as np; print(consumer.detect(np.zeros(10)).size)"
    p = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and p.stdout.strip() == "0", p.stderr
