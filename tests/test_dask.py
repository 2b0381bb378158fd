"""``--engine dask``: identical results to the local engine, faults, errors, real parallelism.

Every test runs on one module-scoped ``LocalCluster`` of two worker processes
(one thread each) on 127.0.0.1, and compares the Dask engine's files with the
local engine's, byte for byte (stream, labels, CRC-32 values, indices, dense
scores) or row for row (Parquet).  Parallelism is read from Dask's task stream
(compute intervals of two workers that overlap), never from wall-clock times.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from consumer.run import ConsumerConfig, OutputPaths, load_labels, run_consumer
from producer.generate import generate_with_labels
from producer.write import write_stream
from shared.engine import DaskEngine, EngineOptions, connect, engine_options
from shared.errors import Interrupted, StopRequest, StreamError, UsageError
from shared.params import generation_params
from shared.stream import StreamWriter
from tests.conftest import subprocess_env

distributed = pytest.importorskip("distributed")
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

from consumer.dask_engine import run_consumer_dask  # noqa: E402
from producer.dask_engine import write_stream_dask  # noqa: E402

GEN = dict(
    seed=11,
    seasonality={"amplitude": 3, "period": 24},
    anomalies={"rate": 2e-4, "magnitude": 8},
)
CHUNK = 1 << 16
# The scheduler's HTTP routes on a free port (no warning when 8787 is taken); no dashboard.
QUIET = {"dashboard_address": "127.0.0.1:0"}


def local_cluster(workers: int, **kwargs) -> LocalCluster:
    """Single-threaded worker processes on 127.0.0.1, no dashboard, a quiet scheduler."""
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs=QUIET,
        **kwargs,
    )


@pytest.fixture(scope="module")
def client():
    """The tests' cluster: two single-threaded worker processes on 127.0.0.1."""
    cluster = local_cluster(2)
    c = Client(cluster)
    yield c
    c.shutdown()  # scheduler and workers at once (cluster.close() takes twice as long)


def dask_engine(client, span: int = 3 * CHUNK, **kw) -> EngineOptions:
    """Engine options that join the test cluster."""
    return EngineOptions(engine="dask", scheduler=client.scheduler.address, span=span, **kw)


def computes(ts: list[dict], name: str) -> list[tuple[str, float, float]]:
    """``(worker, start, stop)`` of every compute interval of tasks named ``name``."""
    return [
        (r["worker"], s["start"], s["stop"])
        for r in ts
        if name in r["key"]
        for s in r["startstops"]
        if s["action"] == "compute"
    ]


def assert_parallel(ts: list[dict], name: str) -> None:
    """At least two workers ran ``name`` tasks, and two of their intervals overlap."""
    iv = computes(ts, name)
    assert len({w for w, _, _ in iv}) >= 2, iv
    assert any(w1 != w2 and a1 < b2 and a2 < b1 for w1, a1, b1 in iv for w2, a2, b2 in iv), (
        f"no overlapping {name} tasks on two workers: {iv}"
    )


def stream_files(path: Path) -> dict[str, bytes]:
    """The stream's data and labels bytes, and its sidecar's CRC-32 values."""
    side = json.loads(path.with_name(path.stem + ".stream.json").read_text())
    labels = path.with_name(path.stem + ".labels.npy")
    return {
        "data": path.read_bytes(),
        "labels": labels.read_bytes() if labels.exists() else b"",
        "crcs": json.dumps(side["chunks"]).encode(),
        "status": side["status"].encode(),
    }


# ----------------------------------------------------------------------------- producer


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_producer_bytes_equal_local_engine(client, tmp_path, dtype):
    """Stream, labels and CRC-32 values equal the local engine's; N is not a multiple of
    the span (4 chunks: the last span short, its last chunk partial)."""
    n = 29 * CHUNK + 12_345
    params = generation_params(**GEN)
    write_stream(tmp_path / "local.npy", n, params, dtype=dtype, chunk_size=CHUNK, threads=2)
    with get_task_stream(client) as ts:
        r = write_stream_dask(
            tmp_path / "dask.npy",
            n,
            params,
            engine=dask_engine(client, span=4 * CHUNK),
            dtype=dtype,
            chunk_size=CHUNK,
        )
    assert r.samples == n and r.chunks == 30 and r.num_labels > 0
    assert stream_files(tmp_path / "dask.npy") == stream_files(tmp_path / "local.npy")
    assert len({w for w, _, _ in computes(ts.data, "_generate_file")}) == 2
    assert computes(ts.data, "_count_blocks"), "label counts were not counted by the workers"


