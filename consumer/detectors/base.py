"""The detector contract: what the consumer asks of every detector.

A detector scores the samples of a chunk ``[start, stop)`` from a window of the
series ``[ws, we)`` that it chooses itself (:meth:`Detector.window_for`).  Its
result for a sample may depend only on the samples of that window and on the
sample's absolute index, so processing chunk by chunk, on any number of
threads, gives exactly the indices of one whole-series call.

This module imports no numba, so the sinks can use :class:`ChunkResult` without
loading the kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from shared.params import Params

MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution per unit of median absolute deviation


@dataclass
class ChunkResult:
    """What one chunk's detection hands to the sinks.

    Parameters
    ----------
    chunk, start, stop
        Chunk number and its absolute sample range ``[start, stop)``.
    indices
        Sorted absolute int64 indices of the flagged samples.
    values, scores
        float64 sample values and scores of the flagged samples.
    dense
        float32 score of every sample of ``[start, stop)``, or None when not asked for.
    """

    chunk: int
    start: int
    stop: int
    indices: np.ndarray
    values: np.ndarray
    scores: np.ndarray
    dense: np.ndarray | None


@dataclass(frozen=True)
class SeriesInfo:
    """What a detector may know of the series beyond its parameters.

    Parameters
    ----------
    num_samples
        Length of the whole series (windows are clipped to it).
    seasonality_period
        The seasonality period recorded by the producer, if any.
    prefix
        ``prefix(n)`` returns up to the first ``n`` samples available now (for
        estimating a period), or None where no samples can be read up front.
    log
        Where a detector reports a derived default (``stl: estimated period 48``).
    cadence_seconds
        Seconds between consecutive samples, for inputs with timestamps (a
        ``period`` given as a duration such as ``"1d"`` becomes samples), else None.
    """

    num_samples: int
    seasonality_period: float | None = None
    prefix: Callable[[int], np.ndarray] | None = None
    log: Callable[[str], None] | None = None
    cadence_seconds: float | None = None


def aligned_blocks(start: int, stop: int, n: int, block: int) -> tuple[int, int]:
    """The union of the blocks ``[k*block, (k+1)*block)`` that overlap ``[start, stop)``.

    Clipped to the series length ``n``.  Statistics over such index-aligned
    blocks are the same whatever the chunking.
    """
    return (start // block) * block, min(n, -(-stop // block) * block)


class Detector:
    """Base class of every detector.

    A subclass sets ``name`` (the ``--type``) and ``Params`` (a
    :class:`shared.params.Params` dataclass), and implements
    :meth:`window_for` and :meth:`process`.  Register it in
    ``consumer.detectors.registry``.

    Parameters
    ----------
    params
        Validated parameters (an instance of the subclass's ``Params``).
    series
        Length of the series and what else the detector may use.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    tolerance: int = 0  # a flag within this many samples of a label counts as a hit

    def __init__(self, params: Params, series: SeriesInfo) -> None:
        self.num_samples = series.num_samples
        self.params = params

    def window_for(self, start: int, stop: int) -> tuple[int, int]:
        """The samples ``[ws, we)`` that scoring ``[start, stop)`` reads (its halo included)."""
        raise NotImplementedError

    def process(
        self, data: np.ndarray, data_start: int, start: int, stop: int, dense: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Score absolute samples ``[start, stop)``.

        Parameters
        ----------
        data
            Samples ``[data_start, data_start + len(data))``, which cover
            ``window_for(start, stop)``.
        data_start, start, stop
            Absolute indices.
        dense
            Whether to return every sample's score as well.

        Returns
        -------
        (indices, scores, dense)
            Sorted absolute int64 flagged indices, their float64 scores, and
            float32 scores of every sample of ``[start, stop)`` (or None).
        """
        raise NotImplementedError

    def warm_up(self, dtype: np.dtype, dense: bool) -> None:
        """Run the kernels once on a tiny input so JIT/cache loading is not timed."""
        stop = min(self.num_samples, 1024)
        ws, we = self.window_for(0, stop)
        self.process(np.zeros(we - ws, dtype), ws, 0, stop, dense)

    def unit_scores(self, dense: np.ndarray) -> np.ndarray:
        """Dense scores mapped monotonically into [0, 1] (NaN stays NaN).

        Default, for scores in noise standard deviations (``|z|``, ``|resid| /
        scale``): ``s / (1 + s)`` with ``s = -log10 p``, ``p`` the two-sided
        Gaussian tail mass beyond the score (0.5 at p = 0.1, 0.75 at p = 1e-3);
        see ``consumer.kernels.unit``.  A detector whose scores are already in
        [0, 1] returns them as they are.
        """
        from consumer.kernels.unit import gaussian_surprise

        return gaussian_surprise(dense)

    def describe(self) -> dict[str, Any]:
        """The detector's type and resolved parameters (for summaries and checkpoints)."""
        return {"type": self.name, **self.params.to_dict()}

    @staticmethod
    def _buffers(n: int, dense: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flag index / score buffers for ``n`` samples, and the dense buffer (or empty)."""
        dense_buf = np.empty(n if dense else 0, np.float32)
        return np.empty(n, np.int64), np.empty(n, np.float64), dense_buf

    @staticmethod
    def _result(idx, sc, d, k: int, dense: bool):
        """The first ``k`` flags and scores (copied out of the buffers), dense or None."""
        return idx[:k].copy(), sc[:k].copy(), (d if dense else None)
