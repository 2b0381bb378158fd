"""``python -m producer.replay``: replay a real table as a live producer stream.

    python -m producer.replay --input data.csv --column value --timestamp timestamp \\
        --file live.npy [--rate 1e6] [--chunk_size 65536]

The table (CSV, Parquet file or folder, Arrow / Feather) is first read onto its
time grid exactly as the consumer reads it (``consumer.inputs``; a hidden
series file beside ``--file``, removed at the end), then written chunk by chunk
into a normal producer stream, each chunk committed as soon as it is written
(at ``--rate`` samples per second if given), so that a consumer tails it as it
would a live source.  The sidecar records the time grid (``"time"``) and the
original file (``"source"``), so the consumer's outputs carry timestamps and
NAB's windows find the file.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from shared.cli import OneLineParser, Progress, exit_now, run_cli
from shared.errors import StopRequest, UsageError
from shared.params import positive_float, positive_int
from shared.stream import StreamReader, StreamWriter, check_output_path, sidecar_path

DEFAULT_CHUNK = 1 << 16


def build_parser() -> argparse.ArgumentParser:
    """The replayer's command-line options."""
    p = OneLineParser(
        prog="producer.replay",
        description="Replay a CSV / Parquet / Arrow table as a producer stream, chunk by chunk.",
    )
    p.add_argument("--input", required=True, help="the table (.csv, .parquet or folder, .arrow)")
    p.add_argument("--column", required=True, help="the value column")
    p.add_argument("--timestamp", help="the timestamp column (rows go on its time grid)")
    p.add_argument("--format", help="csv, parquet or arrow (default: from the suffix)")
    p.add_argument(
        "--max-irregular",
        "--max_irregular",
        default="0.01",
        help="fraction of irregular rows repaired (as for the consumer; default 0.01)",
    )
    p.add_argument("--file", required=True, help="the stream to write (.npy + sidecar)")
    p.add_argument(
        "--chunk_size",
        "--chunk-size",
        default=str(DEFAULT_CHUNK),
        help=f"samples per committed chunk (default {DEFAULT_CHUNK})",
    )
    p.add_argument("--rate", help="samples per second to replay at (default: as fast as possible)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing stream")
    p.add_argument("--metrics", help="append throughput samples (JSONL) to this file")
    p.add_argument("--metrics_interval", "--metrics-interval", default="0.25")
    p.add_argument("--time", action="store_true", help="also print the figures as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def replay(
    input: str | os.PathLike[str],
    file: str | os.PathLike[str],
    *,
    column: str,
    timestamp: str | None = None,
    format: str | None = None,
    max_irregular: float = 0.01,
    chunk_size: int = DEFAULT_CHUNK,
    rate: float | None = None,
    overwrite: bool = False,
    stop: StopRequest | None = None,
    on_start=None,
    on_progress=None,
    log=None,
) -> dict:
    """Write ``input``'s series into the stream ``file``, committing chunk by chunk.

    Parameters
    ----------
    input
        The table.
    file
        The stream's data file.
    column, timestamp, format, max_irregular
        As for the consumer (``consumer.inputs.TableOptions``).
    chunk_size
        Samples per committed chunk.
    rate
        Samples per second (None: as fast as the disk allows).
    overwrite
        Replace an existing stream.
    stop
        Stops the replay (the stream is marked failed: interrupted).
    on_start, on_progress, log
        ``on_start(num_samples)``, ``on_progress(k)`` and ``log(message)`` callbacks.

    Returns
    -------
    dict
        Figures: samples, seconds, samples_per_s, started_at, finished_at, file.
    """
    from consumer.inputs import TableOptions, convert

    path = Path(file)
    check_output_path(path)
    if not overwrite:
        for p in (path, sidecar_path(path)):
            if p.exists():
                raise UsageError(f"{p} exists; pass --overwrite to replace it")
    series = path.with_name(f".{path.stem}.replay-series.npy")
    options = TableOptions(column, timestamp, format, max_irregular)
    try:
        conv = convert(input, series, options, chunk_size=chunk_size, stop=stop, log=log)
        with StreamReader(series) as reader:
            extra = {
                "generation": {},
                "source": reader.doc["source"],
                "table": reader.doc["table"],
                "rows": reader.doc["rows"],
                "missing_samples": reader.doc["missing_samples"],
                "irregular_rows": reader.doc["irregular_rows"],
            }
            if "time" in reader.doc:
                extra["time"] = reader.doc["time"]
            n = reader.num_samples
            writer = StreamWriter(
                path,
                num_samples=n,
                dtype="float64",
                chunk_size=chunk_size,
                extra=extra,
                overwrite=overwrite,
            )
            if on_start:
                on_start(n)
            started = time.time()
            t0 = time.perf_counter()
            buf = np.empty(chunk_size, np.float64)
            try:
                for chunk in range(writer.layout.num_chunks):
                    if stop is not None and stop.is_set():
                        raise stop.interrupted()
                    a, b = writer.layout.bounds(chunk)
                    if rate:
                        delay = t0 + b / rate - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    writer.write_chunk(chunk, reader.read_into(a, b, buf))
                    if on_progress:
                        on_progress(b - a)
            except BaseException as e:
                writer.fail(str(e) or type(e).__name__)
                raise
            writer.finish()
            seconds = time.perf_counter() - t0
    finally:
        series.unlink(missing_ok=True)
        sidecar_path(series).unlink(missing_ok=True)
    return {
        "samples": n,
        "rows": conv.rows,
        "seconds": round(seconds, 4),
        "read_seconds": round(conv.seconds, 4),
        "started_at": started,
        "finished_at": started + seconds,
        "samples_per_s": n / seconds if seconds > 0 else float("inf"),
        "file": str(path),
        "time": conv.grid.to_json() if conv.grid else None,
    }


def _run(args: argparse.Namespace, stop: StopRequest) -> int:
    from shared.metrics import peak_rss_bytes

    chunk = positive_int("--chunk_size", args.chunk_size)
    rate = positive_float("--rate", args.rate) if args.rate else None
    interval = positive_float("--metrics_interval", args.metrics_interval)
    try:
        max_irregular = float(args.max_irregular)
    except ValueError:
        max_irregular = -1.0
    if not 0 <= max_irregular <= 1:
        raise UsageError(f"--max-irregular must be a number in [0, 1], not {args.max_irregular!r}")
    progress = Progress("producer", quiet=args.quiet, metrics=args.metrics, interval=interval)

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"producer.replay: {msg}", file=__import__("sys").stderr)

    try:
        figures = replay(
            args.input,
            args.file,
            column=args.column,
            timestamp=args.timestamp,
            format=args.format,
            max_irregular=max_irregular,
            chunk_size=chunk,
            rate=rate,
            overwrite=args.overwrite,
            stop=stop,
            on_start=progress.start,
            on_progress=progress.advance,
            log=log,
        )
    finally:
        progress.close()
    figures["peak_rss_bytes"] = peak_rss_bytes()
    if not args.quiet:
        print(
            f"producer.replay: {figures['samples']} samples ({figures['rows']} rows) in "
            f"{figures['seconds']:.2f} s -> {args.file}"
        )
    if args.time:
        print(json.dumps(figures))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the replayer CLI on ``argv``; return the exit status."""
    return run_cli("producer.replay", build_parser(), _run, argv)


if __name__ == "__main__":
    exit_now(main())
