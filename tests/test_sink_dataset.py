"""The consumer's Parquet rows: a dataset directory of part files.

Each publish adds one part holding the row groups (one per chunk) since the last
one and leaves earlier parts untouched; readers take the directory as one table,
in index order when the parts are read in name order; ``--resume`` drops parts a
killed run published after its checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from consumer.detectors.base import ChunkResult
from consumer.sink import ParquetDataset, part_name
from shared.errors import FormatError, UsageError
from shared.stream import atomic_write_json

SIZES = [0, 5, 0, 700, 9, 1, 0, 3]  # rows per chunk: empty chunks, tiny and larger ones
PUBLISH_AFTER = (2, 5, 7)


def chunk_results(seed: int = 3) -> list[ChunkResult]:
    rng = np.random.default_rng(seed)
    out, start = [], 0
    for chunk, k in enumerate(SIZES):
        idx = np.sort(rng.choice(1 << 20, k, replace=False)).astype(np.int64) + start
        out.append(
            ChunkResult(chunk, start, start + 1, idx, rng.standard_normal(k), rng.random(k), None)
        )
        start += 1 << 21
    return out


def files_state(path: Path) -> dict[str, tuple[int, int, bytes]]:
    return {q.name: (q.stat().st_ino, q.stat().st_mtime_ns, q.read_bytes()) for q in path.iterdir()}


def row_group_sizes(path: Path) -> list[int]:
    sizes = []
    for q in sorted(path.glob("*.parquet")):
        md = pq.read_metadata(q)
        sizes += [md.row_group(g).num_rows for g in range(md.num_row_groups)]
    return sizes


def test_each_publish_adds_one_part_and_readers_see_one_table(tmp_path):
    path = tmp_path / "r.parquet"
    rows = ParquetDataset(path)
    # From the start: a readable, empty table with the schema (part 0, no row groups).
    empty = pq.read_table(path)
    assert empty.num_rows == 0 and empty.column_names == ["index", "value", "score"]
    results = chunk_results()
    for r in results:
        rows.append(r)
        if r.chunk in PUBLISH_AFTER:
            before = files_state(path)
            rows.publish()
            rows.publish()  # nothing new: no part
            after = files_state(path)
            new = sorted(set(after) - set(before))
            assert new == [part_name(rows.parts - 1)]
            assert {k: after[k] for k in before} == before, "an earlier part was rewritten"
    (path / f".{part_name(rows.parts)}.tmp").write_bytes(b"PAR1 torn")  # a part being written
    assert sorted(q.name for q in path.glob("*.parquet")) == [part_name(k) for k in range(4)]
    assert row_group_sizes(path) == SIZES  # one row group per chunk, over the parts

    table = pq.read_table(path)
    for col, got in (("index", 0), ("value", 1), ("score", 2)):
        want = np.concatenate([(r.indices, r.values, r.scores)[got] for r in results])
        np.testing.assert_array_equal(table[col].to_numpy(), want)
    assert rows.rows == table.num_rows == sum(SIZES)
    index = table["index"].to_numpy()
    assert (np.diff(index) > 0).all()  # parts in name order: rows in index order
    assert [Path(f).name for f in ds.dataset(path).files] == [part_name(k) for k in range(4)]
    assert ds.dataset(path).to_table().equals(table)
    import pandas as pd  # here: importing pandas costs the whole suite's collection 0.5 s

    frame = pd.read_parquet(path)
    np.testing.assert_array_equal(frame["index"].to_numpy(), index)


def test_resume_drops_parts_past_the_checkpoint_and_refuses_what_does_not_match(tmp_path):
    path = tmp_path / "r.parquet"
    rows = ParquetDataset(path)
    results = chunk_results()
    for r in results:
        rows.append(r)
        if r.chunk in PUBLISH_AFTER:
            rows.publish()
    kept = sum(SIZES[: PUBLISH_AFTER[1] + 1])  # the checkpoint after the second publish
    (path / f".{part_name(4)}.tmp").write_bytes(b"torn")
    saved = {q.name: q.read_bytes() for q in path.iterdir()}
    for resume, error in (((3, kept + 1), FormatError), ((5, kept), FormatError)):
        with pytest.raises(error):
            ParquetDataset(path, resume)
        assert {q.name: q.read_bytes() for q in path.iterdir()} == saved  # untouched
    again = ParquetDataset(path, (3, kept))
    assert sorted(q.name for q in path.iterdir()) == [part_name(k) for k in range(3)]
    for r in results[PUBLISH_AFTER[1] + 1 :]:
        again.append(r)
    again.publish()
    assert row_group_sizes(path) == SIZES and again.rows == sum(SIZES)
    np.testing.assert_array_equal(
        pq.read_table(path)["index"].to_numpy(), np.concatenate([r.indices for r in results])
    )

    (path / "notes.txt").write_text("someone else's")
    with pytest.raises(UsageError, match="notes.txt"):
        ParquetDataset(path)  # not ours to delete, even when replacing
    assert (path / "notes.txt").exists() and (path / part_name(3)).exists()


def test_a_file_left_by_an_older_version_is_replaced(tmp_path):
    path = tmp_path / "r.parquet"
    path.write_bytes(b"an old single-file output")
    rows = ParquetDataset(path)  # start afresh (the caller checked --overwrite)
    rows.append(chunk_results()[1])
    rows.publish()
    assert path.is_dir() and pq.read_table(path).num_rows == SIZES[1]


def test_a_new_dataset_appears_with_its_schema_and_replaces_an_old_one_part_first(tmp_path):
    """The directory never exists without part 0 (an empty one reads as a table without
    columns: a reader polling a starting consumer once got ``KeyError: 'index'``): it is
    filled under a hidden name and renamed; an earlier output's parts are replaced."""
    path = tmp_path / "r.parquet"
    ParquetDataset(path)
    assert sorted(os.listdir(path)) == [part_name(0)]
    assert sorted(os.listdir(tmp_path)) == ["r.parquet"]  # no temporary directory left
    assert pq.read_table(path).column_names == ["index", "value", "score"]
    old = ParquetDataset(path)
    for r in chunk_results()[:2]:
        old.append(r)
        old.publish()
    assert len(os.listdir(path)) == 3
    new = ParquetDataset(path)  # start afresh over it
    assert sorted(os.listdir(path)) == [part_name(0)] and new.parts == 1 and new.rows == 0
    assert pq.read_table(path).num_rows == 0


