"""``python -m producer --engine dask``: generate a stream on a Dask cluster.

The bytes equal the local engine's: every task generates its chunks with the
local engine's own code (``producer.write._make_chunk`` over
``producer.generate.BlockGenerator``), and every sample is a pure function of
(seed, RNG block, position).

* A task is a span of whole chunks (``shared.spans``, ``--span`` samples).  It
  generates them block by block, folding each block into its chunk's CRC-32,
  and writes them itself: into the ``.npy`` at their offsets (a filesystem
  shared by all nodes; only whole pages, the edge pages go back to the driver,
  see ``shared.spans``), or as one shard of a Zarr store (object storage).  It
  returns the chunks' CRC-32 values, the span's anomaly indices and its edges.
* Only the driver writes the sidecar: as tasks finish it commits their chunks
  in chunk order (the committed chunks are always a prefix, as with ``--sync``),
  after writing the span's edge pages and labels.
* Per-block anomaly counts, which lay out the labels file, are counted by the
  workers (one task per range of blocks), not serially by the driver.

Tasks are submitted at most ``4 x`` the cluster's threads ahead of the commits;
a task lost with its worker is rerun by Dask elsewhere (same bytes).  A stop
request (SIGINT/SIGTERM) cancels what is queued and marks the stream failed
("interrupted"), so ``--resume`` continues it with the local or the Dask engine.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from producer.generate import BLOCK_SIZE, BlockGenerator
from producer.write import (
    WriteResult,
    _finish_run,
    _labels_space,
    _make_chunk,
    _mark_failed,
    _open_labels,
    check_chunk_size,
    stream_extra,
)
from shared.engine import DaskEngine, EngineOptions, connect
from shared.errors import StopRequest, UsageError
from shared.params import GenerationParams
from shared.spans import PageSafeWriter, Span, chunks_per_span, spans, task_buffer
from shared.stream import LABELS_SUFFIX, Layout, StreamWriter, sibling, sidecar_path
from shared.zarr_store import ZarrStreamWriter, is_zarr, write_span


@dataclass(frozen=True)
class GenSpec:
    """What a worker needs to build the run's generator (sent with every task)."""

    params: GenerationParams
    num_samples: int
    dtype: str

    def generator(self) -> BlockGenerator:
        """This process's generator for the spec (built once: a long seasonal table is costly)."""
        key = (json.dumps(self.params.to_json(), sort_keys=True), self.num_samples, self.dtype)
        with _GENERATORS_LOCK:
            gen = _GENERATORS.get(key)
            if gen is None:
                gen = BlockGenerator(self.params, self.num_samples, self.dtype)
                _GENERATORS[key] = gen
                while len(_GENERATORS) > 2:
                    _GENERATORS.popitem(last=False)
            return gen


_GENERATORS: OrderedDict[tuple, BlockGenerator] = OrderedDict()
_GENERATORS_LOCK = threading.Lock()


def _warm(spec: GenSpec) -> None:
    """Worker plugin body: load the generation kernels for this dtype."""
    spec.generator().warm_up()


class _Found:
    """Collects the anomaly indices ``_make_chunk`` hands to its labels sink."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def write(self, start: int, labels: np.ndarray) -> None:
        """Keep one chunk's labels (``start``: its first sample; they arrive in order)."""
        self.parts.append(labels)

    def array(self) -> np.ndarray:
        """All of them, sorted (chunks were generated in order)."""
        return np.concatenate(self.parts) if self.parts else np.empty(0, np.int64)


@dataclass
class SpanResult:
    """What a generation task returns to the driver.

    ``crcs``: CRC-32 per chunk of the span; ``labels``: its anomaly indices;
    ``edges``: ``(first sample, values)`` of the partial pages it did not write.
    """

    first: int
    crcs: list[int]
    labels: np.ndarray
    edges: list[tuple[int, np.ndarray]]


def _count_blocks(spec: GenSpec, b0: int, b1: int) -> np.ndarray:
    """Task: anomalies in each RNG block of ``[b0, b1)`` (from the anomaly keys alone)."""
    gen = spec.generator()
    return np.fromiter((len(gen.block_anomalies(b)[0]) for b in range(b0, b1)), np.int64, b1 - b0)


