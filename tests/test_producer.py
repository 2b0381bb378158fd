"""Tests of the producer: real ``python -m producer`` processes writing real files.

No mocks: bytes on disk are compared with ``producer.generate`` and with the
independent naive oracle in ``tests/oracles.py``; a reader in another process
tails a stream while it is being written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from oracles import naive_producer_series
from scipy import stats

from producer import generate, generate_with_labels

BLOCK = 1 << 16
N = 500_001  # not a multiple of any chunk size used here


# -- helpers ---------------------------------------------------------------------


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, header length) parsed by numpy itself."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        assert version == (1, 0)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        return shape, dtype, fortran, f.tell()


def sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.stem + ".stream.json").read_text())


def cli_args(
    *,
    seed: int = 42,
    type: str = "normal",
    params: dict | None = None,
    seasonality: dict | None = None,
    trend: dict | None = None,
    anomalies: dict | None = None,
    dtype: str = "float64",
) -> list[str]:
    args = ["--seed", str(seed), "--type", type, "--dtype", dtype]
    for option, value in (
        ("--params", params),
        ("--seasonality", seasonality),
        ("--trend", trend),
        ("--anomalies", anomalies),
    ):
        if value is not None:
            args += [option, json.dumps(value)]
    return args


def assert_one_line_ok(rc: int, out: str, err: str) -> None:
    assert rc == 0, f"exit {rc}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in err


# Generation settings exercised end to end; each is written under several
# thread counts / chunk sizes / writer modes and must give identical bytes.
SETTINGS = {
    "normal-f64": dict(seed=42),
    "uniform-f32-trend": dict(
        seed=7,
        type="uniform",
        params={"low": -3.0, "high": 5.0},
        trend={"slope": 2.5e-6},
        dtype="float32",
    ),
    "seasonal-nonint-anomalies": dict(
        seed=2024,
        params={"mean": 10.0, "std": 0.5},
        seasonality={"amplitude": 3.0, "period": 733.7, "phase": 1.1},
        trend={"slope": -1e-5},
        anomalies={"rate": 0.002, "magnitude": 8.0},
    ),
    "seasonal-int-anomalies-f32": dict(
        seed=3,
        seasonality={"amplitude": 2.0, "period": 1000},
        anomalies={"rate": 0.01},
        dtype="float32",
    ),
}

# (threads, chunk_size, --sync)
CONFIGS = {
    "normal-f64": [
        (1, 65536, False),
        (2, 65536, False),
        (4, 65536, False),
        (1, 131072, False),
        (4, 131072, True),
        (2, 65536, True),
    ],
}
DEFAULT_CONFIGS = [(1, 131072, True), (4, 65536, False), (2, 131072, False)]


# -- 1. reproducibility across threads, chunk sizes and writer modes -------------------


@pytest.mark.parametrize("name", list(SETTINGS))
def test_bytes_identical_across_threads_chunks_and_modes(name, run_producer, tmp_path):
    setting = SETTINGS[name]
    dtype = setting.get("dtype", "float64")
    expected, expected_labels = generate_with_labels(N, **setting)
    assert expected.dtype == np.dtype(dtype) and expected.shape == (N,)
    digests = {}
    label_digests = {}
    for threads, chunk, sync in CONFIGS.get(name, DEFAULT_CONFIGS):
        path = tmp_path / f"t{threads}-c{chunk}-{'sync' if sync else 'async'}.npy"
        args = [
            "--num_samples",
            N,
            "--file",
            path.name,
            "--threads",
            threads,
            "--chunk_size",
            chunk,
            "--quiet",
            *cli_args(**setting),
        ]
        if sync:
            args.append("--sync")
        rc, out, err = run_producer(*args)
        assert_one_line_ok(rc, out, err)
        raw = path.read_bytes()
        shape, file_dtype, fortran, header_len = npy_header(path)
        assert (shape, file_dtype, fortran) == ((N,), expected.dtype, False)
        assert sha256(raw[header_len:]) == sha256(expected.tobytes()), (threads, chunk, sync)
        digests[(threads, chunk, sync)] = sha256(raw)
        labels_path = tmp_path / (path.stem + ".labels.npy")
        if "anomalies" in setting:
            label_digests[(threads, chunk, sync)] = sha256(labels_path.read_bytes())
            np.testing.assert_array_equal(np.load(labels_path), expected_labels)
        else:
            assert not labels_path.exists()
        path.unlink()
    assert len(set(digests.values())) == 1, digests
    assert len(set(label_digests.values())) <= 1, label_digests


def test_seed_changes_bytes_and_prefix_property():
    a = generate(300_000, seed=1)
    b = generate(300_000, seed=2)
    assert not np.array_equal(a, b)
    # A shorter stream is a prefix of a longer one (values and labels).
    long_v, long_l = generate_with_labels(400_000, seed=5, anomalies={"rate": 0.01})
    short_v, short_l = generate_with_labels(250_001, seed=5, anomalies={"rate": 0.01})
    np.testing.assert_array_equal(short_v, long_v[:250_001])
    np.testing.assert_array_equal(short_l, long_l[long_l < 250_001])


# -- 1b. any chunk size -----------------------------------------------------------------

MIN_CHUNK = 4096  # producer.generate.MIN_CHUNK_SIZE, written out so a change must be deliberate
# Not multiples of the RNG block: the minimum, under a block, just over one, one that does
# not divide N, one longer than N, N itself.
ODD_CHUNKS = [MIN_CHUNK, 5000, BLOCK + 1, 100_000, 1_000_000, N]
ODD_SETTINGS = ["seasonal-nonint-anomalies", "seasonal-int-anomalies-f32"]


def _write(path: Path, n: int, setting: dict, chunk: int, threads: int, sync: bool) -> None:
    """One stream written in this process (``write_stream``, real files)."""
    from producer import write_stream
    from shared.params import generation_params

    gen = {k: v for k, v in setting.items() if k != "dtype"}
    write_stream(
        path,
        n,
        generation_params(**gen),
        dtype=setting.get("dtype", "float64"),
        chunk_size=chunk,
        threads=threads,
        sync=sync,
        overwrite=True,
    )


@pytest.mark.parametrize("name", ODD_SETTINGS)
def test_any_chunk_size_gives_the_bytes_and_labels_of_block_chunks(name, tmp_path):
    """Chunks that start and end inside RNG blocks: data file and labels file equal, byte
    for byte, those of 65536-sample chunks and the naive oracle's labels, async on
    several threads and --sync; each chunk's committed CRC-32 matches its bytes."""
    setting = SETTINGS[name]
    ref_path = tmp_path / "ref.npy"
    _write(ref_path, N, setting, BLOCK, 2, False)
    ref, ref_labels = ref_path.read_bytes(), (tmp_path / "ref.labels.npy").read_bytes()
    values, labels = generate_with_labels(N, **setting)
    assert ref[npy_header(ref_path)[3] :] == values.tobytes()
    np.testing.assert_array_equal(np.load(tmp_path / "ref.labels.npy"), labels)
    np.testing.assert_array_equal(labels, naive_producer_series(N, **setting)[1])
    assert len(labels) > 100
    for chunk in ODD_CHUNKS:
        for threads, sync in ((3, False), (2, True)) if chunk != N else ((1, False),):
            what = (chunk, threads, sync)
            path = tmp_path / "odd.npy"
            _write(path, N, setting, chunk, threads, sync)
            assert path.read_bytes() == ref, what
            assert (tmp_path / "odd.labels.npy").read_bytes() == ref_labels, what
            doc = sidecar(path)
            assert doc["chunk_size"] == chunk and len(doc["chunks"]) == -(-N // chunk), what
            raw = path.read_bytes()[doc["header_len"] :]
            itemsize = np.dtype(setting.get("dtype", "float64")).itemsize
            crcs = [
                zlib.crc32(raw[a * itemsize : (a + chunk) * itemsize]) for a in range(0, N, chunk)
            ]
            assert doc["chunks"] == crcs, what


def test_chunk_size_below_the_minimum_is_a_usage_error(tmp_path):
    from producer import write_stream
    from shared.errors import UsageError
    from shared.params import generation_params

    with pytest.raises(UsageError, match=f"--chunk_size must be at least {MIN_CHUNK} samples"):
        write_stream(tmp_path / "x.npy", 10_000, generation_params(), chunk_size=MIN_CHUNK - 1)
    assert list(tmp_path.iterdir()) == []


CONSUMER_N = 2_100_001
CONSUMER_SETTING = dict(
    seed=8,
    seasonality={"amplitude": 1.0, "period": 200},
    anomalies={"rate": 1e-4, "magnitude": 8.0},
)
# detector -> (type, params, chunk sizes it is run on besides 1 << 20).  The STL
# detector decomposes fixed segments of 2^18 samples, so chunks far smaller than that
# repeat the work of their segment (exact, but slow): run on the larger ones here.
CONSUMER_CASES = {
    "rolling": ("zscore", {"window": 1000, "threshold": 4}, [MIN_CHUNK, 100_000, 1_000_000]),
    "block": ("zscore", {"mode": "block", "threshold": 4}, [MIN_CHUNK, 100_000, 1_000_000]),
    "likelihood": ("likelihood", {"period": 200}, [5000, 1_000_000]),
    "stl": ("stl", {"threshold": 5}, [100_000, 1_000_000]),
}


def test_consumers_of_any_chunking_give_the_results_of_1m_chunks(run_producer, tmp_path):
    """Streams chunked by odd sizes (one written by ``python -m producer --chunk_size
    1000000 --sync``): every detector's indices, Parquet rows and dense scores equal those
    over the same samples chunked by 1 << 20."""
    import pyarrow.parquet as pq

    from consumer.run import OutputPaths, run_consumer

    rc, out, err = run_producer(
        "--num_samples",
        CONSUMER_N,
        "--file",
        "c1000000.npy",
        "--chunk_size",
        1_000_000,
        "--sync",
        "--threads",
        2,
        "--quiet",
        *cli_args(**CONSUMER_SETTING),
    )
    assert_one_line_ok(rc, out, err)
    for chunk in {c for *_, chunks in CONSUMER_CASES.values() for c in chunks} | {1 << 20}:
        if chunk != 1_000_000:
            _write(tmp_path / f"c{chunk}.npy", CONSUMER_N, CONSUMER_SETTING, chunk, 2, False)
    ref_bytes = (tmp_path / f"c{1 << 20}.npy").read_bytes()
    assert (tmp_path / "c1000000.npy").read_bytes() == ref_bytes

    def consume(chunk: int, type: str, params: dict, tag: str):
        stream = tmp_path / f"c{chunk}.npy"
        names = {"out": "o.parquet", "indices": "i.npy", "summary": "s.json", "scores": "d.npy"}
        paths = OutputPaths.for_input(
            stream, **{k: str(tmp_path / f"{tag}-{chunk}-{v}") for k, v in names.items()}
        )
        summary = run_consumer(stream, type=type, params=params, threads=2, paths=paths)
        idx = np.load(paths.indices)
        assert summary["anomalies"] == len(idx) and summary["samples"] == CONSUMER_N
        return idx, pq.read_table(paths.parquet), paths.scores.read_bytes()

    for tag, (type, params, chunks) in CONSUMER_CASES.items():
        want_idx, want_rows, want_scores = consume(1 << 20, type, params, tag)
        assert len(want_idx) > 50, (tag, len(want_idx))
        for chunk in chunks:
            idx, rows, scores = consume(chunk, type, params, tag)
            np.testing.assert_array_equal(idx, want_idx, err_msg=f"{tag}, chunk {chunk}")
            assert rows.equals(want_rows), (tag, chunk)
            assert scores == want_scores, (tag, chunk)


# -- 2. the naive oracle ---------------------------------------------------------------


ORACLE_CASES = {
    "normal": dict(seed=11),
    "normal-shifted-f32": dict(seed=12, params={"mean": -4.0, "std": 3.0}, dtype="float32"),
    "uniform": dict(seed=13, type="uniform", params={"low": 2.0, "high": 2.5}),
    "trend": dict(seed=14, trend={"slope": 1e-4}),
    "seasonal-int": dict(seed=15, seasonality={"amplitude": 1.5, "period": 365, "phase": 0.7}),
    "seasonal-nonint": dict(seed=16, seasonality={"amplitude": 4.0, "period": 99.25}),
    "everything": dict(
        seed=17,
        type="uniform",
        params={"low": -1.0, "high": 1.0},
        seasonality={"amplitude": 0.5, "period": 2.5, "phase": -2.0},
        trend={"slope": 3e-6},
        anomalies={"rate": 0.05, "magnitude": 5.0},
    ),
    "dense-anomalies": dict(seed=18, anomalies={"rate": 0.9, "magnitude": 2.0}),
    # The fill kernel is compiled per combination of terms: those not covered above.
    "single-machine-defaults": dict(
        seed=19,
        seasonality={"amplitude": 5, "period": 200},
        anomalies={"rate": 1e-4, "magnitude": 8},
    ),
    "short-period-trend-anomalies": dict(
        seed=20,
        params={"mean": 1.0, "std": 2.0},
        seasonality={"amplitude": 5.0, "period": 7},
        trend={"slope": 1e-5},
        anomalies={"rate": 0.01, "magnitude": 8.0},
    ),
    "uniform-table-f32": dict(
        seed=21,
        type="uniform",
        seasonality={"amplitude": 5.0, "period": 200},
        anomalies={"rate": 1e-3},
        dtype="float32",
    ),
    "sin-trend": dict(
        seed=22, seasonality={"amplitude": 2.0, "period": 50.5}, trend={"slope": 1e-4}
    ),
}


@pytest.mark.parametrize("name", list(ORACLE_CASES))
def test_generate_matches_naive_oracle(name):
    case = ORACLE_CASES[name]
    n = 3 * BLOCK + 4321  # a partial last block
    values, labels = generate_with_labels(n, **case)
    ref, ref_labels = naive_producer_series(n, **case)
    assert values.dtype == ref.dtype and values.shape == (n,)
    np.testing.assert_array_equal(labels, ref_labels)
    assert labels.dtype == np.int64
    assert np.all(np.diff(labels) > 0)
    if "seasonality" in case:
        # Table (or reduced-angle) sine against np.sin per sample.
        tol = 1e-12 if values.dtype == np.float64 else 1e-6
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(
            values.astype(np.float64), ref.astype(np.float64), rtol=0, atol=tol * scale
        )
    else:
        np.testing.assert_array_equal(values, ref)
    if "anomalies" in case:
        assert len(labels) > 0


def test_labels_file_matches_generate_and_marks_spikes(run_producer, tmp_path):
    setting = dict(
        seed=99,
        params={"mean": 1.0, "std": 2.0},
        seasonality={"amplitude": 1.0, "period": 50},
        anomalies={"rate": 0.003, "magnitude": 7.0},
    )
    n = 400_003
    rc, out, err = run_producer(
        "--num_samples",
        n,
        "--file",
        "gen.npy",
        "--threads",
        2,
        "--chunk_size",
        131072,
        "--quiet",
        *cli_args(**setting),
    )
    assert_one_line_ok(rc, out, err)
    values, labels = generate_with_labels(n, **setting)
    file_labels = np.load(tmp_path / "gen.labels.npy")
    assert file_labels.dtype == np.dtype("<i8") and file_labels.ndim == 1
    np.testing.assert_array_equal(file_labels, labels)
    np.testing.assert_array_equal(file_labels, naive_producer_series(n, **setting)[1])
    doc = sidecar(tmp_path / "gen.npy")
    assert doc["labels_file"] == "gen.labels.npy"
    assert doc["num_labels"] == len(labels)
    # Everywhere but the labels the values equal the anomaly-free stream; at the
    # labels they differ by exactly +-magnitude*std.
    data = np.load(tmp_path / "gen.npy")
    np.testing.assert_array_equal(data, values)
    clean = generate(n, **{k: v for k, v in setting.items() if k != "anomalies"})
    diff = data - clean
    mask = np.zeros(n, bool)
    mask[file_labels] = True
    assert np.all(diff[~mask] == 0)
    np.testing.assert_allclose(np.abs(diff[mask]), 7.0 * 2.0, rtol=0, atol=1e-12)
    signs = np.sign(diff[mask])
    assert (signs > 0).any() and (signs < 0).any()
    assert abs(len(labels) / n - 0.003) < 0.001


# -- 3. distributions ------------------------------------------------------------------


def test_normal_distribution_moments_and_ks():
    n = 1_000_003
    mean, std = 3.0, 2.0
    x = generate(n, seed=123, params={"mean": mean, "std": std})
    assert abs(x.mean() - mean) < 5 * std / math.sqrt(n)
    assert abs(x.std() - std) < 5 * std / math.sqrt(2 * n)
    assert stats.kstest(x, "norm", args=(mean, std)).pvalue > 1e-3
    # The test has power: a slightly wrong scale is rejected.
    assert stats.kstest(x, "norm", args=(mean, std * 1.01)).pvalue < 1e-3
    # Blocks are independent: lag-1 autocorrelation is ~0 (also across block seams).
    z = (x - x.mean()) / x.std()
    assert abs(float(np.mean(z[:-1] * z[1:]))) < 5 / math.sqrt(n)
    assert abs(float(np.corrcoef(x[:BLOCK], x[BLOCK : 2 * BLOCK])[0, 1])) < 5 / math.sqrt(BLOCK)


def test_normal_layers_and_tail_follow_the_normal_law():
    """The ziggurat's fast path, wedges and tail together give N(0, 1) in every region."""
    n = 4_000_000
    z = generate(n, seed=2024)
    # 40 equal-probability bins: a layer, wedge or sign mistake shows as a lopsided bin.
    edges = stats.norm.ppf(np.linspace(0.0, 1.0, 41))
    observed = np.histogram(z, bins=edges)[0]
    assert stats.chisquare(observed).pvalue > 1e-3
    # Beyond the base layer's edge R every sample comes from the tail sampler.
    r = 3.6541528853610088
    tail = np.abs(z[np.abs(z) > r])
    expected = 2 * n * stats.norm.sf(r)
    assert abs(len(tail) - expected) < 5 * math.sqrt(expected)
    assert stats.kstest(tail, stats.truncnorm(r, np.inf).cdf).pvalue > 1e-3
    # ...and the test has power: tail values shifted by 1% are rejected.
    assert stats.kstest(tail * 1.01, stats.truncnorm(r, np.inf).cdf).pvalue < 1e-3
    assert (z[np.abs(z) > r] < 0).any() and (z[np.abs(z) > r] > 0).any()


def test_anomaly_rate_extremes():
    # rate 1: every sample is an anomaly (log(1 - rate) is -inf: no gaps).
    values, labels = generate_with_labels(BLOCK + 10, seed=3, anomalies={"rate": 1.0})
    np.testing.assert_array_equal(labels, np.arange(BLOCK + 10))
    clean = generate(BLOCK + 10, seed=3)
    np.testing.assert_allclose(np.abs(values - clean), 6.0, rtol=0, atol=1e-12)
    # a tiny rate: gaps far beyond a block, no overflow, no anomalies
    _, labels = generate_with_labels(BLOCK * 3, seed=3, anomalies={"rate": 1e-300})
    assert len(labels) == 0
    # per-block counts are Binomial(BLOCK, rate): mean and spread
    rate = 2e-3
    _, labels = generate_with_labels(BLOCK * 200, seed=4, anomalies={"rate": rate})
    counts = np.bincount(labels // BLOCK, minlength=200)
    assert abs(counts.mean() - BLOCK * rate) < 5 * math.sqrt(BLOCK * rate / 200)
    assert 0.7 < counts.var(ddof=1) / (BLOCK * rate * (1 - rate)) < 1.4


def test_uniform_distribution_moments_and_ks():
    n = 1_000_003
    low, high = -2.0, 6.0
    x = generate(n, seed=321, type="uniform", params={"low": low, "high": high})
    assert x.min() >= low and x.max() < high
    assert abs(x.mean() - (low + high) / 2) < 5 * (high - low) / math.sqrt(12 * n)
    assert abs(x.std() - (high - low) / math.sqrt(12)) < 0.002 * (high - low)
    assert stats.kstest(x, "uniform", args=(low, high - low)).pvalue > 1e-3
    assert stats.kstest(x, "uniform", args=(low, (high - low) * 1.01)).pvalue < 1e-3


def test_float32_is_rounded_float64():
    kw = dict(seed=8, params={"mean": 0.25, "std": 3.0}, trend={"slope": 1e-6})
    np.testing.assert_array_equal(
        generate(200_000, dtype="float32", **kw), generate(200_000, **kw).astype(np.float32)
    )


# -- 4. seasonal phase is continuous across chunk (and block) boundaries ---------------


@pytest.mark.parametrize(
    "seasonality",
    [
        {"amplitude": 2.5, "period": 1000, "phase": 0.5},
        {"amplitude": 1.0, "period": 333.7, "phase": -1.0},
        {"amplitude": 4.0, "period": 7},
    ],
    ids=["int-period", "nonint-period", "short-period"],
)
def test_seasonality_continuous_across_chunks(seasonality, run_producer, tmp_path):
    n = 4 * BLOCK + 777
    chunk = BLOCK
    rc, out, err = run_producer(
        "--num_samples",
        n,
        "--file",
        "s.npy",
        "--threads",
        2,
        "--chunk_size",
        chunk,
        "--quiet",
        "--params",
        '{"mean": 0, "std": 0}',
        "--seasonality",
        json.dumps(seasonality),
    )
    assert_one_line_ok(rc, out, err)
    x = np.load(tmp_path / "s.npy")
    amplitude = seasonality.get("amplitude", 1.0)
    period = seasonality["period"]
    phase = seasonality.get("phase", 0.0)
    i = np.arange(n, dtype=np.float64)
    want = amplitude * np.sin(2 * np.pi * np.mod(i, period) / period + phase)
    np.testing.assert_allclose(x, want, rtol=0, atol=1e-12)
    # Unreduced angle: looser only because 2*pi*i/period itself rounds at large i.
    np.testing.assert_allclose(
        x, amplitude * np.sin(2 * np.pi * i / period + phase), rtol=0, atol=1e-9
    )
    for b in range(1, n // chunk + 1):
        lo, hi = b * chunk - 3, min(n, b * chunk + 3)
        np.testing.assert_allclose(x[lo:hi], want[lo:hi], rtol=0, atol=1e-12)
        assert abs(x[b * chunk] - want[b * chunk]) < 1e-12
    if float(period).is_integer():
        p = int(period)
        np.testing.assert_array_equal(x[p:], x[:-p])  # exactly periodic, seams included


# -- 5. NPY round trip and sidecar -----------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_npy_round_trip_and_sidecar(dtype, run_producer, tmp_path):
    n = 3 * BLOCK + 12345
    chunk = 2 * BLOCK
    setting = dict(
        seed=5,
        params={"mean": 1.0, "std": 2.0},
        seasonality={"amplitude": 1.0, "period": 24.5},
        trend={"slope": 1e-3},
        anomalies={"rate": 0.001, "magnitude": 6.0},
        dtype=dtype,
    )
    rc, out, err = run_producer(
        "--num_samples",
        n,
        "--file",
        "rt.npy",
        "--chunk_size",
        chunk,
        "--threads",
        2,
        "--quiet",
        *cli_args(**setting),
    )
    assert_one_line_ok(rc, out, err)
    path = tmp_path / "rt.npy"
    expected = generate(n, **setting)
    shape, file_dtype, fortran, header_len = npy_header(path)
    assert shape == (n,) and not fortran
    assert file_dtype == np.dtype("<f8" if dtype == "float64" else "<f4")
    assert header_len % 64 == 0
    assert path.stat().st_size == header_len + n * file_dtype.itemsize
    loaded = np.load(path)
    assert loaded.shape == (n,) and loaded.dtype == file_dtype
    np.testing.assert_array_equal(loaded, expected)
    mm = np.load(path, mmap_mode="r")
    assert mm.shape == (n,) and mm.dtype == file_dtype
    np.testing.assert_array_equal(mm, expected)
    del mm

    doc = sidecar(path)
    assert doc["format"] == "tsstream" and doc["version"] == 1
    assert doc["status"] == "complete"
    assert doc["data_file"] == "rt.npy"
    assert doc["dtype"] == dtype
    assert doc["num_samples"] == n
    assert doc["chunk_size"] == chunk
    assert doc["header_len"] == header_len
    assert doc["checksum"] == "crc32"
    assert doc["block_size"] == BLOCK
    gen = doc["generation"]
    assert gen["seed"] == 5
    assert gen["type"] == "normal"
    assert gen["params"] == {"mean": 1.0, "std": 2.0}
    assert gen["seasonality"] == {"amplitude": 1.0, "period": 24.5, "phase": 0.0}
    assert gen["trend"] == {"slope": 1e-3}
    assert gen["anomalies"] == {"rate": 0.001, "magnitude": 6.0}
    assert gen["bit_generator"] == "SplitMix64"
    assert gen["algorithm"] == 2
    chunks = doc["chunks"]
    assert len(chunks) == math.ceil(n / chunk) == 2
    raw = path.read_bytes()
    item = file_dtype.itemsize
    for k, crc in enumerate(chunks):
        assert isinstance(crc, int), chunks
        lo, hi = k * chunk, min(n, (k + 1) * chunk)
        assert crc == zlib.crc32(raw[header_len + lo * item : header_len + hi * item])
    # No temporary sidecar files are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "rt.labels.npy",
        "rt.npy",
        "rt.stream.json",
    ]


# -- 6. a reader in another process only ever sees committed, intact chunks ------------


READER = r"""
import json, sys, time, zlib
from pathlib import Path
import numpy as np
from shared.errors import StreamError
from shared.stream import StreamReader

path = Path(sys.argv[1])
side = path.with_name(path.stem + ".stream.json")
print("ready", flush=True)
deadline = time.monotonic() + 60
opened_plain = 0
reader = None
while reader is None:
    if time.monotonic() > deadline:
        print(json.dumps({"error": "never opened"})); sys.exit(3)
    if not path.exists():
        time.sleep(0.0005)
        continue
    try:
        r = StreamReader(path)
    except StreamError:
        continue  # file being created: not yet a valid stream
    if not r.is_stream:
        # The data file looked like a finished plain NPY file without a sidecar.
        opened_plain += 1
        r.close()
        continue
    reader = r

n = reader.layout.num_chunks
seen = np.zeros(n, bool)
checked = mismatches = while_running = polls = 0
statuses = []
while True:
    if time.monotonic() > deadline:
        print(json.dumps({"error": "timeout", "checked": checked})); sys.exit(3)
    st = reader.poll()
    polls += 1
    statuses.append(st.status)
    new = np.flatnonzero(st.committed & ~seen)
    for i in new:
        a, b = reader.layout.bounds(int(i))
        data = reader.read(a, b)
        if (zlib.crc32(data) & 0xFFFFFFFF) != st.checksums[int(i)]:
            mismatches += 1
        checked += 1
        if st.status == "running":
            while_running += 1
        seen[i] = True
    if seen.all() and st.status != "running":
        break
    if st.status == "failed":
        break
    time.sleep(0.002)
print(json.dumps({"chunks": n, "checked": checked, "mismatches": mismatches,
                  "while_running": while_running, "polls": polls,
                  "opened_plain": opened_plain, "final": reader.poll().status,
                  "saw_running": "running" in statuses}))
sys.exit(1 if mismatches or opened_plain else 0)
"""


def test_concurrent_reader_sees_only_intact_committed_chunks(spawn_module, tmp_path):
    n = 30_000_000
    chunk = 4 * BLOCK
    reader = spawn_module(None, "-c", READER, "big.npy")
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    producer = spawn_module(
        "producer", "--num_samples", n, "--file", "big.npy", "--chunk_size", chunk, "--threads", 1
    )
    p_out, p_err = producer.communicate(timeout=120)
    assert producer.returncode == 0, p_err
    r_out, r_err = reader.communicate(timeout=120)
    assert "Traceback" not in r_err, r_err
    report = json.loads(r_out.strip().splitlines()[-1])
    assert report["mismatches"] == 0, report
    assert report["opened_plain"] == 0, f"reader saw a plain NPY file before its sidecar: {report}"
    assert reader.returncode == 0, report
    assert report["chunks"] == math.ceil(n / chunk)
    assert report["checked"] == report["chunks"]
    assert report["while_running"] > 0, report  # really read while the producer wrote
    assert report["final"] == "complete"
    assert p_out.startswith("producer:")
    (tmp_path / "big.npy").unlink()


# -- 7. bad arguments: exit 2, one line, nothing touched -------------------------------


BAD_ARGS = [
    ("n-zero", ["--num_samples", "0"], "--num_samples"),
    ("n-negative", ["--num_samples=-5"], "--num_samples"),
    ("n-fraction", ["--num_samples", "1.5"], "integer"),
    ("n-text", ["--num_samples", "lots"], "integer"),
    ("unknown-type", ["--type", "poisson"], "poisson"),
    ("malformed-json", ["--params", '{"mean": 1'], "malformed JSON"),
    ("json-not-object", ["--params", "[1, 2]"], "JSON object"),
    ("std-negative", ["--params", '{"mean": 0, "std": -1}'], "std"),
    ("low-ge-high", ["--type", "uniform", "--params", '{"low": 2, "high": 1}'], "low"),
    ("low-eq-high", ["--type", "uniform", "--params", '{"low": 1, "high": 1}'], "high"),
    ("period-lt-2", ["--seasonality", '{"period": 1.5}'], "period"),
    ("period-missing", ["--seasonality", '{"amplitude": 1}'], "period"),
    ("unknown-key", ["--params", '{"mean": 0, "sd": 1}'], "unknown key 'sd'"),
    ("unknown-key-trend", ["--trend", '{"slop": 1}'], "unknown key 'slop'"),
    ("nan", ["--params", '{"mean": NaN}'], "NaN"),
    ("infinity", ["--seasonality", '{"period": Infinity}'], "Infinity"),
    ("overflow", ["--params", '{"mean": 1e999}'], "finite"),
    ("string-number", ["--params", '{"mean": "1"}'], "number"),
    ("rate-gt-1", ["--anomalies", '{"rate": 1.5}'], "rate"),
    ("threads-zero", ["--threads", "0"], "--threads"),
    ("chunk-zero", ["--chunk_size", "0"], "--chunk_size"),
    ("chunk-below-minimum", ["--chunk_size", "4095"], "at least 4096"),
    ("bad-dtype", ["--dtype", "int16"], "--dtype"),
    ("seed-negative", ["--seed=-1"], "--seed"),
    ("overwrite-and-resume", ["--resume"], "--resume"),
    ("unknown-option", ["--colour", "red"], "--colour"),
]


@pytest.fixture(scope="module")
def small_stream(tmp_path_factory) -> dict[str, bytes]:
    """A real finished stream with labels: file name -> bytes."""
    d = tmp_path_factory.mktemp("small")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "producer",
            "--num_samples",
            "70000",
            "--file",
            "old.npy",
            "--anomalies",
            '{"rate": 0.01}',
            "--quiet",
        ],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return {p.name: p.read_bytes() for p in d.iterdir()}


def _install(files: dict[str, bytes], where: Path) -> None:
    for name, data in files.items():
        (where / name).write_bytes(data)


def _check_usage_error(rc: int, out: str, err: str, keyword: str) -> None:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("producer: "), err
    assert "error" in lines[0]
    assert keyword in lines[0], err
    assert out == ""


def _bad_argv(bad: list[str], target: str) -> list[str]:
    good = {"--num_samples": "1000", "--file": target}
    given = {a.split("=")[0] for a in bad}
    return [x for k, v in good.items() if k not in given for x in (k, v)] + bad


@pytest.mark.parametrize("case", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_exit_2_one_line_and_touch_nothing(
    case, run_producer, tmp_path, small_stream, snapshot
):
    _, bad, keyword = case
    _install(small_stream, tmp_path)
    before = snapshot(tmp_path)
    # --overwrite: a check made after the stream is opened would destroy old.npy.
    rc, out, err = run_producer(*_bad_argv(bad, "old.npy"), "--overwrite")
    _check_usage_error(rc, out, err, keyword)
    assert snapshot(tmp_path) == before, "files changed"


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in BAD_ARGS
        if c[0]
        in (
            "n-zero",
            "malformed-json",
            "low-ge-high",
            "period-lt-2",
            "chunk-below-minimum",
            "bad-dtype",
            "threads-zero",
        )
    ],
    ids=lambda c: c[0],
)
def test_bad_arguments_create_no_file(case, run_producer, tmp_path, snapshot):
    _, bad, keyword = case
    (tmp_path / "other.bin").write_bytes(b"unrelated")
    before = snapshot(tmp_path)
    rc, out, err = run_producer(*_bad_argv(bad, "new.npy"))
    _check_usage_error(rc, out, err, keyword)
    assert snapshot(tmp_path) == before


