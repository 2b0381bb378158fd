"""The ``likelihood`` detector: seasonal surprise and Numenta's anomaly likelihood.

Ahmad, Lavin, Purdy & Agha (2017), "Unsupervised real-time anomaly detection for
streaming data", Neurocomputing 262, score a stream by the *anomaly likelihood*: the
Gaussian tail probability of a short mean of raw anomaly scores against that mean's own
long trailing history.  Here the raw score is the surprise of a seasonal-naive residual
(``x[i]`` minus the mean of its last ``lags`` same-phase samples), and a gated point
branch keeps single-sample spikes.  The per-sample score ``s = -log10(p) / 10`` (``p``
the smaller tail probability of the two branches; clipped to [0, 1]) is emitted only at
the *onset* of an alert: where no ``s >= onset`` occurred in the previous ``quiet``
samples (0 elsewhere).  A threshold ``t`` on the emitted score therefore gives about one
detection per event (at ``t = onset`` exactly the samples with ``s >= t`` and no
``s >= t`` in the ``quiet`` samples before), which is what NAB's threshold sweep and the
flags (``score >= threshold``) both count.  Formulas: ``consumer.kernels.likelihood``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from consumer.detectors.base import Detector, SeriesInfo
from consumer.detectors.stl import PERIOD_PREFIX, estimate_period
from consumer.kernels import likelihood as lk
from shared.params import ParamError, Params, integer, number, optional, param


@dataclass(frozen=True)
class LikelihoodParams(Params):
    """Parameters of the ``likelihood`` detector.

    Parameters
    ----------
    period
        Seasonal period in samples (0: predict ``x[i-1]``).  None: the stream's recorded
        period if it is an integer, else one day of samples for a timestamped input,
        else one estimated from the first 2^20 samples, else 0.  (``python -m
        consumer.evaluate`` defaults it to one day of samples too.)
    lags
        Seasonal lags averaged into the prediction (>= 1).
    scale_window
        Trailing samples of ``|residual|`` whose mean gives the scale (>= 2).
    short_window
        Samples in the short mean of the surprise (>= 1).
    long_window
        Trailing short means whose mean and variance give the likelihood (>= 2).
    floor
        Surprise below which a sample counts as unsurprising (in [0, 1)).
    point_weight
        Weight of the single-sample surprise branch (in [0, 1]).
    gate_z, gate_count
        The single-sample branch only counts while at most ``gate_count`` of the last
        ``scale_window`` residuals exceeded ``gate_z`` scales (heavy tails close it).
    mean_min, var_min
        Floors of the history's mean and variance (NAB's 0.03 and 3e-4).
    min_count
        Known values a window needs before it scores (>= 1).
    onset, quiet
        The score is emitted where no raw score ``>= onset`` occurred in the previous
        ``quiet`` samples, else 0.
    threshold
        Flag samples whose emitted score is ``>= threshold`` (in (0, 1]).
    block
        Running sums are recomputed exactly at every multiple of ``block`` samples.
    """

    period: int | None = param(None, optional(integer(0)))
    lags: int = param(10, integer(1))
    scale_window: int = param(1000, integer(2))
    short_window: int = param(10, integer(1))
    long_window: int = param(8640, integer(2))
    floor: float = param(0.1, number(0))
    point_weight: float = param(0.5, number(0))
    gate_z: float = param(3.0, number(above=0))
    gate_count: int = param(10, integer(0))
    mean_min: float = param(0.03, number(0))
    var_min: float = param(3e-4, number(above=0))
    min_count: int = param(100, integer(1))
    onset: float = param(0.3, number(above=0))
    quiet: int = param(10, integer(0))
    threshold: float = param(0.3, number(above=0))
    block: int = param(1 << 14, integer(16))

    def check(self) -> None:
        for name in ("floor", "point_weight", "onset", "threshold"):
            value = getattr(self, name)
            top_open = name == "floor"
            if value > 1.0 or (top_open and value == 1.0):
                bound = "< 1" if top_open else "<= 1"
                raise ParamError(name, f"must be {bound}, not {value:g}")
        if self.min_count > min(self.scale_window, self.long_window):
            raise ParamError(
                "min_count",
                f"({self.min_count}) must not exceed scale_window ({self.scale_window}) "
                f"or long_window ({self.long_window})",
            )
        if self.block < self.short_window:
            raise ParamError(
                "block", f"({self.block}) must be >= short_window ({self.short_window})"
            )


class LikelihoodDetector(Detector):
    """Seasonal surprise + anomaly likelihood (Ahmad et al. 2017), emitted at onsets."""

    name = "likelihood"
    Params = LikelihoodParams

    def __init__(self, params: LikelihoodParams, series: SeriesInfo) -> None:
        period = params.period if params.period is not None else _default_period(series)
        resolved = dataclasses.replace(params, period=period)
        super().__init__(resolved, series)
        self.p = resolved
        self.nb = lk.warm_blocks(
            resolved.scale_window, resolved.short_window, resolved.long_window, resolved.block
        )
        p = resolved
        # The kernel's parameters after (x, data_start, start, stop), before the outputs.
        self.kernel_args = (
            p.period,
            p.lags,
            p.scale_window,
            p.short_window,
            p.long_window,
            p.floor,
            lk.surprise_cut(p.floor),
            p.point_weight,
            p.gate_z,
            p.gate_count,
            p.mean_min,
            p.var_min,
            p.min_count,
            p.onset,
            p.quiet,
            p.threshold,
            p.block,
            self.nb,
            lk.SURPRISE,
            lk.LIKELIHOOD,
        )

    @property
    def halo(self) -> int:
        """Samples of history a chunk reads before its first scored sample (at most)."""
        p = self.p
        return lk.halo(p.period, p.lags, p.scale_window, p.quiet, p.block, self.nb)

    def window_for(self, start: int, stop: int) -> tuple[int, int]:
        p = self.p
        ws = lk.first_needed(start, p.period, p.lags, p.scale_window, p.quiet, p.block, self.nb)
        return ws, stop

    def process(
        self, data: np.ndarray, data_start: int, start: int, stop: int, dense: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        idx, sc, d = self._buffers(stop - start, dense)
        x = data if data.dtype == np.float64 else data.astype(np.float64)
        x = np.ascontiguousarray(x)
        k = lk._likelihood(x, data_start, start, stop, *self.kernel_args, idx, sc, d)
        return self._result(idx, sc, d, k, dense)

    def unit_scores(self, dense: np.ndarray) -> np.ndarray:
        """The emitted score is already in [0, 1]: returned as it is (as float64)."""
        return np.asarray(dense, np.float64)


def _default_period(series: SeriesInfo) -> int:
    """The recorded period if an integer, else one day at the input's cadence, else one
    estimated from the prefix, else 0."""
    if series.seasonality_period is not None:
        period = float(series.seasonality_period)
        if period.is_integer() and period >= 0:
            return int(period)
    if series.cadence_seconds:
        day = round(86_400 / series.cadence_seconds)
        if day >= 2:
            if series.log is not None:
                series.log(f"likelihood: period {day} samples (one day at the input's cadence)")
            return day
    prefix = series.prefix(PERIOD_PREFIX) if series.prefix is not None else np.empty(0)
    period = estimate_period(prefix)
    if series.log is not None:
        if period is None:
            series.log("likelihood: no period evident in the prefix; predicting x[i-1]")
        else:
            series.log(
                f"likelihood: estimated period {period} from the first {len(prefix)} samples"
            )
    return period or 0