def _generate_file(spec: GenSpec, path: str, layout: Layout, span: Span, fsync: bool) -> SpanResult:
    """Task: generate ``span`` and write its whole pages into the shared ``.npy``."""
    gen = spec.generator()
    fd = os.open(path, os.O_WRONLY)
    try:
        out = PageSafeWriter(fd, layout.header_len, layout.dtype, span.start, span.stop)
        buf, found = task_buffer(BLOCK_SIZE, layout.dtype), _Found()
        crcs = []
        for chunk in range(span.first, span.last):
            a, b = layout.bounds(chunk)
            crcs.append(_make_chunk(gen, found, a=a, b=b, buf=buf, write_block=out.write))
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)  # on NFS, close() also writes the pages back (close-to-open consistency)
    return SpanResult(span.first, crcs, found.array(), out.edges())


def _generate_shard(
    spec: GenSpec, location: str, options: dict, token: str, layout: Layout, span: Span
) -> SpanResult:
    """Task: generate ``span`` (one whole shard) and write it to the Zarr store."""
    gen = spec.generator()
    values, found = task_buffer(span.stop - span.start, layout.dtype), _Found()
    crcs = []
    for chunk in range(span.first, span.last):
        a, b = layout.bounds(chunk)
        crcs.append(_make_chunk(gen, found, a=a, b=b, buf=values[a - span.start : b - span.start]))
    write_span(location, "data", span.start, values, options, token)
    return SpanResult(span.first, crcs, found.array(), [])


class _ClusterCounted(BlockGenerator):
    """The driver's generator: per-block label counts come from the cluster, not a loop here."""

    def __init__(self, spec: GenSpec, count: Callable[[], np.ndarray]) -> None:
        super().__init__(spec.params, spec.num_samples, spec.dtype)
        self._count, self._counts = count, None

    def label_counts(self) -> np.ndarray:
        """Anomalies per RNG block, counted once by the workers."""
        if self._counts is None:
            self._counts = self._count()
        return self._counts


class _StoreLabels:
    """The labels sink of a Zarr stream: ``ZarrLabels`` at the places ``labels_before`` gives."""

    def __init__(self, writer: ZarrStreamWriter, gen: BlockGenerator, resume: bool) -> None:
        self.gen = gen
        self.total = int(gen.label_counts().sum())
        self.array = writer.labels(self.total, resume)
        self.path = self.array.path  # a URL for object stores
        writer.write_labels_meta(labels_file="labels", num_labels=self.total)

    def write(self, start: int, labels: np.ndarray) -> None:
        """Write the labels of the chunks from sample ``start`` on."""
        self.array.write_at(self.gen.labels_before(start), labels)

    def sync(self) -> None:
        """Writes to a store are complete when they return."""

    def close(self) -> None:
        """Nothing to close."""


