"""What a chunk size that is not a multiple of the RNG block (65536) costs the producer.

    python bench/chunk_sizes.py --n 100000000 --chunks 1048576 1000000 65536 4096 --rounds 5

Writes the same stream (``write_stream``, seasonality and anomalies on, async) with each
``--chunks`` size in turn, the sizes alternated within every round so that a machine
whose speed drifts treats them alike, on ``--threads`` threads (and with ``--sync`` if
asked), into ``--dir``.  Prints one JSON object per size: the median seconds and
samples/s over the rounds, the median CPU seconds of the process (less disturbed than
the wall clock when other work shares the machine), and both ratios to the first size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1 << 20, 1_000_000, 65536, 4096])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sync", action="store_true")
    ap.add_argument("--dir", default=None, help="where the stream is written (default: a tmp dir)")
    args = ap.parse_args(argv)

    from producer import write_stream
    from shared.params import generation_params

    n = int(args.n)
    params = generation_params(
        seasonality={"amplitude": 5.0, "period": 200}, anomalies={"rate": 1e-5, "magnitude": 6}
    )
    work = Path(args.dir or tempfile.mkdtemp(prefix="chunks-"))
    path = work / "chunks.npy"
    times: dict[int, list[float]] = {c: [] for c in args.chunks}
    cpu: dict[int, list[float]] = {c: [] for c in args.chunks}
    write_stream(path, min(n, 1 << 20), params, overwrite=True)  # kernels loaded, pages warm
    for _ in range(args.rounds):
        for chunk in args.chunks:
            t0, c0 = time.perf_counter(), time.process_time()
            write_stream(
                path,
                n,
                params,
                threads=args.threads,
                chunk_size=chunk,
                sync=args.sync,
                overwrite=True,
            )
            times[chunk].append(time.perf_counter() - t0)
            cpu[chunk].append(time.process_time() - c0)
    base = statistics.median(times[args.chunks[0]])
    base_cpu = statistics.median(cpu[args.chunks[0]])
    for chunk in args.chunks:
        t, c = statistics.median(times[chunk]), statistics.median(cpu[chunk])
        row = {
            "chunk_size": chunk,
            "samples": n,
            "threads": args.threads,
            "sync": args.sync,
            "seconds": round(t, 4),
            "samples_per_s": n / t,
            "time_vs_first": round(t / base, 3),
            "cpu_seconds": round(c, 4),
            "cpu_vs_first": round(c / base_cpu, 3),
            "rounds": [round(x, 4) for x in times[chunk]],
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
