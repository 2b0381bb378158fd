"""Fault injection against the real command-line programs, on real files.

* crashes: ``SIGKILL`` of the producer and of the consumer at seeded random moments
  spread over the whole run (from launch), and before every single file change of a run
  (the kill-point zygote of ``tests/killpoints.py``, which reaches the few-millisecond
  set-up windows that real-time kills miss), then ``--resume``: bytes (sha256) equal to
  an uninterrupted run's;
* disk full (tiny tmpfs), up front and mid-run, and ``RLIMIT_FSIZE``;
* a single writer per stream (``flock``), several readers;
* ``SIGINT`` / ``SIGTERM``: prompt exit with 130 / 143, one line, resumable state;
* a matrix of bad input for both programs: one stderr line, the right exit status,
  no traceback, and no existing file modified.

No mocks.  Kill delays come from ``random.Random(seed)``, so a failing trial can be
replayed: the trial, its seed and its delay are in the assertion message.  The
``slow`` variants (20 trials each) run only with ``-m slow``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import subprocess_env
from killpoints import Zygote
from procutil import pause

import consumer
from consumer.sink import part_name
from producer import generate_with_labels

BLOCK = 1 << 16

# The test streams, with labels: P_N samples for the tests that read them, and P_LONG_N
# for those that must kill or signal a producer mid-run (the generator makes 2e7 samples
# in about 0.1 s on two threads: too quick for a kill to land).
P_N = 20_000_000
P_LONG_N = 80_000_000
P_SEED = 1234
P_ANOMALIES = {"rate": 1e-4, "magnitude": 7.0}
P_SEASONALITY = {"period": 1000, "amplitude": 0.5}


def producer_args(file: str | Path, threads: int = 2, n: int = P_N) -> list[object]:
    return [
        "--num_samples",
        n,
        "--file",
        file,
        "--threads",
        threads,
        "--chunk_size",
        BLOCK,
        "--seed",
        P_SEED,
        "--anomalies",
        json.dumps(P_ANOMALIES),
        "--seasonality",
        json.dumps(P_SEASONALITY),
        "--quiet",
    ]


# The consumer crash-test stream and detector: a low threshold gives ~4.5% flagged
# samples, so Parquet republishing makes a single-threaded run last a few seconds.
C_N = 30_000_000
C_PARAMS = {"window": 100, "threshold": 2.0}


def consumer_args(file: Path, out: Path, threads: int = 1) -> list[object]:
    return [
        "--file",
        file,
        "--threads",
        threads,
        "--params",
        json.dumps(C_PARAMS),
        "--indices",
        out / "i.npy",
        "--out",
        out / "o.parquet",
        "--summary",
        out / "s.json",
        "--scores",
        out / "sc.npy",
        "--quiet",
    ]


# -- helpers ---------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> dict | None:
    """A JSON file replaced atomically: the old or the new document, or None if absent."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def sidecar_of(data: Path) -> Path:
    return data.with_name(data.stem + ".stream.json")


def committed(data: Path) -> tuple[int, int, str] | None:
    """(committed chunks, chunks, status) from the sidecar, or None if there is none."""
    doc = read_json(sidecar_of(data))
    if doc is None:
        return None
    return sum(c is not None for c in doc["chunks"]), len(doc["chunks"]), doc["status"]


def wait_until(pred: Callable[[], object], timeout: float = 60.0, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.001)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")


def one_line(err: str, prog: str, what: object = "") -> str:
    assert "Traceback" not in err, (what, err)
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, f"{what}: expected one stderr line, got: {err!r}"
    assert lines[0].startswith(f"{prog}: "), (what, lines[0])
    return lines[0]


