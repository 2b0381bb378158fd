"""Helpers for tests that drive real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _all_threads_stopped(pid: int) -> bool:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        # /proc/PID/task/TID/stat: "tid (comm) STATE ..."; comm may hold spaces
        states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True  # gone (or going): nothing left that could write
    return all(s in ("T", "t", "Z", "X") for s in states)


def pause(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGSTOP ``proc`` and return once every thread has actually stopped.

    ``kill`` returns before the signal is acted on, and a thread inside a write
    finishes that write first; reading the child's files right after ``kill``
    can therefore race with it.
    """
    os.kill(proc.pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while not _all_threads_stopped(proc.pid):
        if proc.poll() is not None:
            return
        assert time.monotonic() < deadline, f"pid {proc.pid} did not stop"
        time.sleep(0.0005)
