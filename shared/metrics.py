"""Periodic throughput and resource sampling to a JSON-lines file.

A recorder adds no work per data sample: a background thread calls the caller's
``progress()`` callback every ``interval`` seconds, so the hot loops only keep
the counter they already have.  Each sample is one JSON line, appended and
flushed at once so another process (or ``python -m shared.plot``) can read the
file while the run is live.
"""

from __future__ import annotations

import json
import math
import operator
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from shared.errors import FormatError, UsageError

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no getrusage
    resource = None  # type: ignore[assignment]

__all__ = ["MetricsRecorder", "peak_rss_bytes", "read_metrics"]


class MetricsRecorder:
    """Append ``{"t", "elapsed", "role", "pid", "samples", "total", "rss", "cpu"}`` lines.

    One line is written at ``start()``, one every ``interval`` seconds, and a
    last one (with ``"final": true``) at ``stop()``.  Usable as a context manager.
    """

    def __init__(
        self,
        path: Path | str,
        role: str,
        progress: Callable[[], int],
        total: int | None = None,
        interval: float = 0.5,
    ) -> None:
        if not isinstance(role, str) or not role:
            raise UsageError("metrics: role must be a non-empty string")
        if not callable(progress):
            raise UsageError("metrics: progress must be a callable returning a sample count")
        if total is not None:
            bad = f"metrics: total must be a non-negative integer, got {total!r}"
            if isinstance(total, bool):
                raise UsageError(bad)
            try:
                total = operator.index(total)  # accepts numpy integers too
            except TypeError:
                raise UsageError(bad) from None
            if total < 0:
                raise UsageError(bad)
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise UsageError(
                f"metrics: interval must be a positive number of seconds, got {interval!r}"
            )
        self.path = Path(path)
        self.role = role
        self.total = total
        self.interval = float(interval)
        self._progress = progress
        import psutil  # here, not at import: a run without --metrics never needs it

        self._proc = psutil.Process()
        self._pid = os.getpid()
        # Serialises the sampler thread against the final write in stop().
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: IO[str] | None = None
        self._t0 = 0.0
        self._last_samples = 0

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> MetricsRecorder:
        """Open the file and start sampling; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("MetricsRecorder.start() called twice")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered append: each record reaches the OS as soon as it is written.
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"metrics: cannot open {self.path} for appending: {exc.strerror or exc}"
            ) from None
        self._proc.cpu_percent(None)  # first call only sets the reference point
        self._t0 = time.monotonic()
        self._write_sample(final=False)
        self._thread = threading.Thread(target=self._run, name=f"metrics-{self.role}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Write the final line, stop the thread and close the file (idempotent)."""
        thread = self._thread
        if thread is None or self._file is None:
            return
        self._stop_event.set()
        thread.join()
        self._write_sample(final=True)
        with self._lock:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsRecorder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- sampling --------------------------------------------------------------

    def _run(self) -> None:
        # Deadlines on a fixed grid so the spacing does not drift by the write time.
        tick = 1
        while True:
            delay = self._t0 + tick * self.interval - time.monotonic()
            if self._stop_event.wait(max(0.0, delay)):
                return
            self._write_sample(final=False)
            # Skip ticks missed while starved of the GIL rather than bursting to catch up.
            behind = (time.monotonic() - self._t0) / self.interval
            tick = max(tick + 1, int(behind) + 1)

    def _write_sample(self, final: bool) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._last_samples = int(self._progress())
            except Exception:  # a failing callback must not kill sampling
                pass
            record: dict[str, Any] = {
                "t": time.time(),
                "elapsed": time.monotonic() - self._t0,
                "role": self.role,
                "pid": self._pid,
                "samples": self._last_samples,
                "total": self.total,
                "rss": self._proc.memory_info().rss,
                "cpu": self._proc.cpu_percent(None),
            }
            if final:
                record["final"] = True
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes.

    From ``getrusage`` (Linux takes the larger of the recorded high-water mark and
    the current RSS), so a summary needs no psutil import.
    """
    if resource is None:  # pragma: no cover - Windows: the current RSS
        import psutil

        return int(psutil.Process().memory_info().rss)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return int(maxrss) * scale


def read_metrics(path: Path | str) -> list[dict[str, Any]]:
    """Records of a metrics JSON-lines file, in file order.

    A last line without its newline may still be being written, so it is kept
    only if it parses; a malformed complete line raises ``FormatError``.
    ``OSError`` (missing file, ...) propagates.
    """
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    records: list[dict[str, Any]] = []
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = _parse_line(raw)
        if record is None:
            raise FormatError(f"{path}:{lineno}: not a JSON object")
        records.append(record)
    if tail.strip():
        record = _parse_line(tail)
        if record is not None:
            records.append(record)
    return records


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
