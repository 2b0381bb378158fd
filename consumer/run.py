"""The consumer pipeline: tail -> pool of detector workers -> in-order sinks.

Workers (``--threads``) each read a chunk plus its halo with ``preadv`` into a
reused per-thread buffer and run a ``nogil`` numba kernel, so they run in
parallel; the main thread polls the stream, schedules ready chunks (at most
``2 x threads`` in flight, which bounds memory), and hands results to the sinks
in chunk order.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from consumer.checkpoint import Checkpoint, Progress
from consumer.detectors.base import ChunkResult, Detector, SeriesInfo
from consumer.detectors.registry import make_detector
from consumer.events import check_windows_file, event_figures, labels_kind, load_windows
from consumer.inputs import (
    Conversion,
    TableOptions,
    TimeGrid,
    convert,
    input_format,
    source_signature,
)
from consumer.sink import INDEX_HEADER_LEN, Outputs, check_rows_path, label_figures
from consumer.tail import Tail, needed_chunk, window_chunks
from shared.errors import FormatError, ProducerFailed, StopRequest, StreamError, UsageError
from shared.stream import (
    DEFAULT_CHUNK_SIZE,
    StreamReader,
    atomic_temps,
    atomic_write_json,
    check_output_path,
    read_npy_header,
    sibling,
    sidecar_path,
)


@dataclass
class OutputPaths:
    """Where a consumer run writes: indices, Parquet, summary, checkpoint, dense scores."""

    indices: Path
    parquet: Path
    summary: Path
    checkpoint: Path
    scores: Path | None
    series: Path | None = None  # the float64 series read from a table input

    @classmethod
    def for_input(
        cls,
        file: Path,
        *,
        out: str | None = None,
        indices: str | None = None,
        summary: str | None = None,
        scores: str | None = None,
        series: str | None = None,
        table: bool = False,
    ) -> OutputPaths:
        """Paths beside ``file`` (``<stem>.anomalies.npy`` ...) unless given.

        ``table``: the input is a CSV / Parquet / Arrow table, read into a series
        file (``series``, default ``<stem>.series.npy`` beside the indices).
        """
        if table and not series:
            series = str(sibling(Path(indices) if indices else file, ".series.npy"))
        return cls(
            indices=Path(indices) if indices else sibling(file, ".anomalies.npy"),
            parquet=Path(out) if out else sibling(file, ".anomalies.parquet"),
            summary=Path(summary) if summary else sibling(file, ".summary.json"),
            checkpoint=sibling(Path(indices) if indices else file, ".consumer.json"),
            scores=Path(scores) if scores else None,
            series=Path(series) if series else None,
        )

    def all(self) -> list[Path]:
        """Every output path of the run."""
        series = (self.series, sidecar_path(self.series)) if self.series else ()
        return [
            p
            for p in (self.indices, self.parquet, self.summary, self.checkpoint, self.scores)
            if p is not None
        ] + list(series)

    def check(self) -> None:
        """Usage checks of every output path (the Parquet rows are a directory of parts)."""
        for p in self.all():
            if p == self.parquet:
                check_rows_path(p)
            else:
                check_output_path(p)


def load_labels(
    path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None
) -> np.ndarray:
    """Sorted int64 labelled indices from a 1-D integer NPY file, or the labels a Zarr
    stream store holds (a path ending ``.zarr`` or a URL; ``storage_options`` for fsspec)."""
    from shared.zarr_store import is_zarr

    if is_zarr(path):
        return _store_labels(str(path), storage_options)
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such labels file")
    if p.is_dir():
        raise UsageError(f"{p}: is a directory")
    try:
        arr = np.load(p, mmap_mode="r")
    except Exception:
        raise UsageError(f"{p}: not a readable NPY labels file") from None
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise UsageError(f"{p}: labels must be a 1-D integer array")
    return np.sort(np.asarray(arr, np.int64))


def _store_labels(location: str, storage_options: dict[str, Any] | None) -> np.ndarray:
    from shared.zarr_store import ZarrStreamReader

    with ZarrStreamReader(location, storage_options) as store:
        if "labels_file" not in (store.doc or {}):
            raise UsageError(f"{location}: the stream holds no labels (made without anomalies)")
        return np.sort(store.labels().astype(np.int64))


@dataclass
class ConsumerConfig:
    """What a consumer run detects, where it writes and how it follows the stream.

    Parameters
    ----------
    type, params
        Detector name and parameters (JSON text, a mapping or its ``Params``).
    threads
        Kernel worker threads (default: all cores).
    paths
        Output paths (default: beside the input).
    labels, tolerance
        Labels to score against (a ``.npy`` or a Zarr stream store of indices, or
        windows: see ``consumer.events``), and the hit tolerance in samples.
    follow, timeout
        Wait for a running producer (its heartbeat may be at most ``timeout`` s old).
    raw_dtype, chunk_size
        For a raw input file: its sample type, and the processing chunk size.
    resume, overwrite
        Continue from the checkpoint / replace existing outputs.
    wait_s
        Wait up to this long for the stream to appear (start before the producer).
    column, timestamp, format, max_irregular
        For a CSV / Parquet / Arrow input: the value column, the timestamp column (or
        None: one sample per row), the format (None: from the suffix) and the fraction
        of irregular rows that may be repaired (see ``consumer.inputs``).
    score_scale
        ``"raw"`` (the detector's dense score) or ``"unit"`` (its map into [0, 1])
        for the dense scores file.
    cli
        Word parameter errors for the command line rather than the Python API.
    """

    type: str = "zscore"
    params: Any = None
    threads: int | None = None
    paths: OutputPaths | None = None
    labels: str | os.PathLike[str] | None = None
    tolerance: int | None = None
    follow: bool = True
    timeout: float = 10.0
    raw_dtype: str | None = None
    chunk_size: int | None = None
    resume: bool = False
    overwrite: bool = False
    wait_s: float = 0.0
    column: str | None = None
    timestamp: str | None = None
    format: str | None = None
    max_irregular: float = 0.01
    score_scale: str = "raw"
    cli: bool = False


def _preload_kernels(config: ConsumerConfig) -> None:
    """Load a run's kernels before its stream appears.

    numba's first use costs about 0.5 s (mostly setting up its compiler state); the
    default z-score run's native kernel loads in milliseconds (or builds, once), and
    then numba is not needed at all.
    """
    scores = config.paths is not None and config.paths.scores is not None
    if config.type == "zscore" and not scores:
        from consumer.kernels.zscore_native import flags_kernel

        if flags_kernel() is not None:  # (its block mode still loads numba at first use)
            return
    from consumer.kernels.zscore import preload

    preload()


@dataclass
class Hooks:
    """Callbacks of a run: stop request, progress, start and log lines."""

    stop: StopRequest | threading.Event | None = None
    on_progress: Callable[[int], None] | None = None
    on_start: Callable[[StreamReader, Detector], None] | None = None
    log: Callable[[str], None] | None = None


class _Worker:
    """Per-thread read buffer + detector call."""

    def __init__(
        self, reader: StreamReader, detector: Detector, dense: bool, unit: bool = False
    ) -> None:
        self.reader = reader
        self.detector = detector
        self.dense = dense
        self.unit = unit
        self.local = threading.local()

    def __call__(self, chunk: int) -> ChunkResult:
        start, stop = self.reader.layout.bounds(chunk)
        ws, we = self.detector.window_for(start, stop)
        data = self._mapped(ws, we)
        if data is None:
            buf = getattr(self.local, "buf", None)
            if buf is None or len(buf) < we - ws:
                buf = np.empty(we - ws, self.reader.layout.dtype)
                self.local.buf = buf
            data = self.reader.read_into(ws, we, buf)
        idx, scores, dense = self.detector.process(data, ws, start, stop, self.dense)
        values = data[idx - ws].astype(np.float64)
        if self.unit and dense is not None:
            dense = self.detector.unit_scores(dense)
            dense[~np.isfinite(data[start - ws : stop - ws])] = np.nan  # missing: NaN
        return ChunkResult(chunk, start, stop, idx, values, scores, dense)

    def _mapped(self, ws: int, we: int) -> np.ndarray | None:
        """Samples ``[ws, we)`` mapped in place (``StreamReader.map_window``), or None
        (read instead) for readers that are not files."""
        if not isinstance(self.reader, StreamReader):
            return None
        return self.reader.map_window(ws, we)


def run_consumer(
    file: str | os.PathLike[str],
    config: ConsumerConfig | None = None,
    *,
    stop: StopRequest | threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[StreamReader, Detector], None] | None = None,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Process a stream (tailing it while it grows) and write all outputs.

    Parameters
    ----------
    file
        The stream, plain ``.npy`` or raw file.
    config
        The run's settings; or give them as keyword ``options`` (the fields of
        :class:`ConsumerConfig`).
    stop, on_progress, on_start, log
        See :class:`Hooks`.

    Returns
    -------
    dict
        The summary.  Raises ``ProducerFailed`` / ``Interrupted`` after publishing
        everything processed so far (resumable with ``resume=True``).
    """
    config = config or ConsumerConfig(**options)
    hooks = Hooks(stop or threading.Event(), on_progress, on_start, log)
    return _ConsumerRun(Path(file), config, hooks).run()


class _ConsumerRun:
    """One run: set-up (stream, detector, outputs), the scheduling loop, the finish.

    ``consumer.dask_engine`` runs the same set-up and finish with another reader
    (``_open_reader``), outputs (``outputs_class``) and scheduling loop (``run``).
    """

    outputs_class: type[Outputs] = Outputs
    storage_options: dict[str, Any] | None = None  # fsspec options of the stores it reads

    def __init__(self, file: Path, config: ConsumerConfig, hooks: Hooks) -> None:
        self.file, self.config, self.hooks = file, config, hooks
        self.threads = config.threads or os.cpu_count() or 1
        if config.score_scale not in ("raw", "unit"):
            raise UsageError(f"--score-scale must be raw or unit, not {config.score_scale!r}")
        self.table = _is_table(file, config)
        if config.wait_s > 0:
            _preload_kernels(config)  # while the producer starts up
            _wait_for_stream(file, config.labels, config.wait_s, hooks.stop)
        self.paths = config.paths or OutputPaths.for_input(file, table=self.table)
        if self.table and self.paths.series is None:
            self.paths.series = OutputPaths.for_input(file, table=True).series
        if config.labels is not None and labels_kind(config.labels) == "windows":
            check_windows_file(config.labels, self._labels_source_hint())
        self.conversion = self._read_table() if self.table else None
        self.cursor: Any = None  # a ring consumer's registration (shared.ring.RingCursor)
        try:
            data = self.paths.series if self.table else file
            self.reader = self._open_reader(data)
            if self.reader.is_ring:
                self._attach_ring()  # before anything reads the ring (a period estimate)
            doc = self.reader.doc
            self.grid = TimeGrid.from_json(doc.get("time")) if doc else None
            self.detector = self._make_detector()
            self.outputs = self._open_outputs()
        except BaseException:
            if self.cursor is not None:  # the ring's cursor as it was before this run
                self.cursor.abandon()
            if self.conversion is not None:  # nothing else was written: leave no trace
                for p in self._series_paths():
                    p.unlink(missing_ok=True)
            raise
        self.status = "complete"
        self.error: BaseException | None = None

    def _open_reader(self, data: Path) -> StreamReader:
        """The input: a stream, plain ``.npy`` or raw file (or a table's series file)."""
        config = self.config
        return StreamReader(data, raw_dtype=config.raw_dtype, chunk_size=config.chunk_size)

    def _read_table(self) -> Conversion | None:
        """Read a CSV / Parquet / Arrow input into the series file (refusing to clobber)."""
        config, paths = self.config, self.paths
        assert paths.series is not None
        if config.column is None:
            raise UsageError(f"{self.file}: a table input needs --column (the value column)")
        paths.check()
        if not config.resume and not config.overwrite:
            for p in paths.all():
                if p.exists():
                    raise UsageError(f"{p} exists; pass --overwrite to replace it or --resume")
        options = TableOptions(config.column, config.timestamp, config.format, config.max_irregular)
        chunk = config.chunk_size or DEFAULT_CHUNK_SIZE
        if _series_matches(paths.series, self.file, options, chunk):
            return None  # read from this very input before (--resume, --overwrite): reuse it
        return convert(
            self.file,
            paths.series,
            options,
            chunk_size=chunk,
            stop=self.hooks.stop,
            log=self.hooks.log,
        )

    def _make_detector(self) -> Detector:
        reader, config = self.reader, self.config
        seas = reader.generation.get("seasonality") or {}
        # Several seasonal components are recorded as a list: their periods, as a tuple.
        period = tuple(c["period"] for c in seas) if isinstance(seas, list) else seas.get("period")
        series = SeriesInfo(
            reader.num_samples,
            seasonality_period=period,
            prefix=lambda n: _committed_prefix(reader, n),
            log=self.hooks.log,
            cadence_seconds=self.grid.cadence_seconds if self.grid else None,
        )
        detector = make_detector(config.type, config.params, series, cli=config.cli)
        if config.tolerance is not None:
            detector.tolerance = config.tolerance
        return detector

    def _labels_source_hint(self) -> Path:
        """The file NAB's windows are looked up for, before the stream is opened."""
        if self.table:
            return self.file
        try:
            doc = json.loads(sidecar_path(self.file).read_text())
            return Path(doc["source"]["path"])
        except (OSError, ValueError, KeyError, TypeError):
            return self.file

    def _labels_source(self) -> Path:
        """The file whose path names the input in NAB's windows (a replay's original)."""
        source = (self.reader.doc or {}).get("source") or {}
        if not self.table and source.get("path"):
            return Path(source["path"])
        return self.file

    def _open_outputs(self) -> Outputs:
        reader, paths = self.reader, self.paths
        identity = {
            "input": str(self.file.resolve()),
            "num_samples": reader.num_samples,
            "chunk_size": reader.layout.chunk_size,
            "detector": self.detector.describe(),
            "scores": str(paths.scores) if paths.scores else None,
        }
        if self.config.score_scale != "raw":
            identity["score_scale"] = self.config.score_scale
        if self.table:
            identity["source"] = (reader.doc or {}).get("source")
        checkpoint = Checkpoint(paths.checkpoint, identity)
        if self.cursor is not None:
            checkpoint = _ReleasingCheckpoint(paths.checkpoint, identity, self._release)
        progress = _prepare_outputs(
            paths, checkpoint, self.config.resume, self.config.overwrite, skip=self._series_paths()
        )
        if self.cursor is not None:
            self._check_ring(progress.next_chunk if progress else 0)
        if self.config.labels is not None:
            # Validate now; read at the end, when the producer has written every label.
            if labels_kind(self.config.labels) == "points":
                load_labels(self.config.labels, self.storage_options)
            else:
                self._windows()
        if progress is None:
            # Checkpoint "nothing done" before any output exists, so that a crash before the
            # first publish can be resumed (the outputs would be refused without --overwrite).
            checkpoint.save(Progress())
        return self.outputs_class(
            indices=paths.indices,
            parquet=paths.parquet,
            summary=paths.summary,
            checkpoint=checkpoint,
            scores=paths.scores,
            num_samples=reader.num_samples,
            resume=progress,
            grid=self.grid,
        )

    def _attach_ring(self) -> None:
        """Register on the ring holding every chunk it still has, and wait for the producer's
        acknowledgement (``shared.ring``): from then on it overwrites nothing we hold."""
        from shared.ring import RingCursor, consumer_name

        self.cursor = RingCursor(self.reader.path, consumer_name(self.paths.checkpoint))
        self.cursor.register(0)
        self.ring_first = self.cursor.wait_ack(self.reader, self.config.timeout, self.hooks.stop)

    def _check_ring(self, next_chunk: int) -> None:
        """Refuse a ring that cannot serve this run (before any output is written), then
        release what it does not need."""
        from shared.ring import RingMissed

        layout, detector = self.reader.layout, self.detector
        span, slots = window_chunks(layout, detector), layout.slots
        if span > slots:
            raise UsageError(
                f"{self.file}: the ring has {slots} slots but a {detector.name} window spans "
                f"{span} chunks; use a larger --ring (or smaller chunks) for this detector"
            )
        need = needed_chunk(layout, detector, next_chunk)
        if self.ring_first > need:
            raise RingMissed(
                f"{self.file}: missed chunks {need}..{self.ring_first - 1}: the ring "
                f"overwrote them before this consumer attached (it holds chunks from "
                f"{self.ring_first} on); start consumers before the ring wraps (the producer's "
                "--ring-consumers) or use a larger --ring"
            )
        self.cursor.release(need)

    def _release(self, next_chunk: int) -> None:
        """A checkpoint of ``next_chunk`` is durable: its earlier chunks may be overwritten."""
        self.cursor.release(needed_chunk(self.reader.layout, self.detector, next_chunk))

    def _series_paths(self) -> list[Path]:
        """The series file and its sidecar, written just now by this run (not to be refused)."""
        if not self.table or self.paths.series is None:
            return []
        return [self.paths.series, sidecar_path(self.paths.series)]

    def _windows(self) -> np.ndarray:
        assert self.config.labels is not None
        return load_windows(
            self.config.labels, self._labels_source(), self.grid, self.reader.num_samples
        )

    def run(self) -> dict[str, Any]:
        outputs, hooks = self.outputs, self.hooks
        if hooks.on_start:
            hooks.on_start(self.reader, self.detector)
        self.already = outputs.samples_done
        dense = self.paths.scores is not None
        unit = self.config.score_scale == "unit"
        tail = Tail(
            self.reader,
            self.detector,
            first_chunk=outputs.next_chunk,
            follow=self.config.follow,
            timeout=self.config.timeout,
            cursor=self.cursor,
        )
        self.detector.warm_up(self.reader.layout.dtype, dense)
        self.t0 = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="detect")
        inflight: dict[int, Future[ChunkResult]] = {}
        done: dict[int, ChunkResult] = {}
        try:
            self._schedule(
                tail, pool, _Worker(self.reader, self.detector, dense, unit), inflight, done
            )
        except BaseException as e:
            self.error = e
            if not isinstance(e, ProducerFailed):
                for f in inflight.values():
                    f.cancel()  # a dead producer leaves committed chunks worth finishing
            raise
        finally:
            pool.shutdown(wait=True)
            self.final = self._finish(inflight, done)
        return self.final

    def _schedule(self, tail: Tail, pool, worker, inflight, done) -> None:
        """Submit ready chunks, collect results, feed the sinks in order until the end."""
        outputs, stop = self.outputs, self.hooks.stop
        while not (tail.exhausted and not inflight):
            if stop.is_set():
                raise (
                    stop.interrupted() if isinstance(stop, StopRequest) else StreamError("stopped")
                )
            for chunk in tail.poll_ready(2 * self.threads - len(inflight)):
                inflight[chunk] = pool.submit(worker, chunk)
            if tail.wants_release(outputs.next_chunk):
                outputs.publish(self.summary())  # its checkpoint frees the producer's slots
            if not inflight:
                time.sleep(tail.poll_interval)
                continue
            finished, _ = wait(list(inflight.values()), timeout=0.05, return_when=FIRST_COMPLETED)
            for fut in finished:
                r = fut.result()
                del inflight[r.chunk]
                done[r.chunk] = r
            self._drain_in_order(outputs, done)
        if outputs.samples_done < self.reader.num_samples:
            self.status = "partial"  # --no-follow on an incomplete stream

    def _drain_in_order(self, outputs: Outputs, done: dict[int, ChunkResult]) -> None:
        """Hand the sinks every result that continues the chunk order; maybe publish."""
        while outputs.next_chunk in done:
            r = done.pop(outputs.next_chunk)
            outputs.add(r)
            if self.hooks.on_progress:
                self.hooks.on_progress(r.stop - r.start)
        outputs.maybe_publish(self.summary)

    def _finish(self, inflight, done) -> dict[str, Any]:
        """Keep every result finished in order, publish, and complete the summary."""
        outputs = self.outputs
        # Whatever happened, results of chunks finished in order are kept, including
        # those still in flight when the error struck.
        for c, f in inflight.items():
            if f.done() and not f.cancelled() and f.exception() is None:
                done[c] = f.result()
        for chunk in sorted(done):
            if chunk == outputs.next_chunk:
                outputs.add(done[chunk])
        final = self.summary()
        try:
            outputs.publish(final, final=self.error is None)
        finally:
            outputs.close()
            self.reader.close()
            if self.cursor is not None:  # done: unregister; else kept for --resume
                self.cursor.close(done=self.error is None)
        if self.error is None:
            if self.config.labels is not None:
                flags = np.load(self.paths.indices, mmap_mode="r")
                if labels_kind(self.config.labels) == "points":
                    labels = load_labels(self.config.labels, self.storage_options)
                    final.update(label_figures(flags, labels, self.detector.tolerance))
                else:
                    figures = event_figures(
                        flags, self._windows(), self.reader.num_samples, self.grid
                    )
                    final["events"] = figures
            atomic_write_json(self.paths.summary, final, fsync=False)
        return final

    def summary(self) -> dict[str, Any]:
        """The summary as of now (built only when it is published)."""
        from shared.metrics import peak_rss_bytes

        outputs, paths = self.outputs, self.paths
        seconds = time.perf_counter() - self.t0
        processed = outputs.samples_done - self.already
        s: dict[str, Any] = {
            "status": self.status if self.error is None else "incomplete",
            "file": str(self.file),
            "samples": outputs.samples_done,
            "samples_total": self.reader.num_samples,
            "anomalies": outputs.anomalies,
            "seconds": round(seconds, 4),
            "samples_per_s": processed / seconds if seconds > 0 else 0.0,
            "finished_at": time.time(),
            "peak_rss_bytes": peak_rss_bytes(),
            "threads": self.threads,
            "detector": self.detector.describe(),
            "outputs": {
                "indices": str(paths.indices),
                "parquet": str(paths.parquet),
                "scores": str(paths.scores) if paths.scores else None,
            },
        }
        if self.config.score_scale != "raw":
            s["score_scale"] = self.config.score_scale
        if self.grid is not None:
            s["time_range"] = self._time_range(outputs.samples_done)
        if self.table:
            doc = self.reader.doc or {}
            s["input"] = {
                "format": (doc.get("source") or {}).get("format"),
                "rows": doc.get("rows"),
                "missing_samples": doc.get("missing_samples"),
                "irregular_rows": doc.get("irregular_rows"),
                "series": str(self.paths.series),
                "series_reused": self.conversion is None,
                "read_seconds": round(self.conversion.seconds, 4) if self.conversion else None,
            }
        if self.error is not None:
            s["error"] = str(self.error)
        return s

    def _time_range(self, done: int) -> dict[str, Any]:
        """First and last timestamps of the series (and of the samples processed)."""
        g, n = self.grid, self.reader.num_samples
        assert g is not None
        out: dict[str, Any] = {"start": g.format(0), "end": g.format(n - 1), "unit": g.unit}
        out["cadence"] = g.cadence
        if g.unit == "ns":
            out["cadence_seconds"] = g.cadence_seconds
        if 0 < done < n:
            out["processed_until"] = g.format(done - 1)
        return out


