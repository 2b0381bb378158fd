"""Shared settings of the benchmark suites (run with `pytest bench`, never in the default run).

Sizes come from the environment so that the smoke test can run the real suite tiny:
BENCH_N (samples for generation and z-score, default 1e8), BENCH_STL_N (default 1e7),
BENCH_SM_N (statsmodels baseline, default 2e4), BENCH_ROUNDS (default 3).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest


def _env_int(name: str, default: float) -> int:
    return int(float(os.environ.get(name, default)))


N = _env_int("BENCH_N", 1e8)
STL_N = _env_int("BENCH_STL_N", 1e7)
SM_N = _env_int("BENCH_SM_N", 2e4)
ROUNDS = _env_int("BENCH_ROUNDS", 3)
CORES = os.cpu_count() or 1
THREADS = sorted({1, *range(2, CORES + 1)})


def run_and_record(
    benchmark,
    fn,
    n: int,
    *,
    kernel: str,
    label: str,
    baseline: bool = False,
    threads: int | None = None,
    setup=None,
    **extra,
) -> None:
    """Time ``fn`` (median of ROUNDS) and record samples/s for bench/charts.py."""
    benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        samples=n,
        samples_per_s=n / median,
        kernel=kernel,
        label=label,
        baseline=baseline,
        **({"threads": threads} if threads is not None else {}),
        **extra,
    )


def consumer_runner(stream: Path, out_dir: Path, type: str, params: dict, threads: int):
    """A callable that runs the consumer over ``stream`` into fresh output paths each time."""
    from consumer.run import OutputPaths, run_consumer

    runs = itertools.count()

    def run() -> None:
        stem = out_dir / f"{type}-{threads}-{next(runs)}"
        paths = OutputPaths.for_input(
            stream, out=f"{stem}.parquet", indices=f"{stem}.npy", summary=f"{stem}.json"
        )
        run_consumer(stream, type=type, params=params, threads=threads, paths=paths)

    return run


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session")
def seasonal_stream(bench_dir: Path) -> Path:
    """A finished stream of N float64 samples (normal, seasonality period 200), page-cached."""
    from producer import write_stream
    from shared.params import generation_params

    path = bench_dir / "stream.npy"
    params = generation_params(seasonality={"amplitude": 5.0, "period": 200})
    write_stream(path, N, params, threads=CORES)
    # Read it once so that consumer timings see a page-cached file, as stated in the README.
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
    return path


@pytest.fixture(scope="session")
def stl_series() -> np.ndarray:
    import producer

    return producer.generate(STL_N, seasonality={"amplitude": 5.0, "period": 200}, threads=CORES)