def popen(module: str, *args: object, cwd: Path, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=cwd,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def run(module: str, *args: object, cwd: Path, timeout: float = 300, **kw: object):
    p = popen(module, *args, cwd=cwd, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return p.returncode, out, err


def run_all(jobs: list[tuple[str, list[object], Path]], parallel: int = 6):
    """Run independent CLI invocations concurrently: [(module, args, cwd)] -> results."""
    results: list[tuple[int, str, str] | None] = [None] * len(jobs)
    running: list[tuple[int, subprocess.Popen[str]]] = []
    todo = list(enumerate(jobs))
    try:
        while todo or running:
            while todo and len(running) < parallel:
                i, (module, args, cwd) = todo.pop(0)
                running.append((i, popen(module, *args, cwd=cwd)))
            i, p = running.pop(0)
            out, err = p.communicate(timeout=300)
            results[i] = (p.returncode, out, err)
    finally:
        for _, p in running:
            p.kill()
            p.communicate()
    return results


def kill(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        p.kill()
    p.communicate(timeout=30)


def want_slow(request: pytest.FixtureRequest) -> None:
    expr = request.config.getoption("-m") or ""
    if "slow" not in expr or "not slow" in expr:
        pytest.skip("20-trial fault-injection soak: run with -m slow")


# -- reference runs (uninterrupted) ------------------------------------------------------


STREAM_FILES = ["s.labels.npy", "s.npy", "s.stream.json"]  # a finished stream, nothing else


@pytest.fixture(scope="module")
def zygote():
    """The kill-point zygote (tests/killpoints.py): forks of the warm CLI programs."""
    z = Zygote()
    yield z
    z.close()


@dataclass
class ProducerRef:
    data_sha: str
    labels_sha: str
    num_chunks: int
    wall_s: float  # launch -> exit of an uninterrupted run (start-up included)
    n: int  # samples (producer_args(..., n=n) makes this stream)


@pytest.fixture(scope="module")
def producer_ref(tmp_path_factory) -> ProducerRef:
    return _producer_ref(tmp_path_factory.mktemp("pref"), P_N)


@pytest.fixture(scope="module")
def producer_long_ref(tmp_path_factory) -> ProducerRef:
    return _producer_ref(tmp_path_factory.mktemp("plref"), P_LONG_N)


def _producer_ref(d: Path, n: int) -> ProducerRef:
    f = d / "s.npy"
    t0 = time.monotonic()
    p = popen("producer", *producer_args(f.name, n=n), cwd=d)
    try:
        wait_until(lambda: p.poll() is not None, what="the reference run")
        wall_s = time.monotonic() - t0
        out, err = p.communicate(timeout=300)
    finally:
        kill(p)
    assert p.returncode == 0, err
    ref = ProducerRef(sha256_file(f), sha256_file(d / "s.labels.npy"), committed(f)[1], wall_s, n)
    # The reference itself is right: the bytes producer.generate computes.
    x, labels = generate_with_labels(
        n, seed=P_SEED, anomalies=P_ANOMALIES, seasonality=P_SEASONALITY, threads=2
    )
    assert np.load(f, mmap_mode="r").tobytes() == x.tobytes()
    assert np.array_equal(np.load(d / "s.labels.npy"), labels)
    del x
    f.unlink()
    print(f"\nproducer reference: {ref.wall_s:.2f} s from launch to exit")
    return ref


@dataclass
class ConsumerRef:
    stream: Path
    index_sha: str
    scores_sha: str
    table: object  # pyarrow.Table, sorted by index
    summary: dict
    index_bytes: int  # final size of the index file
    wall_s: float  # launch -> exit of an uninterrupted run (start-up included)


@pytest.fixture(scope="module")
def consumer_ref(tmp_path_factory) -> ConsumerRef:
    d = tmp_path_factory.mktemp("cref")
    f = d / "c.npy"
    rc, _, err = run(
        "producer",
        "--num_samples",
        C_N,
        "--file",
        f,
        "--chunk_size",
        BLOCK,
        "--anomalies",
        '{"rate": 1e-4}',
        "--quiet",
        cwd=d,
    )
    assert rc == 0, err
    out = d / "ref"
    out.mkdir()
    t0 = time.monotonic()
    p = popen("consumer", *consumer_args(f, out), cwd=d)
    try:
        wait_until(lambda: p.poll() is not None, what="the reference run")
        wall_s = time.monotonic() - t0
        _, err = p.communicate(timeout=300)
    finally:
        kill(p)
    assert p.returncode == 0, err
    table = pq.read_table(out / "o.parquet")
    idx = np.load(out / "i.npy")
    # The reference itself is right: equal to the in-memory detector.
    np.testing.assert_array_equal(idx, consumer.detect(np.load(f, mmap_mode="r"), **C_PARAMS))
    np.testing.assert_array_equal(table["index"].to_numpy(), idx)
    summary = json.loads((out / "s.json").read_text())
    assert summary["anomalies"] == len(idx) > 100_000 and summary["samples"] == C_N
    print(f"\nconsumer reference: {len(idx)} anomalies, {wall_s:.2f} s from launch to exit")
    return ConsumerRef(
        f,
        sha256_file(out / "i.npy"),
        sha256_file(out / "sc.npy"),
        table.sort_by("index"),
        summary,
        index_size(out),
        wall_s,
    )


def index_size(out: Path) -> int:
    try:
        return (out / "i.npy").stat().st_size
    except FileNotFoundError:
        return 0


def assert_consumer_outputs_equal(out: Path, ref: ConsumerRef, what: str) -> None:
    if sha256_file(out / "i.npy") != ref.index_sha:
        got = np.load(out / "i.npy")
        want = ref.table["index"].to_numpy()
        pytest.fail(
            f"{what}: index file differs: {len(got)} vs {len(want)} indices, "
            f"first difference at {np.argmax(got[: len(want)] != want[: len(got)])}"
        )
    table = pq.read_table(out / "o.parquet")
    index = table["index"].to_numpy()
    assert len(np.unique(index)) == len(index), f"{what}: duplicated Parquet rows"
    assert table.num_rows == ref.table.num_rows, what
    # The parts read in name order: the rows in index order, no part left over or missing.
    assert table.equals(ref.table), f"{what}: Parquet rows differ"
    parts = sorted(q.name for q in (out / "o.parquet").iterdir())
    assert parts == [part_name(k) for k in range(len(parts))], (what, parts)
    assert sha256_file(out / "sc.npy") == ref.scores_sha, f"{what}: scores differ"
    summary = json.loads((out / "s.json").read_text())
    assert summary["status"] == "complete", (what, summary)
    for key in ("anomalies", "samples", "samples_total"):
        assert summary[key] == ref.summary[key], (what, key, summary[key], ref.summary[key])


# -- 1. producer: SIGKILL at random moments, then --resume ---------------------------------


def producer_crash_trials(trials: int, seed: int, ref: ProducerRef, where: Path, zygote) -> None:
    """Every third trial kills ``python -m producer`` at a random moment of the whole run,
    drawn uniformly from launch to the reference run's exit (interpreter start-up,
    set-up, chunks, finish); the others once a random number of chunks is committed (so
    that the kill lands mid-run whatever the machine's load), plus up to 20 ms.  The
    ``--resume`` that finishes it runs as a fork of the kill-point zygote (the same CLI
    ``main``, without another interpreter start-up)."""
    rng = random.Random(seed)
    report = []
    for t in range(trials):
        phase = "any" if t % 3 == 2 else "run"
        d = where / f"p{t}"
        d.mkdir()
        f = d / "s.npy"
        if phase == "any":
            target, delay = None, rng.uniform(0.0, ref.wall_s)
        else:
            target, delay = rng.randint(1, int(0.9 * ref.num_chunks)), rng.uniform(0.0, 0.02)
        p = popen("producer", *producer_args(f.name, n=ref.n), cwd=d)
        try:
            if target is not None:
                wait_until(
                    lambda f=f, p=p, k=target: (
                        p.poll() is not None or ((committed(f) or (-1,))[0] >= k)
                    )
                )
            time.sleep(delay)
            p.kill()
            _, err = p.communicate(timeout=60)
        finally:
            kill(p)
        done, total, status = committed(f) or (0, ref.num_chunks, None)
        killed = p.returncode == -signal.SIGKILL
        report.append((t, phase, target, round(delay, 3), done, total, p.returncode))
        tag = (
            f"trial {t} (seed {seed}, {phase}, after {target} chunks + {delay:.3f} s: "
            f"{done}/{total} committed)"
        )
        names = {q.name for q in d.iterdir()}
        assert "s.npy" not in names or "s.stream.json" in names, f"{tag}: data without sidecar"
        if done:  # every chunk the killed run committed is intact
            assert consumer.verify(str(f)) == [], tag
        r = zygote.run("producer", [*producer_args(f.name, n=ref.n), "--resume"], d)
        assert r.returncode == 0, f"{tag}: --resume failed: {r.stderr}"
        if killed and done < total:
            assert r.stdout == "" and r.stderr == "", (tag, r)
        assert committed(f)[2] == "complete", tag
        assert sha256_file(f) == ref.data_sha, f"{tag}: data differs from uninterrupted run"
        assert sha256_file(d / "s.labels.npy") == ref.labels_sha, f"{tag}: labels differ"
        assert sorted(q.name for q in d.iterdir()) == STREAM_FILES, tag
        shutil.rmtree(d)
    print("\nproducer kills (trial, phase, target, delay s, committed, chunks, rc):", report)
    mid = [r for r in report if r[1] == "run" and 0 < r[4] < r[5] and r[6] == -signal.SIGKILL]
    runs = [r for r in report if r[1] == "run"]
    assert len(mid) >= math.ceil(0.6 * len(runs)), f"too few kills landed mid-run: {report}"


def test_producer_sigkill_then_resume_is_identical(producer_long_ref, zygote, tmp_path):
    producer_crash_trials(3, seed=20240601, ref=producer_long_ref, where=tmp_path, zygote=zygote)


@pytest.mark.slow
def test_producer_sigkill_then_resume_is_identical_soak(tmp_path, request):
    want_slow(request)
    ref = request.getfixturevalue("producer_long_ref")
    zygote = request.getfixturevalue("zygote")
    producer_crash_trials(20, seed=777, ref=ref, where=tmp_path, zygote=zygote)


def test_producer_resume_refuses_other_parameters_and_no_ops_when_complete(tmp_path, snapshot):
    n = 300_000
    base = [
        "--num_samples",
        n,
        "--file",
        "s.npy",
        "--chunk_size",
        BLOCK,
        "--seed",
        5,
        "--anomalies",
        '{"rate": 0.01}',
        "--seasonality",
        '{"period": 50}',
        "--quiet",
    ]
    d = tmp_path
    p = popen("producer", *base, "--threads", 1, cwd=d)
    p.communicate(timeout=120)
    assert p.returncode == 0
    # Make it an interrupted stream: the last two chunks uncommitted, status failed.
    side = d / "s.stream.json"
    doc = json.loads(side.read_text())
    doc["chunks"][-2:] = [None, None]
    doc["status"], doc["message"] = "failed", "interrupted by SIGKILL (simulated)"
    side.write_text(json.dumps(doc))
    before = snapshot(d)
    cases = {  # option changed -> text the message must contain
        "seed": (["--seed", 6], "'seed'"),
        "seasonality": (["--seasonality", '{"period": 51}'], "'seasonality'"),
        "anomalies": (["--anomalies", '{"rate": 0.02}'], "'anomalies'"),
        "num_samples": (["--num_samples", n + 1], "'num_samples'"),
        "dtype": (["--dtype", "float32"], "'dtype'"),
        "type": (["--type", "uniform"], "'type'"),
    }
    jobs = []
    for change, _ in cases.values():
        args = list(base)
        key = change[0]
        if key in args:
            i = args.index(key)
            args[i + 1] = change[1]
        else:
            args += change
        jobs.append(("producer", [*args, "--resume"], d))
    for (name, (_, text)), (rc, out, err) in zip(cases.items(), run_all(jobs), strict=True):
        line = one_line(err, "producer")
        assert rc == 2, (name, line)
        assert "cannot resume" in line and text in line, (name, line)
        assert out == ""
    assert snapshot(d) == before, "a refused --resume modified the stream"
    # A stream written by the earlier generation algorithm (numpy SFC64) has other bytes:
    # finishing it with this one would mix two algorithms in one file.
    current = side.read_text()
    old = json.loads(current)
    old["generation"].update(bit_generator="SFC64", algorithm=1)
    side.write_text(json.dumps(old))
    before_old = snapshot(d)
    rc, out, err = run("producer", *base, "--resume", cwd=d)
    line = one_line(err, "producer")
    assert rc == 2 and "cannot resume" in line and "'bit_generator'" in line, line
    assert snapshot(d) == before_old
    side.write_text(current)
    # The right parameters finish it; then a second --resume has nothing to do.
    rc, out, err = run("producer", *base, "--resume", cwd=d)
    assert rc == 0 and err == "", err
    assert committed(d / "s.npy")[2] == "complete"
    x, labels = generate_with_labels(
        n, seed=5, anomalies={"rate": 0.01}, seasonality={"period": 50}
    )
    np.testing.assert_array_equal(np.load(d / "s.npy"), x)
    np.testing.assert_array_equal(np.load(d / "s.labels.npy"), labels)
    before = snapshot(d)
    stat = {p.name: p.stat().st_mtime_ns for p in d.iterdir()}
    time.sleep(0.01)
    rc, out, err = run("producer", *[a for a in base if a != "--quiet"], "--resume", cwd=d)
    assert rc == 0, err
    assert "already complete" in out and err == "", (out, err)
    assert snapshot(d) == before
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir()} == stat


# -- 2. consumer: SIGKILL at random moments, then --resume ---------------------------------


def consumer_crash_trials(
    trials: int, seed: int, ref: ConsumerRef, where: Path, snapshot, zygote
) -> None:
    """Every third trial kills ``python -m consumer`` at a random moment of the whole run,
    drawn uniformly from launch to the reference run's exit (start-up and output set-up
    included); the others once the index file has reached a random fraction of its final
    size (so whatever the machine's load), plus up to 0.2 s, which also lands some kills
    in the final publish.  The refused rerun and the ``--resume`` run as forks of the
    kill-point zygote (the same CLI ``main``)."""
    rng = random.Random(seed)
    report = []
    for t in range(trials):
        if t % 3 == 2:
            target, delay = None, rng.uniform(0.0, ref.wall_s)
        else:
            target, delay = int(rng.uniform(0.0, 1.0) * ref.index_bytes), rng.uniform(0.0, 0.2)
        out = where / f"c{t}"
        out.mkdir()
        p = popen("consumer", *consumer_args(ref.stream, out), cwd=where)
        try:
            if target is not None:
                wait_until(
                    lambda out=out, p=p, k=target: (
                        p.poll() is not None or ((out / "i.npy").exists() and index_size(out) >= k)
                    )
                )
            time.sleep(delay)
            p.kill()
            _, err = p.communicate(timeout=60)
        finally:
            kill(p)
        ckpt = read_json(out / "i.consumer.json")
        at = ckpt["next_chunk"] if ckpt else None
        mid_run = p.returncode == -signal.SIGKILL and not (ckpt and ckpt["final"])
        report.append((t, target, round(delay, 3), at, p.returncode, mid_run))
        tag = (
            f"trial {t} (seed {seed}, after {target} index bytes + {delay:.3f} s: "
            f"checkpoint at chunk {at})"
        )
        # What the killed run left is readable and a prefix of the right answer.
        want = ref.table["index"].to_numpy()
        if (out / "i.npy").exists():
            got = np.load(out / "i.npy")
            np.testing.assert_array_equal(got, want[: len(got)], err_msg=tag)
        if (out / "o.parquet").exists():
            got = pq.read_table(out / "o.parquet")["index"].to_numpy()
            np.testing.assert_array_equal(got, want[: len(got)], err_msg=tag)
        if t == 0:
            # Without --resume or --overwrite the outputs of the killed run are refused.
            before = snapshot(out)
            r = zygote.run("consumer", consumer_args(ref.stream, out), where)
            line = one_line(r.stderr, "consumer")
            assert r.returncode == 2 and "exists" in line and "--resume" in line, (tag, line)
            assert snapshot(out) == before, tag
        r = zygote.run("consumer", [*consumer_args(ref.stream, out), "--resume"], where)
        assert r.returncode == 0, f"{tag}: --resume failed: {r.stderr}"
        assert_consumer_outputs_equal(out, ref, tag)
        final = read_json(out / "i.consumer.json")
        assert final["final"] is True and final["samples"] == C_N, (tag, final)
        left = sorted(q.name for q in out.iterdir())
        assert left == ["i.consumer.json", "i.npy", "o.parquet", "s.json", "sc.npy"], (tag, left)
        shutil.rmtree(out)
    print("\nconsumer kills (trial, index bytes, delay s, checkpoint chunk, rc, mid-run):", report)
    mid = [r for r in report if r[5]]
    assert len(mid) >= math.ceil(0.6 * trials), f"too few kills landed mid-run: {report}"


def test_consumer_sigkill_then_resume_is_identical(consumer_ref, zygote, tmp_path, snapshot):
    consumer_crash_trials(3, 4242, consumer_ref, tmp_path, snapshot, zygote)


def _split_parts(rows: Path, first: int) -> None:
    """Rewrite a finished rows dataset as part 0 (schema), part 1 (the row groups of the
    chunks before ``first``) and part 2 (the rest), plus a torn temporary part 3."""
    groups = [
        pq.ParquetFile(q).read_row_group(g)
        for q in sorted(rows.glob("*.parquet"))
        for g in range(pq.read_metadata(q).num_row_groups)
    ]
    schema = groups[0].schema
    for q in rows.iterdir():
        q.unlink()
    for k, part in enumerate(([], groups[:first], groups[first:])):
        with pq.ParquetWriter(rows / part_name(k), schema, compression="zstd") as w:
            for t in part:
                w.write_table(t, row_group_size=max(1, len(t)))
    (rows / f".{part_name(3)}.tmp").write_bytes(b"PAR1 torn")


def test_consumer_resume_cuts_off_what_was_written_after_the_checkpoint(small_files, tmp_path):
    """The state a crash between publishes leaves: indices appended past the index file's
    header, a header and a Parquet part published past the checkpoint, a torn part."""
    install(small_files, tmp_path)
    rows = tmp_path / "s.anomalies.parquet"
    want_idx = (tmp_path / "s.anomalies.npy").read_bytes()
    want_rows = pq.read_table(rows)
    idx = np.load(tmp_path / "s.anomalies.npy")
    ckpt_path = tmp_path / "s.consumer.json"
    ckpt = json.loads(ckpt_path.read_text())
    assert ckpt["next_chunk"] == 5 and ckpt["final"] is True
    kept = int((idx < 2 * BLOCK).sum())
    assert 0 < kept < len(idx)
    _split_parts(rows, 2)
    ckpt.update(next_chunk=2, samples=2 * BLOCK, indices=kept, rows=kept, parts=2, final=False)
    ckpt_path.write_text(json.dumps(ckpt))
    with open(tmp_path / "s.anomalies.npy", "ab") as fh:
        fh.write(np.arange(100, dtype="<i8").tobytes())  # appended, never published
    rc, out, err = run("consumer", "--file", "s.npy", "--resume", "--quiet", cwd=tmp_path)
    assert rc == 0, err
    assert (tmp_path / "s.anomalies.npy").read_bytes() == want_idx
    got = pq.read_table(rows)
    assert got.equals(want_rows) and got.schema == want_rows.schema
    assert sorted(q.name for q in rows.iterdir()) == [part_name(k) for k in range(3)]
    assert pq.read_metadata(rows / part_name(1)).num_row_groups == 2  # kept as it was
    summary = json.loads((tmp_path / "s.summary.json").read_text())
    assert summary["anomalies"] == len(idx) and summary["samples"] == SMALL_N


@pytest.mark.slow
def test_consumer_sigkill_then_resume_is_identical_soak(tmp_path, snapshot, request):
    want_slow(request)
    ref = request.getfixturevalue("consumer_ref")
    consumer_crash_trials(20, 99, ref, tmp_path, snapshot, request.getfixturevalue("zygote"))


# -- 2b. a kill before every single file change (set-up included) -----------------------
#
# Real-time kills cannot reliably land in a window of a few milliseconds (the producer's
# set-up: sidecar, data file, header, labels file).  The kill-point zygote
# (tests/killpoints.py, test-only) runs the real CLI ``main`` in a forked process and
# SIGKILLs it just before its k-th change to a file: k = 1, 2, ... reaches every state a
# run can leave behind.


KP_N = 200_001
KP_CHUNK = 70_000  # not a multiple of the RNG block: resume at any chunk size too
KP_GEN = dict(seed=21, anomalies={"rate": 0.01}, seasonality={"period": 100})
KP_STREAM = ("s.npy", "s.labels.npy")  # what must equal an uninterrupted run's, byte for byte


def kp_producer_args(*extra: object) -> list[object]:
    return [
        "--num_samples",
        KP_N,
        "--file",
        "s.npy",
        "--chunk_size",
        KP_CHUNK,
        "--seed",
        KP_GEN["seed"],
        "--anomalies",
        json.dumps(KP_GEN["anomalies"]),
        "--seasonality",
        json.dumps(KP_GEN["seasonality"]),
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def kp_stream(zygote, tmp_path_factory) -> tuple[bytes, bytes]:
    """(data file, labels file) bytes of the kill-point stream, checked against generate."""
    d = tmp_path_factory.mktemp("kpref")
    r = zygote.run("producer", kp_producer_args(), d)
    assert r.returncode == 0 and r.killed_at is None, r
    data, labels = (d / "s.npy").read_bytes(), (d / "s.labels.npy").read_bytes()
    x, want = generate_with_labels(KP_N, **KP_GEN)
    header_len = read_json(d / "s.stream.json")["header_len"]
    assert data[header_len:] == x.tobytes()
    np.testing.assert_array_equal(np.load(d / "s.labels.npy"), want)
    return data, labels


def assert_stream_resumes(zygote, d: Path, args: list[object], want, tag: str) -> None:
    """What a kill left is recognisably ours, and ``--resume`` finishes it byte for byte."""
    names = {q.name for q in d.iterdir()}
    assert "s.npy" not in names or "s.stream.json" in names, f"{tag}: data without sidecar"
    r = zygote.run("producer", [*args, "--resume"], d)
    assert r.returncode == 0 and r.stderr == "", (tag, r)
    assert r.stdout in ("", "producer: s.npy is already complete; nothing to do\n"), (tag, r)
    assert sorted(q.name for q in d.iterdir()) == STREAM_FILES, tag
    assert read_json(d / "s.stream.json")["status"] == "complete", tag
    assert (d / "s.npy").read_bytes() == want[0], f"{tag}: data differs"
    assert (d / "s.labels.npy").read_bytes() == want[1], f"{tag}: labels differ"


def producer_kill_points(zygote, where: Path, want, mode: str, stride: int, seed: int) -> list:
    """Kill before every ``stride``-th file change of a run, then ``--resume``; every fifth
    time the resume itself is killed at a random change first (a kill during recovery)."""
    args = kp_producer_args("--threads", 2, *(["--sync"] if mode == "sync" else []))
    (where / "count").mkdir()
    total = zygote.run("producer", args, where / "count").changes
    rng = random.Random(seed)
    killed = []
    for n, k in enumerate(range(1, total + 1, stride)):
        d = where / f"{mode}{k}"
        d.mkdir()
        r = zygote.run("producer", args, d, kill_at=k)
        tag = f"{mode}: killed before file change {k} of {total}: {r.killed_at}"
        if r.killed_at is None:  # thread timing: this run needed fewer changes
            assert r.returncode == 0, (tag, r.stderr)
        else:
            assert r.returncode == -signal.SIGKILL, (tag, r.stderr)
            killed.append(r.killed_at)
        if n % 5 == 4:
            j = rng.randint(1, total)
            again = zygote.run("producer", [*args, "--resume"], d, kill_at=j)
            tag += f"; its --resume killed before change {j}: {again.killed_at}"
        assert_stream_resumes(zygote, d, args, want, tag)
        shutil.rmtree(d)
    return killed


# --sync differs from async only once chunks are written: every other change suffices.
@pytest.mark.parametrize("mode, stride", [("async", 1), ("sync", 2)])
def test_producer_killed_before_each_file_change_resumes_identically(
    zygote, kp_stream, tmp_path, mode, stride
):
    killed = producer_kill_points(zygote, tmp_path, kp_stream, mode, stride, seed=5)
    if stride > 1:
        return
    # The set-up's steps were among the kill points (claim, data file, size, header,
    # labels file), and so were chunk writes and commits.
    for step in [
        ("link", "s.stream.json"),
        ("open", "s.npy"),
        ("ftruncate", "s.npy"),
        ("pwrite", "s.npy"),
        ("open", "s.labels.npy"),
        ("pwrite", "s.labels.npy"),
        ("replace", "s.stream.json"),
    ]:
        assert step in killed, (step, sorted(set(killed)))


def test_producer_resume_starts_a_missing_stream_and_refuses_what_is_not_ours(
    zygote, kp_stream, tmp_path, snapshot
):
    args = kp_producer_args()
    # Nothing there: --resume starts the stream.
    r = zygote.run("producer", [*args, "--resume"], tmp_path)
    assert r.returncode == 0 and r.stderr == "", r
    assert sorted(q.name for q in tmp_path.iterdir()) == STREAM_FILES
    assert (tmp_path / "s.npy").read_bytes() == kp_stream[0]
    # A user's plain .npy (no sidecar) is not a stream to resume, nor is a labels file
    # beside a stream that does not exist: refused, nothing modified.
    for d, files in (("plain", ["s.npy"]), ("labels", ["s.labels.npy"])):
        (tmp_path / d).mkdir()
        for name in files:
            np.save(
                tmp_path / d / name, np.arange(10, dtype=np.int64 if "labels" in name else float)
            )
        before = snapshot(tmp_path / d)
        r = zygote.run("producer", [*args, "--resume"], tmp_path / d)
        line = one_line(r.stderr, "producer", d)
        assert r.returncode == 2 and ("no sidecar" in line or "exists" in line), (d, line)
        assert snapshot(tmp_path / d) == before, d
    # A sidecar with committed chunks whose data file is gone cannot be finished.
    (tmp_path / "s.npy").unlink()
    before = snapshot(tmp_path)
    r = zygote.run("producer", [*args, "--resume"], tmp_path)
    line = one_line(r.stderr, "producer")
    assert r.returncode == 1 and "data file missing" in line, line
    assert snapshot(tmp_path) == before


KP_OUTPUTS = ["i.consumer.json", "i.npy", "o.parquet", "s.json", "sc.npy"]


def kp_consumer_args(stream: Path) -> list[object]:
    return [
        "--file",
        stream,
        "--threads",
        2,
        "--params",
        '{"window": 100, "threshold": 2.5}',
        "--labels",
        stream.with_name("s.labels.npy"),
        "--indices",
        "i.npy",
        "--out",
        "o.parquet",
        "--summary",
        "s.json",
        "--scores",
        "sc.npy",
        "--quiet",
    ]


def consumer_outputs(d: Path, scores: bool = True) -> dict:
    """Everything a consumer run must reproduce: files' bytes, Parquet rows, summary counts."""
    summary = json.loads((d / "s.json").read_text())
    hidden = [str(q.relative_to(d)) for q in d.rglob(".*")]
    return {
        "files": sorted(q.name for q in d.iterdir()),
        "hidden": hidden,
        "indices": (d / "i.npy").read_bytes(),
        "scores": (d / "sc.npy").read_bytes() if scores else None,
        "rows": pq.read_table(d / "o.parquet").sort_by("index").to_pydict(),
        "summary": {
            k: summary.get(k)
            for k in (
                "status",
                "anomalies",
                "samples",
                "labels",
                "true_positives",
                "precision",
                "recall",
            )
        },
    }


@pytest.fixture(scope="module")
def kp_consumer_ref(zygote, kp_stream, tmp_path_factory):
    d = tmp_path_factory.mktemp("kpc")
    r = zygote.run("producer", kp_producer_args(), d)
    assert r.returncode == 0 and (d / "s.npy").read_bytes() == kp_stream[0], r
    (d / "ref").mkdir()
    r = zygote.run("consumer", kp_consumer_args(d / "s.npy"), d / "ref")
    assert r.returncode == 0 and r.killed_at is None, r
    ref = consumer_outputs(d / "ref")
    idx = np.load(d / "ref" / "i.npy")
    np.testing.assert_array_equal(
        idx, consumer.detect(np.load(d / "s.npy"), window=100, threshold=2.5)
    )
    assert len(idx) > 1000 and ref["files"] == KP_OUTPUTS and ref["hidden"] == []
    assert ref["summary"]["anomalies"] == len(idx) and ref["summary"]["labels"] > 0
    return d / "s.npy", ref, r.changes


def test_consumer_killed_before_each_file_change_resumes_identically(
    zygote, kp_consumer_ref, tmp_path
):
    stream, ref, total = kp_consumer_ref
    args = kp_consumer_args(stream)
    rng = random.Random(11)
    killed = []
    for k in range(1, total + 1):
        d = tmp_path / f"c{k}"
        d.mkdir()
        r = zygote.run("consumer", args, d, kill_at=k)
        tag = f"killed before file change {k} of {total}: {r.killed_at}"
        if r.killed_at is None:
            assert r.returncode == 0, (tag, r.stderr)
        else:
            assert r.returncode == -signal.SIGKILL, (tag, r.stderr)
            killed.append(r.killed_at)
        if k % 5 == 0:  # and kill the first --resume too
            j = rng.randint(1, total)
            again = zygote.run("consumer", [*args, "--resume"], d, kill_at=j)
            tag += f"; its --resume killed before change {j}: {again.killed_at}"
        r = zygote.run("consumer", [*args, "--resume"], d)
        assert r.returncode == 0 and r.stderr == "", (tag, r)
        got = consumer_outputs(d)
        for key, value in ref.items():
            assert got[key] == value, f"{tag}: {key} differs"
        shutil.rmtree(d)
    for step in [("replace", "i.consumer.json"), ("open", "i.npy"), ("open", "sc.npy")]:
        assert step in killed, (step, sorted(set(killed)))


def test_consumer_of_a_csv_killed_before_each_file_change_resumes_identically(zygote, tmp_path):
    """A table input is first read into a series file (with its own sidecar): kills while
    it is written, and later, are resumed too, and the series is reused or rewritten."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=3000)
    x[[100, 1500, 2900]] += 12.0
    rows = ["timestamp,value"] + [
        f"2024-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},{'' if i % 7 == 3 else v}"
        for i, v in enumerate(x)
    ]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    args = ["--file", tmp_path / "data.csv", "--column", "value", "--timestamp", "timestamp"]
    args += ["--indices", "i.npy", "--out", "o.parquet", "--summary", "s.json", "--quiet"]

    def outputs(d: Path) -> dict:
        got = consumer_outputs(d, scores=False)
        got["series"] = (d / "i.series.npy").read_bytes()
        return got

    (tmp_path / "ref").mkdir()
    r = zygote.run("consumer", args, tmp_path / "ref")
    assert r.returncode == 0, r
    ref = outputs(tmp_path / "ref")
    assert len(np.load(tmp_path / "ref" / "i.npy")) >= 3 and ref["hidden"] == []
    killed = []
    for k in range(1, r.changes + 1):
        d = tmp_path / f"k{k}"
        d.mkdir()
        killed.append(zygote.run("consumer", args, d, kill_at=k).killed_at)
        again = zygote.run("consumer", [*args, "--resume"], d)
        assert again.returncode == 0 and again.stderr == "", (k, killed[-1], again)
        got = outputs(d)
        for key, value in ref.items():
            assert got[key] == value, f"killed before change {k} ({killed[-1]}): {key} differs"
        shutil.rmtree(d)
    assert ("replace", "i.series.npy") in killed, killed


@pytest.mark.slow
def test_kill_points_soak(zygote, kp_consumer_ref, tmp_path, request):
    """Random configurations (threads, --sync, dtype, chunk sizes from the minimum up), each
    killed at a random file change, then its resumes killed up to three more times at
    random changes, then resumed to the end: producer and consumer."""
    want_slow(request)
    rng = random.Random(20261201)
    refs: dict[tuple, tuple[bytes, bytes]] = {}
    for t in range(40):
        config = (
            rng.choice([1, 2, 3]),
            rng.choice([False, True]),
            rng.choice(["float64", "float32"]),
            rng.choice([4096, 5000, BLOCK, 70_000, 2 * BLOCK + 3, 1 << 20]),
        )
        threads, sync, dtype, chunk = config
        args = [*kp_producer_args("--threads", threads, "--dtype", dtype), "--chunk_size", chunk]
        args += ["--sync"] * sync
        if config not in refs:
            (tmp_path / "ref").mkdir()
            r = zygote.run("producer", args, tmp_path / "ref")
            assert r.returncode == 0, r
            refs[config] = tuple((tmp_path / "ref" / n).read_bytes() for n in KP_STREAM)
            shutil.rmtree(tmp_path / "ref")
        d = tmp_path / f"p{t}"
        d.mkdir()
        kills = []
        for attempt in range(rng.randint(1, 4)):
            k = rng.randint(1, 60)
            r = zygote.run("producer", [*args, *(["--resume"] if attempt else [])], d, kill_at=k)
            kills.append((k, r.killed_at))
        assert_stream_resumes(zygote, d, args, refs[config], f"{config}: kills {kills}")
        shutil.rmtree(d)
    stream, ref, total = kp_consumer_ref
    args = kp_consumer_args(stream)
    for t in range(30):
        d = tmp_path / f"c{t}"
        d.mkdir()
        kills = []
        for attempt in range(rng.randint(1, 4)):
            k = rng.randint(1, total)
            r = zygote.run("consumer", [*args, *(["--resume"] if attempt else [])], d, kill_at=k)
            kills.append((k, r.killed_at))
        r = zygote.run("consumer", [*args, "--resume"], d)
        assert r.returncode == 0 and r.stderr == "", (kills, r)
        got = consumer_outputs(d)
        for key, value in ref.items():
            assert got[key] == value, f"kills {kills}: {key} differs"
        shutil.rmtree(d)


# -- 3. disk full and file size limit ------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, "size=4m")`` mounts a tmpfs at ``tmp_path / name``; unmounted at teardown.

    Skips the test where mounting is not permitted (not root, no CAP_SYS_ADMIN).
    """
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)], capture_output=True, text=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
        mounted.append(d)
        return d

    yield mount
    for d in reversed(mounted):
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def remount(d: Path, options: str) -> None:
    r = subprocess.run(
        ["mount", "-o", f"remount,{options}", str(d)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_disk_full_up_front_leaves_nothing_behind(tmpfs, snapshot):
    d = tmpfs("small", "size=4m")
    free = shutil.disk_usage(d).free
    n = 1_000_000
    need = 128 + 8 * n
    assert need > free
    jobs = [
        ("producer", ["--num_samples", n, "--file", "a.npy"], d),
        ("producer", ["--num_samples", n, "--file", "b.npy", "--no-preallocate"], d),
        (
            "producer",
            ["--num_samples", n, "--file", "c.npy", "--anomalies", '{"rate": 0.01}', "--sync"],
            d,
        ),
    ]
    for rc, _, err in run_all(jobs):
        line = one_line(err, "producer")
        assert rc == 1, line
        assert "disk space" in line and f"need {need} bytes" in line, line
        assert f"{free} free" in line, line
    assert snapshot(d) == {}, "a stream that never started left files behind"
    # Data that fits, with a labels file (header and 8 bytes per label) that does not:
    # refused before anything is written.
    m = 400_000
    labels = len(generate_with_labels(m, anomalies={"rate": 0.5})[1])
    assert 128 + 8 * m < free < 128 + 8 * m + 128 + 8 * labels
    rc, _, err = run(
        "producer", "--num_samples", m, "--file", "l.npy", "--anomalies", '{"rate": 0.5}', cwd=d
    )
    line = one_line(err, "producer")
    assert rc == 1 and f"need {128 + 8 * m + 128 + 8 * labels} bytes" in line, line
    assert snapshot(d) == {}
    # An existing (smaller) stream is not touched when its replacement does not fit.
    rc, _, err = run("producer", "--num_samples", 200_000, "--file", "old.npy", "--quiet", cwd=d)
    assert rc == 0, err
    before = snapshot(d)
    rc, out, err = run("producer", "--num_samples", n, "--file", "old.npy", "--overwrite", cwd=d)
    assert rc == 1 and "need" in one_line(err, "producer")
    assert snapshot(d) == before


def test_disk_full_mid_run_marks_failed_then_resume_completes(tmpfs, tmp_path):
    d = tmpfs("full", "size=176m")
    # 160 MB of data, sparse until written: big enough that the producer (about 0.1 s
    # per 1e7 samples on one thread) is still writing when it is stopped below.
    n = 20_000_000
    args = [
        "--num_samples",
        n,
        "--file",
        "s.npy",
        "--no-preallocate",
        "--threads",
        1,
        "--chunk_size",
        BLOCK,
        "--seed",
        11,
        "--anomalies",
        '{"rate": 0.001}',
        "--quiet",
    ]
    p = popen("producer", *args, cwd=d)
    try:
        # Once the labels file exists the stream is set up (the up-front space check has
        # passed): stop the producer, let "someone else" take all but 1 MB of the disk, and
        # let it carry on.
        wait_until(lambda: (d / "s.labels.npy").exists() or p.poll() is not None)
        pause(p)
        at_stop = committed(d / "s.npy")
        free = shutil.disk_usage(d).free
        with open(d / "filler", "wb") as fh:
            fh.write(b"\0" * (free - (1 << 20)))
        os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=120)
    finally:
        kill(p)
    print(f"\ndisk full: {at_stop} committed when the disk was filled")
    line = one_line(err, "producer")
    assert p.returncode == 1, line
    assert "No space left on device" in line and "s.npy" in line, line
    doc = read_json(d / "s.stream.json")
    assert doc["status"] == "failed", "the sidecar does not record the failure"
    assert "No space left on device" in doc["message"], doc["message"]
    done = sum(c is not None for c in doc["chunks"])
    assert done < len(doc["chunks"]), "the disk was full, yet every chunk was committed"
    assert not [q.name for q in d.iterdir() if q.name.endswith(".tmp")], list(d.iterdir())
    # Readers see the failure at once instead of waiting for a stale heartbeat.
    rc, _, err = run(
        "consumer",
        "--file",
        d / "s.npy",
        "--indices",
        tmp_path / "i.npy",
        "--out",
        tmp_path / "o.parquet",
        "--summary",
        tmp_path / "s.json",
        "--timeout",
        60,
        "--quiet",
        cwd=tmp_path,
        timeout=30,
    )
    assert rc == 1 and "No space left on device" in one_line(err, "consumer")
    remount(d, "size=400m")
    rc, out, err = run("producer", *args, "--resume", cwd=d)
    assert rc == 0, err
    assert committed(d / "s.npy")[2] == "complete"
    x, labels = generate_with_labels(n, seed=11, anomalies={"rate": 0.001})
    assert np.load(d / "s.npy").tobytes() == x.tobytes()
    np.testing.assert_array_equal(np.load(d / "s.labels.npy"), labels)
    assert sorted(q.name for q in d.iterdir()) == [
        "filler",
        "s.labels.npy",
        "s.npy",
        "s.stream.json",
    ]


def _fsize_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_file_size_limit_is_an_error_not_a_signal(tmp_path, snapshot):
    limit = 1 << 20
    n = 1_000_000
    results = {}
    procs = {
        name: popen(
            "producer",
            "--num_samples",
            n,
            "--file",
            f"{name}.npy",
            *extra,
            cwd=tmp_path,
            preexec_fn=_fsize_limit(limit),
        )
        for name, extra in (
            ("pre", []),
            ("sparse", ["--no-preallocate"]),
            ("sync", ["--sync", "--anomalies", '{"rate": 0.01}']),
        )
    }
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        results[name] = (p.returncode, out, err)
    for name, (rc, _, err) in results.items():
        assert rc == 1, (name, rc, err)  # not -SIGXFSZ
        line = one_line(err, "producer")
        assert "file size limit" in line and f"{name}.npy" in line, (name, line)
    assert snapshot(tmp_path) == {}
    # The consumer: outputs past the limit are an error too (dense scores: 4 MB).
    rc, _, err = run("producer", "--num_samples", n, "--file", "s.npy", "--quiet", cwd=tmp_path)
    assert rc == 0, err
    p = popen(
        "consumer",
        "--file",
        "s.npy",
        "--scores",
        "s.scores.npy",
        "--quiet",
        cwd=tmp_path,
        preexec_fn=_fsize_limit(limit),
    )
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1, (p.returncode, err)
    line = one_line(err, "consumer")
    assert "file size limit" in line or "File too large" in line, line


# -- 4. one writer, many readers -------------------------------------------------------------


def test_single_writer_many_readers_and_lock_dies_with_the_writer(producer_ref, tmp_path):
    d = tmp_path
    f = d / "s.npy"
    a = popen("producer", *producer_args(f.name, threads=1), cwd=d)
    readers = []
    try:
        wait_until(lambda: a.poll() is not None or (committed(f) or (0,))[0] > 0)
        pause(a)
        done, total, status = committed(f)
        assert 0 < done < total and status == "running"
        for k in (1, 2):  # two consumers tail the same stream into different outputs
            (d / f"r{k}").mkdir()
            readers.append(
                popen(
                    "consumer",
                    "--file",
                    f,
                    "--threads",
                    1,
                    "--timeout",
                    120,
                    "--params",
                    '{"window": 500, "threshold": 4}',
                    "--indices",
                    d / f"r{k}/i.npy",
                    "--out",
                    d / f"r{k}/o.parquet",
                    "--summary",
                    d / f"r{k}/s.json",
                    "--quiet",
                    cwd=d,
                )
            )
        names = ("s.npy", "s.stream.json", "s.labels.npy")
        before = {n: (sha256_file(d / n), (d / n).stat().st_mtime_ns) for n in names}
        jobs = [
            ("producer", [*producer_args(f.name), "--overwrite"], d),
            ("producer", ["--num_samples", 1000, "--file", f.name, "--overwrite"], d),
            ("producer", [*producer_args(f.name), "--resume"], d),
        ]
        for rc, _, err in run_all(jobs):
            line = one_line(err, "producer")
            assert rc == 1 and "another producer is writing" in line, line
        assert {n: (sha256_file(d / n), (d / n).stat().st_mtime_ns) for n in names} == before
        os.kill(a.pid, signal.SIGCONT)
        _, err = a.communicate(timeout=300)
        assert a.returncode == 0, err
        assert sha256_file(f) == producer_ref.data_sha
        assert sha256_file(d / "s.labels.npy") == producer_ref.labels_sha
        results = []
        for r in readers:
            _, err = r.communicate(timeout=300)
            assert r.returncode == 0, err
        for k in (1, 2):
            results.append((np.load(d / f"r{k}/i.npy"), pq.read_table(d / f"r{k}/o.parquet")))
        want = consumer.detect(np.load(f, mmap_mode="r"), window=500, threshold=4)
        assert len(want) > 1000
        for idx, table in results:
            np.testing.assert_array_equal(idx, want)
            assert table.equals(results[0][1])
    finally:
        for p in [a, *readers]:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
            kill(p)
    # A SIGKILLed writer's lock dies with it: --resume can take over at once.
    f = d / "k.npy"
    b = popen("producer", *producer_args(f.name, threads=1), cwd=d)
    try:
        wait_until(lambda: b.poll() is not None or (committed(f) or (0,))[0] > 0)
        os.kill(b.pid, signal.SIGSTOP)
        os.kill(b.pid, signal.SIGKILL)
        b.communicate(timeout=30)
    finally:
        kill(b)
    done, total, status = committed(f)
    assert 0 < done < total and status == "running"
    rc, out, err = run("producer", *producer_args(f.name), "--resume", cwd=d)
    assert rc == 0, err
    assert sha256_file(f) == producer_ref.data_sha
    assert sha256_file(d / "k.labels.npy") == producer_ref.labels_sha


# -- 5. SIGINT / SIGTERM ------------------------------------------------------------------------


SIGNALS = {"SIGINT": (signal.SIGINT, 130), "SIGTERM": (signal.SIGTERM, 143)}


def test_producer_signals_exit_promptly_and_resume(producer_long_ref, tmp_path):
    ref = producer_long_ref
    procs = {}
    for name in SIGNALS:
        (tmp_path / name).mkdir()
        args = producer_args("s.npy", threads=1, n=ref.n)
        procs[name] = popen("producer", *args, cwd=tmp_path / name)
    try:
        # Signal each one as soon as it has committed a chunk (a producer takes about
        # a second for the whole stream, so none may wait for another's exit).
        sent = {}
        for name, (sig, _) in SIGNALS.items():
            p, f = procs[name], tmp_path / name / "s.npy"
            wait_until(lambda p=p, f=f: p.poll() is not None or (committed(f) or (0,))[0] > 0)
            sent[name] = time.monotonic()
            p.send_signal(sig)
        exited = {}

        def all_exited() -> bool:
            for name, p in procs.items():
                if name not in exited and p.poll() is not None:
                    exited[name] = time.monotonic()
            return len(exited) == len(procs)

        wait_until(all_exited, timeout=30)
        for name, (_, code) in SIGNALS.items():
            p, f = procs[name], tmp_path / name / "s.npy"
            _, err = p.communicate(timeout=30)
            took = exited[name] - sent[name]
            print(f"\nproducer {name}: exit {p.returncode} after {took:.3f} s")
            assert p.returncode == code, err
            assert took < 2.0, f"{name}: exit took {took:.2f} s"
            line = one_line(err, "producer")
            assert f"interrupted by {name}" in line and "--resume" in line, line
            doc = read_json(sidecar_of(f))
            assert doc["status"] == "failed" and "interrupted" in doc["message"], doc["message"]
            assert any(c is None for c in doc["chunks"])
    finally:
        for p in procs.values():
            kill(p)
    resume = [*producer_args("s.npy", n=ref.n), "--resume"]
    jobs = [("producer", resume, tmp_path / name) for name in SIGNALS]
    for (rc, _, err), name in zip(run_all(jobs), SIGNALS, strict=True):
        assert rc == 0, err
        assert sha256_file(tmp_path / name / "s.npy") == ref.data_sha
        assert sha256_file(tmp_path / name / "s.labels.npy") == ref.labels_sha


def test_consumer_signals_exit_promptly_and_resume(consumer_ref, tmp_path):
    procs = {}
    for name in SIGNALS:
        (tmp_path / name).mkdir()
        procs[name] = popen(
            "consumer", *consumer_args(consumer_ref.stream, tmp_path / name), cwd=tmp_path
        )
    try:
        # Signal each one once its index file is 20% / 40% of its final size.
        targets = {name: (k + 1) * 0.2 * consumer_ref.index_bytes for k, name in enumerate(SIGNALS)}
        sent: dict[str, float] = {}
        ended: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while len(ended) < len(SIGNALS) and time.monotonic() < deadline:
            for name, (sig, _) in SIGNALS.items():
                p = procs[name]
                if name not in sent and (
                    index_size(tmp_path / name) >= targets[name] or p.poll() is not None
                ):
                    p.send_signal(sig)
                    sent[name] = time.monotonic()
                if name in sent and name not in ended and p.poll() is not None:
                    ended[name] = time.monotonic()
            time.sleep(0.001)
        for name, (_, code) in SIGNALS.items():
            p = procs[name]
            _, err = p.communicate(timeout=30)
            took = ended[name] - sent[name]
            print(f"\nconsumer {name}: exit {p.returncode} after {took:.3f} s")
            assert p.returncode == code, err
            assert took < 2.0, f"{name}: exit took {took:.2f} s"
            line = one_line(err, "consumer")
            assert f"interrupted by {name}" in line, line
            ckpt = read_json(tmp_path / name / "i.consumer.json")
            assert ckpt["final"] is False and 0 < ckpt["samples"] < C_N, ckpt
    finally:
        for p in procs.values():
            kill(p)
    jobs = [
        ("consumer", [*consumer_args(consumer_ref.stream, tmp_path / name), "--resume"], tmp_path)
        for name in SIGNALS
    ]
    for name, (rc, _, err) in zip(SIGNALS, run_all(jobs), strict=True):
        assert rc == 0, err
        assert_consumer_outputs_equal(tmp_path / name, consumer_ref, name)


# -- 6. bad input ----------------------------------------------------------------------------


SMALL_N = 300_000  # 5 chunks of 65536 (the last one partial)
SMALL = [
    "--num_samples",
    SMALL_N,
    "--chunk_size",
    BLOCK,
    "--anomalies",
    '{"rate": 0.01}',
    "--quiet",
]


@pytest.fixture(scope="module")
def small_files(tmp_path_factory) -> dict[str, bytes]:
    """A finished stream s.npy with labels and the consumer's outputs and checkpoint
    (relative path -> bytes; the Parquet rows are a directory of parts)."""
    d = tmp_path_factory.mktemp("small")
    rc, _, err = run("producer", *SMALL, "--file", "s.npy", cwd=d)
    assert rc == 0, err
    rc, _, err = run("consumer", "--file", "s.npy", "--quiet", cwd=d)
    assert rc == 0, err
    return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()}


def install(files: dict[str, bytes], d: Path) -> None:
    """Copy the small stream and consumer outputs into ``d`` (checkpoint pointing there)."""
    for fname, data in files.items():
        (d / fname).parent.mkdir(exist_ok=True)
        (d / fname).write_bytes(data)
    ckpt = json.loads((d / "s.consumer.json").read_text())
    ckpt["input"] = str((d / "s.npy").resolve())
    (d / "s.consumer.json").write_text(json.dumps(ckpt))


def _edit_sidecar(**fields: object) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        side = d / "s.stream.json"
        side.write_text(json.dumps({**json.loads(side.read_text()), **fields}))

    return edit


def _corrupt_sidecar(d: Path) -> None:
    text = (d / "s.stream.json").read_text()
    (d / "s.stream.json").write_text(text[: len(text) // 2])


def _truncate_data(d: Path) -> None:
    with open(d / "s.npy", "r+b") as fh:
        fh.truncate((d / "s.npy").stat().st_size - 8 * 1000)


def _make_dir(d: Path) -> None:
    (d / "adir").mkdir()
    (d / "adir" / "notes.txt").write_text("not a part file")  # not a consumer's rows either


def _corrupt_checkpoint(d: Path) -> None:
    (d / "s.consumer.json").write_text('{"checkpoint_version": 1, "next_')


def _unlink(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def _interrupted_without_labels(d: Path) -> None:
    side = d / "s.stream.json"
    doc = json.loads(side.read_text())
    doc["chunks"][-1], doc["status"], doc["message"] = None, "failed", "interrupted"
    side.write_text(json.dumps(doc))
    (d / "s.labels.npy").unlink()


def _nothing(d: Path) -> None:
    pass


OVERWRITE_S = ["--file", "s.npy", "--overwrite"]
# case -> (module, setup, args, exit status, text the one stderr line must contain)
BAD = {
    "p-huge-n": (
        "producer",
        _nothing,
        [*SMALL, "--num_samples", 10**15, *OVERWRITE_S],
        1,
        "need 8000000000000128 bytes",
    ),
    "p-threads-negative": (
        "producer",
        _nothing,
        [*SMALL, "--threads=-1", *OVERWRITE_S],
        2,
        "--threads",
    ),
    "p-chunk-negative": (
        "producer",
        _nothing,
        [*SMALL, "--chunk_size=-65536", *OVERWRITE_S],
        2,
        "--chunk_size",
    ),
    "p-nan-trend": (
        "producer",
        _nothing,
        [*SMALL, "--trend", '{"slope": NaN}', *OVERWRITE_S],
        2,
        "NaN",
    ),
    "p-neg-infinity": (
        "producer",
        _nothing,
        [*SMALL, "--anomalies", '{"rate": -Infinity}', *OVERWRITE_S],
        2,
        "Infinity",
    ),
    "p-missing-dir": ("producer", _nothing, [*SMALL, "--file", "nodir/x.npy"], 2, "does not exist"),
    "p-is-dir": ("producer", _make_dir, [*SMALL, "--file", "adir"], 2, "directory"),
    "p-resume-corrupt-sidecar": (
        "producer",
        _corrupt_sidecar,
        [*SMALL, "--file", "s.npy", "--resume"],
        1,
        "corrupt sidecar",
    ),
    "p-resume-version-99": (
        "producer",
        _edit_sidecar(version=99),
        [*SMALL, "--file", "s.npy", "--resume"],
        1,
        "version 99",
    ),
    "p-resume-truncated": (
        "producer",
        _truncate_data,
        [*SMALL, "--file", "s.npy", "--resume"],
        1,
        "disagrees with its header",
    ),
    "p-resume-dtype": (
        "producer",
        _edit_sidecar(dtype="float32"),
        [*SMALL, "--file", "s.npy", "--resume"],
        1,
        "float32",
    ),
    "p-resume-no-labels": (
        "producer",
        _interrupted_without_labels,
        [*SMALL, "--file", "s.npy", "--resume"],
        1,
        "labels",
    ),
    "c-threads-0": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--threads", 0, "--overwrite"],
        2,
        "--threads",
    ),
    "c-threads-negative": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--threads=-3", "--overwrite"],
        2,
        "--threads",
    ),
    "c-chunk-0": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--chunk_size", 0, "--overwrite"],
        2,
        "--chunk_size",
    ),
    "c-nan": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--params", '{"threshold": NaN}', "--overwrite"],
        2,
        "NaN",
    ),
    "c-infinity": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--params", '{"window": Infinity}', "--overwrite"],
        2,
        "Infinity",
    ),
    "c-out-missing-dir": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--out", "nodir/o.parquet", "--overwrite"],
        2,
        "does not exist",
    ),
    "c-input-missing-dir": ("consumer", _nothing, ["--file", "nodir/s.npy"], 2, "nodir"),
    "c-out-is-dir": (
        "consumer",
        _make_dir,
        ["--file", "s.npy", "--out", "adir", "--overwrite"],
        2,
        "directory",
    ),
    "c-corrupt-sidecar": (
        "consumer",
        _corrupt_sidecar,
        ["--file", "s.npy", "--overwrite"],
        1,
        "corrupt sidecar",
    ),
    "c-version-99": (
        "consumer",
        _edit_sidecar(version=99),
        ["--file", "s.npy", "--overwrite"],
        1,
        "version 99",
    ),
    "c-truncated": (
        "consumer",
        _truncate_data,
        ["--file", "s.npy", "--overwrite"],
        1,
        "disagrees with its header",
    ),
    "c-dtype": (
        "consumer",
        _edit_sidecar(dtype="float32"),
        ["--file", "s.npy", "--overwrite"],
        1,
        "float32",
    ),
    "c-labels-missing": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--labels", "nolabels.npy", "--overwrite"],
        2,
        "nolabels.npy",
    ),
    "c-resume-corrupt-checkpoint": (
        "consumer",
        _corrupt_checkpoint,
        ["--file", "s.npy", "--resume"],
        1,
        "corrupt checkpoint",
    ),
    "c-resume-other-params": (
        "consumer",
        _nothing,
        ["--file", "s.npy", "--resume", "--params", '{"threshold": 5}'],
        2,
        "'detector' differs",
    ),
    "c-resume-no-checkpoint": (
        "consumer",
        _unlink("s.consumer.json"),
        ["--file", "s.npy", "--resume"],
        2,
        "no checkpoint",
    ),
}


