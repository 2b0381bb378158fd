"""Command-line plumbing shared by ``python -m producer`` and ``python -m consumer``.

One-line errors with the right exit status (2 usage, 1 runtime, 128+N signal),
no traceback unless ``--debug``, and SIGINT/SIGTERM turned into a polled stop
request so that work winds down with consistent state.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

from shared.errors import StopRequest, StreamError


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print the usage error as one line and exit with status 2."""
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def install_signal_handlers(stop: StopRequest) -> None:
    """Turn SIGINT/SIGTERM into ``stop.request`` (a second signal exits at once)."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            # A second signal while winding down: give up at once.
            raise SystemExit(128 + signum)
        stop.request(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "SIGXFSZ"):
        # Past RLIMIT_FSIZE, write() must fail with EFBIG instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def run_cli(
    prog: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace, StopRequest], int],
    argv: list[str] | None = None,
) -> int:
    """Parse ``argv``, run ``body(args, stop)`` and map errors to one line + status."""
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    stop = StopRequest()
    install_signal_handlers(stop)
    try:
        return body(args, stop)
    except StreamError as e:
        if debug:
            raise
        sys.stderr.write(f"{prog}: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except OSError as e:
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        sys.stderr.write(f"{prog}: error: {where}{e.strerror or e}\n")
        return 1
    except Exception as e:  # noqa: BLE001 - last resort: one line, details with --debug
        if debug:
            raise
        sys.stderr.write(f"{prog}: internal error: {type(e).__name__}: {e} (rerun with --debug)\n")
        return 1


def exit_now(status: int) -> None:
    """End a finished ``python -m`` command without the interpreter's teardown.

    With numba's kernels loaded, tearing the interpreter down takes 0.15-0.2 s
    here (measured), which every run, and single_machine.py's wall clock, would
    pay after the work is done.  By the time ``main`` returns every file this
    package wrote is closed or atomically replaced and every worker thread is
    joined; only the standard streams still need flushing.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed pipe or stream: nothing left to deliver
            pass
    os._exit(status)


class Progress:
    """A side's live progress: a tqdm bar on a terminal and an optional metrics file.

    ``start(total, initial)`` begins both, ``advance(k)`` (thread-safe, from
    worker threads) counts samples done, ``close()`` ends both.

    Parameters
    ----------
    role
        ``"producer"`` or ``"consumer"``: the bar's label and the metrics role.
    quiet
        No bar.
    metrics, interval
        Metrics JSONL path (or None) and its sampling interval in seconds.
    """

    def __init__(self, role: str, *, quiet: bool, metrics: str | None, interval: float) -> None:
        import threading

        self.role, self.quiet, self.metrics, self.interval = role, quiet, metrics, interval
        self.lock = threading.Lock()
        self.bar = self.recorder = None
        self.done = 0

    def start(self, total: int, initial: int = 0) -> None:
        """Start the bar and the metrics recorder at ``initial`` of ``total`` samples."""
        self.done = initial
        if not self.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                unit="S",
                unit_scale=True,
                desc=self.role,
                file=sys.stderr,
                smoothing=0.1,
            )
        if self.metrics:
            from shared.metrics import MetricsRecorder

            self.recorder = MetricsRecorder(
                self.metrics, self.role, lambda: self.done, total=total, interval=self.interval
            ).start()

    def advance(self, k: int) -> None:
        """Count ``k`` more samples done (thread-safe)."""
        with self.lock:
            self.done += k
            if self.bar is not None:
                self.bar.update(k)

    def close(self) -> None:
        """Close the bar and write the recorder's final line."""
        if self.bar is not None:
            self.bar.close()
        if self.recorder is not None:
            self.recorder.stop()
