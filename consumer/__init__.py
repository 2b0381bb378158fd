"""Streaming anomaly detection over producer streams: z-score, STL and likelihood detectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from consumer.detectors.base import SeriesInfo
from shared.params import ParamError, ParamTypeError

__all__ = ["detect", "mstl_decompose", "score", "stl_decompose", "verify"]


def __getattr__(name: str) -> Any:
    # Kernels load numba: import them on first use, so that importing a light module of
    # this package (the sinks, the detector contract) does not.
    if name == "stl_decompose":
        from consumer.kernels.stl import stl_decompose

        return stl_decompose
    if name == "mstl_decompose":
        from consumer.kernels.mstl import mstl_decompose

        return mstl_decompose
    raise AttributeError(f"module 'consumer' has no attribute {name!r}")


def _detector(x: np.ndarray, type: str, params: dict[str, Any]):
    from consumer.detectors.registry import make_detector

    info = SeriesInfo(len(x), prefix=lambda n: np.asarray(x[:n], np.float64))
    return make_detector(type, params, info)


def _series(x: Any) -> np.ndarray:
    """``x`` as a contiguous 1-D float array, or a ``ParamError`` naming ``x``."""
    x = np.asarray(x)
    if x.ndim != 1:
        raise ParamError("x", f"must be a 1-D array, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise ParamTypeError("x", f"must hold float samples, got dtype {x.dtype}")
    return np.ascontiguousarray(x)


def detect(x: np.ndarray, type: str = "zscore", **params: Any) -> np.ndarray:
    """Sorted int64 indices that the consumer CLI would flag in the series ``x``.

    Runs the detector's kernel over the whole array in one call; the CLI's
    chunked, threaded, tailed runs are tested to give exactly these indices.

    Parameters
    ----------
    x : 1-D float array
        The series (NaN and inf are never flagged).
    type : {"zscore", "stl", "likelihood"}
        The detector.
    **params
        The detector's parameters, as in ``--params`` (see the README).

    Returns
    -------
    numpy.ndarray
        Sorted absolute int64 indices of the flagged samples.

    Raises
    ------
    ValueError, TypeError
        A bad argument, named as written here (``window must be >= 2, not 1``).

    Examples
    --------
    >>> import numpy as np, consumer
    >>> x = np.zeros(5000); x[4000] = 50.0
    >>> x[::2] += 1.0  # some variation for the rolling std
    >>> consumer.detect(x, window=1000, threshold=4).tolist()
    [4000]
    """
    x = _series(x)
    det = _detector(x, type, params)
    ws, we = det.window_for(0, len(x))
    idx, _, _ = det.process(x[ws:we], ws, 0, len(x), False)
    return idx


def score(x: np.ndarray, type: str = "zscore", **params: Any) -> np.ndarray:
    """Per-sample anomaly score in [0, 1] for the in-memory series ``x``.

    The detector's dense score (what ``--scores`` writes) mapped monotonically
    into [0, 1] by the detector's documented map.  For ``zscore`` and ``stl``,
    whose scores are in noise standard deviations: ``s / (1 + s)`` with
    ``s = -log10 p`` and ``p`` the two-sided Gaussian tail mass beyond the
    score (0.5 at p = 0.1, 0.75 at p = 1e-3, 0.9 at p = 1e-9).  Missing
    (non-finite) samples score NaN.

    Parameters
    ----------
    x : 1-D float array
        The series.
    type : str
        The detector.
    **params
        The detector's parameters.

    Returns
    -------
    numpy.ndarray
        float64 scores, one per sample.

    Examples
    --------
    >>> import numpy as np, consumer
    >>> x = np.sin(np.arange(5000.0)); x[4000] = 9.0
    >>> s = consumer.score(x, window=500)
    >>> int(np.nanargmax(s))
    4000
    """
    x = _series(x)
    det = _detector(x, type, params)
    ws, we = det.window_for(0, len(x))
    _, _, dense = det.process(x[ws:we], ws, 0, len(x), True)
    out = det.unit_scores(dense)
    out[~np.isfinite(x)] = np.nan
    return out


def verify(file: str) -> list[int]:
    """Recompute every committed chunk's CRC-32 and return the corrupted chunks.

    Parameters
    ----------
    file : str or path
        A producer stream (its sidecar beside it).

    Returns
    -------
    list of int
        Chunk numbers whose bytes no longer match their recorded CRC-32 (empty if none).

    Examples
    --------
    >>> import consumer
    >>> consumer.verify("gen.npy")  # doctest: +SKIP
    []
    """
    from shared.stream import StreamReader

    with StreamReader(file) as r:
        return r.verify()