def test_no_reader_sees_a_new_dataset_without_its_schema(tmp_path):
    """A thread polls each dataset as it is created: whenever the directory exists, part 0
    is in it (the old code, mkdir then part 0, showed an empty directory within a few
    creations here)."""
    import threading

    current: list[Path] = [tmp_path / "none"]
    empty: list[Path] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            p = current[0]
            if p.is_dir() and not (p / part_name(0)).exists():
                empty.append(p)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for i in range(200):
            current[0] = tmp_path / f"r{i}.parquet"
            ParquetDataset(current[0])
    finally:
        done.set()
        reader.join()
    assert empty == []


def test_a_consumer_removes_the_directory_a_killed_start_left(run_module, tmp_path):
    """``.<rows>.<pid>.tmp``, a rows directory being created when its consumer was killed,
    goes with the next run's other leftovers."""
    x = np.random.default_rng(3).standard_normal(200_000)
    np.save(tmp_path / "s.npy", x)
    stale = tmp_path / ".s.anomalies.parquet.999999999.tmp"
    stale.mkdir()
    (stale / part_name(0)).write_bytes(b"half")
    rc, _, err = run_module("consumer", "--file", "s.npy", "--quiet", cwd=tmp_path)
    assert rc == 0, err
    assert not stale.exists()
    assert pq.read_table(tmp_path / "s.anomalies.parquet").column_names[0] == "index"


# -- real processes: a consumer killed mid-run, then --resume --------------------------

CHUNK = 65_536
CHUNKS = 16
PARAMS = json.dumps({"window": 1000, "threshold": 3.0})


def commit(sidecar: Path, doc: dict, chunks: list, upto: int, complete: bool = False) -> None:
    """Publish the first ``upto`` chunks of a stream as its producer would (by the README's
    protocol: the data is already there, the sidecar says which chunks are committed)."""
    doc = dict(doc, status="complete" if complete else "running", heartbeat=time.time())
    doc["chunks"] = chunks[:upto] + [None] * (len(chunks) - upto)
    atomic_write_json(sidecar, doc)


def test_killed_consumer_resumes_to_the_uninterrupted_table(run_module, spawn_module, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rc, _, err = run_module(
        "producer", "--num_samples", CHUNKS * CHUNK, "--file", "s.npy", "--chunk_size", CHUNK,
        "--quiet", cwd=src,
    )  # fmt: skip
    assert rc == 0, err
    done = json.loads((src / "s.stream.json").read_text())
    args = ["--file", "s.npy", "--params", PARAMS, "--quiet"]
    ref, live = tmp_path / "ref", tmp_path / "live"
    for d in (ref, live):
        d.mkdir()
        shutil.copy(src / "s.npy", d / "s.npy")
        shutil.copy(src / "s.stream.json", d / "s.stream.json")
    rc, _, err = run_module("consumer", *args, cwd=ref)
    assert rc == 0, err

    rows, index = live / "s.anomalies.parquet", live / "s.anomalies.npy"
    commit(live / "s.stream.json", done, done["chunks"], 2)
    proc = spawn_module("consumer", *args, "--timeout", 30, cwd=live)
    upto, grown, last = 2, 0, time.monotonic()
    deadline = last + 120
    # The next chunk 0.3 s after the consumer appended the last one's rows (so whatever the
    # machine's load it tails them one by one); it publishes a part at most every 0.5 s.
    while not (rows.is_dir() and len(list(rows.glob("*.parquet"))) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
        size = index.stat().st_size if index.exists() else 0
        if upto < CHUNKS - 1 and size > grown and time.monotonic() - last >= 0.3:
            upto, grown, last = upto + 1, size, time.monotonic()
        commit(live / "s.stream.json", done, done["chunks"], upto)  # and a fresh heartbeat
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    mid = json.loads((live / "s.consumer.json").read_text())
    assert not mid["final"] and 0 < mid["next_chunk"] < CHUNKS, mid
    commit(live / "s.stream.json", done, done["chunks"], CHUNKS, complete=True)

    rc, _, err = run_module("consumer", *args, "--resume", cwd=live)
    assert rc == 0, err
    want = pq.read_table(ref / "s.anomalies.parquet")
    got = pq.read_table(rows)
    assert got.schema == want.schema and got.equals(want)
    assert got.num_rows > 1000 and (np.diff(got["index"].to_numpy()) > 0).all()
    assert sorted(os.listdir(rows)) == [part_name(k) for k in range(len(os.listdir(rows)))]
    assert (live / "s.anomalies.npy").read_bytes() == (ref / "s.anomalies.npy").read_bytes()
