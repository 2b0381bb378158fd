"""Consumer outputs, written in chunk order as results arrive and usable at every instant.

* indices ``.npy``: sorted int64; data is appended, then the header's length is
  rewritten in place (fixed-size header), so a reader always sees a valid prefix;
* Parquet (``index``, ``value``, ``score``, and ``timestamp`` after ``index``
  when the input has a time grid; zstd; one row group per chunk):
  row groups are appended to a writer on a hidden work file and the public file
  is republished atomically (copy of the row groups + footer, then rename) at an
  adaptive interval that keeps republishing under ~10% of the run's time;
* dense scores ``.npy`` (float32, optional): preallocated, each chunk written at
  its offset;
* summary JSON: rewritten atomically at every publish and at the end.

``Checkpoint`` state (chunks done, indices and rows written) is saved with each
publish so that ``--resume`` can continue from the last durable point.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consumer.checkpoint import Checkpoint, Progress
from consumer.detectors.base import ChunkResult
from shared.errors import FormatError
from shared.int64file import Int64File, padded_npy_header
from shared.stream import atomic_write_json, npy_header, read_npy_header

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


# Rows decoded per read when a published file is copied: bounds the copy's memory.
COPY_ROWS = 1 << 20


def _copy_row_groups(f: pq.ParquetFile, out: pq.ParquetWriter) -> None:
    """Append ``f``'s row groups to ``out``, keeping their boundaries (one per chunk).

    Reading many row groups per call and re-splitting them costs about half of one
    read per row group (measured: 0.37 against 0.69 s for 1000 groups of 500 rows).
    """
    md = f.metadata
    sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
    g = 0
    while g < len(sizes):
        batch = [g]
        rows = sizes[g]
        while batch[-1] + 1 < len(sizes) and rows + sizes[batch[-1] + 1] <= COPY_ROWS:
            batch.append(batch[-1] + 1)
            rows += sizes[batch[-1]]
        table = f.read_row_groups(batch)
        offset = 0
        for k in batch:
            out.write_table(table.slice(offset, sizes[k]), row_group_size=max(1, sizes[k]))
            offset += sizes[k]
        g = batch[-1] + 1


class ParquetFile:
    """Row group per chunk, republished atomically so readers never see a torn file.

    Row groups since the last publish wait in memory (bounded by the publish
    interval); publishing copies the published row groups plus the pending ones
    into a temporary file and renames it over the public one.
    """

    def __init__(self, path: Path, resume: tuple[int, int] | None = None, grid: Any = None) -> None:
        self.path = path
        self.grid = grid
        self.schema = schema_for(grid)
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.last_cost = 0.0
        if resume is None:
            self._write([])  # an empty but valid file from the start
        else:
            self._truncate(*resume)

    def _truncate(self, groups: int, rows: int) -> None:
        """Keep the first ``groups`` row groups (= chunks); a crash may have published more."""
        f = pq.ParquetFile(self.path)
        have = sum(f.metadata.row_group(g).num_rows for g in range(min(groups, f.num_row_groups)))
        if f.num_row_groups < groups or have != rows:
            raise FormatError(
                f"{self.path}: {f.num_row_groups} row groups / {have} rows do not match the "
                f"checkpoint ({groups} chunks, {rows} rows)"
            )
        if f.num_row_groups > groups:
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with pq.ParquetWriter(tmp, self.schema, compression="zstd") as out:
                for g in range(groups):
                    out.write_table(f.read_row_group(g))
            os.replace(tmp, self.path)
        self.rows = rows

    def append(self, r: ChunkResult) -> None:
        # From the numpy buffers directly: pa.table()/pa.array() on numpy arrays import
        # pandas when it is installed (0.2-0.3 s here), stalling the first chunk.
        """Append one chunk's flagged rows as a row group (published later)."""
        cols = [np.ascontiguousarray(r.indices, np.int64)]
        if self.grid is not None:
            cols.append(np.ascontiguousarray(self.grid.times(r.indices), np.int64))
        cols += [
            np.ascontiguousarray(r.values, np.float64),
            np.ascontiguousarray(r.scores, np.float64),
        ]
        columns = [
            pa.Array.from_buffers(field.type, len(r.indices), [None, pa.py_buffer(col)])
            for field, col in zip(self.schema, cols, strict=True)
        ]
        table = pa.Table.from_arrays(columns, schema=self.schema)
        self.pending.append(table)
        self.rows += len(r.indices)

    def _write(self, old: list[Path]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with pq.ParquetWriter(tmp, self.schema, compression="zstd") as out:
            for src in old:
                _copy_row_groups(pq.ParquetFile(src), out)
            for t in self.pending:
                out.write_table(t, row_group_size=max(1, len(t)))  # one row group per chunk
        os.replace(tmp, self.path)
        self.pending = []

    def publish(self) -> None:
        """Replace the public file atomically with every row group so far."""
        if not self.pending:
            return
        t0 = time.perf_counter()
        self._write([self.path])
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
        self.parquet = ParquetFile(
            parquet, (resume.next_chunk, resume.rows) if resume else None, grid
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
        # Republishing copies the rows so far: keep it under ~10% of the run time.
        self._interval = max(0.5, 10 * self.parquet.last_cost)
        atomic_write_json(self.summary_path, summary, fsync=False)
        progress = Progress(
            self.next_chunk, self.samples_done, self.indices.count, self.parquet.rows, final
        )
        self.checkpoint.save(progress)
        self._last_publish = time.monotonic()

    def close(self) -> None:
        """Close every sink."""
        self.indices.close()
        if self.scores is not None:
            self.scores.close()
