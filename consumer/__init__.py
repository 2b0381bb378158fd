"""Streaming anomaly detection over producer streams: z-score and STL kernels in numba."""

from __future__ import annotations

from typing import Any

import numpy as np

from consumer.detect import make_detector
from consumer.kernels.stl import stl_decompose
from shared.errors import UsageError

__all__ = ["detect", "stl_decompose", "verify"]


def detect(x: np.ndarray, type: str = "zscore", **params: Any) -> np.ndarray:
    """Sorted int64 indices the CLI would flag for the in-memory series ``x``.

    Runs the same kernel over the whole array in one call (the CLI's chunked,
    threaded, tailed runs are tested to give exactly these indices).
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise UsageError(f"expected a 1-D array, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise UsageError(f"expected float samples, got dtype {x.dtype}")
    x = np.ascontiguousarray(x)
    det = make_detector(type, params, len(x), {"series": x})
    ws, we = det.window_for(0, len(x))
    idx, _, _ = det.process(x[ws:we], ws, 0, len(x), False)
    return idx


def verify(file: str) -> list[int]:
    """Recompute every committed chunk's CRC-32; return the corrupted chunk indices."""
    from shared.stream import StreamReader

    with StreamReader(file) as r:
        return r.verify()
