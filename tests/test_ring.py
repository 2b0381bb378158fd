"""Ring streams (``--ring``): a bounded ring of chunk slots, followed like a file stream.

* the consumers' outputs (indices, Parquet rows, dense scores, summary counts) on a ring
  equal those on the same stream written as a file, for zscore, stl (a halo of six
  chunks, across slot boundaries and the wrap) and likelihood, with ``--sync`` and the
  async writer; the ring's last slots hold the file's last chunks;
* a third-party reader written from the README's protocol (its own cursor file,
  acknowledgement, slot table, release) follows a ring and is never overrun;
* errors: one line, the right exit status, nothing existing touched;
* faults: SIGKILL of either side (start-up included), a dead consumer's timeout, then
  ``--resume`` on both sides gives an uninterrupted run's outputs;
* ``single_machine.py`` runs on a ring in shared memory.

Real processes and files throughout; the file-stream outputs they are compared with are
themselves checked against ``consumer.detect`` on ``producer.generate``'s values.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_reliability import (  # the fault-injection helpers, one copy
    kill,
    one_line,
    popen,
    read_json,
    run_all,
    sha256_file,
    tmpfs,  # noqa: F401, F811 - the fixture
    wait_until,
    want_slow,
)

import consumer
from consumer.run import run_consumer
from producer import generate_with_labels
from producer.write import stream_extra, write_stream
from shared.errors import UsageError
from shared.params import generation_params
from shared.ring import (
    RingCursor,
    RingLayout,
    RingStatus,
    RingWriter,
    parse_size,
    ring_slots,
)

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 65536
N = 1_300_000  # 20 chunks: twice round a 9-slot ring
SEED = 5
SEASONALITY = {"period": 200, "amplitude": 3}
ANOMALIES = {"rate": 1e-3, "magnitude": 8}
PARAMS = {"zscore": {"window": 500, "threshold": 4}, "stl": {"threshold": 5}, "likelihood": {}}
RING = "5MiB"  # 9 slots of 512 KiB: stl's window spans 6 chunks


def producer_args(file: Path, *extra: object, n: int = N) -> list[object]:
    return [
        "--num_samples",
        n,
        "--file",
        file,
        "--chunk_size",
        CHUNK,
        "--seed",
        SEED,
        "--seasonality",
        json.dumps(SEASONALITY),
        "--anomalies",
        json.dumps(ANOMALIES),
        "--threads",
        2,
        "--quiet",
        *extra,
    ]


def consumer_args(file: Path, out: Path, kind: str, *extra: object) -> list[object]:
    return [
        "--file",
        file,
        "--type",
        kind,
        "--params",
        json.dumps(PARAMS[kind]),
        "--threads",
        1,
        "--indices",
        out / "i.npy",
        "--out",
        out / "o.parquet",
        "--summary",
        out / "s.json",
        "--scores",
        out / "sc.npy",
        "--labels",
        file.with_name(file.stem + ".labels.npy"),
        "--quiet",
        *extra,
    ]


@dataclass
class Outputs:
    index_sha: str
    scores_sha: str
    table: object  # pyarrow.Table sorted by index
    counts: dict


def outputs_of(out: Path) -> Outputs:
    summary = json.loads((out / "s.json").read_text())
    counts = {k: summary.get(k) for k in ("status", "samples", "anomalies", "true_positives")}
    table = pq.read_table(out / "o.parquet").sort_by("index")
    return Outputs(sha256_file(out / "i.npy"), sha256_file(out / "sc.npy"), table, counts)


def assert_same_outputs(got: Outputs, want: Outputs, what: object) -> None:
    assert got.counts == want.counts, (what, got.counts, want.counts)
    assert got.index_sha == want.index_sha, f"{what}: index files differ"
    assert got.table.equals(want.table), f"{what}: Parquet rows differ"
    assert got.scores_sha == want.scores_sha, f"{what}: dense scores differ"


@dataclass
class FileRef:
    stream: Path
    x: np.ndarray
    labels_sha: str
    crcs: list[int]
    outputs: dict[str, Outputs]


def write_file(f: Path, n: int = N, **ring: object) -> None:
    """The test stream, written in-process by the producer's ``write_stream``."""
    params = generation_params(seed=SEED, seasonality=SEASONALITY, anomalies=ANOMALIES)
    write_stream(f, n, params, threads=2, chunk_size=CHUNK, **ring)


