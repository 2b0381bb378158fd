"""CRC-32 (the zlib / IEEE 802.3 polynomial) of chunk bytes, from a maintained library.

``zlib.crc32`` of the zlib 1.2 series works a byte at a time through tables
(about 3.6 GB/s here), which cost the producer a fifth of its time.  The
``isal`` package (Python bindings of Intel's ISA-L) folds with carry-less
multiplies instead (about 12 GB/s here, the speed of the hand-written numba
folding this module used to hold) and, like ``zlib``, releases the GIL, so the
producer's writer threads checksum in parallel.  Its value is exactly
``zlib.crc32(data, value)``; where ``isal`` is not importable, ``zlib`` is used.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

try:
    from isal.isal_zlib import crc32 as _isal_crc32
except ImportError:  # pragma: no cover - isal is a dependency; zlib gives the same values
    _isal_crc32 = None


def zlib_crc32(data: Any, value: int = 0) -> int:
    """The fallback: ``zlib.crc32`` as an unsigned 32-bit value."""
    return zlib.crc32(data, value) & 0xFFFFFFFF


_crc32: Callable[[Any, int], int] = _isal_crc32 if _isal_crc32 is not None else zlib_crc32
BACKEND = "isal" if _isal_crc32 is not None else "zlib"  # which library crc32() calls


def crc32(data: np.ndarray | bytes | bytearray | memoryview, value: int = 0) -> int:
    """``zlib.crc32(data, value)``: the CRC-32 of ``data``'s bytes continuing from ``value``.

    A numpy array that is not C-contiguous is checksummed as its C-order copy.
    """
    if isinstance(data, np.ndarray) and not data.flags.c_contiguous:
        data = np.ascontiguousarray(data)
    return _crc32(data, value)
