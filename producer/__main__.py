"""``python -m producer``: command-line front end of the stream writer."""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass

from producer.generate import MIN_CHUNK_SIZE
from shared.cli import OneLineParser, Progress, exit_now, run_cli
from shared.engine import add_engine_options, engine_options
from shared.errors import StopRequest, UsageError
from shared.params import GenerationParams, generation_params, positive_float, positive_int
from shared.stream import SUPPORTED_DTYPES

DEFAULT_CHUNK = 1 << 20


def build_parser() -> argparse.ArgumentParser:
    """The producer's command-line options."""
    p = OneLineParser(
        prog="producer",
        description="Write a reproducible synthetic time series to a .npy stream that a "
        "consumer can tail while it grows.",
    )
    p.add_argument("--num_samples", "--num-samples", required=True, help="number of samples N")
    p.add_argument("--file", required=True, help="output .npy path (sidecar <stem>.stream.json)")
    p.add_argument("--type", default="normal", help="distribution: normal or uniform")
    p.add_argument("--params", help='distribution JSON, e.g. \'{"mean": 0, "std": 1}\'')
    p.add_argument("--seasonality", help='JSON {"amplitude", "period", "phase" (radians)}')
    p.add_argument("--trend", help='JSON {"slope": per-sample increment}')
    p.add_argument("--anomalies", help='JSON {"rate", "magnitude" (in std units)}')
    p.add_argument("--seed", default="42", help="RNG seed (default 42)")
    p.add_argument("--threads", default=None, help="worker threads (default: all cores)")
    p.add_argument(
        "--chunk_size",
        "--chunk-size",
        default=str(DEFAULT_CHUNK),
        help=f"samples per committed chunk, at least {MIN_CHUNK_SIZE} (default {DEFAULT_CHUNK}; "
        "multiples of 65536 are fastest)",
    )
    p.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    p.add_argument("--sync", action="store_true", help="write chunks strictly in order (HDDs)")
    p.add_argument("--lookahead", default="2", help="--sync: chunks generated ahead (default 2)")
    p.add_argument("--fsync", action="store_true", help="make each chunk durable before commit")
    p.add_argument(
        "--no-preallocate",
        dest="preallocate",
        action="store_false",
        help="do not reserve the file's full size up front (sparse file)",
    )
    p.add_argument(
        "--ring",
        help="write a bounded ring of chunk slots of this size (512MiB, 2GiB) instead of an "
        "N-sample file; it waits for its consumers",
    )
    p.add_argument(
        "--ring-consumers",
        "--ring_consumers",
        default="1",
        help="--ring: consumers to wait for before the first slot is overwritten (default 1)",
    )
    p.add_argument(
        "--ring-timeout",
        "--ring_timeout",
        default="60",
        help="--ring: seconds to wait for a consumer that stopped beating (default 60)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing stream")
    p.add_argument(
        "--resume", action="store_true", help="finish an interrupted stream (or start a new one)"
    )
    p.add_argument("--metrics", help="append throughput samples (JSONL) to this file")
    p.add_argument(
        "--metrics_interval",
        "--metrics-interval",
        default="0.25",
        help="seconds between metrics samples (default 0.25)",
    )
    p.add_argument("--time", action="store_true", help="also print the figures as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    add_engine_options(p)
    return p


@dataclass
class _Options:
    """The validated flags of one producer run."""

    n: int
    threads: int
    chunk: int
    lookahead: int
    interval: float
    params: GenerationParams
    ring: int | None = None
    ring_consumers: int = 1
    ring_timeout: float = 60.0


def _options(args: argparse.Namespace) -> _Options:
    n = positive_int("--num_samples", args.num_samples)
    threads = positive_int("--threads", args.threads) if args.threads else (os.cpu_count() or 1)
    chunk = positive_int("--chunk_size", args.chunk_size)  # write_stream checks the minimum
    interval = positive_float("--metrics_interval", args.metrics_interval)
    lookahead = positive_int("--lookahead", args.lookahead, minimum=0)
    seed = positive_int("--seed", args.seed, minimum=0)
    if args.dtype not in SUPPORTED_DTYPES:
        raise UsageError(f"--dtype must be float64 or float32, not {args.dtype!r}")
    if args.overwrite and args.resume:
        raise UsageError("--overwrite and --resume contradict each other")
    params = generation_params(
        seed=seed,
        type=args.type,
        params=args.params,
        seasonality=args.seasonality,
        trend=args.trend,
        anomalies=args.anomalies,
        cli=True,
    )
    return _Options(n, threads, chunk, lookahead, interval, params, *_ring_options(args, n, chunk))


def _ring_options(args: argparse.Namespace, n: int, chunk: int) -> tuple[int | None, int, float]:
    """``--ring`` in bytes (None: a file stream), ``--ring-consumers``, ``--ring-timeout``."""
    from shared.ring import parse_size, ring_slots

    consumers = positive_int("--ring-consumers", args.ring_consumers, minimum=0)
    timeout = positive_float("--ring-timeout", args.ring_timeout)
    if args.ring is None:
        given = args.ring_consumers != "1" or args.ring_timeout != "60"
        if given and not args.resume:  # a resumed ring takes them without --ring
            raise UsageError("--ring-consumers and --ring-timeout are for --ring streams")
        return None, consumers, timeout
    size = parse_size("--ring", args.ring)
    itemsize = 8 if args.dtype == "float64" else 4
    ring_slots(size, chunk, itemsize, -(-n // chunk), f"--ring {args.ring}")
    return size, consumers, timeout


# Seconds a cold compile of the generator's kernels took on the development machine
# (2 cores, NUMBA_CACHE_DIR pointed at an empty directory).
COMPILE_SECONDS = 3


def _prepare_kernels(quiet: bool) -> None:
    """Cached kernels load cheaply; a run that must compile them first says so."""
    from shared.jit import announce_compiles, fast_cache_loads

    fast_cache_loads()
    if not quiet:
        announce_compiles("producer", "generator", COMPILE_SECONDS)


def _run(args: argparse.Namespace, stop: StopRequest) -> int:
    opt = _options(args)
    engine = engine_options(args, stores=(args.file,))
    _prepare_kernels(args.quiet)
    progress = Progress("producer", quiet=args.quiet, metrics=args.metrics, interval=opt.interval)

    def on_open(writer, todo) -> None:
        if writer.status != "complete":
            left = sum(writer.layout.bounds(i)[1] - writer.layout.bounds(i)[0] for i in todo)
            progress.start(opt.n, initial=opt.n - left)

    from producer.write import write_stream

    if engine.dask:  # the same call, run on a Dask cluster
        from functools import partial

        from producer.dask_engine import write_stream_dask

        write_stream = partial(write_stream_dask, engine=engine)
    t0 = time.perf_counter()
    try:
        result = write_stream(
            args.file,
            opt.n,
            opt.params,
            dtype=args.dtype,
            threads=opt.threads,
            chunk_size=opt.chunk,
            sync=args.sync,
            lookahead=opt.lookahead,
            overwrite=args.overwrite,
            resume=args.resume,
            fsync=args.fsync,
            stop=stop,
            on_progress=progress.advance,
            on_open=on_open,
            preallocate=args.preallocate,
            ring=opt.ring,
            ring_consumers=opt.ring_consumers,
            ring_timeout=opt.ring_timeout,
        )
    finally:
        progress.close()
    if result.chunks == 0 and args.resume:
        print(f"producer: {args.file} is already complete; nothing to do")
        return 0
    figures = _figures(args, opt, result, time.perf_counter() - t0)
    if not args.quiet:
        print(_summary_line(args, result, figures))
    if args.time:
        print(json.dumps(figures))
    return 0


def _figures(args: argparse.Namespace, opt: _Options, result, total_seconds: float) -> dict:
    """The run's figures (``--time`` prints them as JSON)."""
    from shared.metrics import peak_rss_bytes

    seconds = result.seconds  # generation and writing, without set-up
    itemsize = 8 if args.dtype == "float64" else 4
    rate = result.samples / seconds if seconds > 0 else float("inf")
    return {
        "samples": result.samples,
        "seconds": round(seconds, 4),
        "total_seconds": round(total_seconds, 4),
        "started_at": result.started_at,
        "finished_at": result.started_at + seconds,
        "samples_per_s": rate,
        "mb_per_s": rate * itemsize / 1e6,
        "peak_rss_bytes": peak_rss_bytes(),
        "threads": opt.threads,
        "sync": args.sync,
        "file": str(args.file),
        "labels": str(result.labels_path) if result.labels_path else None,
        "num_labels": result.num_labels,
    }


def _summary_line(args: argparse.Namespace, result, f: dict) -> str:
    resumed = " (resumed)" if args.resume else ""
    labels = f" (+{result.num_labels} labels in {result.labels_path})" if result.labels_path else ""
    return (
        f"producer: {result.samples} samples{resumed} in {f['seconds']:.2f} s "
        f"({f['total_seconds']:.2f} s with set-up): "
        f"{f['samples_per_s'] / 1e6:.1f}M samples/s, {f['mb_per_s']:.0f} MB/s, "
        f"peak RSS {f['peak_rss_bytes'] / 2**20:.0f} MiB -> {args.file}{labels}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the producer CLI on ``argv``; return the exit status."""
    return run_cli("producer", build_parser(), _run, argv)


if __name__ == "__main__":
    exit_now(main())
