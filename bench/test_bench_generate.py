"""Generation throughput: threads, to memory vs to file, async vs --sync, and the baseline."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import CORES, THREADS, N, run_and_record

pytestmark = pytest.mark.benchmark(group="generate")

SEASONALITY = {"amplitude": 0.1, "period": 200}


def test_numpy_normal_baseline(benchmark):
    """What the original demo did per chunk: np.random.normal plus np.sin, one thread."""

    def run():
        x = np.random.normal(0.0, 1.0, N)
        x += 0.1 * np.sin(2 * np.pi * np.arange(N) / 200)
        return x

    run_and_record(
        benchmark,
        run,
        N,
        kernel="generate",
        baseline=True,
        label="np.random.normal + np.sin (1 thread)",
    )


@pytest.mark.parametrize("threads", THREADS)
def test_generate_to_memory(benchmark, threads):
    import producer

    out = producer.generate(1 << 16, seasonality=SEASONALITY)  # load the kernel
    del out
    run_and_record(
        benchmark,
        lambda: producer.generate(N, seasonality=SEASONALITY, threads=threads),
        N,
        kernel="generate",
        label="to memory",
        threads=threads,
    )


@pytest.mark.parametrize(("threads", "sync"), list(itertools.product(THREADS, [False, True])))
def test_generate_to_file(benchmark, bench_dir, threads, sync):
    from producer import write_stream
    from shared.params import generation_params
    from shared.stream import sidecar_path

    params = generation_params(seasonality=SEASONALITY)
    names = itertools.count()
    state = {}

    def setup():
        path = bench_dir / f"gen-{threads}-{sync}-{next(names)}.npy"
        state["path"] = path
        return (), {}

    def run():
        write_stream(state["path"], N, params, threads=threads, sync=sync)
        # Delete right away: the next round must not wait on this file's writeback.
        state["path"].unlink()
        sidecar_path(state["path"]).unlink()

    run_and_record(
        benchmark,
        run,
        N,
        kernel="generate",
        setup=setup,
        threads=threads,
        label="to file (--sync)" if sync else "to file (async)",
        cores=CORES,
    )
