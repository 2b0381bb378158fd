"""Shared timing helper of the bench scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``rounds`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