# A --resume that gets as far as taking over the stream records its failure in the sidecar.
MAY_RECORD_FAILURE = {"p-resume-no-labels"}


def test_bad_input_matrix(small_files, tmp_path, snapshot):
    jobs, before = [], {}
    for name, (module, setup, args, _, _) in BAD.items():
        d = tmp_path / name
        d.mkdir()
        install(small_files, d)
        setup(d)
        before[name] = snapshot(d)
        jobs.append((module, args, d))
    for (name, (module, _, _, status, text)), (rc, out, err) in zip(
        BAD.items(), run_all(jobs), strict=True
    ):
        line = one_line(err, module, (name, rc, out))
        assert rc == status, (name, rc, line)
        assert text in line, (name, line)
        assert out == "", (name, out)
        after = snapshot(tmp_path / name)
        if name in MAY_RECORD_FAILURE:  # the refused run marks the stream failed, with why
            doc = json.loads(after.pop("s.stream.json"))
            assert doc["status"] == "failed" and text in doc["message"], (name, doc)
            before[name].pop("s.stream.json")
        assert after == before[name], f"{name}: files changed"


def test_read_only_directory(tmpfs, small_files, tmp_path, snapshot):
    rw = tmpfs("ro", "size=16m")
    for name in ("s.npy", "s.stream.json", "s.labels.npy"):
        (rw / name).write_bytes(small_files[name])
        (rw / name.replace("s.", "r.", 1)).write_bytes(small_files[name])
    side = rw / "r.stream.json"  # r.npy: an interrupted stream
    doc = json.loads(side.read_text())
    doc["chunks"][-1], doc["status"] = None, "failed"
    doc["data_file"], doc["labels_file"] = "r.npy", "r.labels.npy"
    side.write_text(json.dumps(doc))
    remount(rw, "ro")
    ro = rw
    before = snapshot(ro)
    out = tmp_path / "out"
    out.mkdir()
    jobs = [
        ("producer", [*SMALL, "--file", ro / "new.npy"], tmp_path),
        ("producer", [*SMALL, "--file", ro / "s.npy", "--overwrite"], tmp_path),
        ("producer", [*SMALL, "--file", ro / "r.npy", "--resume"], tmp_path),
        ("consumer", ["--file", ro / "s.npy"], tmp_path),  # outputs beside the input
        (
            "consumer",
            [
                "--file",
                ro / "s.npy",
                "--out",
                ro / "o.parquet",
                "--indices",
                out / "i.npy",
                "--summary",
                out / "s.json",
            ],
            tmp_path,
        ),
        # Reading a stream from a read-only mount is fine.
        (
            "consumer",
            [
                "--file",
                ro / "s.npy",
                "--out",
                out / "o.parquet",
                "--indices",
                out / "i.npy",
                "--summary",
                out / "s.json",
                "--quiet",
            ],
            tmp_path,
        ),
    ]
    results = run_all(jobs)
    expect = [
        (2, "not writable"),
        (2, "not writable"),
        (1, "Read-only file system"),
        (2, "not writable"),
        (2, "not writable"),
    ]
    for (module, args, _), (rc, _, err), (status, text) in zip(jobs, results, expect, strict=False):
        line = one_line(err, module)
        assert rc == status and text in line, (args, rc, line)
    rc, o, err = results[-1]
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(out / "i.npy"), consumer.detect(np.load(ro / "s.npy")))
    assert snapshot(ro) == before


def test_debug_shows_a_traceback(small_files, tmp_path):
    install(small_files, tmp_path)
    _corrupt_sidecar(tmp_path)
    jobs = [
        ("consumer", ["--file", "s.npy", "--overwrite", "--debug"], tmp_path),
        ("producer", [*SMALL, "--file", "s.npy", "--resume", "--debug"], tmp_path),
    ]
    for rc, _, err in run_all(jobs):
        assert rc == 1, err
        assert "Traceback (most recent call last)" in err, err
        assert "FormatError" in err and "corrupt sidecar" in err, err
