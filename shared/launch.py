"""Start ``python -m module ...`` commands as forked children of a process that has
already imported what they need (a zygote), with ``subprocess.Popen``'s interface.

A fresh interpreter spends most of its start-up importing numpy, numba and pyarrow
(about 0.6 s here, ``import numba`` alone 0.4 s), and ``single_machine.py`` starts
two of them on a 2-core machine while the producer is already generating.  A forked
child inherits the imports (copy-on-write) and runs the module exactly as ``python
-m`` would (``runpy.run_module(..., run_name="__main__")`` with its ``sys.argv``),
so its behaviour, output and exit status are those of the command.

Only on Linux, and only from a process that has started no threads yet (a fork
copies just the calling thread); elsewhere :func:`start` runs the command itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence

CAN_FORK = sys.platform.startswith("linux")


def preload(modules: Sequence[str]) -> None:
    """Import ``modules`` now, so that every child started later inherits them (nothing
    where children are fresh interpreters, which would import them again)."""
    import importlib

    if not CAN_FORK:
        return
    for name in modules:
        importlib.import_module(name)


class Forked:
    """A child running ``python -m module *args``: ``pid``, text ``stdout`` and
    ``stderr`` pipes, ``poll``, ``wait``, ``send_signal`` and ``returncode`` as Popen's."""

    def __init__(self, module: str, args: Sequence[str]) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing buffered here may be written twice
        self.pid = os.fork()
        if self.pid == 0:
            try:  # the child never returns into the parent's code, whatever fails here
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (out_r, out_w, err_r, err_w):
                    os.close(fd)
                _run_module(module, list(args))  # leaves with os._exit
            finally:
                os._exit(1)
        os.close(out_w)
        os.close(err_w)
        self.stdout = open(out_r, encoding="utf-8", errors="replace")
        self.stderr = open(err_r, encoding="utf-8", errors="replace")
        self.returncode: int | None = None
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        """The exit status if the child has exited (negative: killed by that signal)."""
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def wait(self) -> int:
        """Wait for the child to exit; its status."""
        with self._lock:
            if self.returncode is None:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child unless it has been reaped."""
        if self.poll() is None:
            os.kill(self.pid, sig)


def _run_module(module: str, args: list[str]) -> None:
    """In the child: run ``module`` as ``__main__`` with ``args``, then leave at once."""
    status = 0
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for stream in (sys.stdout, sys.stderr):
            stream.reconfigure(line_buffering=True)  # as PYTHONUNBUFFERED for a pipe
        sys.argv = [module, *args]
        import runpy

        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:  # argparse, sys.exit: what python -m would exit with
        code = e.code
        if code is not None and not isinstance(code, int):
            sys.stderr.write(f"{code}\n")
            code = 1
        status = code or 0
    except KeyboardInterrupt:
        status = 130
    except BaseException:  # noqa: BLE001 - the traceback python -m would print
        traceback.print_exc()
        status = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def start(cmd: Sequence[str], **popen: object) -> Forked | subprocess.Popen:
    """Start ``cmd``: forked when it is ``[sys.executable, "-m", module, ...]`` and this
    platform forks safely, else with ``subprocess.Popen(cmd, **popen)``."""
    cmd = list(cmd)
    forkable = CAN_FORK and len(cmd) >= 3 and cmd[0] == sys.executable and cmd[1] == "-m"
    if forkable and threading.active_count() == 1:
        return Forked(cmd[2], cmd[3:])
    return subprocess.Popen(cmd, **popen)  # type: ignore[call-overload]
