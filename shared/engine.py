"""Engine choice and cluster connection: ``--engine local|dask`` for both CLIs.

:func:`add_engine_options` adds one option group to a parser (``--engine``,
``--scheduler``, ``--scheduler-file``, ``--workers``, ``--threads-per-worker``,
``--span``, ``--connect-timeout``, ``--storage-options``); :func:`engine_options`
validates it into :class:`EngineOptions`; :func:`connect` starts or joins a Dask
cluster and yields a :class:`DaskEngine`.

Failures a user can act on are one line each (``shared.errors``): Dask not
installed, a scheduler that cannot be reached, no workers, workers that cannot
import this package (checked with ``client.run`` before any work is sent), or
that run another generation algorithm.

Numba cache: :meth:`DaskEngine.warm` loads a run's kernels once in every
worker, one worker of a node at a time (``shared.warmup``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import StreamError, UsageError
from shared.params import parse_json_object, positive_float, positive_int

ENGINES = ("local", "dask")
DEFAULT_SPAN = 1 << 24  # samples per Dask task (rounded to whole chunks)
IN_FLIGHT = 4  # tasks submitted per worker thread (see DaskEngine.in_flight)
# What a worker must import to run a role's tasks (checked before any work is sent).
PROBE_MODULES = {
    "producer": ("shared.warmup", "producer.dask_engine"),
    "consumer": ("shared.warmup", "consumer.dask_engine"),
}


def add_engine_options(p: argparse.ArgumentParser) -> None:
    """Add the engine option group (the same for producer and consumer)."""
    g = p.add_argument_group("engine", "where the work runs (--engine dask: a Dask cluster)")
    g.add_argument("--engine", default="local", help="local (threads, default) or dask")
    g.add_argument("--scheduler", help="--engine dask: address of a running Dask scheduler")
    g.add_argument(
        "--scheduler-file",
        "--scheduler_file",
        dest="scheduler_file",
        help="--engine dask: a scheduler file written by dask scheduler / dask-mpi",
    )
    g.add_argument(
        "--workers",
        help="--engine dask without a scheduler: local worker processes (default: one per core)",
    )
    g.add_argument(
        "--threads-per-worker",
        "--threads_per_worker",
        dest="threads_per_worker",
        help="--engine dask without a scheduler: threads per worker process (default 1)",
    )
    g.add_argument(
        "--span",
        help=f"--engine dask: samples per task, rounded to whole chunks (default {DEFAULT_SPAN})",
    )
    g.add_argument(
        "--connect-timeout",
        "--connect_timeout",
        dest="connect_timeout",
        default="10",
        help="--engine dask: seconds to reach the scheduler and its first worker (10)",
    )
    g.add_argument(
        "--storage-options",
        "--storage_options",
        dest="storage_options",
        help="Zarr stores on object storage: fsspec options as JSON "
        '(e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'), passed to every worker',
    )


@dataclass(frozen=True)
class EngineOptions:
    """A validated engine choice.

    Parameters
    ----------
    engine
        ``"local"`` or ``"dask"``.
    scheduler, scheduler_file
        A running cluster to join (at most one); neither: start a ``LocalCluster``.
    workers, threads_per_worker
        The ``LocalCluster``'s worker processes (None: one per core) and their threads.
    span
        Samples per task (rounded to whole chunks by the engines).
    connect_timeout
        Seconds to reach the scheduler and to see a first worker.
    storage_options
        fsspec options for Zarr stores given as URLs (credentials, endpoint).
    """

    engine: str = "local"
    scheduler: str | None = None
    scheduler_file: str | None = None
    workers: int | None = None
    threads_per_worker: int = 1
    span: int = DEFAULT_SPAN
    connect_timeout: float = 10.0
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def dask(self) -> bool:
        """Whether the run goes to Dask."""
        return self.engine == "dask"


def engine_options(
    args: argparse.Namespace, *, stores: tuple[str | None, ...] = ()
) -> EngineOptions:
    """The engine flags of ``args``, validated (errors name the flags).

    ``stores``: locations the run writes or reads; a Zarr store among them needs
    ``--engine dask``.
    """
    from shared.zarr_store import is_zarr

    engine = args.engine
    if engine not in ENGINES:
        raise UsageError(f"--engine must be local or dask, not {engine!r}")
    dask_only = {
        "--scheduler": args.scheduler,
        "--scheduler-file": args.scheduler_file,
        "--workers": args.workers,
        "--threads-per-worker": args.threads_per_worker,
        "--span": args.span,
        "--storage-options": args.storage_options,
    }
    if engine == "local":
        given = [flag for flag, value in dask_only.items() if value is not None]
        if given:
            raise UsageError(f"{given[0]} needs --engine dask")
        zarr = [s for s in stores if s is not None and is_zarr(s)]
        if zarr:
            raise UsageError(f"{zarr[0]}: a Zarr store needs --engine dask")
        return EngineOptions()
    if getattr(args, "threads", None):
        raise UsageError("--threads is for --engine local; Dask workers take --threads-per-worker")
    if args.scheduler and args.scheduler_file:
        raise UsageError("--scheduler and --scheduler-file contradict each other")
    joined = args.scheduler or args.scheduler_file
    for flag in ("--workers", "--threads-per-worker"):
        if joined and dask_only[flag] is not None:
            raise UsageError(f"{flag} sizes a local cluster; a joined cluster has its own workers")
    if args.scheduler_file and not Path(args.scheduler_file).is_file():
        raise UsageError(f"--scheduler-file: {args.scheduler_file}: no such file")
    return EngineOptions(
        engine="dask",
        scheduler=args.scheduler,
        scheduler_file=args.scheduler_file,
        workers=positive_int("--workers", args.workers) if args.workers else None,
        threads_per_worker=positive_int("--threads-per-worker", args.threads_per_worker)
        if args.threads_per_worker
        else 1,
        span=positive_int("--span", args.span) if args.span else DEFAULT_SPAN,
        connect_timeout=positive_float("--connect-timeout", args.connect_timeout),
        storage_options=parse_json_object("--storage-options", args.storage_options),
    )


# --------------------------------------------------------------------------- workers


def _probe(modules: tuple[str, ...]) -> dict[str, Any]:
    """Runs on every worker: import what tasks need; report the generation algorithm."""
    for name in modules:
        importlib.import_module(name)
    generate = importlib.import_module("producer.generate")
    return {"algorithm": generate.ALGORITHM, "pid": os.getpid()}


def _first_line(e: BaseException) -> str:
    """The first line of an error's message (a worker's error arrives as its repr)."""
    line = (str(e).strip() or type(e).__name__).splitlines()[0]
    m = re.fullmatch(r"\w+\(([\'\"])(.*)\1\)", line)
    return m.group(2) if m else line


class DaskEngine:
    """A connected Dask client (and the local cluster it started, if any).

    Parameters
    ----------
    client
        The ``distributed.Client``.
    cluster
        The ``LocalCluster`` started for this run, closed with the engine; None when joined.
    where
        The scheduler's address or "a local cluster", for messages.
    """

    def __init__(self, client: Any, cluster: Any, where: str) -> None:
        self.client, self.cluster, self.where = client, cluster, where

    @property
    def nthreads(self) -> int:
        """Worker threads in the cluster now."""
        return max(1, sum(self.client.nthreads().values()))

    @property
    def in_flight(self) -> int:
        """Tasks to keep submitted: ``IN_FLIGHT`` per thread, so that a worker has its next
        task before it finishes one (a result's way back to the driver and the next task's
        way out take several messages: milliseconds, as long as a small span's work)."""
        return IN_FLIGHT * self.nthreads

    def check_workers(self, role: str, timeout: float) -> None:
        """Wait for a first worker, then check that every worker can run ``role``'s tasks."""
        from producer.generate import ALGORITHM

        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise StreamError(
                f"no Dask worker joined the scheduler at {self.where} within {timeout:g} s"
            ) from None
        answers = self.client.run(_probe, PROBE_MODULES[role], on_error="return")
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                raise StreamError(
                    f"Dask worker {worker} cannot import tsstream ({_first_line(answer)}): "
                    "install it on every worker (pip install -e '.[dask]')"
                )
            if answer["algorithm"] != ALGORITHM:
                raise StreamError(
                    f"Dask worker {worker} runs generation algorithm {answer['algorithm']}, "
                    f"this driver {ALGORITHM}: install the same tsstream on every worker"
                )

    def warm(self, name: str, warm: Callable[[], object]) -> None:
        """Register ``warm`` as the worker plugin ``name`` (replacing an earlier one)."""
        from shared.warmup import KernelWarmUp

        try:
            self.client.register_plugin(KernelWarmUp(warm), name=f"tsstream-{name}")
        except Exception as e:  # noqa: BLE001 - a worker's error, re-raised as one line
            raise StreamError(f"warming up the Dask workers failed: {_first_line(e)}") from e

    def close(self) -> None:
        """Close the client; shut down the local cluster if this run started one."""
        if self.cluster is not None:
            self.client.shutdown()  # scheduler and workers at once (half of cluster.close())
        else:
            self.client.close()


@contextmanager
def connect(options: EngineOptions, role: str) -> Iterator[DaskEngine]:
    """Join the scheduler named by ``options`` or start a ``LocalCluster``; close at the end.

    ``role`` (``"producer"`` or ``"consumer"``) names the tasks the workers must be able to run.

    Raises a one-line ``StreamError`` when Dask is not installed, the scheduler
    cannot be reached or no worker joins within ``options.connect_timeout``.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--engine dask needs Dask: pip install -e '.[dask]'") from None
    cluster = None
    timeout = options.connect_timeout
    try:
        if options.scheduler_file:
            where = f"{_scheduler_address(options.scheduler_file)} ({options.scheduler_file})"
            client = Client(scheduler_file=options.scheduler_file, timeout=timeout)
        elif options.scheduler:
            where = options.scheduler
            client = Client(options.scheduler, timeout=timeout)
        else:
            where = "a local cluster"
            cluster = LocalCluster(
                n_workers=options.workers or os.cpu_count() or 1,
                threads_per_worker=options.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # No dashboard; its HTTP routes on any free port (8787 may be taken: a warning).
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                silence_logs=logging.ERROR,
            )
            client = Client(cluster, timeout=timeout)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise StreamError(f"cannot reach the Dask scheduler at {where}: {_first_line(e)}") from None
    engine = DaskEngine(client, cluster, where)
    try:
        engine.check_workers(role, timeout)
        yield engine
    finally:
        engine.close()


def _scheduler_address(path: str) -> str:
    """The address a scheduler file names (for messages)."""
    try:
        return str(json.loads(Path(path).read_text())["address"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"--scheduler-file: {path}: not a Dask scheduler file") from None
