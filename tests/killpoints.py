"""Test-only crash injection: SIGKILL a CLI run just before its k-th change to a file.

Only the tests use this (``tests/test_reliability.py``); the programs know nothing of it.

:class:`Zygote` starts one helper process (this file run as a script) that imports the
producer and the consumer and loads their numba kernels once.  ``zygote.run(module,
argv, cwd, kill_at=k)`` forks a child of it that runs ``module``'s ``main(argv)`` (the
function ``python -m module`` runs) in ``cwd``.  The child counts the calls that change
files under ``cwd`` (``os.open`` with a writing flag, ``write``, ``pwrite``, ``ftruncate``,
``truncate``, ``posix_fallocate``, ``replace``, ``rename``, ``link``, ``unlink``,
``mkdir``, ``rmdir``, and ``open`` for writing) and, with ``kill_at=k``, sends itself
SIGKILL just before the k-th: the run dies with exactly its first ``k - 1`` file changes
done.  So ``k = 1, 2, ...`` reaches every state a run can leave on disk, its set-up
included, however short that window is in real time.  Forking from a warm process
makes a run cost tens of milliseconds instead of an interpreter start-up.  Changes
outside ``cwd`` (numba's cache) are neither counted nor interrupted.  Writes that
native code makes itself (pyarrow writing a Parquet file's bytes) are not counted
either; the ``os.replace`` that publishes such a file is.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class Outcome:
    """What one forked run did: exit status (negative: signal), counted file changes, output.

    ``killed_at`` is ``(operation, path relative to cwd)`` of the change it was killed
    before, or None when it ran to its end.
    """

    returncode: int
    changes: int
    killed_at: tuple[str, str] | None
    stdout: str
    stderr: str


class Zygote:
    """The warm helper process; ``run`` forks one CLI run from it (one at a time)."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(REPO),
        )
        ready = self.proc.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"kill-point zygote failed to start: {self.proc.stderr.read()}")

    def run(
        self, module: str, argv: list[object], cwd: Path, kill_at: int | None = None
    ) -> Outcome:
        """``python -m module *argv`` in ``cwd``, forked; SIGKILLed before change ``kill_at``."""
        request = {"module": module, "argv": [str(a) for a in argv], "cwd": str(cwd)}
        self.proc.stdin.write(json.dumps({**request, "kill_at": kill_at}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"kill-point zygote died: {self.proc.stderr.read()}")
        r = json.loads(reply)
        killed = tuple(r["killed_at"]) if r["killed_at"] else None
        return Outcome(r["returncode"], r["changes"], killed, r["stdout"], r["stderr"])

    def close(self) -> None:
        """End the helper process."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- inside the forked child -------------------------------------------------------------


class _Counter:
    """Counts file changes under ``root``; SIGKILLs the process before change ``kill_at``."""

    def __init__(self, root: str, kill_at: int | None, report_fd: int) -> None:
        self.root = root.rstrip(os.sep) + os.sep
        self.kill_at = kill_at
        self.report_fd = report_fd
        self.count = 0
        self.fds: set[int] = set()  # descriptors opened for writing under root
        self.lock = threading.Lock()

    def inside(self, path: object) -> bool:
        if isinstance(path, int):
            return False
        return os.path.abspath(os.fsdecode(os.fspath(path))).startswith(self.root)

    def change(self, op: str, path: object) -> None:
        """Count one change of ``path`` (or of descriptor ``path``); die if it is the chosen one."""
        with self.lock:
            self.count += 1
            if self.count != self.kill_at:
                return
            if isinstance(path, int):
                path = os.readlink(f"/proc/self/fd/{path}")
            where = os.path.relpath(os.path.abspath(os.fsdecode(os.fspath(path))), self.root)
            self.report(killed_at=[op, where])
            os.kill(os.getpid(), signal.SIGKILL)

    def report(self, killed_at: list[str] | None = None) -> None:
        doc = json.dumps({"changes": self.count, "killed_at": killed_at}).encode()
        _real["write"](self.report_fd, doc)


_real: dict[str, object] = {}


def _install(counter: _Counter) -> None:
    """Wrap the ``os`` calls (and ``open``) that change files, counting those under root."""
    real = {
        name: getattr(os, name)
        for name in (
            "open",
            "write",
            "pwrite",
            "ftruncate",
            "truncate",
            "posix_fallocate",
            "replace",
            "rename",
            "link",
            "unlink",
            "remove",
            "mkdir",
            "rmdir",
            "close",
        )
    }
    real["io_open"] = io.open
    _real.update(real)

    def os_open(path, flags, *a, **kw):
        watched = counter.inside(path) and flags & _WRITE_FLAGS
        if watched:
            counter.change("open", path)
        fd = real["open"](path, flags, *a, **kw)
        if watched:
            counter.fds.add(fd)
        return fd

    def os_close(fd):
        counter.fds.discard(fd)
        return real["close"](fd)

    def on_fd(name):
        def call(fd, *a, **kw):
            if fd in counter.fds:
                counter.change(name, fd)
            return real[name](fd, *a, **kw)

        return call

    def on_path(name):
        def call(path, *a, **kw):
            if counter.inside(path):
                counter.change(name, path)
            return real[name](path, *a, **kw)

        return call

    def on_target(name):
        def call(src, dst, *a, **kw):
            if counter.inside(dst) or counter.inside(src):
                counter.change(name, dst)
            return real[name](src, dst, *a, **kw)

        return call

    def io_open(file, mode="r", *a, **kw):
        if counter.inside(file) and any(c in mode for c in "wax+"):
            counter.change("open", file)
        return real["io_open"](file, mode, *a, **kw)

    os.open, os.close = os_open, os_close
    for name in ("write", "pwrite", "ftruncate", "posix_fallocate"):
        setattr(os, name, on_fd(name))
    for name in ("truncate", "unlink", "remove", "mkdir", "rmdir"):
        setattr(os, name, on_path(name))
    for name in ("replace", "rename", "link"):
        setattr(os, name, on_target(name))
    io.open = builtins.open = io_open


def _child(request: dict, out_path: str, err_path: str, report_fd: int) -> None:
    """The forked child: redirect output, arm the counter, run the CLI, exit with its status."""
    out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(request["cwd"])
    counter = _Counter(request["cwd"], request["kill_at"], report_fd)
    _install(counter)
    status = 1
    try:
        module = __import__(f"{request['module']}.__main__", fromlist=["main"])
        status = module.main(request["argv"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        counter.report()
        os._exit(status)


def _serve() -> None:
    """The zygote: import and warm up everything once, then fork one child per request."""
    import consumer.__main__
    import producer.__main__
    from consumer.kernels import zscore
    from producer.generate import BlockGenerator
    from producer.write import write_stream  # noqa: F401
    from shared.params import generation_params

    zscore.preload()
    BlockGenerator(generation_params(anomalies={"rate": 0.01}), 10).warm_up()
    tmp = tempfile.mkdtemp(prefix="killpoints-")
    # One small run of each program here, so that the forks find everything loaded
    # (lazy imports, numba dispatchers); their threads have ended before any fork.
    warm = ["--num_samples", "70000", "--file", os.path.join(tmp, "w.npy"), "--quiet"]
    csv = os.path.join(tmp, "t.csv")
    with open(csv, "w") as fh:
        fh.write("t,v\n" + "".join(f"2024-01-01T00:{i:02d}:00,{i % 7 or ''}\n" for i in range(60)))
    for status in (
        producer.__main__.main([*warm, "--anomalies", '{"rate": 0.01}', "--threads", "2"]),
        consumer.__main__.main([*warm[2:], "--threads", "2", "--scores", f"{tmp}/w.d.npy"]),
        consumer.__main__.main(["--file", csv, "--column", "v", "--timestamp", "t", "--quiet"]),
    ):
        if status != 0:
            raise RuntimeError(f"kill-point zygote: a warm-up run exited {status}")
    # Native pools that live from import on (OpenBLAS's workers, jemalloc's background
    # thread) reinitialise themselves in a forked child; no Python thread may be left.
    if threading.active_count() != 1:
        raise RuntimeError(f"kill-point zygote: {threading.enumerate()} alive; cannot fork")
    out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _child(request, out_path, err_path, w)
            finally:
                os._exit(1)
        os.close(w)
        with os.fdopen(r, "rb") as fh:
            report = fh.read()
        _, status = os.waitpid(pid, 0)
        rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        doc = json.loads(report) if report else {"changes": -1, "killed_at": None}
        with open(out_path) as o, open(err_path) as e:
            doc.update(returncode=rc, stdout=o.read(), stderr=e.read())
        print(json.dumps(doc), flush=True)


if __name__ == "__main__":
    _serve()