def consume_file(f: Path, out: Path, kind: str) -> Outputs:
    """A detector's outputs on a file stream, computed in-process (``run_consumer``)."""
    out.mkdir()
    paths = consumer.run.OutputPaths.for_input(
        f, out=out / "o.parquet", indices=out / "i.npy", summary=out / "s.json"
    )
    paths.scores = out / "sc.npy"
    labels = f.with_name(f.stem + ".labels.npy")
    run_consumer(f, type=kind, params=PARAMS[kind], threads=1, paths=paths, labels=labels)
    return outputs_of(out)


@pytest.fixture(scope="module")
def file_ref(tmp_path_factory) -> FileRef:
    """The same stream written as a file, and each detector's outputs on it."""
    d = tmp_path_factory.mktemp("file")
    f = d / "f.npy"
    write_file(f)
    x, labels = generate_with_labels(
        N, seed=SEED, seasonality=SEASONALITY, anomalies=ANOMALIES, threads=2
    )
    assert np.load(f).tobytes() == x.tobytes()
    outputs = {kind: consume_file(f, d / kind, kind) for kind in PARAMS}
    want = consumer.detect(x, type="zscore", **PARAMS["zscore"])
    np.testing.assert_array_equal(np.load(d / "zscore" / "i.npy"), want)
    assert outputs["stl"].counts["true_positives"] > 0.9 * len(labels)
    crcs = json.loads((d / "f.stream.json").read_text())["chunks"]
    return FileRef(f, x, sha256_file(d / "f.labels.npy"), crcs, outputs)