def test_missing_required_options_exit_2(run_producer, tmp_path, snapshot):
    for args in (["--file", "x.npy"], ["--num_samples", "10"], []):
        rc, out, err = run_producer(*args)
        assert rc == 2
        assert len(err.splitlines()) == 1 and "required" in err, err
        assert "Traceback" not in err
    assert snapshot(tmp_path) == {}


def test_existing_file_needs_overwrite(run_producer, tmp_path, small_stream, snapshot):
    _install(small_stream, tmp_path)
    before = snapshot(tmp_path)
    rc, out, err = run_producer("--num_samples", 1000, "--file", "old.npy")
    assert rc == 2
    assert len(err.splitlines()) == 1 and "exists" in err and "--overwrite" in err, err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before
    # Only the sidecar left over also counts as an existing stream.
    (tmp_path / "old.npy").unlink()
    before = snapshot(tmp_path)
    rc, out, err = run_producer("--num_samples", 1000, "--file", "old.npy")
    assert rc == 2 and "exists" in err
    assert snapshot(tmp_path) == before


def test_existing_labels_file_needs_overwrite(run_producer, tmp_path):
    # Someone else's gen.labels.npy beside a new stream is not silently replaced.
    (tmp_path / "gen.labels.npy").write_bytes(b"precious")
    rc, out, err = run_producer(
        "--num_samples", 100_000, "--file", "gen.npy", "--anomalies", '{"rate": 0.01}'
    )
    assert rc == 2 and out == "", (rc, out, err)
    assert len(err.strip().splitlines()) == 1 and "gen.labels.npy" in err and "--overwrite" in err
    assert (tmp_path / "gen.labels.npy").read_bytes() == b"precious"
    assert not (tmp_path / "gen.npy").exists() and not (tmp_path / "gen.stream.json").exists()
    rc, out, err = run_producer(
        "--num_samples",
        100_000,
        "--file",
        "gen.npy",
        "--quiet",
        "--anomalies",
        '{"rate": 0.01}',
        "--overwrite",
    )
    assert rc == 0, err
    np.testing.assert_array_equal(
        np.load(tmp_path / "gen.labels.npy"),
        generate_with_labels(100_000, anomalies={"rate": 0.01})[1],
    )


