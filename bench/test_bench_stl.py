"""STL throughput: stl_decompose vs threads, the consumer's stl detector, statsmodels baseline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import SM_N, STL_N, THREADS, N, consumer_runner, run_and_record

pytestmark = pytest.mark.benchmark(group="stl")

PARAMS = {"inner_iter": 2, "robust": False}


@pytest.mark.parametrize("period", [200, 24])
def test_statsmodels_stl_baseline(benchmark, period):
    from statsmodels.tsa.seasonal import STL

    x = np.random.default_rng(0).standard_normal(SM_N)
    x += 5 * np.sin(2 * np.pi * np.arange(SM_N) / period)
    run_and_record(
        benchmark,
        lambda: STL(x, period=period).fit(inner_iter=2, outer_iter=0),
        SM_N,
        kernel=f"stl p{period}",
        baseline=True,
        label=f"statsmodels STL p={period} (1 thread)",
        period=period,
    )


@pytest.mark.parametrize(("period", "threads"), list(itertools.product([200, 24], THREADS)))
def test_stl_decompose(benchmark, stl_series, period, threads):
    from consumer.kernels.stl import stl_decompose

    stl_decompose(stl_series[: 20 * period], period, **PARAMS, threads=threads)  # load kernels
    run_and_record(
        benchmark,
        lambda: stl_decompose(stl_series, period, **PARAMS, threads=threads),
        STL_N,
        kernel=f"stl p{period}",
        label=f"stl_decompose p={period}",
        threads=threads,
        period=period,
    )


@pytest.mark.parametrize("threads", THREADS)
def test_consumer_stl(benchmark, seasonal_stream, bench_dir, threads):
    run = consumer_runner(
        seasonal_stream, bench_dir, "stl", {"threshold": 5, "seasonal": 7}, threads
    )
    run_and_record(
        benchmark, run, N, kernel="stl p200", label="consumer --type stl (p=200)", threads=threads
    )
