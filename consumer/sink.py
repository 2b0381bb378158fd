"""Consumer outputs, written in chunk order as results arrive and usable at every instant.

* indices ``.npy``: sorted int64; data is appended, then the header's length is
  rewritten in place (fixed-size header), so a reader always sees a valid prefix;
* Parquet rows (``index``, ``value``, ``score``, and ``timestamp`` after ``index``
  when the input has a time grid; zstd; one row group per chunk): a dataset
  directory of part files; each publish writes the row groups since the last one
  as the next part (hidden temporary name, then rename), so publishing costs
  O(new rows) and readers see only complete parts;
* dense scores ``.npy`` (float32, optional): preallocated, each chunk written at
  its offset;
* summary JSON: rewritten atomically at every publish and at the end.

``Checkpoint`` state (chunks done, indices, rows and Parquet parts written) is saved with each
publish so that ``--resume`` can continue from the last durable point.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consumer.checkpoint import Checkpoint, Progress
from consumer.detectors.base import ChunkResult
from shared.errors import FormatError, UsageError
from shared.int64file import Int64File, padded_npy_header
from shared.stream import atomic_write_json, check_output_path, npy_header, read_npy_header

SCHEMA = pa.schema([("index", pa.int64()), ("value", pa.float64()), ("score", pa.float64())])


def schema_for(grid: Any = None) -> pa.Schema:
    """The rows' schema: ``SCHEMA``, with a ``timestamp`` column after ``index`` on a time grid.

    ``timestamp`` is ``timestamp[ns]`` (UTC) for date-times, int64 for integer ticks.
    """
    if grid is None:
        return SCHEMA
    typ = pa.timestamp("ns") if grid.unit == "ns" else pa.int64()
    return pa.schema([SCHEMA.field(0), ("timestamp", typ), *list(SCHEMA)[1:]])


INDEX_HEADER_LEN = 128  # room for any int64 length in a fixed-size NPY 1.0 header


class IndexFile:
    """Append-only sorted int64 NPY whose header length is fixed.

    Data is appended first; :meth:`publish` then rewrites the count in the
    header, so a reader always sees a valid sorted prefix.
    """

    def __init__(self, path: Path, resume_count: int | None = None) -> None:
        self.path = path
        self.file = Int64File(path, INDEX_HEADER_LEN, create=resume_count is None)
        self.count = resume_count or 0
        if resume_count is not None:
            self.file.resize(resume_count)  # drop indices appended after the last publish
        self.publish()

    def append(self, idx: np.ndarray) -> None:
        """Append sorted indices (not yet visible to readers)."""
        self.file.write_at(self.count, idx)
        self.count += len(idx)

    def publish(self) -> None:
        """Make every appended index visible (header count rewritten in place)."""
        self.file.write_header(padded_npy_header(self.count, INDEX_HEADER_LEN))

    def sync(self) -> None:
        """Make the file durable."""
        self.file.sync()

    def close(self) -> None:
        """Publish and close."""
        if self.file.fd >= 0:
            self.publish()
            self.file.close()


PART_DIGITS = 8  # part numbers zero-padded so that name order is part order


def part_name(k: int) -> str:
    """File name of part ``k`` of a rows dataset (``part-00000000.parquet``)."""
    return f"part-{k:0{PART_DIGITS}d}.parquet"


_PART = re.compile(rf"part-(\d{{{PART_DIGITS}}})\.parquet")
_TEMP = re.compile(rf"\.part-\d{{{PART_DIGITS}}}\.parquet\.tmp")


def part_number(name: str) -> int | None:
    """The number of a part file's name, or None for any other name."""
    m = _PART.fullmatch(name)
    return int(m.group(1)) if m else None


def part_files(path: Path) -> list[Path]:
    """The published parts of a rows dataset directory, in part order."""
    parts = [(part_number(q.name), q) for q in path.iterdir()]
    return [q for k, q in sorted((k, q) for k, q in parts if k is not None)]


def check_rows_path(path: Path) -> None:
    """Usage checks for the rows dataset about to be written at ``path`` (or replaced).

    A rows dataset directory holds only ``part-*.parquet`` files and the hidden
    temporary files of parts being written.  A directory holding anything else is
    refused: its other files would be read as part of the table, and they are not
    ours to delete (with ``--overwrite`` either).
    """
    if not path.is_dir():
        check_output_path(path)
        return
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: directory is not writable")
    for q in path.iterdir():
        if not (q.is_file() and (part_number(q.name) is not None or _TEMP.fullmatch(q.name))):
            raise UsageError(
                f"{path}: a directory holding {q.name}, which is not a part file of "
                "consumer rows (remove it or choose another --out)"
            )