def test_overwrite_replaces_the_stream(run_producer, tmp_path, small_stream):
    _install(small_stream, tmp_path)
    n = 150_001
    rc, out, err = run_producer(
        "--num_samples",
        n,
        "--file",
        "old.npy",
        "--seed",
        9,
        "--dtype",
        "float32",
        "--chunk_size",
        65536,
        "--overwrite",
        "--quiet",
    )
    assert_one_line_ok(rc, out, err)
    data = np.load(tmp_path / "old.npy")
    np.testing.assert_array_equal(data, generate(n, seed=9, dtype="float32"))
    doc = sidecar(tmp_path / "old.npy")
    assert doc["status"] == "complete" and doc["num_samples"] == n
    assert doc["dtype"] == "float32" and doc["generation"]["seed"] == 9
    assert doc["generation"]["anomalies"] is None and "labels_file" not in doc
    assert len(doc["chunks"]) == 3 and all(isinstance(c, int) for c in doc["chunks"])
    # The old run's labels described anomalies the new data does not have.
    assert not (tmp_path / "old.labels.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npy", "old.stream.json"]


# -- 8. summary line, --time, console script -------------------------------------------


def test_summary_line(run_producer, tmp_path):
    rc, out, err = run_producer(
        "--num_samples", 200_000, "--file", "s.npy", "--anomalies", '{"rate": 0.001}'
    )
    assert_one_line_ok(rc, out, err)
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("producer:")
    assert "200000 samples" in lines[0] and "s.npy" in lines[0]
    assert "labels" in lines[0]
    assert err == ""  # stderr is not a terminal: no progress bar