def assert_ring_holds_the_file_tail(ring: Path, ref: FileRef) -> None:
    """A finished ring's slots hold the stream's last chunks, with the file's CRC-32s."""
    doc = json.loads(ring.with_name(ring.stem + ".stream.json").read_text())
    assert doc["kind"] == "ring" and doc["status"] == "complete"
    slots, chunks = doc["slots"], -(-N // CHUNK)
    data = np.load(ring, mmap_mode="r")  # a plain NPY file of the slots
    assert len(data) == slots * CHUNK and ring.stat().st_size == 128 + 8 * slots * CHUNK
    for k in range(chunks - slots, chunks):
        a, b = k * CHUNK, min(N, (k + 1) * CHUNK)
        s = k % slots
        assert doc["ring"][s] == [k, ref.crcs[k]], (k, doc["ring"][s])
        assert data[s * CHUNK : s * CHUNK + b - a].tobytes() == ref.x[a:b].tobytes(), k
    assert sha256_file(ring.with_name(ring.stem + ".labels.npy")) == ref.labels_sha


# -- the layout and table, in-process ------------------------------------------------------


def test_sizes_slots_and_slot_arithmetic():
    assert parse_size("--ring", "512MiB") == 512 << 20
    assert parse_size("--ring", "2GiB") == 2 << 30
    assert parse_size("--ring", "1.5G") == 3 << 29
    assert parse_size("--ring", "500MB") == 500_000_000
    assert parse_size("--ring", "4096") == parse_size("--ring", "4kib") == 4096
    for bad in ("", "lots", "2 GiBs", "-1MiB", "0", "iB", "MiB"):
        with pytest.raises(UsageError, match="--ring"):
            parse_size("--ring", bad)
    # The header counts: a ring of SIZE bytes never takes more than SIZE.
    assert ring_slots(256 << 20, 1 << 20, 8, 10**4, "--ring") == 31
    assert ring_slots(256 << 20, 1 << 20, 8, 5, "--ring") == 5  # no more slots than chunks
    with pytest.raises(UsageError, match="at least 2 chunk slots"):
        ring_slots(1 << 20, CHUNK, 8, 100, "--ring")
    lay = RingLayout(10 * 8 + 3, np.dtype("<f8"), 8, 128, 4)
    assert lay.offset(0) == 128 and lay.offset(8 * 5 + 3) == 128 + (8 + 3) * 8
    # A window across the wrap comes in two pieces: slots 3 then 0-1.
    assert list(lay.pieces(8 * 3 + 2, 8 * 5 + 1)) == [(128 + 26 * 8, 6), (128, 9)]
    assert list(lay.pieces(8 * 9, 83)) == [(128 + 8 * 8, 11)]  # slots 1-2, the last short
    assert list(lay.pieces(8 * 10 + 1, 83)) == [(128 + (16 + 1) * 8, 2)]


def test_ring_table_states():
    # 4 slots, chunks 0..9: slot 0 claimed for chunk 8 (so 0 and 4 are gone), slot 1
    # holds 5, slot 2 is claimed for 6, slot 3 still holds 3 (7 is not claimed yet).
    doc = {
        "status": "running",
        "slots": 4,
        "ring": [[8, None], [5, 11], [6, None], [3, 33]],
        "consumers": {"a": {"session": "s", "first": 3}},
    }
    st = RingStatus(doc, 10)
    assert [st.state(k) for k in range(10)] == (
        ["gone"] * 3
        + ["committed", "gone", "committed", "writing", "pending", "writing"]
        + ["pending"]
    )
    assert st.frontier == 9 and st.floor == 5  # every chunk from 5 on is there or to come
    assert st.ready(5, 5) and not st.ready(5, 6) and st.checksum(3) == 33
    with pytest.raises(Exception, match="missed chunk 4"):
        st.ready(4, 5)
    assert list(np.nonzero(st.committed)[0]) == [3, 5] and not st.all_done()


def test_a_cursor_removes_the_temporaries_a_killed_run_left(tmp_path):
    """A consumer SIGKILLed between writing its cursor's temporary and renaming it leaves
    ``.<name>.json.<pid>.<thread>.tmp``; the next run of that cursor removes it (and no
    other cursor's), so a finished ring leaves an empty consumers directory."""
    ring = tmp_path / "r.npy"
    folder = tmp_path / "r.consumers"
    folder.mkdir()
    stale = folder / ".c-1.json.999999999.140000000000.tmp"  # a dead run's
    other = folder / ".c-2.json.999999999.140000000000.tmp"  # another consumer's
    stale.write_text("{")
    other.write_text("{")
    cursor = RingCursor(ring, "c-1")
    cursor.register(3)
    try:
        assert not stale.exists() and other.exists()
        assert json.loads((folder / "c-1.json").read_text())["released"] == 3
    finally:
        cursor.close(done=True)
    assert sorted(os.listdir(folder)) == [other.name]


def test_a_slot_is_claimed_only_over_its_previous_chunk(tmp_path):
    """Chunk k may overwrite only chunk k - S: async workers that run ahead wait for the
    slot's earlier chunks instead of skipping them (no consumer gates this ring)."""
    params = generation_params(seed=SEED)
    w = RingWriter(
        tmp_path / "r.npy",
        ring_bytes=128 + 3 * 8 * CHUNK,
        ring_consumers=0,
        num_samples=N,
        dtype="float64",
        chunk_size=CHUNK,
        extra=stream_extra(params),
    )
    try:
        assert w.layout.slots == 3
        block = np.zeros(CHUNK)
        for k in (0, 1):
            assert w.claim(k)
            w.write_at(k * CHUNK, block)
            w.commit(k, zlib.crc32(block))
        tries = iter(range(20))
        # Slot 0 holds committed chunk 0, but chunk 3 is not written: 6 must wait.
        assert w.claim(6, halted=lambda: next(tries, None) is None) is False
        assert w.claim(3) and w.claim(4)  # 3 over 0, 4 over 1
        assert w.claim(2)  # a first-round slot; 5 waits for 2's commit
        assert w.claim(5, halted=lambda: True) is False
        assert w.doc["ring"] == [[3, None], [4, None], [2, None]]
    finally:
        w.close()


# -- same outputs as a file ----------------------------------------------------------------


@pytest.mark.parametrize("preallocate", [True, False])
def test_async_ring_slots_in_place_or_by_pwrite_hold_the_file_bytes(
    file_ref, tmp_path, preallocate
):
    """A preallocated ring's slots are generated in place through a shared map; a sparse
    ring's (where a store into a hole could SIGBUS) are written with pwrite: the same bytes."""
    ring = tmp_path / "r.npy"
    opened = []
    write_file(
        ring,
        ring=parse_size("--ring", RING),
        ring_consumers=0,  # nobody to wait for: it runs round the ring twice at once
        preallocate=preallocate,
        on_open=lambda writer, todo: opened.append(writer.maps_slots),
    )
    assert opened == [preallocate]
    assert_ring_holds_the_file_tail(ring, file_ref)


def test_ring_consumers_equal_the_file_streams_outputs(file_ref, tmp_path):
    """A --sync producer and three live consumers on a 9-slot ring, the stl halo six chunks."""
    ring = tmp_path / "r.npy"
    prod = popen(
        "producer",
        *producer_args(ring, "--ring", RING, "--ring-consumers", 3, "--sync"),
        cwd=tmp_path,
    )
    cons = {}
    for kind in PARAMS:
        (tmp_path / kind).mkdir()
        cons[kind] = popen(
            "consumer", *consumer_args(ring, tmp_path / kind, kind, "--wait", 60), cwd=tmp_path
        )
    try:
        for name, p in [("producer", prod), *cons.items()]:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, (name, err)
    finally:
        for p in [prod, *cons.values()]:
            kill(p)
    for kind in PARAMS:
        assert_same_outputs(outputs_of(tmp_path / kind), file_ref.outputs[kind], kind)
    assert_ring_holds_the_file_tail(ring, file_ref)
    assert sorted(os.listdir(tmp_path / "r.consumers")) == []  # finished consumers unregister
    # The stl windows did reach back across slot boundaries and across the wrap.
    from consumer.detectors.registry import make_detector
    from consumer.tail import window_chunks
    from shared.stream import StreamReader

    with StreamReader(ring) as r:
        stl = make_detector("stl", PARAMS["stl"], consumer.detectors.base.SeriesInfo(N, 200))
        assert window_chunks(r.layout, stl) == 6 and r.layout.slots == 9 < r.layout.num_chunks


def test_a_reader_written_from_the_readme_protocol_is_never_overrun(file_ref, tmp_path):
    """The README's attach / follow / release steps, implemented here independently, on a
    3-slot ring whose async producer must wait for this slow reader at every slot."""
    ring = tmp_path / "r.npy"
    side = tmp_path / "r.stream.json"
    cursor = tmp_path / "r.consumers" / "me.json"
    prod = popen("producer", *producer_args(ring, "--ring", "2MiB"), cwd=tmp_path)
    session = os.urandom(8).hex()

    def register(released: int) -> None:
        tmp = cursor.with_name(".me.json.tmp")
        doc = {
            "session": session,
            "released": released,
            "pid": os.getpid(),
            "heartbeat": time.time(),
        }
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, cursor)

    def ack() -> dict | None:
        a = (read_json(side) or {}).get("consumers", {}).get("me")
        return a if a and a["session"] == session else None

    try:
        wait_until(lambda: ring.exists() and ring.stat().st_size > 0, what="the ring")
        cursor.parent.mkdir(exist_ok=True)
        register(0)
        assert wait_until(ack, what="acknowledgement")["first"] == 0
        doc = read_json(side)
        slots, header = doc["slots"], doc["header_len"]
        mm = np.memmap(ring, np.float64, "r", offset=header, shape=(slots * CHUNK,))
        for k in range(-(-N // CHUNK)):
            while True:  # read chunk k only while its slot says [k, crc]
                table = read_json(side)["ring"]
                e = table[k % slots]
                if e is not None and e[0] == k and e[1] is not None:
                    break
                time.sleep(0.002)
            # Nothing past our cursor's reach (released k, so below k + slots) is claimed.
            assert max(c[0] for c in table if c) < k + slots, (k, table)
            a, b = k * CHUNK, min(N, (k + 1) * CHUNK)
            got = np.array(mm[(k % slots) * CHUNK : (k % slots) * CHUNK + b - a])
            assert zlib.crc32(got) == e[1] and got.tobytes() == file_ref.x[a:b].tobytes(), k
            time.sleep(0.003)  # slower than the producer: it must wait for each release
            register(k + 1)
        cursor.unlink()
        _, err = prod.communicate(timeout=60)
        assert prod.returncode == 0, err
    finally:
        kill(prod)
    assert_ring_holds_the_file_tail(ring, file_ref)


# -- errors --------------------------------------------------------------------------------


def test_ring_errors_are_one_line_and_change_nothing(tmp_path, tmpfs, snapshot):  # noqa: F811
    small = tmpfs("small", "size=4m")
    d = tmp_path / "d"
    d.mkdir()
    # A finished, wrapped ring that nobody followed (it did not wait: ring_consumers 0).
    write_file(d / "w.npy", ring=2 << 20, ring_consumers=0)
    for sub in ("o1", "o2"):
        (d / sub).mkdir()
    # A live producer of ring b.npy: this process, holding its lock (no heartbeats).
    params = generation_params(seed=SEED, seasonality=SEASONALITY, anomalies=ANOMALIES)
    holder = RingWriter(
        d / "b.npy",
        ring_bytes=2 << 20,
        num_samples=N,
        dtype="float64",
        chunk_size=CHUNK,
        extra=stream_extra(params),
        heartbeat_interval=3600,
    )
    try:
        before = snapshot(d)
        n_chunks = -(-N // CHUNK)
        jobs = [
            ("producer", producer_args(d / "a.npy", "--ring", "1MiB"), 2, "at least 2 chunk slots"),
            ("producer", producer_args(small / "a.npy", "--ring", "8MiB"), 1, "not enough disk"),
            ("producer", producer_args(d / "w.npy", "--ring", "2MiB"), 2, "exists"),
            ("producer", producer_args(d / "b.npy", "--ring", "2MiB", "--resume"), 1, "another"),
            ("producer", producer_args(d / "b.npy", "--ring", "2MiB", "--overwrite"), 1, "another"),
            ("consumer", consumer_args(d / "w.npy", d / "o1", "zscore"), 1, "missed chunks 0.."),
            ("consumer", consumer_args(d / "w.npy", d / "o2", "stl"), 2, "window spans 6 chunks"),
        ]
        results = run_all([(m, a, d) for m, a, _, _ in jobs], parallel=len(jobs))
        for (module, _, code, words), (rc, _, err) in zip(jobs, results, strict=True):
            line = one_line(err, module, words)
            assert rc == code and words in line, (rc, line)
        assert f"missed chunks 0..{n_chunks - 4}:" in results[5][2]  # 3 slots: 0..n-4 gone
        assert snapshot(d) == before and snapshot(small) == {}
    finally:
        holder.close()
    # --verify checks the chunks the ring holds: a flipped byte names its chunk.
    assert consumer.verify(d / "w.npy") == []
    last = n_chunks - 1
    with open(d / "w.npy", "r+b") as fh:
        fh.seek(128 + 8 * ((last % 3) * CHUNK + 5))
        fh.write(b"x")
    assert consumer.verify(d / "w.npy") == [last]
    # Flags, as the CLI reads them.
    from producer.__main__ import _options, build_parser

    with pytest.raises(UsageError, match="--ring-consumers and --ring-timeout are for --ring"):
        _options(
            build_parser().parse_args(["--num_samples", "9", "--file", "x", "--ring-timeout", "5"])
        )
    with pytest.raises(UsageError, match="--ring must be a size"):
        _options(build_parser().parse_args(["--num_samples", "9", "--file", "x", "--ring", "lots"]))


# -- faults --------------------------------------------------------------------------------

KILL_N = 6_000_000  # 92 chunks, ten times round a 9-slot ring


@pytest.fixture(scope="module")
def kill_ref(tmp_path_factory) -> Outputs:
    """The uninterrupted outputs of the kill trials' stream (written as a file)."""
    d = tmp_path_factory.mktemp("kref")
    write_file(d / "f.npy", n=KILL_N)
    return consume_file(d / "f.npy", d / "out", "zscore")


def ring_trial(
    where: Path, ref: Outputs, victim: str, when: str, delay: float, tag: object
) -> None:
    """Run a ring's producer and consumer, SIGKILL ``victim`` (``producer``, ``consumer``,
    ``both``, or ``timeout``: the consumer, then wait for the producer to give up on it)
    ``delay`` s after ``when`` (``launch``; ``created``: the producer's sidecar appeared, it
    is setting the ring up; ``wrapped``: the ring has gone round, mid-run), then
    ``--resume`` what was killed; the outputs equal the uninterrupted run's."""
    ring, out = where / "r.npy", where / "out"
    out.mkdir()
    timeout = 1 if victim == "timeout" else 30
    pargs = producer_args(ring, "--ring", RING, "--ring-timeout", timeout, n=KILL_N)
    cargs = consumer_args(ring, out, "zscore", "--wait", 60, "--timeout", 30)
    procs = {
        "producer": popen("producer", *pargs, cwd=where),
        "consumer": popen("consumer", *cargs, cwd=where),
    }
    try:
        if when == "created":
            wait_until(lambda: (where / "r.stream.json").exists(), what="the sidecar")
        if when == "wrapped":

            def frontier() -> int:
                table = (read_json(where / "r.stream.json") or {}).get("ring") or []
                return max((e[0] for e in table if e), default=0)

            # (A producer that gave up waiting for a slow consumer, --ring-timeout 1, is
            # the timeout trial's end state already.)
            gave_up = lambda: victim == "timeout" and procs["producer"].poll() is not None  # noqa: E731
            wait_until(lambda: frontier() >= 12 or gave_up(), what="the ring going round")
        time.sleep(delay)
        killed = {"both": ["producer", "consumer"], "timeout": ["consumer"]}.get(victim, [victim])
        if when == "wrapped" and delay == 0 and procs["producer"].poll() is None:
            assert all(procs[name].poll() is None for name in killed), f"{tag}: not mid-run"
        for name in killed:
            procs[name].send_signal(signal.SIGKILL)
        for name in killed:
            procs[name].communicate(timeout=30)
        if victim == "timeout":  # the producer gives up on its dead consumer, resumably
            _, err = procs["producer"].communicate(timeout=60)
            line = one_line(err, "producer", tag)
            assert procs["producer"].returncode == 1, (tag, line)
            # A consumer killed before it registered leaves no cursor to wait for.
            why = "has not beaten for" in line or "no consumer attached" in line
            assert why and "--resume" in line, (tag, line)
            assert read_json(where / "r.stream.json")["status"] == "failed", tag
            # The consumer resumed first: it waits for the failed ring's producer to be
            # resumed (it used to read "failed", exit, and leave the producer blocked).
            killed = ["consumer", "producer"]
            pargs[pargs.index("--ring-timeout") + 1] = 30
        for name in killed:
            resume = pargs if name == "producer" else cargs
            procs[name] = popen(name, *resume, "--resume", cwd=where)
            if victim == "timeout" and name == "consumer":
                time.sleep(1.0)  # registered, reading the failed ring
        for name, p in procs.items():
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, (tag, name, err)
    finally:
        for p in procs.values():
            kill(p)
    assert_same_outputs(outputs_of(out), ref, tag)
    assert read_json(where / "r.stream.json")["status"] == "complete", tag
    assert os.listdir(where / "r.consumers") == [], tag


@pytest.mark.parametrize(
    "victim, when, delay",
    [
        ("consumer", "launch", 0.15),  # while it starts up
        ("both", "created", 0.0),  # the producer setting the ring up, the consumer waiting
        ("producer", "wrapped", 0.0),
        ("timeout", "wrapped", 0.0),  # a dead consumer: the producer gives up after 1 s
    ],
)
def test_sigkill_either_side_of_a_ring_then_resume(kill_ref, tmp_path, victim, when, delay):
    ring_trial(tmp_path, kill_ref, victim, when, delay, (victim, when, delay))


@pytest.mark.slow
def test_sigkill_either_side_of_a_ring_then_resume_soak(tmp_path, request):
    want_slow(request)
    ref = request.getfixturevalue("kill_ref")
    rng = random.Random(20261201)
    for t in range(24):
        victim = rng.choice(["producer", "consumer", "both", "timeout"])
        when = rng.choice(["launch", "created", "wrapped"])
        delay = rng.uniform(0, 1.5 if when == "launch" else 0.5)
        d = tmp_path / f"t{t}"
        d.mkdir()
        ring_trial(d, ref, victim, when, delay, (t, victim, when, round(delay, 3)))


# -- single_machine.py ---------------------------------------------------------------------


def test_single_machine_runs_on_a_ring_in_shared_memory(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "single_machine.py"), "--num_samples", "2000000",
         "--detector", "zscore", "--seasonality", "", "--chunk_size", str(CHUNK), "--ring", "4MiB",
         "--keep", "--quiet", "--time"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    fig = json.loads(res.stdout.strip().splitlines()[-1])
    stream = Path(fig["stream"])
    try:
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            assert stream.parent.parent == shm, stream
        assert fig["ring_bytes"] == 4 << 20 and stream.stat().st_size <= 4 << 20
        x = generate_with_labels(2_000_000, anomalies={"rate": 1e-4, "magnitude": 8})[0]
        want = consumer.detect(x, type="zscore", window=1000, threshold=5)
        np.testing.assert_array_equal(np.load(stream.with_name("stream.anomalies.npy")), want)
        assert fig["consumer"]["samples"] == 2_000_000 and fig["consumer"]["recall"] > 0.99
    finally:
        shutil.rmtree(stream.parent)  # --keep kept it (in shared memory)


def test_single_machine_interrupted_removes_its_ring(tmp_path):
    """Ctrl-C (SIGINT to the process group) of a temporary-ring run: exit 130 with how far
    both sides got, and the ring's directory removed (in /dev/shm it is memory)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    places = [p for p in (Path("/dev/shm"), tmp) if p.is_dir()]
    before = {d for p in places for d in p.glob("tsstream-*")}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "single_machine.py"), "--num_samples", "10000000000",
         "--detector", "zscore", "--quiet"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)},
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the consumer has results
            new = {d for p in places for d in p.glob("tsstream-*")} - before
            metrics = [d / "stream.consumer.metrics.jsonl" for d in new]
            if any(m.exists() and '"samples": 0,' not in m.read_text()[-200:] for m in metrics):
                break
            time.sleep(0.1)
        assert len(new) == 1, new
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[-1] == "single_machine.py: interrupted", err
    stopped = lines[-2]
    assert stopped.startswith("single_machine.py: stopped at "), err
    assert "of 10,000,000,000 samples generated" in stopped and "removed" in stopped, err
    assert "Traceback" not in err
    assert not any(d.exists() for d in new), new
