"""Detector registry: parameters, halos (which samples a chunk needs) and thresholds.

A detector scores the samples of a chunk ``[start, stop)`` from a window of the
series ``[ws, we)`` that it chooses itself (``window_for``).  Because each
detector's result for a sample depends only on the samples of that window and
on the sample's absolute index, processing chunk by chunk, on any number of
threads, gives exactly the indices of one whole-series call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from consumer.kernels import zscore as zk
from shared.errors import UsageError
from shared.params import parse_json_object, take


@dataclass
class ChunkResult:
    chunk: int
    start: int
    stop: int
    indices: np.ndarray  # int64, absolute, sorted
    values: np.ndarray  # float64
    scores: np.ndarray  # float64
    dense: np.ndarray | None  # float32 per sample of [start, stop), or None


class Detector:
    """Base class: subclasses set ``name``, parse params, and implement the two hooks."""

    name: ClassVar[str] = ""
    tolerance: int = 0  # a flag within this many samples of a label counts as a hit

    def __init__(self, params: dict[str, Any], num_samples: int, context: dict[str, Any]) -> None:
        self.num_samples = num_samples
        self.params = params

    def window_for(self, start: int, stop: int) -> tuple[int, int]:
        raise NotImplementedError

    def process(
        self, data: np.ndarray, data_start: int, start: int, stop: int, dense: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return (absolute flagged indices, their scores, dense float32 scores or None)."""
        raise NotImplementedError

    def warm_up(self, dtype: np.dtype, dense: bool) -> None:
        """Run the kernels once on a tiny input so JIT/cache loading is not timed."""
        stop = min(self.num_samples, 1024)
        ws, we = self.window_for(0, stop)
        self.process(np.zeros(we - ws, dtype), ws, 0, stop, dense)

    @staticmethod
    def _buffers(n: int, dense: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Flag index / score buffers for ``n`` samples, and the dense buffer (or empty)."""
        return (
            np.empty(n, np.int64),
            np.empty(n, np.float64),
            np.empty(n if dense else 0, np.float32),
        )

    @staticmethod
    def _result(idx, sc, d, k: int, dense: bool):
        """The first ``k`` flags and scores (copied out of the buffers), dense or None."""
        return idx[:k].copy(), sc[:k].copy(), (d if dense else None)

    def describe(self) -> dict[str, Any]:
        return {"type": self.name, **self.params}


class ZScoreDetector(Detector):
    """Rolling or fixed-block z-score (see ``consumer.kernels.zscore``)."""

    name = "zscore"

    def __init__(self, params: dict[str, Any], num_samples: int, context: dict[str, Any]) -> None:
        p = take(
            "--params",
            params,
            {"window": 1000, "threshold": 3.0, "mode": "rolling", "block": 1 << 16},
            {"window": int, "threshold": float, "mode": str, "block": int},
        )
        if p["window"] < 2:
            raise UsageError(f"--params: 'window' must be >= 2, not {p['window']}")
        if p["threshold"] <= 0:
            raise UsageError(f"--params: 'threshold' must be > 0, not {p['threshold']:g}")
        if p["mode"] not in ("rolling", "block"):
            raise UsageError(f"--params: 'mode' must be 'rolling' or 'block', not {p['mode']!r}")
        if p["block"] < 2:
            raise UsageError(f"--params: 'block' must be >= 2, not {p['block']}")
        if p["mode"] == "rolling":
            del p["block"]
        else:
            del p["window"]
        super().__init__(p, num_samples, context)

    def window_for(self, start: int, stop: int) -> tuple[int, int]:
        if self.params["mode"] == "rolling":
            return zk.rolling_zscore_window(start, stop, self.num_samples, self.params["window"])
        return zk.block_zscore_window(start, stop, self.num_samples, self.params["block"])

    def process(self, data, data_start, start, stop, dense):
        idx, sc, d = self._buffers(stop - start, dense)
        x = data if data.dtype == np.float64 else data.astype(np.float64)
        p = self.params
        if p["mode"] == "rolling":
            k = zk._rolling_zscore(
                x, data_start, start, stop, p["window"], p["threshold"], zk.RESYNC, idx, sc, d
            )
        else:
            k = zk._block_zscore(x, data_start, start, stop, p["block"], p["threshold"], idx, sc, d)
        return self._result(idx, sc, d, k, dense)


DETECTORS: dict[str, type[Detector]] = {"zscore": ZScoreDetector}


def register(cls: type[Detector]) -> type[Detector]:
    DETECTORS[cls.name] = cls
    return cls


def make_detector(
    type: str, params: Any, num_samples: int, context: dict[str, Any] | None = None
) -> Detector:
    """Build a validated detector; ``context`` carries stream metadata (e.g. generation)."""
    if type not in DETECTORS:
        raise UsageError(f"--type: unknown detector '{type}' (choose from {', '.join(DETECTORS)})")
    obj = parse_json_object("--params", params)
    return DETECTORS[type](obj, num_samples, context or {})


# Detectors in their own modules register themselves on import.
import consumer.stl_detector  # noqa: E402, F401