def rows_table(r: ChunkResult, schema: pa.Schema, grid: Any = None) -> pa.Table:
    """One chunk's flagged rows as a table of ``schema`` (``schema_for(grid)``)."""
    # From the numpy buffers directly: pa.table()/pa.array() on numpy arrays import
    # pandas when it is installed (0.2-0.3 s here), stalling the first chunk.
    cols = [np.ascontiguousarray(r.indices, np.int64)]
    if grid is not None:
        cols.append(np.ascontiguousarray(grid.times(r.indices), np.int64))
    cols += [
        np.ascontiguousarray(r.values, np.float64),
        np.ascontiguousarray(r.scores, np.float64),
    ]
    columns = [
        pa.Array.from_buffers(field.type, len(r.indices), [None, pa.py_buffer(col)])
        for field, col in zip(schema, cols, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def write_rows(path: Path, schema: pa.Schema, tables: list[pa.Table]) -> None:
    """Write ``tables`` as one Parquet file (zstd), one row group each (one per chunk).

    No dictionary pages: indices and timestamps are unique and scores and values
    nearly so, so a dictionary only costs time (2.8M rows: 0.69 CPU-s with pyarrow's
    default, 0.31 without) and bytes.
    """
    with pq.ParquetWriter(path, schema, compression="zstd", use_dictionary=False) as out:
        for t in tables:
            out.write_table(t, row_group_size=max(1, len(t)))


def temp_part(path: Path, k: int) -> Path:
    """Where part ``k`` of the rows dataset at ``path`` is written before it is published."""
    return path / f".{part_name(k)}.tmp"


class ParquetDataset:
    """Rows as a Parquet dataset: a directory of part files, each published whole.

    Row groups (one per chunk) wait in memory until :meth:`publish`, which writes
    them as the next part, ``part-<k>.parquet`` (``k`` zero-padded), under a hidden
    temporary name (``.part-<k>.parquet.tmp``) renamed into place when complete.
    Readers that take the directory as one table (pyarrow.dataset,
    ``pq.read_table``, pandas, DuckDB and polars with ``*.parquet``) skip names that
    start with ``.`` or ``_`` and so only ever see complete parts; in name order the
    rows are in index order.  Publishing costs O(rows since the last publish).
    Part 0 holds no row groups: it gives readers the schema from the start.

    ``resume``: ``(parts, rows)`` of the checkpoint; parts a killed run published
    after it (and temporary files) are removed, so the table is exactly the
    checkpoint's rows.  ``None``: start afresh, replacing an earlier output
    (whose replacement the caller has allowed).
    """

    def __init__(self, path: Path, resume: tuple[int, int] | None = None, grid: Any = None) -> None:
        self.path = path
        self.grid = grid
        self.schema = schema_for(grid)
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.parts = 0
        self.last_cost = 0.0
        check_rows_path(path)
        if resume is None:
            self._create()
        else:
            self._truncate(*resume)

    def _create(self) -> None:
        """Start afresh with part 0 in place from the directory's first instant (an
        empty directory reads as a table without columns): a new directory is filled
        under a hidden name (``.<name>.<pid>.tmp``) and renamed into place; an earlier
        output's part 0 is replaced first, then its other parts removed."""
        if self.path.is_dir():
            self._write_part()  # over the earlier part 0
            for q in self.path.iterdir():
                if q.name != part_name(0):
                    q.unlink()  # only parts and temporary files: check_rows_path
            return
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        if tmp.is_dir():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write_rows(tmp / part_name(0), self.schema, [])
        os.rename(tmp, self.path)
        self.parts = 1

    def _truncate(self, parts: int, rows: int) -> None:
        """Keep the checkpoint's ``parts`` parts (holding ``rows`` rows), drop later ones."""
        if not self.path.is_dir():
            raise FormatError(f"{self.path}: not a directory of part files; cannot resume")
        keep = [self.path / part_name(k) for k in range(parts)]
        missing = [q for q in keep if not q.is_file()]
        if missing:
            raise FormatError(f"{missing[0]}: part named in the checkpoint is missing")
        have = sum(pq.read_metadata(q).num_rows for q in keep)
        if have != rows:
            raise FormatError(
                f"{self.path}: {parts} parts hold {have} rows, not the checkpoint's {rows}"
            )
        for q in self.path.iterdir():
            k = part_number(q.name)
            if k is None or k >= parts:  # a temporary file, or a part published after it
                q.unlink()
        self.rows, self.parts = rows, parts

    def append(self, r: ChunkResult) -> None:
        """Append one chunk's flagged rows as a row group (published later)."""
        self.pending.append(rows_table(r, self.schema, self.grid))
        self.rows += len(r.indices)

    def _write_part(self) -> None:
        tmp = temp_part(self.path, self.parts)
        write_rows(tmp, self.schema, self.pending)
        self.adopt(0)  # its rows were counted as they were appended
        self.pending = []

    def adopt(self, rows: int) -> None:
        """Publish the next part, already written at its ``temp_part`` (``rows`` rows).

        The Dask engine's workers write parts there (``consumer.dask_engine``).
        """
        k = self.parts
        os.replace(temp_part(self.path, k), self.path / part_name(k))
        self.parts += 1
        self.rows += rows

    def publish(self) -> None:
        """Publish the row groups appended since the last publish as the next part."""
        if not self.pending:
            return
        t0 = time.perf_counter()
        self._write_part()
        self.last_cost = time.perf_counter() - t0


class DenseScores:
    """Preallocated float32 NPY of per-sample scores."""

    def __init__(self, path: Path, num_samples: int, resume: bool) -> None:
        self.path = path
        header = npy_header("<f4", num_samples)
        if resume and path.exists():
            info = read_npy_header(path)
            if info.num_samples != num_samples:
                raise ValueError("scores file length differs")
            self.fd = os.open(path, os.O_RDWR)
            self.offset = info.header_len
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            os.ftruncate(self.fd, len(header) + 4 * num_samples)
            os.pwrite(self.fd, header, 0)
            self.offset = len(header)

    def write(self, start: int, dense: np.ndarray) -> None:
        """Write one chunk's dense scores at its offset."""
        os.pwrite(self.fd, dense.astype("<f4", copy=False).tobytes(), self.offset + 4 * start)

    def close(self) -> None:
        """Close the file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def label_figures(flags: np.ndarray, labels: np.ndarray, tolerance: int) -> dict[str, Any]:
    """Precision / recall / F1 of sorted flags against sorted labels.

    Rule: a flag is a true positive if some labelled index lies within
    ``tolerance`` samples of it; a label is recalled if some flag lies within
    ``tolerance`` samples of it.  Works block by block over a (memory-mapped)
    flag array, so memory stays proportional to the labels.
    """
    labels = np.asarray(labels, np.int64)
    hit = np.zeros(len(labels), bool)
    true_flags = 0
    step = 1 << 20
    for a in range(0, len(flags), step):
        idx = np.asarray(flags[a : a + step], np.int64)
        lo = np.searchsorted(labels, idx - tolerance, side="left")
        hi = np.searchsorted(labels, idx + tolerance, side="right")
        near = hi > lo
        true_flags += int(near.sum())
        # Mark recalled labels: a difference array over [lo, hi) ranges.
        marks = np.zeros(len(labels) + 1, np.int64)
        np.add.at(marks, lo[near], 1)
        np.add.at(marks, hi[near], -1)
        hit |= np.cumsum(marks[:-1]) > 0
    n_flags = len(flags)
    precision = true_flags / n_flags if n_flags else 0.0
    recall = float(hit.mean()) if len(hit) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "labels": int(len(labels)),
        "true_positives": true_flags,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "tolerance": tolerance,
    }


class Outputs:
    """All sinks together, fed strictly in chunk order.

    ``resume``: the checkpoint's progress to continue from (None: start afresh).
    ``grid``: the input's ``consumer.inputs.TimeGrid`` (adds a ``timestamp`` column).
    """

    def __init__(
        self,
        *,
        indices: Path,
        parquet: Path,
        summary: Path,
        checkpoint: Checkpoint,
        scores: Path | None,
        num_samples: int,
        resume: Progress | None,
        grid: Any = None,
    ) -> None:
        self.summary_path = summary
        self.checkpoint = checkpoint
        self.indices = IndexFile(indices, resume.indices if resume else None)
        self.parquet = ParquetDataset(
            parquet, (resume.parts, resume.rows) if resume else None, grid
        )
        self.scores = DenseScores(scores, num_samples, resume is not None) if scores else None
        self.next_chunk = resume.next_chunk if resume else 0
        self.samples_done = resume.samples if resume else 0
        self.anomalies = resume.indices if resume else 0
        self._last_publish = time.monotonic()
        self._interval = 0.5

    def add(self, r: ChunkResult) -> None:
        """Hand one chunk's result to every sink (chunks strictly in order)."""
        assert r.chunk == self.next_chunk, "results must arrive in chunk order"
        self.indices.append(r.indices)
        self.parquet.append(r)
        if self.scores is not None and r.dense is not None:
            self.scores.write(r.start, r.dense)
        self.next_chunk += 1
        self.samples_done += r.stop - r.start
        self.anomalies += len(r.indices)

    def maybe_publish(self, summary: Callable[[], dict[str, Any]]) -> None:
        """Publish if the interval has passed; ``summary()`` is built only then."""
        if time.monotonic() - self._last_publish >= self._interval:
            self.publish(summary())

    def publish(self, summary: dict[str, Any], final: bool = False) -> None:
        """Make every output consistent on disk, then record the checkpoint."""
        self.indices.publish()
        self.parquet.publish()
        # A part costs O(its rows): still keep publishing under ~10% of the run time.
        self._interval = max(0.5, 10 * self.parquet.last_cost)
        atomic_write_json(self.summary_path, summary, fsync=False)
        progress = Progress(
            self.next_chunk,
            self.samples_done,
            self.indices.count,
            self.parquet.rows,
            final,
            self.parquet.parts,
        )
        self.checkpoint.save(progress)
        self._last_publish = time.monotonic()

    def close(self) -> None:
        """Close every sink."""
        self.indices.close()
        if self.scores is not None:
            self.scores.close()