def test_time_prints_json_figures(run_producer, tmp_path):
    n = 300_000
    rc, out, err = run_producer(
        "--num_samples", n, "--file", "t.npy", "--time", "--threads", 2, "--sync"
    )
    assert_one_line_ok(rc, out, err)
    lines = out.splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith("producer:")
    figures = json.loads(lines[1])
    assert figures["samples"] == n
    assert figures["samples_per_s"] > 0 and math.isfinite(figures["samples_per_s"])
    assert isinstance(figures["peak_rss_bytes"], int) and figures["peak_rss_bytes"] > 2**20
    assert figures["threads"] == 2 and figures["sync"] is True
    # --quiet --time: the JSON line alone.
    rc, out, err = run_producer(
        "--num_samples", n, "--file", "t.npy", "--time", "--quiet", "--overwrite"
    )
    assert_one_line_ok(rc, out, err)
    assert len(out.splitlines()) == 1
    assert json.loads(out)["samples"] == n


def test_quiet_prints_nothing(run_producer):
    rc, out, err = run_producer("--num_samples", 1000, "--file", "q.npy", "--quiet")
    assert (rc, out, err) == (0, "", "")


def test_console_script_on_path(tmp_path):
    bindir = Path(sys.executable).parent
    exe = shutil.which("producer", path=str(bindir))
    assert exe is not None, f"no 'producer' console script in {bindir}"
    env = dict(os.environ, PATH=str(bindir) + os.pathsep + os.environ.get("PATH", ""))
    assert shutil.which("producer", path=env["PATH"]) == exe
    proc = subprocess.run(
        ["producer", "--num_samples", "100000", "--file", "c.npy", "--seed", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("producer:")
    np.testing.assert_array_equal(np.load(tmp_path / "c.npy"), generate(100_000, seed=3))
    proc = subprocess.run(
        ["producer", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--num_samples" in proc.stdout


def test_interrupted_then_resumed_gives_same_bytes(spawn_module, run_producer, tmp_path):
    """SIGINT mid-stream leaves a consistent 'failed' stream; --resume completes it."""
    n = 20_000_000
    chunk = 4 * BLOCK
    proc = spawn_module(
        "producer",
        "--num_samples",
        n,
        "--file",
        "r.npy",
        "--chunk_size",
        chunk,
        "--threads",
        1,
        "--seed",
        77,
    )
    side = tmp_path / "r.stream.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            doc = json.loads(side.read_text())
        except (FileNotFoundError, ValueError):
            doc = None
        if doc and any(c is not None for c in doc["chunks"]):
            break
        time.sleep(0.002)
    proc.send_signal(2)
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("producer finished before the signal arrived")
    assert proc.returncode == 130, err
    assert len(err.splitlines()) == 1 and "interrupted" in err and "Traceback" not in err
    doc = sidecar(tmp_path / "r.npy")
    assert doc["status"] == "failed"
    assert any(c is None for c in doc["chunks"])
    rc, out, err = run_producer(
        "--num_samples",
        n,
        "--file",
        "r.npy",
        "--chunk_size",
        chunk,
        "--seed",
        77,
        "--resume",
        "--quiet",
    )
    assert_one_line_ok(rc, out, err)
    assert sidecar(tmp_path / "r.npy")["status"] == "complete"
    data = np.load(tmp_path / "r.npy", mmap_mode="r")
    want = generate(n, seed=77)
    assert sha256(np.ascontiguousarray(data).tobytes()) == sha256(want.tobytes())
    del data
    (tmp_path / "r.npy").unlink()


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32 - 1, 2**32, 2**64 + 3, 2**130 + 7])
def test_block_keys_equal_numpys_seed_sequence(seed):
    """The batch key derivation is numpy's SeedSequence, for one- to five-word seeds and
    blocks whose spawn key takes one or two words."""
    from producer.sampling import block_keys_range

    for b0 in (0, 2**32 - 2, 2**62):
        got = block_keys_range(seed, b0, b0 + 4)
        for i, keys in enumerate(got):
            seq = np.random.SeedSequence(seed, spawn_key=(b0 + i,))
            assert keys.tolist() == seq.generate_state(3, np.uint64).tolist(), (seed, b0 + i)
