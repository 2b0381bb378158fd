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
