"""The consumer pipeline: tail -> pool of detector workers -> in-order sinks.

Workers (``--threads``) each read a chunk plus its halo with ``preadv`` into a
reused per-thread buffer and run a ``nogil`` numba kernel, so they run in
parallel; the main thread polls the stream, schedules ready chunks (at most
``2 x threads`` in flight, which bounds memory), and hands results to the sinks
in chunk order.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from consumer.detect import ChunkResult, Detector, make_detector
from consumer.sink import INDEX_HEADER_LEN, Outputs, label_figures
from consumer.tail import Tail
from shared.errors import FormatError, ProducerFailed, StopRequest, StreamError, UsageError
from shared.stream import (
    StreamReader,
    atomic_write_json,
    check_output_path,
    read_npy_header,
    sibling,
    sidecar_path,
)

CHECKPOINT_VERSION = 1


@dataclass
class OutputPaths:
    indices: Path
    parquet: Path
    summary: Path
    checkpoint: Path
    scores: Path | None

    @classmethod
    def for_input(
        cls,
        file: Path,
        *,
        out: str | None = None,
        indices: str | None = None,
        summary: str | None = None,
        scores: str | None = None,
    ) -> OutputPaths:
        return cls(
            indices=Path(indices) if indices else sibling(file, ".anomalies.npy"),
            parquet=Path(out) if out else sibling(file, ".anomalies.parquet"),
            summary=Path(summary) if summary else sibling(file, ".summary.json"),
            checkpoint=sibling(Path(indices) if indices else file, ".consumer.json"),
            scores=Path(scores) if scores else None,
        )

    def all(self) -> list[Path]:
        return [
            p
            for p in (self.indices, self.parquet, self.summary, self.checkpoint, self.scores)
            if p is not None
        ]


def load_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Sorted int64 labelled indices from a 1-D integer NPY file."""
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


class _Worker:
    """Per-thread read buffer + detector call."""

    def __init__(self, reader: StreamReader, detector: Detector, dense: bool) -> None:
        self.reader = reader
        self.detector = detector
        self.dense = dense
        self.local = threading.local()

    def __call__(self, chunk: int) -> ChunkResult:
        start, stop = self.reader.layout.bounds(chunk)
        ws, we = self.detector.window_for(start, stop)
        buf = getattr(self.local, "buf", None)
        if buf is None or len(buf) < we - ws:
            buf = np.empty(we - ws, self.reader.layout.dtype)
            self.local.buf = buf
        data = self.reader.read_into(ws, we, buf)
        idx, scores, dense = self.detector.process(data, ws, start, stop, self.dense)
        values = data[idx - ws].astype(np.float64)
        return ChunkResult(chunk, start, stop, idx, values, scores, dense)


