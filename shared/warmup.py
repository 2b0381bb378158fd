"""Warm numba's kernels once per Dask worker, one worker of a node at a time.

Workers load the compiled kernels from numba's on-disk cache, and numba does
not make concurrent cache writes safe (two processes compiling the same
function may rewrite its index or data file under each other).
:class:`KernelWarmUp` is a ``WorkerPlugin``: Dask runs it in every worker when
it is registered and in every worker that joins or is restarted later.  It
runs a run's warm-up holding an exclusive ``flock`` on one lock file per node
until one worker of the node has done it (a marker file in numba's cache
directory then says so, and goes when the cache is deleted), so the
cache is compiled and written by one worker at a time and the others only
read it, in parallel.  The driver warms up before
registering the plugin, so with an install shared by driver and workers the
cache already exists when the workers start.

Kept apart from ``shared.engine`` so that the CLIs import Dask only for
``--engine dask``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

NODE_LOCK = "tsstream-numba-cache.lock"


@contextmanager
def node_lock() -> Iterator[None]:
    """One process of this machine at a time (an exclusive ``flock`` in the temp directory)."""
    fd = os.open(Path(tempfile.gettempdir()) / NODE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _stamp() -> str:
    """What numba's cache validity depends on here: numba's version and our sources' mtimes."""
    import numba

    root = Path(__file__).resolve().parent.parent
    files = sorted(p for d in ("producer", "consumer", "shared") for p in (root / d).rglob("*.py"))
    stamps = [f"{p.relative_to(root)}:{p.stat().st_mtime_ns}" for p in files]
    return "\n".join([numba.__version__, *stamps])


def _marker_dir() -> Path:
    """Where the cache is (``NUMBA_CACHE_DIR``, else beside our sources), so that a marker
    goes when the cache it vouches for is deleted."""
    import numba

    cache = numba.config.CACHE_DIR
    return Path(cache) if cache else Path(__file__).resolve().parent / "__pycache__"


class KernelWarmUp(WorkerPlugin):
    """Runs ``warm()`` once in every worker; the first of a node under :func:`node_lock`.

    The first worker of a node to warm up for a given ``warm`` (and these
    sources, this numba) holds the lock while it loads or compiles the kernels,
    then leaves a marker in the temporary directory; workers that find the
    marker know the cache holds the kernels and load them in parallel.

    Parameters
    ----------
    warm
        A picklable callable that loads the kernels a run uses (it is sent to the workers).
    """

    def __init__(self, warm: Callable[[], object]) -> None:
        self.warm = warm

    def setup(self, worker: Any) -> None:
        """Called by Dask when the plugin is registered or a worker (re)starts."""
        from shared.malloc import keep_freed_memory

        keep_freed_memory()  # the kernels' per-call arrays reuse pages (shared.malloc)
        key = hashlib.sha256(pickle.dumps(self.warm) + _stamp().encode()).hexdigest()[:20]
        marker = _marker_dir() / f".tsstream-warm-{key}"
        if not marker.exists():
            with node_lock():
                if not marker.exists():
                    self.warm()
                    try:
                        marker.parent.mkdir(parents=True, exist_ok=True)
                        marker.touch()
                    except OSError:  # cannot say so: every worker takes the lock
                        pass
                    return
        self.warm()  # another worker of this node has written the cache: only reads