class _ReleasingCheckpoint(Checkpoint):
    """A ring consumer's checkpoint: once saved, ``release(next_chunk)`` lets the producer
    reuse the slots of the chunks it makes unnecessary (never before it is durable, so
    ``--resume`` never needs a chunk the ring no longer holds)."""

    def __init__(self, path: Path, identity: dict[str, Any], release: Callable[[int], None]):
        super().__init__(path, identity)
        self.release = release

    def save(self, progress: Progress) -> None:
        """Save, then release."""
        super().save(progress)
        self.release(progress.next_chunk)


def _committed_prefix(reader: StreamReader, n: int) -> np.ndarray:
    """Up to the first ``n`` samples of the stream's committed prefix."""
    committed = reader.poll().committed
    chunks = int(np.argmin(committed)) if not committed.all() else len(committed)
    available = min(reader.num_samples, chunks * reader.layout.chunk_size, n)
    return reader.read(0, available) if available else np.empty(0)


def _wait_for_stream(
    file: Path, labels: str | os.PathLike[str] | None, wait_s: float, stop: Any
) -> None:
    """Wait up to ``wait_s`` seconds for a producer to create the stream (and labels file).

    Lets a consumer start before its producer, so that both start up at once.
    """
    from shared.zarr_store import is_zarr

    needed = [file, sidecar_path(file)]
    if labels is not None and not is_zarr(labels):  # a store's labels are read at the end
        needed.append(Path(labels))
    deadline = time.monotonic() + wait_s
    while not all(p.exists() for p in needed):
        if stop is not None and stop.is_set():
            raise stop.interrupted() if isinstance(stop, StopRequest) else StreamError("stopped")
        if time.monotonic() > deadline:
            missing = next(p for p in needed if not p.exists())
            raise StreamError(f"{missing}: did not appear within {wait_s:g} s (--wait)")
        time.sleep(0.01)
    # The sidecar is published before the data header; give the header a moment too.
    while True:
        try:
            read_npy_header(file)
            return
        except (FormatError, UsageError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _prepare_outputs(
    paths: OutputPaths,
    checkpoint: Checkpoint,
    resume: bool,
    overwrite: bool,
    skip: list[Path] | None = None,
) -> Progress | None:
    """Refuse to clobber; on --resume, validate and return the checkpoint's progress.

    ``skip``: outputs this run has already written (a table input's series).
    A run saves its checkpoint before it creates any other output, so whatever a
    kill leaves can be resumed: no checkpoint and no output (killed before or
    while saving it) starts afresh; a checkpoint of no chunk restarts; a later
    one continues.  Outputs without a checkpoint are not a resumable run's and
    are refused.  Temporary files a killed run left beside the outputs go.
    """
    paths.check()
    present = [p for p in paths.all() if p.exists() and not (skip and p in skip)]
    if not resume:
        if present and not overwrite:
            raise UsageError(f"{present[0]} exists; pass --overwrite to replace it or --resume")
        _remove_stale_temps(paths)
        return None
    if not paths.checkpoint.exists():
        if present:
            raise UsageError(
                f"{paths.checkpoint}: no checkpoint to resume from, but {present[0]} exists "
                "(--overwrite replaces it)"
            )
        _remove_stale_temps(paths)
        return None  # killed before its first checkpoint: nothing was written yet
    progress = checkpoint.load()
    _remove_stale_temps(paths)
    if progress.next_chunk == 0:
        return None  # nothing kept yet: start afresh
    if not paths.indices.exists() or not paths.parquet.exists():
        raise FormatError("outputs named in the checkpoint are missing; cannot resume")
    # Its header may lag behind its data (indices appended since the last publish, cut
    # off on resume): check the bytes present, not the count in the header.
    with open(paths.indices, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":
        raise FormatError(f"{paths.indices}: not an NPY file (bad magic)")
    if paths.indices.stat().st_size < INDEX_HEADER_LEN + 8 * progress.indices:
        raise FormatError(f"{paths.indices}: shorter than the checkpoint")
    return progress


def _remove_stale_temps(paths: OutputPaths) -> None:
    """Temporary files that a killed run left beside its outputs (``.<name>.tmp`` and
    ``.<name>.<pid>.<thread>.tmp``, the names of atomic replacements), and the rows
    dataset's directory being created (``.<name>.<pid>.tmp``, ``ParquetDataset``)."""
    for p in paths.all():
        for tmp in [*p.parent.glob(f".{glob.escape(p.name)}.tmp"), *atomic_temps(p)]:
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
            elif tmp.is_dir() and p == paths.parquet:
                shutil.rmtree(tmp, ignore_errors=True)


def _is_table(file: Path, config: ConsumerConfig) -> bool:
    """Whether ``file`` is a CSV / Parquet / Arrow input (by --format or its suffix)."""
    if config.raw_dtype is not None:
        return False
    if file.is_dir() and not (config.column or config.format):
        return False  # a folder is a Parquet dataset only when a column is asked for
    fmt = input_format(file, config.format)
    if fmt == "npy" and (config.column or config.timestamp):
        if not file.is_dir() and file.suffix.lower() == ".npy":
            raise UsageError(
                f"{file}: --column and --timestamp are for CSV, Parquet and Arrow inputs"
            )
    return fmt != "npy"


def _series_matches(series: Path, source: Path, options: TableOptions, chunk: int) -> bool:
    """Whether ``series`` is complete and was read from ``source`` as it is now, with these
    options and chunk size (then reading the input again would write the same bytes)."""
    try:
        doc = json.loads(sidecar_path(series).read_text())
        size = series.stat().st_size
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    src = doc.get("source") or {}
    try:
        whole = size == int(doc["header_len"]) + 8 * int(doc["num_samples"])
    except (KeyError, TypeError, ValueError):
        return False
    return (
        whole
        and doc.get("status") == "complete"
        and doc.get("chunk_size") == chunk
        and src.get("path") == str(source.resolve())
        and {k: src.get(k) for k in ("size", "mtime_ns")} == source_signature(source)
        and doc.get("table") == options.to_json()
    )