def run_consumer(
    file: str | os.PathLike[str],
    *,
    type: str = "zscore",
    params: Any = None,
    threads: int | None = None,
    paths: OutputPaths | None = None,
    labels: str | os.PathLike[str] | None = None,
    tolerance: int | None = None,
    follow: bool = True,
    timeout: float = 10.0,
    raw_dtype: str | None = None,
    chunk_size: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    wait_s: float = 0.0,
    stop: StopRequest | threading.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[StreamReader, Detector], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Process a stream (tailing it while it grows) and write all outputs.

    Returns the summary dict.  Raises ``ProducerFailed`` / ``Interrupted`` after
    publishing everything processed so far (resumable with ``resume=True``).
    """
    file = Path(file)
    threads = threads or os.cpu_count() or 1
    stop = stop or threading.Event()
    if wait_s > 0:
        # numba's first use costs about 0.5 s (mostly setting up its compiler state):
        # pay it while the producer starts up, not after its stream appears.
        from consumer.kernels.zscore import preload

        preload()
        _wait_for_stream(file, labels, wait_s, stop)
    reader = StreamReader(file, raw_dtype=raw_dtype, chunk_size=chunk_size)
    context = {"generation": reader.generation, "reader": reader, "log": log}
    detector = make_detector(type, params, reader.num_samples, context)
    if tolerance is not None:
        detector.tolerance = tolerance
    paths = paths or OutputPaths.for_input(file)
    identity = {
        "checkpoint_version": CHECKPOINT_VERSION,
        "input": str(file.resolve()),
        "num_samples": reader.num_samples,
        "chunk_size": reader.layout.chunk_size,
        "detector": detector.describe(),
        "scores": str(paths.scores) if paths.scores else None,
    }
    resume_state = _prepare_outputs(paths, identity, resume, overwrite)
    if labels is not None:
        # Validate now; read at the end, when the producer has written every label.
        load_labels(labels)
    if resume_state is None:
        # Checkpoint "nothing done" before any output exists, so that a crash before the
        # first publish can be resumed (the outputs would be refused without --overwrite).
        atomic_write_json(
            paths.checkpoint,
            {**identity, "next_chunk": 0, "samples": 0, "indices": 0, "rows": 0, "final": False},
        )
    outputs = Outputs(
        indices=paths.indices,
        parquet=paths.parquet,
        summary=paths.summary,
        checkpoint=paths.checkpoint,
        scores=paths.scores,
        num_samples=reader.num_samples,
        resume_state=resume_state,
        identity=identity,
    )
    if on_start:
        on_start(reader, detector)
    first = outputs.next_chunk
    already = outputs.samples_done
    tail = Tail(reader, detector, first_chunk=first, follow=follow, timeout=timeout)
    worker = _Worker(reader, detector, paths.scores is not None)
    detector.warm_up(reader.layout.dtype, paths.scores is not None)
    t0 = time.perf_counter()
    status = "complete"
    error: BaseException | None = None

    def summary() -> dict[str, Any]:
        seconds = time.perf_counter() - t0
        processed = outputs.samples_done - already
        from shared.metrics import peak_rss_bytes

        s: dict[str, Any] = {
            "status": status if error is None else "incomplete",
            "file": str(file),
            "samples": outputs.samples_done,
            "samples_total": reader.num_samples,
            "anomalies": outputs.anomalies,
            "seconds": round(seconds, 4),
            "samples_per_s": processed / seconds if seconds > 0 else 0.0,
            "finished_at": time.time(),
            "peak_rss_bytes": peak_rss_bytes(),
            "threads": threads,
            "detector": detector.describe(),
            "outputs": {
                "indices": str(paths.indices),
                "parquet": str(paths.parquet),
                "scores": str(paths.scores) if paths.scores else None,
            },
        }
        if error is not None:
            s["error"] = str(error)
        return s

    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="detect")
    inflight: dict[int, Future[ChunkResult]] = {}
    done: dict[int, ChunkResult] = {}
    try:
        while not (tail.exhausted and not inflight):
            if stop.is_set():
                raise (
                    stop.interrupted() if isinstance(stop, StopRequest) else StreamError("stopped")
                )
            for chunk in tail.poll_ready(2 * threads - len(inflight)):
                inflight[chunk] = pool.submit(worker, chunk)
            if not inflight:
                time.sleep(tail.poll_interval)
                continue
            finished, _ = wait(list(inflight.values()), timeout=0.05, return_when=FIRST_COMPLETED)
            for fut in finished:
                r = fut.result()
                del inflight[r.chunk]
                done[r.chunk] = r
            while outputs.next_chunk in done:
                r = done.pop(outputs.next_chunk)
                outputs.add(r)
                if on_progress:
                    on_progress(r.stop - r.start)
            outputs.maybe_publish(summary())
        if outputs.samples_done < reader.num_samples:
            status = "partial"  # --no-follow on an incomplete stream
    except BaseException as e:
        error = e
        if not isinstance(e, ProducerFailed):
            for f in inflight.values():
                f.cancel()  # a dead producer leaves committed chunks worth finishing
        raise
    finally:
        pool.shutdown(wait=True)
        # Whatever happened, results of chunks finished in order are kept, including
        # those still in flight when the error struck.
        for c, f in inflight.items():
            if f.done() and not f.cancelled() and f.exception() is None:
                done[c] = f.result()
        for fut_chunk in sorted(done):
            if fut_chunk == outputs.next_chunk:
                outputs.add(done[fut_chunk])
        final = summary()
        try:
            outputs.publish(final, final=error is None)
        finally:
            outputs.close()
            reader.close()
        if error is None:
            if labels is not None:
                flags = np.load(paths.indices, mmap_mode="r")
                final.update(label_figures(flags, load_labels(labels), detector.tolerance))
            atomic_write_json(paths.summary, final, fsync=False)
    return final


def _wait_for_stream(
    file: Path, labels: str | os.PathLike[str] | None, wait_s: float, stop: Any
) -> None:
    """Wait up to ``wait_s`` seconds for a producer to create the stream (and labels file).

    Lets a consumer start before its producer, so that both start up at once.
    """
    needed = [file, sidecar_path(file)] + ([Path(labels)] if labels is not None else [])
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
    paths: OutputPaths, identity: dict[str, Any], resume: bool, overwrite: bool
) -> dict[str, Any] | None:
    """Refuse to clobber; on --resume, validate and return the checkpoint state."""
    for p in paths.all():
        check_output_path(p)
    if resume:
        if not paths.checkpoint.exists():
            raise UsageError(f"{paths.checkpoint}: no checkpoint to resume from")
        import json

        try:
            state = json.loads(paths.checkpoint.read_text())
        except ValueError:
            raise FormatError(f"{paths.checkpoint}: corrupt checkpoint") from None
        for key, value in identity.items():
            if state.get(key) != value:
                raise UsageError(
                    f"cannot resume: '{key}' differs from the checkpoint "
                    f"({state.get(key)!r} != {value!r})"
                )
        for key in ("next_chunk", "samples", "indices", "rows"):
            if not isinstance(state.get(key), int):
                raise FormatError(f"{paths.checkpoint}: corrupt checkpoint (no {key})")
        if state["next_chunk"] == 0:
            return None  # nothing kept yet: start afresh
        if not paths.indices.exists() or not paths.parquet.exists():
            raise FormatError("outputs named in the checkpoint are missing; cannot resume")
        # Its header may lag behind its data (indices appended since the last publish, cut
        # off on resume): check the bytes present, not the count in the header.
        with open(paths.indices, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY":
            raise FormatError(f"{paths.indices}: not an NPY file (bad magic)")
        if paths.indices.stat().st_size < INDEX_HEADER_LEN + 8 * state["indices"]:
            raise FormatError(f"{paths.indices}: shorter than the checkpoint")
        return state
    if not overwrite:
        for p in paths.all():
            if p.exists():
                raise UsageError(f"{p} exists; pass --overwrite to replace it or --resume")
    return None