def test_zarr_store_producer_consumer_verify(client, tmp_path):
    """A Zarr v3 store, interrupted and resumed: samples, labels and CRC-32 values equal the
    local ``.npy``'s (chunks of one RNG block, one shard per span, the sidecar's metadata in
    the store);
    the consumer reading it equals the local engine on the file, dense scores to a
    second store in whole chunks; ``verify`` names a corrupted chunk."""
    zarr = pytest.importorskip("zarr")  # zarr 3 needs Python 3.11
    from shared.zarr_store import ZarrStreamReader

    n = 7 * CHUNK + 999
    params = generation_params(**GEN)
    write_stream(tmp_path / "local.npy", n, params, chunk_size=CHUNK, threads=2)
    store = str(tmp_path / "gen.zarr")
    eng = dask_engine(client, span=2 * CHUNK)
    stop = StopRequest()  # interrupted after its first commits, then resumed
    with pytest.raises(Interrupted):
        write_stream_dask(
            store,
            n,
            params,
            engine=eng,
            chunk_size=CHUNK,
            stop=stop,
            on_progress=lambda k: stop.set(),
        )
    with ZarrStreamReader(store) as r:
        assert r.poll().status == "failed" and 0 < r.poll().committed.sum() < 8
    write_stream_dask(store, n, params, engine=eng, chunk_size=CHUNK, resume=True)
    local = stream_files(tmp_path / "local.npy")
    with ZarrStreamReader(store) as r:
        assert r.poll().status == "complete"
        assert np.array_equal(r.read(0, n), np.load(tmp_path / "local.npy"))
        assert json.dumps(r.doc["chunks"]).encode() == local["crcs"]
        assert np.array_equal(r.labels(), np.load(tmp_path / "local.labels.npy"))
        assert r.verify() == []
    data = zarr.open_array(store, path="data", mode="r")
    assert data.chunks == (CHUNK,) and data.shards == (2 * CHUNK,)
    assert zarr.open_group(store, mode="r").attrs["tsstream"]["generation"]["seed"] == 11
    det = {"type": "stl", "params": {"threshold": 5, "period": 24}}
    labels = tmp_path / "local.labels.npy"
    consume_local(tmp_path / "local.npy", tmp_path, "L", dict(det, labels=labels))
    scores = str(tmp_path / "scores.zarr")
    # --labels of a Zarr stream: the labels the store holds.
    config = ConsumerConfig(paths=out_paths(tmp_path, "D", scores=scores), labels=store, **det)
    run_consumer_dask(store, config, engine=dask_engine(client, span=2 * CHUNK))
    same_outputs(tmp_path, "L", "D", scores=False)
    sl, sd = (json.loads((tmp_path / f"{t}.summary.json").read_text()) for t in "LD")
    assert sd["labels"] == len(np.load(labels)) > 0
    figures = ("labels", "precision", "recall", "f1")
    assert [sd[k] for k in figures] == [sl[k] for k in figures]
    dense = zarr.open_array(scores, path="scores", mode="r")
    assert dense.chunks == (CHUNK,) and dense.shards == (2 * CHUNK,)  # whole chunks, span shards
    assert dense[:].tobytes() == np.load(tmp_path / "L.scores.npy").tobytes()
    shard = Path(store) / "data" / "c" / "1"  # chunks 2 and 3 (no compression: raw bytes)
    raw = bytearray(shard.read_bytes())
    raw[8 * CHUNK + 5] ^= 1
    shard.write_bytes(bytes(raw))
    with ZarrStreamReader(store) as r:
        assert r.verify() == [3]
    plain = str(tmp_path / "plain.zarr")  # no anomalies: no labels to score against
    write_stream_dask(plain, CHUNK, generation_params(seed=1), engine=eng, chunk_size=CHUNK)
    with pytest.raises(UsageError, match="plain.zarr: the stream holds no labels"):
        load_labels(plain)
    with pytest.raises(UsageError, match="no such store"):
        load_labels(str(tmp_path / "none.zarr"))


