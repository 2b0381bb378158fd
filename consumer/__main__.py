"""``python -m consumer``: command-line front end of the streaming detector."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from consumer.run import ConsumerConfig, OutputPaths, run_consumer
from shared.cli import OneLineParser, Progress, exit_now, run_cli
from shared.errors import StopRequest, UsageError
from shared.params import positive_float, positive_int


def build_parser() -> argparse.ArgumentParser:
    """The consumer's command-line options."""
    p = OneLineParser(
        prog="consumer",
        description="Detect anomalies in a producer stream (tailing it while it is written), "
        "a plain .npy file, a raw float file, or a CSV / Parquet / Arrow table.",
    )
    p.add_argument(
        "--file",
        required=True,
        help="stream .npy (or plain .npy, raw with --raw, .csv, .parquet or a Parquet "
        "dataset folder, .arrow/.feather)",
    )
    p.add_argument("--column", help="table inputs: the value column")
    p.add_argument(
        "--timestamp", help="table inputs: the timestamp column (rows go on its time grid)"
    )
    p.add_argument("--format", help="csv, parquet, arrow or npy (default: from the suffix)")
    p.add_argument(
        "--max-irregular",
        "--max_irregular",
        default="0.01",
        help="fraction of rows that may be out of order, duplicated or off the grid and "
        "are repaired (default 0.01; 0: any is an error)",
    )
    p.add_argument("--series", help="table inputs: where the series is read to (<stem>.series.npy)")
    _detection_options(p)
    _stream_options(p)
    from shared.engine import add_engine_options

    add_engine_options(p)
    return p


def _detection_options(p: argparse.ArgumentParser) -> None:
    """The detector, its outputs and the labels to score it against."""
    p.add_argument("--type", default="zscore", help="detector: zscore, stl or likelihood")
    p.add_argument("--params", help='detector JSON, e.g. \'{"window": 1000, "threshold": 4}\'')
    p.add_argument("--threads", default=None, help="worker threads (default: all cores)")
    p.add_argument("--out", help="Parquet output (default <stem>.anomalies.parquet)")
    p.add_argument("--indices", help="sorted int64 indices .npy (default <stem>.anomalies.npy)")
    p.add_argument("--scores", help="also write dense float32 scores to this .npy")
    p.add_argument(
        "--score-scale",
        "--score_scale",
        default="raw",
        help="--scores: raw (the detector's score) or unit (its map into [0, 1])",
    )
    p.add_argument("--summary", help="summary JSON (default <stem>.summary.json)")
    p.add_argument(
        "--labels",
        help="labelled indices: .npy or a Zarr stream store (precision/recall/F1), or "
        "windows: NAB's combined_windows.json or a start,end CSV (event figures)",
    )
    p.add_argument(
        "--tolerance",
        default=None,
        help="samples between a flag and a label that still count as a hit",
    )


