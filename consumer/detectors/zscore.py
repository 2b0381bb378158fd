"""The ``zscore`` detector: rolling (trailing window) or fixed-block z-score.

Kernels and their exactness argument are in ``consumer.kernels.zscore``; the
flags-only rolling path runs the native twin in ``consumer.kernels.zscore_native``
(same bits, no numba to import) where it can be built.  numba's kernels are
imported only by the paths that run them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from consumer.detectors.base import Detector, SeriesInfo, aligned_blocks
from consumer.kernels import zscore_native as zn
from shared.params import Params, choice, integer, number, param

# Per-thread flag buffers of the flags-only path (module level: detectors are pickled).
_flag_buffers = threading.local()


def _flag_buffers_for(n: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's index / score buffers of at least ``n`` entries, kept between calls.

    Each of the kernels' 16 lanes writes to its own region spread over the whole
    buffer: a fresh 16 MB pair per chunk page-faults at every region.
    """
    buf = getattr(_flag_buffers, "buf", None)
    if buf is None or len(buf[0]) < n:
        buf = (np.empty(n, np.int64), np.empty(n, np.float64))
        _flag_buffers.buf = buf
    return buf


def _lane_work() -> tuple[np.ndarray, ...]:
    """This thread's scratch of numba's lanes kernel (the native kernel has its own)."""
    from consumer.kernels import zscore as zk

    work = getattr(_flag_buffers, "work", None)
    if work is None:
        work = _flag_buffers.work = zk.lane_work()
    return work


@dataclass(frozen=True)
class ZScoreParams(Params):
    """Parameters of the ``zscore`` detector.

    Parameters
    ----------
    window
        Rolling mode: the trailing window ``x[i-window:i]`` (>= 2).
    threshold
        Flag ``|x - mean| > threshold * std`` (> 0).
    mode
        ``"rolling"`` or ``"block"`` (statistics of fixed blocks aligned to the index).
    block
        Block mode: the block length (>= 2).
    """

    window: int = param(1000, integer(2))
    threshold: float = param(3.0, number(above=0))
    mode: str = param("rolling", choice("rolling", "block"))
    block: int = param(1 << 16, integer(2))


class ZScoreDetector(Detector):
    """Rolling or fixed-block z-score (see ``consumer.kernels.zscore``)."""

    name = "zscore"
    Params = ZScoreParams

    def __init__(self, params: ZScoreParams, series: SeriesInfo) -> None:
        super().__init__(params, series)
        self.p = params

    def describe(self) -> dict[str, Any]:
        """Type and parameters, without the one the mode ignores."""
        d = super().describe()
        del d["block" if self.p.mode == "rolling" else "window"]  # the one that has no effect
        return d

    def window_for(self, start: int, stop: int) -> tuple[int, int]:
        """Rolling: the trailing window and resync point; block: the aligned blocks."""
        if self.p.mode == "rolling":
            return zn.rolling_zscore_window(start, stop, self.num_samples, self.p.window)
        return aligned_blocks(start, stop, self.num_samples, self.p.block)

    def process(self, data, data_start, start, stop, dense):
        """Run the rolling or block kernel over ``[start, stop)``."""
        x = data if data.dtype == np.float64 else data.astype(np.float64)
        p = self.p
        if p.mode == "rolling" and not dense:  # flags only: 16 segments at a time
            idx, sc = _flag_buffers_for(stop - start)
            k = self._rolling_flags(np.ascontiguousarray(x), data_start, start, stop, idx, sc)
            return self._result(idx, sc, None, k, dense)
        from consumer.kernels import zscore as zk

        idx, sc, d = self._buffers(stop - start, dense)
        if p.mode == "rolling":
            k = zk._rolling_zscore(
                x, data_start, start, stop, p.window, p.threshold, zk.RESYNC, idx, sc, d
            )
        else:
            k = zk._block_zscore(x, data_start, start, stop, p.block, p.threshold, idx, sc, d)
        return self._result(idx, sc, d, k, dense)

    def _rolling_flags(self, x, x0, start, stop, idx, sc) -> int:
        """The flags-only rolling kernel: native where it builds, else numba's lanes."""
        p = self.p
        if zn.flags_kernel() is not None:
            return zn.rolling_zscore_flags(x, x0, start, stop, p.window, p.threshold, idx, sc)
        from consumer.kernels import zscore as zk

        work = _lane_work()
        return zk._rolling_zscore_lanes(
            x, x0, start, stop, p.window, p.threshold, zk.RESYNC, idx, sc, work
        )
