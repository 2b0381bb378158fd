"""Keep freed memory in a Dask worker, so that the kernels' per-call arrays reuse pages.

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``): glibc then hands freed memory back to the
system at once and stops raising its mmap threshold, so an array of a chunk's size
allocated and freed in every call (the STL kernels allocate several per chunk) is fresh
pages every time.  On the development VM that cost STL 4.6x the page faults and 24% more time
in a worker than the same loop in the driver (``bench/dask_worker_env.py --type stl``).
:func:`keep_freed_memory` sets glibc's own limits back to values that keep such arrays
in the heap; the engine's worker plugin calls it in every worker.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 64 << 20  # free memory at the top of a heap kept before it is returned
MMAP_THRESHOLD = 32 << 20  # glibc's largest: smaller blocks come from the heap
ENV_OPT_OUT = "TSSTREAM_KEEP_MALLOC"  # set to 1: leave the worker's allocator as it is


def keep_freed_memory() -> bool:
    """Raise glibc's trim and mmap thresholds in this process; return whether it did.

    Does nothing (returns False) off Linux, without glibc, or when ``TSSTREAM_KEEP_MALLOC=1``
    asks to leave the allocator as the cluster configured it.
    """
    if sys.platform != "linux" or os.environ.get(ENV_OPT_OUT) == "1":
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):  # glibc's thresholds only
            return False
    except (ValueError, OSError):  # another libc (musl): nothing to tune
        return False
    mallopt = ctypes.CDLL(None).mallopt  # glibc is loaded in every Python on glibc Linux
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