def write_stream_dask(
    path: str | os.PathLike[str],
    num_samples: int,
    params: GenerationParams,
    *,
    engine: EngineOptions,
    dtype: str = "float64",
    chunk_size: int = 1 << 20,
    overwrite: bool = False,
    resume: bool = False,
    fsync: bool = False,
    stop: threading.Event | StopRequest | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_open: Callable[[object, Sequence[int]], None] | None = None,
    preallocate: bool = True,
    sync: bool = False,
    ring: int | None = None,
    **local_only: object,
) -> WriteResult:
    """Generate and write a whole stream on Dask; the same bytes as ``write_stream``'s.

    Parameters
    ----------
    path
        A ``.npy`` on a filesystem every worker mounts at the same path, or a Zarr
        store (a path ending ``.zarr`` or an fsspec URL such as ``s3://bucket/gen.zarr``).
    num_samples, params, dtype, chunk_size, overwrite, resume, fsync, preallocate
        As for ``producer.write.write_stream``.
    engine
        The cluster to use (``shared.engine.EngineOptions``) and the task span.
    stop, on_progress, on_open
        As for ``write_stream`` (``on_progress`` is called from this thread).
    sync, ring, local_only
        ``write_stream``'s options of the local engine: ``sync`` and ``ring`` are
        refused, the others (threads, lookahead, ...) do not apply.

    Returns
    -------
    WriteResult
        Raises after marking the stream failed (resumable), as ``write_stream`` does.
    """
    if sync or ring is not None:
        raise UsageError(f"{'--sync' if sync else '--ring'} is for --engine local")
    check_chunk_size(chunk_size)
    run = _Run(
        path,
        GenSpec(params, num_samples, dtype),
        chunk_size=chunk_size,
        per_span=chunks_per_span(engine.span, chunk_size),
        fsync=fsync,
        overwrite=overwrite,
        resume=resume,
        stop=stop or threading.Event(),
        on_progress=on_progress,
    )
    run.check_labels_path()
    # The driver loads (and on a first run compiles and caches) the kernels before any
    # worker does, so that workers only read numba's cache.
    run.gen.warm_up()
    with connect(engine, "producer") as eng:
        run.engine = eng
        eng.warm("producer", partial(_warm, run.spec))
        writer = run.open_writer(engine.storage_options, preallocate)
        if on_open is not None:
            on_open(writer, run.todo)
        return run.write()