@pytest.fixture
def s3(tmp_path):
    """A moto S3 server on 127.0.0.1 with one bucket; yields fsspec storage options."""
    pytest.importorskip("s3fs")
    pytest.importorskip("zarr")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "test", "secret": "test"}
    import s3fs

    s3fs.S3FileSystem(**options).mkdir("tsstream")
    yield options
    server.stop()


def test_zarr_on_s3_producer(client, tmp_path, s3):
    """The producer on an S3 store (a moto server): the same samples, labels and CRC-32
    values as the local engine's file (the consumer on S3: ``-m slow``)."""
    from shared.zarr_store import ZarrStreamReader

    n = 3 * CHUNK + 77
    params = generation_params(**GEN)
    write_stream(tmp_path / "local.npy", n, params, chunk_size=CHUNK, threads=2)
    eng = dask_engine(client, span=2 * CHUNK, storage_options=s3)
    write_stream_dask("s3://tsstream/gen.zarr", n, params, engine=eng, chunk_size=CHUNK)
    with ZarrStreamReader("s3://tsstream/gen.zarr", s3) as r:
        assert r.poll().status == "complete"
        assert np.array_equal(r.read(0, n), np.load(tmp_path / "local.npy"))
        assert json.dumps(r.doc["chunks"]).encode() == stream_files(tmp_path / "local.npy")["crcs"]
        assert np.array_equal(r.labels(), np.load(tmp_path / "local.labels.npy"))
    # --labels of an S3 store: its labels, read with the run's storage options.
    want = np.load(tmp_path / "local.labels.npy")
    assert np.array_equal(load_labels("s3://tsstream/gen.zarr", s3), want)


# ----------------------------------------------------------------------------- consumer


def out_paths(d: Path, tag: str, scores: str | None = "npy") -> OutputPaths:
    """Every output of one run under ``d`` named by ``tag`` (``scores``: "npy", a store, None)."""
    return OutputPaths(
        indices=d / f"{tag}.idx.npy",
        parquet=d / f"{tag}.rows",
        summary=d / f"{tag}.summary.json",
        checkpoint=d / f"{tag}.ck.json",
        scores=d / f"{tag}.scores.npy" if scores == "npy" else scores and Path(scores),
    )


def consume_local(data: Path, d: Path, tag: str, det: dict) -> dict:
    """The local engine's run (two threads) over ``data``."""
    return run_consumer(data, ConsumerConfig(threads=2, paths=out_paths(d, tag), **det))


def read_outputs(d: Path, tag: str, scores: bool = True) -> dict:
    """Indices, Parquet rows, dense scores and summary counts of one run."""
    summary = json.loads((d / f"{tag}.summary.json").read_text())
    out = {
        "indices": np.load(d / f"{tag}.idx.npy").tolist(),
        "rows": pq.read_table(d / f"{tag}.rows").to_pydict(),
        "counts": (summary["samples"], summary["anomalies"], summary["status"]),
    }
    if scores:
        out["scores"] = np.load(d / f"{tag}.scores.npy").tobytes()
    return out


def same_outputs(d: Path, a: str, b: str, scores: bool = True) -> None:
    """Run ``b`` wrote exactly run ``a``'s outputs."""
    x, y = read_outputs(d, a, scores), read_outputs(d, b, scores)
    assert x["counts"] == y["counts"]
    assert x["indices"] == y["indices"]
    assert x["rows"] == y["rows"]
    if scores:
        assert x["scores"] == y["scores"]


