"""The same detection loop in the driver's process and in a Dask worker process.

    python bench/dask_worker_env.py --n 268435456 --rounds 7 --dir /dev/shm
    python bench/dask_worker_env.py --n 268435456 --rounds 7 --dir /dev/shm --no_trim
    python bench/dask_worker_env.py --n 16777216 --rounds 4 --type stl [--keep_freed]

Writes a stream of ``--n`` samples (seasonal, float64) once, then alternates, ``--rounds``
times, one pass of the local engine's chunk worker (``consumer.run._Worker``: map the
chunk's window, run the detector: ``--type zscore``, rolling, window 1000, threshold 4,
or ``stl``, period 200, seasonal 7) over every chunk, run
in this process and then as one task on a ``LocalCluster`` of one worker process with one
thread.  For each it reports the median wall seconds and the task thread's system
seconds, user seconds and minor page faults: a process-level difference (allocator
settings, the worker's own threads) shows as a gap between the two with the same work.
``--no_trim`` starts the worker without the ``MALLOC_TRIM_THRESHOLD_`` that Dask's nanny
sets by default (``distributed.nanny.pre-spawn-environ``), which makes glibc return
freed memory at once, so that a buffer allocated per call is fresh pages every time;
``--keep_freed`` first applies what the engine's worker plugin does (``shared.malloc``).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DETECTORS = {
    "zscore": {"window": 1000, "threshold": 4},
    "stl": {"threshold": 5, "seasonal": 7, "period": 200},
}


def chunk_pass(stream: str, chunk: int, kind: str) -> tuple[float, float, float, int]:
    """(wall, system, user seconds, minor faults) of this thread for one pass."""
    from consumer.dask_engine import _SamplesFile
    from consumer.detectors.registry import make_detector
    from consumer.run import _Worker
    from shared.stream import Layout, read_npy_header

    info = read_npy_header(Path(stream))
    layout = Layout(info.num_samples, info.dtype, chunk, info.header_len)
    detector = make_detector(kind, DETECTORS[kind], info.num_samples)
    detector.warm_up(layout.dtype, False)
    r0, t0 = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter()
    with _SamplesFile(stream, layout) as reader:
        worker = _Worker(reader, detector, False, False)
        for c in range(layout.num_chunks):
            worker(c)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_THREAD)
    return wall, r1.ru_stime - r0.ru_stime, r1.ru_utime - r0.ru_utime, r1.ru_minflt - r0.ru_minflt


def main() -> None:
    """Measure and print one JSON line per process, then a one-line comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=lambda s: int(float(s)), default=1 << 28)
    ap.add_argument("--chunk", type=int, default=1 << 20)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--type", choices=sorted(DETECTORS), default="zscore")
    ap.add_argument(
        "--keep_freed",
        action="store_true",
        help="apply shared.malloc.keep_freed_memory in the worker (as the engine's plugin does)",
    )
    ap.add_argument("--dir", default="/dev/shm")
    ap.add_argument("--no_trim", action="store_true", help="worker without MALLOC_TRIM_THRESHOLD_")
    args = ap.parse_args()
    import dask
    from distributed import Client, LocalCluster

    from producer.write import write_stream
    from shared.params import generation_params

    if args.no_trim:
        env = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        env.pop("MALLOC_TRIM_THRESHOLD_", None)
        dask.config.set({"distributed.nanny.pre-spawn-environ": env})
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        stream = str(Path(d) / "z.npy")
        params = generation_params(seasonality={"amplitude": 5.0, "period": 200})
        write_stream(stream, args.n, params, chunk_size=args.chunk, threads=2)
        cluster = LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
        try:
            if args.keep_freed:
                from shared.malloc import keep_freed_memory

                client.run(keep_freed_memory)
            runs: dict[str, list] = {"driver": [], "worker": []}
            for _ in range(args.rounds):
                runs["driver"].append(chunk_pass(stream, args.chunk, args.type))
                task = client.submit(chunk_pass, stream, args.chunk, args.type, pure=False)
                runs["worker"].append(task.result())
        finally:
            client.shutdown()
    medians = {}
    for where, rs in runs.items():
        med = [statistics.median(r[k] for r in rs) for k in range(4)]
        medians[where] = med
        row = {"where": where, "type": args.type, "samples": args.n}
        row.update(no_trim=args.no_trim, keep_freed=args.keep_freed)
        row.update(zip(("wall_s", "sys_s", "user_s", "minor_faults"), med, strict=True))
        row["walls"] = [round(r[0], 4) for r in rs]
        print(json.dumps(row), flush=True)
    d, w = medians["driver"], medians["worker"]
    print(
        f"worker / driver: wall {w[0] / d[0]:.3f}x, minor faults {w[3]:.0f} vs {d[3]:.0f}"
        f" (type={args.type}, no_trim={args.no_trim}, keep_freed={args.keep_freed})"
    )


if __name__ == "__main__":
    main()