class _Run:
    """One Dask producer run: its writer, labels and spans (the driver's side)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        spec: GenSpec,
        *,
        chunk_size: int,
        per_span: int,
        fsync: bool,
        overwrite: bool,
        resume: bool,
        stop: threading.Event | StopRequest,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self.store = is_zarr(path)
        self.path = str(path) if self.store else Path(path)
        self.spec, self.chunk_size, self.per_span = spec, chunk_size, per_span
        self.fsync, self.overwrite, self.resume = fsync, overwrite, resume
        self.stop, self.on_progress = stop, on_progress
        self.engine: DaskEngine | None = None
        self.gen = _ClusterCounted(spec, self._count)
        self.labels_path = None if self.store else sibling(self.path, LABELS_SUFFIX)

    def check_labels_path(self) -> None:
        """Refuse to clobber a labels file that is not this stream's (as ``write_stream``)."""
        p = self.labels_path
        if p is None or self.spec.params.anomalies is None or not p.exists():
            return
        if not (self.overwrite or (self.resume and sidecar_path(self.path).exists())):
            raise UsageError(f"{p} exists; pass --overwrite to replace it")

    def _count(self) -> np.ndarray:
        """Per-block anomaly counts of the whole stream, counted by the workers."""
        client = self.engine.client
        blocks = -(-self.spec.num_samples // BLOCK_SIZE)
        step = max(64, -(-blocks // (4 * self.engine.nthreads)))
        futures = [
            client.submit(_count_blocks, self.spec, b, min(blocks, b + step), pure=False)
            for b in range(0, blocks, step)
        ]
        return np.concatenate(client.gather(futures))

    def open_writer(self, storage_options: dict, preallocate: bool):
        """Create (or resume) the stream: a ``.npy`` with its sidecar, or a Zarr store."""
        spec = self.spec
        common = dict(
            num_samples=spec.num_samples,
            dtype=spec.dtype,
            chunk_size=self.chunk_size,
            extra=stream_extra(spec.params),
            overwrite=self.overwrite,
            resume=self.resume,
        )
        if self.store:
            self.writer = ZarrStreamWriter(
                self.path,
                shard=self.per_span * self.chunk_size,
                storage_options=storage_options,
                **common,
            )
            self.per_span = self.writer.shard // self.writer.layout.chunk_size  # a resumed one's
        else:
            space = _labels_space(self.gen, self.labels_path) if spec.params.anomalies else None
            self.writer = StreamWriter(
                self.path, fsync=self.fsync, preallocate=preallocate, companions=space, **common
            )
        self.todo = [i for i, done in enumerate(self.writer.committed()) if not done]
        return self.writer

    def _open_labels(self):
        writer, params = self.writer, self.spec.params
        if not self.store:
            return _open_labels(
                writer, self.gen, params, self.labels_path, self.overwrite, self.resume
            )
        if params.anomalies is None:
            return None
        return _StoreLabels(writer, self.gen, self.resume and any(writer.committed()))

    def _work(self) -> tuple[list[Span], Callable[[Span], SpanResult]]:
        """The spans to run and the task that runs one."""
        layout, spec = self.writer.layout, self.spec
        if self.store:  # a task writes a whole shard, committed chunks in it included
            cells = {c // self.per_span for c in self.todo}
            work = [s for s in spans(layout, self.per_span) if s.cell in cells]
            where, token = self.writer.where, self.writer.token
            task = partial(_generate_shard, spec, where.location, where.storage_options, token)
            return work, partial(task, layout)
        mask = [not d for d in self.writer.committed()]
        work = list(spans(layout, self.per_span, mask))
        # Workers open the file by its absolute path (their working directory is not ours).
        path = str(self.path.resolve())
        return work, partial(_generate_file, spec, path, layout, fsync=self.fsync)

    def write(self) -> WriteResult:
        """Run every span to do, then finish the stream (or mark it failed and raise)."""
        writer, layout, stop = self.writer, self.writer.layout, self.stop
        if writer.status == "complete":
            writer.close()
            return WriteResult(0, 0.0, 0, None, 0)
        labels = None
        try:
            labels = self._open_labels()
            work, task = self._work()
            commit = partial(_commit, writer, labels, self.fsync, set(self.todo), self.on_progress)
            started_at = time.time()
            t0 = time.perf_counter()
            _run_spans(self.engine, work, task, commit, stop)
            seconds = time.perf_counter() - t0
            _finish_run(writer, labels, stop)
        except BaseException as e:
            _mark_failed(writer, Path(str(self.path)), e)
            raise
        finally:
            if labels is not None:
                labels.close()
        done = sum(layout.bounds(i)[1] - layout.bounds(i)[0] for i in self.todo)
        if labels is None:
            return WriteResult(done, seconds, len(self.todo), None, 0, started_at)
        return WriteResult(done, seconds, len(self.todo), labels.path, labels.total, started_at)


def _commit(writer, labels, fsync: bool, todo: set[int], on_progress, span: Span, r: SpanResult):
    """Driver: write a finished span's edge pages and labels, then commit its chunks in order."""
    for sample, values in r.edges:
        writer.write_at(sample, values)
    if labels is not None and len(r.labels):
        labels.write(span.start, r.labels)
        if fsync:
            labels.sync()
    for chunk, crc in zip(range(span.first, span.last), r.crcs, strict=True):
        if chunk in todo:
            writer.commit(chunk, crc)
            if on_progress:
                a, b = writer.layout.bounds(chunk)
                on_progress(b - a)


# Finished spans that may wait for an earlier one (a rerun after a lost worker), per span in
# flight: the others keep the workers busy meanwhile; each holds only CRCs, labels and edges.
BACKLOG = 8


def _run_spans(eng: DaskEngine, work: list[Span], task, commit, stop) -> None:
    """Submit ``task(span)`` for every span, ``eng.in_flight`` at a time; commit results in
    order (finished spans waiting behind a slow one are capped at ``BACKLOG x`` that)."""
    from distributed import wait

    client = eng.client
    ahead = eng.in_flight
    queued = iter(work)
    inflight: dict = {}
    results: dict[int, SpanResult] = {}
    committed = 0
    try:
        while committed < len(work):
            if stop.is_set():
                return
            while len(inflight) < ahead and len(results) < BACKLOG * ahead:
                span = next(queued, None)
                if span is None:
                    break
                inflight[client.submit(task, span, pure=False)] = span
            try:
                wait(list(inflight), timeout=0.05, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            for fut in [f for f in inflight if f.done()]:
                span = inflight.pop(fut)
                results[span.first] = fut.result()  # a task's error is raised here
                fut.release()
            while committed < len(work) and work[committed].first in results:
                span = work[committed]
                commit(span, results.pop(span.first))
                committed += 1
    finally:
        if inflight:
            client.cancel(list(inflight))
