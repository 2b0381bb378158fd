"""``python -m consumer --engine dask``: run the detectors on a Dask cluster.

The run is the local engine's (``consumer.run``: the same set-up, detector,
checkpoint, summary and finish); only where the kernels run differs.

* The driver follows the stream with the local engine's ``Tail`` (the one
  ``CommitFollower``): a chunk is released once its detector window is
  committed.  Released chunks form spans of whole chunks on a grid fixed in
  absolute chunk index (``shared.spans``, ``--span`` samples); a span is
  submitted once its last chunk is released (or the stream ends), so a live
  stream is processed as it is committed.
* A task runs the local engine's worker (``consumer.run._Worker``:
  ``window_for``, ``process``, the unit map) on each chunk of its span with the
  detector's halo, from the store (the ``.npy`` on a shared filesystem mapped
  window by window as the local engine maps it; a Zarr store read once for the
  span and its halo into a buffer its thread reuses), so every result equals the
  local engine's bit for bit.  It
  writes the span's Parquet rows as the hidden temporary of the part whose
  number the driver gave it (``.part-<k>.parquet.tmp`` in the rows dataset, one
  row group per chunk; rerunning the task rewrites the same bytes) and its
  dense scores as whole pages of the ``.npy`` scores file (edge pages go back
  to the driver, ``shared.spans``) or as whole shards of a Zarr scores store.
  It returns the flagged indices, the part's row count and CRC-32, and edges.
* The driver feeds results to :class:`DaskOutputs` in chunk order: indices are
  appended, edge pages written, and at each publish the finished parts are
  checked (CRC-32) and renamed into place as the next part numbers of the
  local engine's ``ParquetDataset``, then the summary and the checkpoint of the
  contiguous prefix are saved by the local engine's ``Outputs.publish``.  So
  ``--resume`` (either engine) continues from the checkpoint, and parts written
  after it are removed.
"""

from __future__ import annotations

import dataclasses
import os
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from consumer.detectors.base import Detector
from consumer.run import ConsumerConfig, Hooks, OutputPaths, _ConsumerRun, _Worker
from consumer.sink import Outputs, rows_table, schema_for, temp_part, write_rows
from consumer.tail import Tail
from shared.engine import DaskEngine, EngineOptions, connect
from shared.errors import FormatError, ProducerFailed, StopRequest, StreamError, UsageError
from shared.ring import is_ring
from shared.spans import PageSafeWriter, Span, chunks_per_span, task_buffer
from shared.stream import Layout, StreamReader, read_npy_header
from shared.zarr_store import (
    ZarrLocation,
    ZarrStreamReader,
    array_token,
    create_array,
    is_zarr,
    output_base,
    write_span,
)

SCORES = "scores"  # the array of a Zarr scores store
BACKLOG = 8  # finished spans waiting behind a slow one, per span in flight (indices only)


@dataclass(frozen=True)
class Source:
    """How a worker reads the input (sent with every task): its location and layout."""

    location: str
    zarr: bool
    layout: Layout
    storage_options: dict

    @contextmanager
    def span_reader(self, detector: Detector, span: Span) -> Iterator[Any]:
        """A reader of ``span``'s chunk windows for the local engine's worker.

        A file is mapped window by window (``StreamReader.map_window``, as the local
        engine does); a Zarr store is read once for the span and its halo (one request
        per shard).  Either is opened for this task only: on NFS, opening revalidates the
        client's cache (close-to-open consistency).
        """
        if not self.zarr:
            with _SamplesFile(self.location, self.layout) as r:
                yield r
            return
        layout = self.layout
        windows = [detector.window_for(*layout.bounds(c)) for c in range(span.first, span.last)]
        ws, we = min(w[0] for w in windows), max(w[1] for w in windows)
        with ZarrStreamReader(self.location, self.storage_options, layout) as r:
            data = r.read_into(ws, we, task_buffer(we - ws, layout.dtype))
        yield _SpanSamples(layout, ws, data)


