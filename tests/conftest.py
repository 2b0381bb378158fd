"""Shared fixtures: run the real command-line programs as subprocesses.

``run_module("producer", "--num_samples", "10", "--file", "x.npy")`` runs
``python -m producer ...`` with this interpreter (the venv's), in the test's
``tmp_path`` by default, and returns ``(returncode, stdout, stderr)``.
``spawn_module`` starts one without waiting (a ``subprocess.Popen``); every
process it starts is killed at teardown if the test left it running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CliResult = tuple[int, str, str]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``@pytest.mark.slow`` tests unless ``-m`` selects them (``-m slow``)."""
    expr = config.getoption("-m") or ""
    if "slow" in expr and "not slow" not in expr:
        return
    skip = pytest.mark.skip(reason="slow soak: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: unbuffered, the repo importable."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    env.pop("COLUMNS", None)
    if extra:
        env.update(extra)
    return env


def _argv(module: str | None, args: tuple[object, ...]) -> list[str]:
    head = [sys.executable] + (["-m", module] if module else [])
    return head + [str(a) for a in args]


@pytest.fixture
def run_module(tmp_path: Path) -> Callable[..., CliResult]:
    """``run_module(module, *args, cwd=tmp_path, timeout=120, env=None, input=None)``.

    ``module=None`` runs ``python *args`` (e.g. ``"-c", code``).
    """

    def run(
        module: str | None,
        *args: object,
        cwd: Path | str | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> CliResult:
        proc = subprocess.run(
            _argv(module, args),
            cwd=str(cwd or tmp_path),
            env=subprocess_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run


@pytest.fixture
def run_producer(run_module: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """``run_producer(*args, **kw)`` == ``run_module("producer", *args, **kw)``."""

    def run(*args: object, **kw: object) -> CliResult:
        return run_module("producer", *args, **kw)

    return run


@pytest.fixture
def run_consumer(run_module: Callable[..., CliResult]) -> Callable[..., CliResult]:
    """``run_consumer(*args, **kw)`` == ``run_module("consumer", *args, **kw)``."""

    def run(*args: object, **kw: object) -> CliResult:
        return run_module("consumer", *args, **kw)

    return run


@pytest.fixture
def spawn_module(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn_module(module, *args, cwd=tmp_path, env=None)`` -> a running ``Popen``.

    stdout and stderr are pipes (text); use ``proc.communicate(timeout=...)``.
    Processes still alive at teardown are killed.
    """
    procs: list[subprocess.Popen[str]] = []

    def spawn(
        module: str | None,
        *args: object,
        cwd: Path | str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            _argv(module, args),
            cwd=str(cwd or tmp_path),
            env=subprocess_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def dir_snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (relative path -> bytes): to prove nothing changed."""
    return {
        str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<not a file>"
        for p in sorted(directory.rglob("*"))
    }


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, bytes]]:
    """``snapshot(dir)``: relative path -> bytes of every file under ``dir``."""
    return dir_snapshot
