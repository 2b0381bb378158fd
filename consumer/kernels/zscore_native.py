"""The rolling z-score's native kernel (``zscore_native.c``): built once, loaded by ctypes.

The flags-only rolling z-score is what a default ``python -m consumer --type
zscore`` runs, and numba's import alone is about 0.4 s of that command's
start-up here.  This module gives the same kernel without numba: the C twin of
``consumer.kernels.zscore._rolling_zscore`` (the same operations on every
sample, so the same indices and scores, bit for bit), compiled on first use with
the system's C compiler and cached, as numba caches its kernels:

* where: ``$NUMBA_CACHE_DIR/tsstream`` if that is set, else ``__pycache__`` beside
  this file, else (not writable) ``<tempdir>/tsstream-<uid>``;
* keyed by the source, the compiler and its flags, and the CPU's feature flags
  (the build uses ``-march=native``), so a changed kernel or machine rebuilds;
* built under a temporary name and renamed, so concurrent first runs are safe.

``-ffp-contract=off`` and no ``-ffast-math`` keep every operation as written (no
fused multiply-adds, no reassociation): that is what makes the bits equal.

With no compiler (or ``TSSTREAM_NATIVE=0``), :func:`flags_kernel` returns None and
the detector runs numba's lanes kernel, which returns the same bits; a command-line
run says so in one line.  This module imports no numba.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.jit import compile_notice, fallback_notice
from shared.stream import atomic_temp

__all__ = ["RESYNC", "flags_kernel", "rolling_zscore_flags", "rolling_zscore_window"]

# Rolling sums are recomputed exactly at every multiple of RESYNC (absolute index),
# so rounding drift is bounded by RESYNC updates and is identical for every chunking.
RESYNC = 1 << 16

SOURCE = Path(__file__).with_name("zscore_native.c")
FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared")
# A build took 2.5-3.5 s here (gcc 12, 2 cores: `cc <FLAGS> -o x.so zscore_native.c -lm`).
BUILD_SECONDS = 3

# What a build or a missing compiler reports, and where (the CLIs set this; the
# Python API stays silent, as it does for numba's compiles).
announce: Callable[[str], object] | None = None

_lock = threading.Lock()
_scratch = threading.local()
_kernel: Callable[..., int] | None = None
_tried = False


def rolling_zscore_window(start: int, stop: int, n: int, window: int) -> tuple[int, int]:
    """Sample range the rolling kernel reads to score [start, stop)."""
    g = max(window, (start // RESYNC) * RESYNC)
    return max(0, min(start, g) - window), stop


def _cache_dir() -> Path:
    numba_dir = os.environ.get("NUMBA_CACHE_DIR")
    if numba_dir:
        return Path(numba_dir) / "tsstream"
    beside = SOURCE.parent / "__pycache__"
    try:
        beside.mkdir(exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    return Path(tempfile.gettempdir()) / f"tsstream-{os.getuid()}"


def _cpu_flags() -> str:
    """The CPU's feature list (Linux), for the cache key of a ``-march=native`` build."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _library_path(cc: str) -> Path:
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), cc.encode(), " ".join(FLAGS).encode()):
        key.update(part)
    key.update((platform.machine() + _cpu_flags()).encode())
    return _cache_dir() / f"zscore_native-{key.hexdigest()[:16]}.so"