def _stream_options(p: argparse.ArgumentParser) -> None:
    """Following the stream, resuming, verifying, metrics and messages."""
    p.add_argument(
        "--follow",
        dest="follow",
        action="store_true",
        default=True,
        help="wait for a running producer (default)",
    )
    p.add_argument(
        "--no-follow",
        dest="follow",
        action="store_false",
        help="process only what is committed now",
    )
    p.add_argument("--timeout", default="10", help="seconds without producer heartbeat (10)")
    p.add_argument(
        "--wait", default="0", help="wait up to this many seconds for the stream to be created (0)"
    )
    p.add_argument("--raw", action="store_true", help="input is raw samples without NPY header")
    p.add_argument("--dtype", default="float64", help="--raw sample type: float64 or float32")
    p.add_argument(
        "--chunk_size",
        "--chunk-size",
        default=None,
        help="chunk size for files without a sidecar (default 1048576)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="only check every committed chunk's CRC-32 (exit 1 if any differs)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--metrics", help="append throughput samples (JSONL) to this file")
    p.add_argument(
        "--metrics_interval",
        "--metrics-interval",
        default="0.25",
        help="seconds between metrics samples (default 0.25)",
    )
    p.add_argument("--time", action="store_true", help="also print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _verify(args: argparse.Namespace) -> int:
    from shared.stream import StreamReader
    from shared.zarr_store import ZarrStreamReader, is_zarr

    with (ZarrStreamReader if is_zarr(args.file) else StreamReader)(args.file) as r:
        st = r.poll()
        bad = r.verify()
        n = int(st.committed.sum())
    if bad:
        print(
            f"consumer: {len(bad)} of {n} committed chunks are corrupted: "
            + " ".join(map(str, bad))
        )
        return 1
    if not args.quiet:
        print(f"consumer: all {n} committed chunks match their CRC-32")
    return 0


def _config(args: argparse.Namespace) -> ConsumerConfig:
    """The run's settings from the flags, validated (errors name the flags)."""
    if args.overwrite and args.resume:
        raise UsageError("--overwrite and --resume contradict each other")
    from consumer.inputs import input_format
    from shared.zarr_store import output_base

    table = not args.raw and input_format(args.file, args.format) != "npy"
    if Path(args.file).is_dir() and not (args.column or args.format):
        table = False  # a folder is a Parquet dataset only when a column is asked for
    if args.series and not table:
        raise UsageError("--series is for CSV, Parquet and Arrow inputs")
    if args.score_scale not in ("raw", "unit"):
        raise UsageError(f"--score-scale must be raw or unit, not {args.score_scale!r}")
    if args.score_scale != "raw" and not args.scores:
        raise UsageError("--score-scale applies to --scores: give --scores PATH")
    max_irregular = _fraction("--max-irregular", args.max_irregular)
    paths = OutputPaths.for_input(
        output_base(args.file),  # a Zarr store's URL: in the current directory
        out=args.out,
        indices=args.indices,
        summary=args.summary,
        scores=args.scores,
        series=args.series,
        table=table,
    )
    return ConsumerConfig(
        type=args.type,
        params=args.params,
        threads=positive_int("--threads", args.threads) if args.threads else None,
        paths=paths,
        labels=args.labels,
        tolerance=positive_int("--tolerance", args.tolerance, minimum=0)
        if args.tolerance
        else None,
        follow=args.follow,
        timeout=positive_float("--timeout", args.timeout),
        raw_dtype=args.dtype if args.raw else None,
        chunk_size=positive_int("--chunk_size", args.chunk_size) if args.chunk_size else None,
        resume=args.resume,
        overwrite=args.overwrite,
        wait_s=positive_float("--wait", args.wait) if args.wait not in ("0", "0.0") else 0.0,
        column=args.column,
        timestamp=args.timestamp,
        format=args.format,
        max_irregular=max_irregular,
        score_scale=args.score_scale,
        cli=True,
    )


def _fraction(name: str, text: str) -> float:
    """A number in [0, 1]."""
    try:
        f = float(text)
    except ValueError:
        raise UsageError(f"{name} must be a number in [0, 1], not {text!r}") from None
    if not 0 <= f <= 1:
        raise UsageError(f"{name} must be a number in [0, 1], not {text}")
    return f


def _summary_line(summary: dict, parquet: Path) -> str:
    extra = ""
    if "precision" in summary:
        extra = (
            f", precision {summary['precision']:.3f} recall {summary['recall']:.3f} "
            f"F1 {summary['f1']:.3f}"
        )
    if "events" in summary:
        ev = summary["events"]
        delay = ev["median_delay"]
        extra += (
            f", windows {ev['windows_detected']}/{ev['windows']} detected, "
            f"{ev['false_alarms']} false alarms ({ev['false_alarms_per_1000']:.2f} per 1000)"
            + (f", median delay {delay:g} samples" if delay is not None else "")
        )
    if "time_range" in summary:
        extra += f", {summary['time_range']['start']} .. {summary['time_range']['end']}"
    partial = " (partial: stream incomplete)" if summary["status"] == "partial" else ""
    return (
        f"consumer: {summary['samples']} samples{partial} in {summary['seconds']:.2f} s: "
        f"{summary['samples_per_s'] / 1e6:.1f}M samples/s, {summary['anomalies']} anomalies"
        f"{extra}, peak RSS {summary['peak_rss_bytes'] / 2**20:.0f} MiB -> {parquet}"
    )


# Seconds a cold compile of each detector's kernels took on the development machine
# (2 cores, loaded by other jobs; NUMBA_CACHE_DIR pointed at an empty directory).
COMPILE_SECONDS = {"zscore": 15, "likelihood": 4, "stl": 30}


def _prepare_kernels(detector: str, quiet: bool) -> None:
    """Cached kernels load cheaply; a run that must compile them first says so.

    numba is set up only if the run imports it: the default z-score run's kernel is
    native (``consumer.kernels.zscore_native``), which says when it builds.
    """
    from consumer.kernels import zscore_native
    from shared.jit import announce_compiles, fast_cache_loads, to_stderr, when_numba_loads

    def numba_setup() -> None:
        fast_cache_loads()
        if not quiet and detector in COMPILE_SECONDS:
            announce_compiles("consumer", detector, COMPILE_SECONDS[detector])

    when_numba_loads(numba_setup)
    if not quiet:
        zscore_native.announce = to_stderr


def _run(args: argparse.Namespace, stop: StopRequest) -> int:
    config = _config(args)
    from shared.engine import engine_options

    # --verify reads a Zarr store's chunks here, without Dask.
    engine = engine_options(args, stores=() if args.verify else (args.file, args.scores))
    interval = positive_float("--metrics_interval", args.metrics_interval)
    if args.verify:
        return _verify(args)
    _prepare_kernels(args.type, args.quiet)
    progress = Progress("consumer", quiet=args.quiet, metrics=args.metrics, interval=interval)

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"consumer: {msg}", file=sys.stderr)

    run = run_consumer
    if engine.dask:  # the same run, its kernels on a Dask cluster
        from functools import partial

        from consumer.dask_engine import run_consumer_dask

        run = partial(run_consumer_dask, engine=engine)
    try:
        summary = run(
            args.file,
            config,
            stop=stop,
            on_progress=progress.advance,
            on_start=lambda reader, _: progress.start(reader.num_samples),
            log=log,
        )
    finally:
        progress.close()
    if not args.quiet:
        print(_summary_line(summary, config.paths.parquet))
    if args.time:
        print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the consumer CLI on ``argv``; return the exit status."""
    return run_cli("consumer", build_parser(), _run, argv)


if __name__ == "__main__":
    exit_now(main())
