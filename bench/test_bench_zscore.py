"""Z-score throughput: the consumer over a page-cached stream vs threads, and the baseline."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import THREADS, N, consumer_runner, run_and_record

pytestmark = pytest.mark.benchmark(group="zscore")


def test_numpy_zscore_baseline(benchmark, seasonal_stream):
    """The original demo's detector: per-chunk mean/std and a full boolean mask, one thread."""
    x = np.load(seasonal_stream, mmap_mode="r")
    chunk = 1 << 20

    def run():
        found = []
        for a in range(0, N, chunk):
            c = np.asarray(x[a : a + chunk])
            mask = np.abs(c - c.mean()) > 3.0 * c.std()
            found.append(np.nonzero(mask)[0] + a)
        return np.concatenate(found)

    run_and_record(
        benchmark,
        run,
        N,
        kernel="zscore",
        baseline=True,
        label="numpy chunk z-score (original, 1 thread)",
    )


@pytest.mark.parametrize("threads", THREADS)
def test_consumer_zscore(benchmark, seasonal_stream, bench_dir, threads):
    run = consumer_runner(
        seasonal_stream, bench_dir, "zscore", {"window": 1000, "threshold": 4}, threads
    )
    run_and_record(
        benchmark, run, N, kernel="zscore", label="consumer rolling z-score", threads=threads
    )