DETECTORS = {
    "zscore-rolling": {"type": "zscore", "params": {"window": 500, "threshold": 4}},
    "zscore-block": {"type": "zscore", "params": {"mode": "block", "block": 50_000}},
    "stl": {"type": "stl", "params": {"threshold": 5, "period": 24}},
    "stl-robust": {
        "type": "stl",
        "params": {"threshold": 6, "period": 24, "robust": True, "outer_iter": 1},
    },
}


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    """Two local-engine streams: float64 (5 chunks + a partial one) and float32."""
    d = tmp_path_factory.mktemp("streams")
    params = generation_params(**GEN)
    out = {}
    for dtype, n in (("float64", 5 * CHUNK + 4321), ("float32", 3 * CHUNK + 5)):
        out[dtype] = d / f"{dtype}.npy"
        write_stream(out[dtype], n, params, dtype=dtype, chunk_size=CHUNK, threads=2)
    return out


@pytest.mark.parametrize("name", list(DETECTORS))
def test_consumer_equals_local_engine(client, tmp_path, streams, name):
    """Indices, Parquet rows, dense scores and counts equal the local engine's, for
    z-score (rolling, block) and STL (robust and not), float64 and float32, with a
    span of 3 chunks that does not divide the stream."""
    det = DETECTORS[name]
    dtypes = ["float64", "float32"] if name in ("zscore-rolling", "stl") else ["float64"]
    for dtype in dtypes:
        consume_local(streams[dtype], tmp_path, f"L{dtype}", det)
        with get_task_stream(client) as ts:
            config = ConsumerConfig(paths=out_paths(tmp_path, f"D{dtype}"), **det)
            run_consumer_dask(streams[dtype], config, engine=dask_engine(client))
        same_outputs(tmp_path, f"L{dtype}", f"D{dtype}")
        assert computes(ts.data, "_detect_span")
    if name == "stl":
        assert_parallel(ts.data, "_detect_span")