class _SamplesFile(StreamReader):
    """A ``StreamReader`` of a file whose layout is known (no sidecar parsed).  Windows
    are mapped; one a map cannot serve (past the end of a damaged file) is read into
    this thread's task buffer (reused by the next tasks: fresh pages cost)."""

    def __init__(self, path: str, layout: Layout) -> None:
        self.path, self.layout, self.doc = Path(path), layout, None
        self._fd = os.open(path, os.O_RDONLY)

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Samples ``[start, stop)``: a view of the task buffer (``out`` is not needed)."""
        return super().read_into(start, stop, task_buffer(stop - start, self.layout.dtype))


class _SpanSamples:
    """A span's samples with their halo, read once, served to the local engine's worker
    chunk by chunk in place of a ``StreamReader``."""

    def __init__(self, layout: Layout, first: int, data: np.ndarray) -> None:
        self.layout, self.first, self.data = layout, first, data

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Samples ``[start, stop)`` (inside the span's window): a view of the span's
        samples, not a copy into ``out`` (the worker uses the view it is given back)."""
        return self.data[start - self.first : stop - self.first]


@dataclass(frozen=True)
class ScoresTarget:
    """Where a task writes dense scores: a shared ``.npy`` (whole pages) or a Zarr store."""

    location: str
    zarr: bool
    header_len: int
    storage_options: dict
    token: str  # the store's creation, so a worker never writes through a stale handle

    def write(self, start: int, dense: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Write ``dense`` from sample ``start``; return the edges left to the driver."""
        dense = np.ascontiguousarray(dense, "<f4")
        if self.zarr:
            write_span(self.location, SCORES, start, dense, self.storage_options, self.token)
            return []
        fd = os.open(self.location, os.O_WRONLY)
        try:
            out = PageSafeWriter(fd, self.header_len, dense.dtype, start, start + len(dense))
            out.write(start, dense)
        finally:
            os.close(fd)
        return out.edges()


@dataclass
class SpanRows:
    """What a detection task returns: flagged indices, its part's rows and CRC-32, edges."""

    first: int
    last: int
    start: int
    stop: int
    indices: np.ndarray
    rows: int
    part: str
    crc: int
    edges: list[tuple[int, np.ndarray]]


def _warm(detector: Detector, dtype: np.dtype, dense: bool, unit: bool) -> None:
    """Worker plugin body: load the detector's kernels for this dtype."""
    detector.warm_up(dtype, dense)
    if unit:
        detector.unit_scores(np.zeros(4, np.float32))


def _detect_span(
    source: Source,
    detector: Detector,
    dense: bool,
    unit: bool,
    grid: Any,
    parts: str,
    scores: ScoresTarget | None,
    span: Span,
    part: int,
) -> SpanRows:
    """Task: run the local engine's worker on each chunk of ``span`` (with its halo),
    write the span's part and scores."""
    with source.span_reader(detector, span) as reader:
        worker = _Worker(reader, detector, dense, unit)
        results = [worker(c) for c in range(span.first, span.last)]
    tmp = temp_part(Path(parts), part)
    schema = schema_for(grid)
    write_rows(tmp, schema, [rows_table(r, schema, grid) for r in results])
    rows, crc = sum(len(r.indices) for r in results), zlib.crc32(tmp.read_bytes())
    edges = []
    if scores is not None:
        edges = scores.write(span.start, np.concatenate([r.dense for r in results]))
    indices = np.concatenate([r.indices for r in results])
    return SpanRows(
        span.first, span.last, span.start, span.stop, indices, rows, str(tmp), crc, edges
    )


class DaskOutputs(Outputs):
    """The local engine's outputs, fed with spans whose rows a worker wrote as a part.

    ``add`` appends a span's indices and writes its score edges; ``publish``
    renames the finished parts into place (after checking their CRC-32) as the
    next parts of the ``ParquetDataset``, then publishes as the local engine does.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ready: list[SpanRows] = []

    def add(self, r: SpanRows) -> None:  # type: ignore[override]
        """Hand one span's result to every sink (spans strictly in chunk order)."""
        assert r.first == self.next_chunk, "results must arrive in chunk order"
        self.indices.append(r.indices)
        for start, values in r.edges:
            self.scores.write(start, values)
        self.ready.append(r)
        self.next_chunk = r.last
        self.samples_done += r.stop - r.start
        self.anomalies += len(r.indices)

    def publish(self, summary: dict[str, Any], final: bool = False) -> None:
        """Adopt the finished parts, then publish every output and the checkpoint."""
        dataset = self.parquet
        for r in self.ready:
            tmp = temp_part(dataset.path.resolve(), dataset.parts)
            if str(tmp) != r.part:
                raise StreamError(f"internal error: {r.part} is not part {dataset.parts}")
            if zlib.crc32(tmp.read_bytes()) != r.crc:
                raise FormatError(f"{tmp}: changed after its task wrote it (another writer?)")
            dataset.adopt(r.rows)
        self.ready = []
        super().publish(summary, final)


def run_consumer_dask(
    file: str | os.PathLike[str],
    config: ConsumerConfig | None = None,
    *,
    engine: EngineOptions,
    stop: StopRequest | None = None,
    on_progress: Any = None,
    on_start: Any = None,
    log: Any = None,
    **options: Any,
) -> dict[str, Any]:
    """``consumer.run_consumer`` on a Dask cluster: the same outputs, bit for bit.

    Parameters
    ----------
    file
        A ``.npy`` stream (or plain / raw file) on a filesystem every worker mounts
        at the same path, or a Zarr store (path ending ``.zarr`` or fsspec URL).
    config, options, stop, on_progress, on_start, log
        As for ``run_consumer``.  Outputs must be on a shared filesystem; ``--scores``
        may be a Zarr store (``scores.zarr``, ``s3://...``), written in whole shards.
    engine
        The cluster (``shared.engine.EngineOptions``) and the task span.
    """
    import threading

    config = config or ConsumerConfig(**options)
    hooks = Hooks(stop or threading.Event(), on_progress, on_start, log)
    return DaskConsumerRun(str(file), config, hooks, engine).run()


class DaskConsumerRun(_ConsumerRun):
    """A consumer run whose kernels run on Dask workers (see the module docstring)."""

    outputs_class = DaskOutputs

    def __init__(
        self, location: str, config: ConsumerConfig, hooks: Hooks, engine: EngineOptions
    ) -> None:
        self.location, self.zarr, self.engine = location, is_zarr(location), engine
        base = output_base(location)
        paths = config.paths or OutputPaths.for_input(base)
        self.scores_store = None
        if paths.scores is not None and is_zarr(str(paths.scores)):
            self.scores_store = ZarrLocation(paths.scores, engine.storage_options)
            paths = dataclasses.replace(paths, scores=None)  # not a file: checked here
            if self.scores_store.exists() and not (config.resume or config.overwrite):
                where = self.scores_store.location
                raise UsageError(f"{where} exists; pass --overwrite to replace it or --resume")
        if self.zarr and config.wait_s > 0:
            _wait_for_store(location, engine, config.wait_s, hooks.stop)
        elif is_ring(location):
            raise UsageError(f"{location}: a ring stream needs --engine local")
        config = dataclasses.replace(config, paths=paths, wait_s=0 if self.zarr else config.wait_s)
        self.scores_path = paths.scores
        super().__init__(base if self.zarr else Path(location), config, hooks)
        self.per_span = chunks_per_span(engine.span, self.reader.layout.chunk_size)
        self.nthreads = 0
        self._open_scores_store()

    @property
    def storage_options(self) -> dict[str, Any]:  # type: ignore[override]
        """The engine's fsspec options: for the input store and a store's labels."""
        return self.engine.storage_options

    def _open_reader(self, data: Path) -> StreamReader:
        """A Zarr store's reader, or the local engine's."""
        if self.zarr:
            return ZarrStreamReader(self.location, self.engine.storage_options)
        return super()._open_reader(data)

    def _open_scores_store(self) -> None:
        """Create (or, resuming, reopen) a Zarr scores store of whole-span shards."""
        where = self.scores_store
        if where is None:
            return
        layout = self.reader.layout
        if self.config.resume and where.exists():
            return
        import zarr

        zarr.open_group(where.store(), mode="w")
        shard = self.per_span * layout.chunk_size  # a span's scores: one shard of whole chunks
        create_array(where, SCORES, layout.num_samples, "<f4", shard, layout.chunk_size)

    def _scores_target(self) -> ScoresTarget | None:
        """Where the tasks write dense scores (None: not asked for)."""
        if self.scores_store is not None:
            where = self.scores_store
            token = array_token(where, SCORES)
            return ScoresTarget(where.location, True, 0, where.storage_options, token)
        if self.scores_path is None:
            return None
        header = read_npy_header(self.scores_path).header_len
        return ScoresTarget(str(self.scores_path.resolve()), False, header, {}, "")

    def run(self) -> dict[str, Any]:
        """Follow the stream, run spans on the cluster, feed the sinks in order."""
        outputs, hooks, config = self.outputs, self.hooks, self.config
        if hooks.on_start:
            hooks.on_start(self.reader, self.detector)
        self.already = outputs.samples_done
        dense = self.scores_store is not None or self.scores_path is not None
        unit = config.score_scale == "unit"
        tail = Tail(
            self.reader,
            self.detector,
            first_chunk=outputs.next_chunk,
            follow=config.follow,
            timeout=config.timeout,
            poll_interval=0.02 if not self.zarr or ZarrLocation(self.location).local else 0.2,
        )
        dtype = self.reader.layout.dtype
        # The driver loads (a first run: compiles and caches) the kernels before the
        # workers, which then only read numba's cache.
        self.detector.warm_up(dtype, dense)
        inflight: dict[int, Any] = {}
        done: dict[int, SpanRows] = {}
        self.t0 = time.perf_counter()
        with connect(self.engine, "consumer") as eng:
            self.nthreads = eng.nthreads
            eng.warm("consumer", partial(_warm, self.detector, dtype, dense, unit))
            source = Source(
                self.location if self.zarr else str(self.reader.path.resolve()),
                self.zarr,
                self.reader.layout,
                self.engine.storage_options,
            )
            task = partial(
                _detect_span,
                source,
                self.detector,
                dense,
                unit,
                self.grid,
                str(self.paths.parquet.resolve()),
                self._scores_target(),
            )
            self.t0 = time.perf_counter()
            try:
                self._schedule(eng, tail, task, inflight, done)
            except BaseException as e:
                self.error = e
                _settle(eng, inflight, keep=isinstance(e, ProducerFailed))
                raise
            finally:
                self.final = self._finish(inflight, done)
        return self.final

    def _schedule(self, eng: DaskEngine, tail: Tail, task, inflight, done) -> None:
        """Submit spans as their chunks are released; feed finished spans to the sinks."""
        from distributed import wait

        outputs, stop, layout = self.outputs, self.hooks.stop, self.reader.layout
        per, ahead = self.per_span, eng.in_flight
        released: list[int] = []
        next_part = outputs.parquet.parts
        while not (tail.exhausted and not released and not inflight):
            if stop.is_set():
                raise (
                    stop.interrupted() if isinstance(stop, StopRequest) else StreamError("stopped")
                )
            room = (ahead - len(inflight)) * per - len(released)
            if room > 0:
                released += tail.poll_ready(room)
            while released and len(inflight) < ahead and len(done) < BACKLOG * ahead:
                span = _next_span(released, per, layout, tail.exhausted)
                if span is None:
                    break
                del released[: span.last - span.first]
                inflight[span.first] = eng.client.submit(task, span, next_part, pure=False)
                next_part += 1
            if not inflight:
                time.sleep(tail.poll_interval)
                continue
            try:
                wait(list(inflight.values()), timeout=0.05, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            for first in [c for c, f in inflight.items() if f.done()]:
                done[first] = inflight.pop(first).result()  # a task's error is raised here
            self._drain_in_order(outputs, done)
        if outputs.samples_done < self.reader.num_samples:
            self.status = "partial"  # --no-follow on an incomplete stream

    def summary(self) -> dict[str, Any]:
        """The local engine's summary, with the engine and the cluster's threads."""
        s = super().summary()
        s["threads"] = self.nthreads
        s["engine"] = {"name": "dask", "span_chunks": self.per_span}
        if self.scores_store is not None:
            s["outputs"]["scores"] = self.scores_store.location
        return s


def _next_span(released: list[int], per: int, layout, exhausted: bool) -> Span | None:
    """The span of the first released chunks (to the end of its grid cell), if complete."""
    first = released[0]
    cell = first // per
    end = min(layout.num_chunks, (cell + 1) * per)
    last = first
    while last - first < len(released) and released[last - first] == last and last < end:
        last += 1
    if last < end and not exhausted:
        return None  # the rest of the cell is not committed yet
    return Span(cell, first, last, layout.bounds(first)[0], layout.bounds(last - 1)[1])


def _settle(eng: DaskEngine, inflight: dict, keep: bool) -> None:
    """After an error: let running spans finish (a dead producer) or cancel them."""
    from distributed import wait

    futures = list(inflight.values())
    if not futures:
        return
    if keep:
        try:
            wait(futures, timeout=60)
        except TimeoutError:
            pass
    else:
        eng.client.cancel(futures)


def _wait_for_store(location: str, engine: EngineOptions, wait_s: float, stop) -> None:
    """``--wait`` for a Zarr store: until its sidecar appears."""
    where = ZarrLocation(location, engine.storage_options)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            where.read_sidecar()
            return
        except FormatError:
            if time.monotonic() > deadline:
                raise StreamError(
                    f"{location}: did not appear within {wait_s:g} s (--wait)"
                ) from None
            if stop is not None and stop.is_set():
                raise StreamError("stopped") from None
            time.sleep(0.05)
