"""Error types shared by both command-line programs.

Each carries the exit status the CLIs use for it, so a caught error maps to one
line on stderr and a status without any per-call-site bookkeeping.
"""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error this project raises on purpose."""

    exit_code = 1


class UsageError(StreamError, ValueError):
    """Bad arguments or parameters (exit status 2)."""

    exit_code = 2


class FormatError(StreamError):
    """A file that is not a valid stream, NPY file or sidecar (exit status 1)."""


class ProducerFailed(StreamError):
    """The producer of a tailed stream reported failure or stopped beating."""


class Interrupted(StreamError):
    """Stopped by SIGINT or SIGTERM; exit status is 128 + signal number."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """Set by a signal handler; long-running loops poll it and wind down cleanly."""

    def __init__(self) -> None:
        import threading

        self._event = threading.Event()
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        """Ask for a stop on behalf of signal ``signum``."""
        self.signum = signum
        self._event.set()

    def set(self) -> None:
        """Ask for a stop (no signal)."""
        self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for a stop request; whether one came."""
        return self._event.wait(timeout)

    def interrupted(self) -> Interrupted:
        """The ``Interrupted`` error to raise for this request."""
        import signal

        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        return Interrupted(signum, f"interrupted by {name}; state is consistent, use --resume")