def test_consumer_out_of_order_results(client, tmp_path):
    """Spans finish out of chunk order (the first takes longest: missing samples take
    STL's weighted fits; the last is short); outputs still equal the local engine's."""
    seg = 1 << 18  # the STL detector's segment: one span each, decomposed separately
    x = generate_with_labels(3 * seg + 1000, **GEN)[0]
    x[: seg // 2 : 7] = np.nan  # beyond the halo of the second segment's window
    plain = tmp_path / "plain.npy"
    np.save(plain, x)
    det = {"type": "stl", "params": {"threshold": 5, "period": 24}}
    consume_local(plain, tmp_path, "L", det)
    with get_task_stream(client) as ts:
        config = ConsumerConfig(paths=out_paths(tmp_path, "D"), chunk_size=seg, **det)
        run_consumer_dask(plain, config, engine=dask_engine(client, span=seg))
    same_outputs(tmp_path, "L", "D")
    spans = sorted(computes(ts.data, "_detect_span"), key=lambda t: t[1])  # in chunk order
    stops = [stop for _, _, stop in spans]
    assert stops != sorted(stops), f"the spans finished in chunk order: {spans}"


def test_consumer_follows_a_live_stream(client, tmp_path):
    """Spans are submitted as the producer commits: the first detection task starts
    before the last chunk is committed; the outputs equal a run over the finished file."""
    n = 12 * CHUNK
    params = generation_params(**GEN)
    x = generate_with_labels(n, **GEN)[0]
    path = tmp_path / "live.npy"
    writer = StreamWriter(
        path,
        num_samples=n,
        dtype="float64",
        chunk_size=CHUNK,
        extra={"generation": params.to_json()},
    )
    det = {"type": "zscore", "params": {"window": 500, "threshold": 4}}
    result: dict = {}

    def consume() -> None:
        config = ConsumerConfig(paths=out_paths(tmp_path, "D"), timeout=30, **det)
        result["summary"] = run_consumer_dask(path, config, engine=dask_engine(client, span=CHUNK))

    with get_task_stream(client) as ts:
        t = threading.Thread(target=consume)
        t.start()
        for k in range(12):
            time.sleep(0.15)
            a, b = k * CHUNK, (k + 1) * CHUNK
            writer.write_chunk(k, x[a:b])
        last_commit = time.time()
        writer.finish()
        t.join(60)
    assert result["summary"]["status"] == "complete"
    first = min(start for _, start, _ in computes(ts.data, "_detect_span"))
    assert first < last_commit - 0.5, "no span ran before the stream was complete"
    consume_local(path, tmp_path, "L", det)
    same_outputs(tmp_path, "L", "D")


# ----------------------------------------------------------------------------- faults


def test_interrupted_driver_resumes_identically(client, tmp_path):
    """A stop request (what SIGINT/SIGTERM raise) mid-run: producer and consumer leave
    resumable state; ``resume`` finishes with the uninterrupted local engine's bytes."""
    n = 16 * CHUNK + 100
    params = generation_params(**GEN)
    write_stream(tmp_path / "local.npy", n, params, chunk_size=CHUNK, threads=2)
    eng = dask_engine(client, span=CHUNK)
    stop = StopRequest()
    seen = []

    def progress(k: int) -> None:
        seen.append(k)
        if len(seen) == 3:
            stop.request(signal.SIGINT)

    path = tmp_path / "dask.npy"
    with pytest.raises(Interrupted):
        write_stream_dask(
            path, n, params, engine=eng, chunk_size=CHUNK, stop=stop, on_progress=progress
        )
    side = json.loads((tmp_path / "dask.stream.json").read_text())
    assert side["status"] == "failed" and 0 < sum(c is not None for c in side["chunks"]) < 17
    write_stream_dask(path, n, params, engine=eng, chunk_size=CHUNK, resume=True)
    assert stream_files(path) == stream_files(tmp_path / "local.npy")

    det = {"type": "zscore", "params": {"window": 500, "threshold": 4}}
    consume_local(path, tmp_path, "L", det)
    stop, seen = StopRequest(), []
    config = ConsumerConfig(paths=out_paths(tmp_path, "D"), **det)
    with pytest.raises(Interrupted):
        run_consumer_dask(path, config, engine=eng, stop=stop, on_progress=progress)
    done = json.loads((tmp_path / "D.ck.json").read_text())["next_chunk"]
    assert 0 < done < 17
    config = ConsumerConfig(paths=out_paths(tmp_path, "D"), resume=True, **det)
    run_consumer_dask(path, config, engine=eng)
    same_outputs(tmp_path, "L", "D")


PROBE_KERNEL = """
import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def kernel(x):
    s = 0.0
    for v in x:
        s += v * v
    return s
"""


def _fresh_page_faults(rounds: int = 64, nbytes: int = 1 << 20) -> int:
    """This thread's minor page faults over ``rounds`` allocate-fill-free cycles of an array
    (1 MiB: below numpy's huge-page advice, above glibc's default mmap threshold)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(rounds):
        a = np.empty(nbytes // 8)
        a.fill(1.0)
        del a
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_worker_plugin_keeps_freed_memory(client):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which made every freed array fresh pages
    again (16448 faults for these 64 cycles); the engine's worker plugin
    (``shared.malloc``) raises glibc's thresholds, so the cycles reuse one array's pages."""
    trim = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert set(trim.values()) == {"65536"}, trim  # Dask's default, as on a user's cluster
    with connect(dask_engine(client), "consumer") as eng:
        eng.warm("malloc-test", _noop_warm)
    for _ in range(2):  # the first cycle may grow the heap once
        faults = client.submit(_fresh_page_faults, pure=False).result()
    assert faults < 64 * 256 // 8, faults  # 256 pages per cycle without the plugin


def test_keep_freed_memory_opt_out(monkeypatch):
    """``TSSTREAM_KEEP_MALLOC=1`` leaves a cluster's allocator as it was configured."""
    from shared.malloc import ENV_OPT_OUT, keep_freed_memory

    monkeypatch.setenv(ENV_OPT_OUT, "1")
    assert keep_freed_memory() is False


def _noop_warm() -> None:
    """A warm-up that loads nothing (the plugin's allocator setting is what is tested)."""


def test_numba_cache_one_compile_per_node(client, tmp_path):
    """Both workers warm up a kernel with a cold cache at once (the ``KernelWarmUp``
    plugin): one compiles it and writes the cache, the other only loads it."""
    name = f"tsstream_cache_probe_{os.getpid()}_{time.monotonic_ns()}"
    (tmp_path / f"{name}.py").write_text(PROBE_KERNEL)
    # Built from builtins, so that workers unpickle it without importing this test module.
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import {name} as m; "
    code += "m.kernel(m.np.ones(3))"
    DaskEngine(client, None, "test").warm("cache-probe", partial(exec, code, {}))
    stats = (
        f"(sum(__import__('sys').modules[{name!r}].kernel.stats.cache_misses.values()), "
        f"sum(__import__('sys').modules[{name!r}].kernel.stats.cache_hits.values()))"
    )
    counts = sorted(client.run(eval, stats, {}).values())
    assert counts == [(0, 1), (1, 0)], f"(misses, hits) per worker: {counts}"
    assert list((tmp_path / "__pycache__").glob(f"{name}.kernel-*.nbi"))


# ----------------------------------------------------------------------------- CLI


def cli(module: str, *args: object, cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``python -m module args`` and return (status, stdout, stderr)."""
    p = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout, p.stderr


def test_cli_dask_engine_matches_local(client, tmp_path):
    """``python -m producer/consumer --engine dask --scheduler ...`` write the local
    engine's files (the README's commands)."""
    n = 5 * CHUNK + 3
    params = generation_params(**GEN)
    write_stream(tmp_path / "l.npy", n, params, chunk_size=CHUNK, threads=2)
    gen = ["--num_samples", n, "--chunk_size", CHUNK, "--seed", GEN["seed"], "--seasonality"]
    gen += [json.dumps(GEN["seasonality"]), "--anomalies", json.dumps(GEN["anomalies"])]
    dask = ["--engine", "dask", "--scheduler", client.scheduler.address, "--span", 2 * CHUNK]
    rc, out, err = cli("producer", *gen, "--file", "d.npy", *dask, cwd=tmp_path)
    assert rc == 0, err
    assert stream_files(tmp_path / "d.npy") == stream_files(tmp_path / "l.npy")
    det = {"type": "zscore", "params": {"window": 1000, "threshold": 3}}
    paths = OutputPaths.for_input(tmp_path / "l.npy")
    local = run_consumer(tmp_path / "l.npy", ConsumerConfig(threads=2, paths=paths, **det))
    args = ["--type", "zscore", "--params", json.dumps(det["params"]), "--labels", "d.labels.npy"]
    rc, out, err = cli("consumer", "--file", "d.npy", *args, *dask, "--time", cwd=tmp_path)
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["engine"]["name"] == "dask" and summary["recall"] > 0.5
    assert summary["anomalies"] == local["anomalies"]
    assert np.array_equal(
        np.load(tmp_path / "d.anomalies.npy"), np.load(tmp_path / "l.anomalies.npy")
    )
    rows = [pq.read_table(tmp_path / f"{s}.anomalies.parquet").to_pydict() for s in "ld"]
    assert rows[0] == rows[1]


BLOCKER = """
import sys
class _NoTsstream:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("producer", "consumer", "shared"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoTsstream())
"""


def test_cli_one_line_errors(tmp_path):
    """An unreachable scheduler, workers without the package and engine usage errors
    are each one line on stderr (no traceback), with exit status 1 or 2."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    gen = ["--num_samples", 1000, "--file", "x.npy"]
    rc, out, err = cli(
        "producer",
        *gen,
        "--engine",
        "dask",
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
        "--connect-timeout",
        1,
        cwd=tmp_path,
    )
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(
        f"producer: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    )
    from producer.__main__ import build_parser

    usage = [
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler needs --engine dask"),
        (["--engine", "dask", "--threads", "2"], "--threads is for --engine local"),
        (["--engine", "spark"], "--engine must be local or dask"),
        (["--engine", "dask", "--scheduler", "a", "--workers", "2"], "--workers sizes a local"),
    ]
    for extra, message in usage:
        with pytest.raises(UsageError, match=message):
            engine_options(build_parser().parse_args([*map(str, gen), *extra]))
    rc, out, err = cli("consumer", "--file", "x.zarr", cwd=tmp_path)
    assert rc == 2 and err == "consumer: error: x.zarr: a Zarr store needs --engine dask\n", err

    (tmp_path / "blocker.py").write_text(BLOCKER)  # a worker where tsstream is not installed
    with local_cluster(1, preload=[str(tmp_path / "blocker.py")]) as cluster:
        engine = EngineOptions(engine="dask", scheduler=cluster.scheduler_address)
        with pytest.raises(StreamError) as e:
            with connect(engine, "producer"):
                pass
    assert re.fullmatch(
        r"Dask worker tcp://127\.0\.0\.1:\d+ cannot import tsstream \(No module named "
        r"'shared'\): install it on every worker \(pip install -e '\.\[dask\]'\)",
        str(e.value),
    ), str(e.value)


# ----------------------------------------------------------------------------- killed workers
# Last: the nanny restarts the killed worker while later tests would run.


def kill_a_busy_worker(client, pids: dict, killed: list) -> None:
    """SIGKILL the first worker that holds a task (once)."""
    if killed:
        return
    busy = [w for w, keys in client.processing().items() if keys and isinstance(pids.get(w), int)]
    if busy:
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append(pids[busy[0]])


def test_killed_worker_run_completes_identically(client, tmp_path):
    """SIGKILL a worker while it holds tasks of a run: Dask reruns them on the other worker
    and the stream equals the local engine's (the consumer: ``-m slow``)."""
    n = 64 * CHUNK
    params = generation_params(**GEN)
    write_stream(tmp_path / "local.npy", n, params, chunk_size=CHUNK, threads=2)
    pids, killed, running = client.run(os.getpid), [], threading.Event()

    def watch() -> None:  # beside the run: kill the first worker seen holding a task
        while running.is_set() and not killed:
            kill_a_busy_worker(client, pids, killed)
            time.sleep(0.001)

    path = tmp_path / "dask.npy"
    watcher = threading.Thread(target=watch)
    running.set()
    watcher.start()
    try:
        eng = dask_engine(client, span=CHUNK)
        write_stream_dask(path, n, params, engine=eng, chunk_size=CHUNK)
    finally:
        running.clear()
        watcher.join(30)
    assert killed, "no worker was seen holding a task during the run"
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    assert stream_files(path) == stream_files(tmp_path / "local.npy")
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it: let it finish starting


# ----------------------------------------------------------------------------- soaks


@pytest.mark.slow
def test_soak_consumer_on_s3(client, tmp_path, s3):
    """The consumer reading an S3 store and writing dense scores to another: the local
    engine's detections and scores."""
    n = 5 * CHUNK + 77
    params = generation_params(**GEN)
    write_stream(tmp_path / "local.npy", n, params, chunk_size=CHUNK, threads=2)
    eng = dask_engine(client, span=2 * CHUNK, storage_options=s3)
    write_stream_dask("s3://tsstream/gen.zarr", n, params, engine=eng, chunk_size=CHUNK)
    det = {"type": "zscore", "params": {"window": 300, "threshold": 4}}
    assert consume_local(tmp_path / "local.npy", tmp_path, "L", det)["anomalies"] > 0
    paths = out_paths(tmp_path, "S", scores="s3://tsstream/scores.zarr")
    run_consumer_dask("s3://tsstream/gen.zarr", ConsumerConfig(paths=paths, **det), engine=eng)
    same_outputs(tmp_path, "L", "S", scores=False)
    import zarr
    from zarr.storage import FsspecStore

    store = FsspecStore.from_url("s3://tsstream/scores.zarr", storage_options=s3)
    dense = zarr.open_array(store, path="scores", mode="r")[:]
    assert dense.tobytes() == np.load(tmp_path / "L.scores.npy").tobytes()


@pytest.mark.slow
def test_soak_consumer_with_killed_workers(client, tmp_path):
    """STL consumer over 160 spans while a busy worker is killed three times: the
    outputs equal the local engine's.  (A killed worker rejoins in seconds; 60 spans
    ended before a second kill once STL ran faster on the workers.)"""
    n = 160 * CHUNK
    params = generation_params(**GEN)
    write_stream(tmp_path / "local.npy", n, params, chunk_size=CHUNK, threads=2)
    det = {"type": "stl", "params": {"threshold": 5, "period": 24}}
    consume_local(tmp_path / "local.npy", tmp_path, "L", det)
    killed: list[int] = []

    def progress(k: int) -> None:
        if len(killed) < 3 and len(client.nthreads()) == 2:
            pids, new = client.run(os.getpid, on_error="return"), []  # one may be dying
            kill_a_busy_worker(client, pids, new)
            killed.extend(new)

    config = ConsumerConfig(paths=out_paths(tmp_path, "D"), **det)
    run_consumer_dask(
        tmp_path / "local.npy", config, engine=dask_engine(client, span=CHUNK), on_progress=progress
    )
    assert len(killed) >= 2
    same_outputs(tmp_path, "L", "D")
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow
def test_soak_driver_sigkill_and_resume(client, tmp_path):
    """The producer's driver process SIGKILLed twice mid-run and resumed (its dead
    heartbeat first goes stale): the final stream equals the local engine's."""
    client.wait_for_workers(2, timeout=60)
    n = 300 * CHUNK
    gen = ["--num_samples", n, "--chunk_size", CHUNK, "--seed", 11, "--seasonality"]
    gen += [json.dumps(GEN["seasonality"]), "--anomalies", json.dumps(GEN["anomalies"])]
    dask = ["--engine", "dask", "--scheduler", client.scheduler.address, "--span", CHUNK]
    assert cli("producer", *gen, "--file", "l.npy", "--quiet", cwd=tmp_path)[0] == 0
    args = [sys.executable, "-m", "producer", *map(str, gen + dask), "--file", "d.npy", "--quiet"]
    side = tmp_path / "d.stream.json"
    for attempt in range(2):
        extra = ["--resume"] if attempt else []
        p = subprocess.Popen(args + extra, cwd=tmp_path, env=subprocess_env())
        deadline = time.monotonic() + 120
        target = 30 * (attempt + 1)
        while time.monotonic() < deadline:
            try:
                done = sum(c is not None for c in json.loads(side.read_text())["chunks"])
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= target:
                break
            time.sleep(0.005)
        p.kill()
        p.wait(30)
        time.sleep(6)  # the killed driver's heartbeat goes stale (the resume waits for it)
    assert subprocess.run(args + ["--resume"], cwd=tmp_path, env=subprocess_env()).returncode == 0
    assert stream_files(tmp_path / "d.npy") == stream_files(tmp_path / "l.npy")


@pytest.mark.slow
def test_soak_numba_cache_four_workers_real_kernels(tmp_path):
    """Four workers with a cold cache warm up the STL detector's kernels at once: one
    compiles them, the others load them; a consumer run then equals the local engine's."""
    from consumer.dask_engine import _warm
    from consumer.detectors.registry import make_detector

    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    cluster = local_cluster(4, env=env)
    c = Client(cluster)
    try:
        detector = make_detector("stl", {"period": 24}, 100_000)
        warm = partial(_warm, detector, np.dtype("f8"), True, False)
        DaskEngine(c, None, "test").warm("soak", warm)

        def misses() -> int:
            from consumer.kernels import stl

            return sum(
                sum(f.stats.cache_misses.values())
                for f in vars(stl).values()
                if hasattr(f, "stats")
            )

        counts = sorted(c.run(misses).values())
    finally:
        c.shutdown()
    assert counts[:3] == [0, 0, 0] and counts[3] > 0, counts
