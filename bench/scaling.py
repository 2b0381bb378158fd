"""Thread scaling of the three hot paths, for machines with more cores than the CI box.

    python bench/scaling.py --n 100000000 --threads 1 2 4 8 16 --dir /dev/shm --out scaling.json

Measures (median of ``--rounds``): in-memory generation (``producer.generate``), writing a
stream (``write_stream``, async), the consumer's rolling z-score over the page-cached stream,
and ``stl_decompose`` (period 200, inner_iter=2) on ``--stl_n`` samples.  Prints one JSON
object per measurement and writes them all to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_time  # noqa: E402

SEASON = {"amplitude": 5.0, "period": 200}


def _record(results: list, what: str, threads: int, samples: int, seconds: float) -> None:
    r = {
        "what": what,
        "threads": threads,
        "samples": samples,
        "seconds": round(seconds, 4),
        "samples_per_s": samples / seconds,
        "cores": os.cpu_count(),
    }
    results.append(r)
    print(json.dumps(r), flush=True)


def _measure(t: int, n: int, stream: Path, series, work: Path, rounds: int, results) -> None:
    """Every stage at ``t`` threads."""
    import producer
    from consumer.kernels.stl import stl_decompose
    from consumer.run import OutputPaths, run_consumer
    from producer import write_stream
    from shared.params import generation_params
    from shared.stream import sidecar_path

    params = generation_params(seasonality=SEASON)

    def write() -> None:
        path = work / f"scaling-w{t}.npy"
        write_stream(path, n, params, threads=t, overwrite=True)
        path.unlink()
        sidecar_path(path).unlink()

    def zscore() -> None:
        names = {"out": "z.parquet", "indices": "z.npy", "summary": "z.json"}
        paths = OutputPaths.for_input(stream, **{k: str(work / v) for k, v in names.items()})
        zparams = {"window": 1000, "threshold": 4}
        run_consumer(stream, type="zscore", params=zparams, threads=t, paths=paths, overwrite=True)

    def generate() -> None:
        producer.generate(n, seasonality=SEASON, threads=t)

    def stl() -> None:
        stl_decompose(series, 200, inner_iter=2, threads=t)

    _record(results, "generate to memory", t, n, median_time(generate, rounds))
    _record(results, "write stream (async)", t, n, median_time(write, rounds))
    _record(results, "consumer zscore", t, n, median_time(zscore, rounds))
    _record(results, "stl_decompose p=200", t, len(series), median_time(stl, rounds))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--stl_n", type=float, default=1e7)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=".", help="where the stream files go")
    ap.add_argument("--out", default="scaling.json")
    args = ap.parse_args(argv)

    import producer
    from consumer.kernels.stl import stl_decompose
    from producer import write_stream
    from shared.params import generation_params

    n, stl_n = int(args.n), int(args.stl_n)
    work = Path(args.dir)
    stream = work / "scaling-stream.npy"
    params = generation_params(seasonality=SEASON)
    write_stream(stream, n, params, threads=max(args.threads), overwrite=True)
    series = producer.generate(stl_n, seasonality=SEASON, threads=max(args.threads))
    stl_decompose(series[:4000], 200, inner_iter=2)  # compile / load the kernels once
    producer.generate(1 << 16, seasonality=SEASON)
    results: list = []
    for t in args.threads:
        _measure(t, n, stream, series, work, args.rounds, results)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