def _build(cc: str, target: Path) -> str | None:
    """Compile ``SOURCE`` into ``target``; returns None, or the compiler's first error line."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic_temp(target)
    cmd = [cc, *FLAGS, "-o", str(tmp), str(SOURCE), "-lm"]
    if announce is not None:
        announce(compile_notice("consumer", "native z-score", BUILD_SECONDS))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            lines = [ln for ln in out.stderr.splitlines() if "error" in ln] or [out.stderr]
            return lines[0].strip() or f"{cc} exited with {out.returncode}"
        os.replace(tmp, target)
        return None
    except subprocess.TimeoutExpired:
        return f"{cc} ran for over 300 s"
    finally:
        tmp.unlink(missing_ok=True)


def _load() -> Callable[..., int] | None:
    if os.environ.get("TSSTREAM_NATIVE", "1") == "0":
        return None
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        why = f"no C compiler ({os.environ.get('CC', 'cc')}) on PATH"
    else:
        try:  # (an unwritable cache directory, a missing source)
            path = _library_path(cc)
            why = None if path.exists() else _build(cc, path)
        except OSError as e:
            why = f"the native z-score kernel could not be built ({e})"
        if why is None:
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as e:
                why = f"the native z-score kernel did not load ({e})"
            else:
                return _declare(lib)
    if announce is not None:
        announce(fallback_notice("consumer", why, "z-score"))
    return None


def _declare(lib: ctypes.CDLL) -> Callable[..., int]:
    """The library's kernel, with its C signature (and ``work_len`` beside it)."""
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.tss_work_len.restype = i64
    lib.tss_work_len.argtypes = [i64]
    fn = lib.tss_rolling_zscore_flags
    fn.restype = i64
    fn.argtypes = [ptr, i64, i64, i64, i64, ctypes.c_double, i64, ptr, ptr, ptr, i64]
    fn.work_len = lib.tss_work_len
    return fn


def _work(fn: Callable[..., int], window: int) -> np.ndarray:
    """This thread's scratch for ``window``, kept between calls: allocated per call, its
    512 KiB were fresh pages to fault in at every chunk (a numba lanes-kernel lesson)."""
    need = fn.work_len(window)  # type: ignore[attr-defined]
    work = getattr(_scratch, "work", None)
    if work is None or len(work) < need:
        work = _scratch.work = np.empty(need)
    return work


def flags_kernel() -> Callable[..., int] | None:
    """The loaded C function, building it first if needed; None without a compiler.

    Thread-safe; the first call decides for the process.
    """
    global _kernel, _tried
    if not _tried:  # (decided once; every chunk asks)
        with _lock:
            if not _tried:
                _kernel = _load()
                _tried = True
    return _kernel


def rolling_zscore_flags(
    x: np.ndarray,
    x0: int,
    start: int,
    stop: int,
    window: int,
    threshold: float,
    idx: np.ndarray,
    score: np.ndarray,
) -> int:
    """The flags of ``_rolling_zscore`` over absolute samples [start, stop), natively.

    ``x`` (contiguous float64) holds absolute samples [x0, x0 + len(x)) from
    ``rolling_zscore_window(start, stop, ...)[0]`` on; ``idx`` (int64) and ``score``
    (float64) need room for ``stop - start`` entries.  Returns the number of flags,
    written sorted to the front of both.  The GIL is released during the call.
    Raises RuntimeError if the kernel is not available (see :func:`flags_kernel`).
    """
    fn = flags_kernel()
    if fn is None:
        raise RuntimeError("the native z-score kernel is not available")
    if not (x.dtype == np.float64 and x.flags.c_contiguous):
        raise TypeError("x must be a contiguous float64 array")
    if idx.dtype != np.int64 or score.dtype != np.float64:
        raise TypeError("idx must be int64 and score float64")
    if len(idx) < stop - start or len(score) < stop - start:
        raise ValueError(f"idx and score need {stop - start} entries")
    lo = rolling_zscore_window(start, stop, 0, window)[0]
    if stop > start and (x0 > lo or x0 + len(x) < stop):
        raise ValueError(f"x covers [{x0}, {x0 + len(x)}), the kernel reads [{lo}, {stop})")
    work = _work(fn, window)
    arrays = (idx.ctypes.data, score.ctypes.data, work.ctypes.data, len(work))
    k = fn(x.ctypes.data, x0, start, stop, window, threshold, RESYNC, *arrays)
    if k < 0:
        raise MemoryError("the native z-score kernel could not allocate its segment table")
    return int(k)
