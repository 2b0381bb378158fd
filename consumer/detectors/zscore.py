"""The ``zscore`` detector: rolling (trailing window) or fixed-block z-score.

Kernels and their exactness argument are in ``consumer.kernels.zscore``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from consumer.detectors.base import Detector, SeriesInfo, aligned_blocks
from consumer.kernels import zscore as zk
from shared.params import Params, choice, integer, number, param

# Per-thread flag buffers of the flags-only path (module level: detectors are pickled).
_flag_buffers = threading.local()


def _flag_buffers_for(n: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """This thread's index / score buffers of at least ``n`` entries and the lanes
    kernel's scratch, kept between calls.

    Each of the kernel's 16 lanes writes to its own region spread over the whole
    buffer: a fresh 16 MB pair per chunk page-faults at every region.
    """
    buf = getattr(_flag_buffers, "buf", None)
    if buf is None or len(buf[0]) < n:
        work = buf[2] if buf is not None else zk.lane_work()
        buf = (np.empty(n, np.int64), np.empty(n, np.float64), work)
        _flag_buffers.buf = buf
    return buf


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
            return zk.rolling_zscore_window(start, stop, self.num_samples, self.p.window)
        return aligned_blocks(start, stop, self.num_samples, self.p.block)

    def process(self, data, data_start, start, stop, dense):
        """Run the rolling or block kernel over ``[start, stop)``."""
        x = data if data.dtype == np.float64 else data.astype(np.float64)
        p = self.p
        if p.mode == "rolling" and not dense:  # flags only: 16 segments at a time
            idx, sc, work = _flag_buffers_for(stop - start)
            d = np.empty(0, np.float32)
            k = zk._rolling_zscore_lanes(
                x, data_start, start, stop, p.window, p.threshold, zk.RESYNC, idx, sc, work
            )
        elif p.mode == "rolling":
            idx, sc, d = self._buffers(stop - start, dense)
            k = zk._rolling_zscore(
                x, data_start, start, stop, p.window, p.threshold, zk.RESYNC, idx, sc, d
            )
        else:
            idx, sc, d = self._buffers(stop - start, dense)
            k = zk._block_zscore(x, data_start, start, stop, p.block, p.threshold, idx, sc, d)
        return self._result(idx, sc, d, k, dense)
