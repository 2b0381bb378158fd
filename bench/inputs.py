"""Read rates of table inputs: pyarrow alone, ``consumer.inputs.convert``, the z-score consumer.

    python bench/inputs.py --rows 1e8 --csv_rows 1e7 --runs 3 --dir /tmp/bench-inputs

Writes (timestamp, value) inputs (1 s cadence, every 1000th row left out, so the
grid has gaps):

* ``default.parquet``: what pyarrow (and pandas' ``to_parquet``) write by default:
  snappy, dictionary pages (which fall back to plain for these columns), row
  groups of 1Mi rows;
* ``plain.parquet``: tuned for reading: no compression, plain encoding (no
  dictionary), same row groups;
* ``data.csv``: ISO timestamps, as ``pyarrow.csv`` writes them.

Then, per file, ``--runs`` rounds, the variants alternated within each round (wall
clock, medians and bests reported, and the CPU seconds each variant used, which
a shared machine's load disturbs much less than the wall clock):

* ``pyarrow_table``: pyarrow's own fastest read, the whole file at once on all
  cores (``pq.read_table`` / ``pyarrow.csv.read_csv``; memory grows with the file);
* ``pyarrow_batches``: pyarrow streaming in record batches of 1Mi rows
  (``ParquetFile.iter_batches`` / ``pyarrow.csv.open_csv``), both columns to numpy;
* ``pyarrow_timestamp``, ``pyarrow_value`` (Parquet): the same, one column alone;
* ``convert``: ``consumer.inputs.convert`` (read, validate, place on the grid,
  write the float64 series and its sidecar);
* ``consumer``: ``python -m consumer --file F --column value --timestamp
  timestamp --type zscore`` from launch to exit, the series deleted first (so it
  converts: start-up, reading, detection, outputs);
* ``rerun``: the same command again, reusing the series the last one wrote.

Rates are input rows per wall-clock second.  Peak RSS is not reported: Linux
carries a process's peak across ``exec``, so the consumer would report this
script's (measure it with ``/usr/bin/time -f %M`` on the command alone).  The
series is deleted before each ``convert`` and ``consumer`` run, so the new one
reuses its freed pages (on a fresh VM, first-touched page-cache pages cost more:
see the README).  The files are deleted at the end
(``--keep`` keeps them; ``--reuse`` uses files already in ``--dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PIECE = 1 << 22  # rows generated and written at a time


def _piece(a: int, b: int, rng: np.random.Generator):
    import pyarrow as pa

    t0 = np.datetime64("2020-01-01T00:00:00", "ns").astype(np.int64)
    i = np.arange(a, b, dtype=np.int64)
    i = i[i % 1000 != 999]
    ts = pa.array(t0 + i * 10**9, pa.timestamp("ns"))
    return pa.table({"timestamp": ts, "value": rng.standard_normal(len(i))})


def write_files(d: Path, rows: int, csv_rows: int) -> dict[str, Path]:
    """The three inputs, written piece by piece (bounded memory)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    paths = {"default": d / "default.parquet", "plain": d / "plain.parquet", "csv": d / "data.csv"}
    rng = np.random.default_rng(0)
    schema = _piece(0, 1, rng).schema
    tuned = {"compression": "none", "use_dictionary": False}
    with (
        pq.ParquetWriter(paths["default"], schema) as default,
        pq.ParquetWriter(paths["plain"], schema, **tuned) as plain,
    ):
        for a in range(0, rows, PIECE):
            t = _piece(a, min(rows, a + PIECE), rng)
            default.write_table(t, row_group_size=1 << 20)
            plain.write_table(t, row_group_size=1 << 20)
    with pacsv.CSVWriter(paths["csv"], schema) as w:
        for a in range(0, csv_rows, PIECE):
            w.write_table(_piece(a, min(csv_rows, a + PIECE), rng))
    return paths


def pyarrow_table(path: Path) -> int:
    """pyarrow's whole-file read on all cores, both columns to numpy."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    t = pacsv.read_csv(path) if path.suffix == ".csv" else pq.read_table(path)
    t.column("timestamp").to_numpy()
    t.column("value").to_numpy()
    return t.num_rows


def pyarrow_batches(path: Path, column: str | None = None) -> int:
    """pyarrow streaming in 1Mi-row record batches, both columns (or ``column`` of a
    Parquet file alone) to numpy."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix == ".csv":
        batches = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20))
    else:
        columns = [column] if column else None
        batches = pq.ParquetFile(path).iter_batches(batch_size=1 << 20, columns=columns)
    n = 0
    for b in batches:
        for c in b.columns:
            c.to_numpy(zero_copy_only=False)
        n += b.num_rows
    return n


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call (CPU: this process's user + system time)."""
    c0, t0 = os.times(), time.perf_counter()
    fn()
    c1, t1 = os.times(), time.perf_counter()
    return t1 - t0, (c1.user - c0.user) + (c1.system - c0.system)


def consumer_cmd(path: Path, d: Path) -> list[str]:
    """The measured command (outputs in ``d``)."""
    cmd = [sys.executable, "-m", "consumer", "--file", str(path), "--column", "value"]
    cmd += ["--timestamp", "timestamp", "--type", "zscore", "--overwrite", "--quiet", "--time"]
    cmd += ["--series", str(d / "series.npy"), "--summary", str(d / "s.json")]
    cmd += ["--out", str(d / "o.parquet"), "--indices", str(d / "o.npy")]
    return cmd + ["--params", '{"window": 1000, "threshold": 6}']


def remove_series(series: Path) -> None:
    """Delete the series and its sidecar (the next run converts; its pages come back)."""
    for p in (series, series.with_name(series.stem + ".stream.json")):
        p.unlink(missing_ok=True)


def run_consumer(cmd: list[str], fresh: bool, series: Path) -> tuple[float, float, dict]:
    """Wall seconds from launch to exit, the command's CPU seconds, its ``--time`` figures."""
    if fresh:
        remove_series(series)
    c0, t = os.times(), time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    wall, c1 = time.perf_counter() - t, os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if figures["input"]["series_reused"] == fresh:
        raise SystemExit(f"expected series_reused={not fresh}: {figures['input']}")
    return wall, cpu, figures


def bench_file(path: Path, d: Path, runs: int) -> dict:
    """Every variant on one file, alternated within each of ``runs`` rounds."""
    from consumer.inputs import TableOptions, convert

    rows = pyarrow_batches(path)  # also warms the page cache
    series = d / "series.npy"
    opts = TableOptions("value", "timestamp")
    convert(path, series, opts)  # numba's cache load
    cmd = consumer_cmd(path, d)
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    figures: dict = {}
    for _ in range(runs):
        variants = [
            ("pyarrow_table", lambda: pyarrow_table(path)),
            ("pyarrow_batches", lambda: pyarrow_batches(path)),
            ("convert", lambda: convert(path, series, opts)),
        ]
        if path.suffix != ".csv":  # what each column costs to decode
            variants[2:2] = [
                ("pyarrow_timestamp", lambda: pyarrow_batches(path, "timestamp")),
                ("pyarrow_value", lambda: pyarrow_batches(path, "value")),
            ]
        for name, fn in variants:
            remove_series(series)
            w, c = timed(fn)
            walls.setdefault(name, []).append(w)
            cpus.setdefault(name, []).append(c)
        for name, fresh in (("consumer", True), ("rerun", False)):
            w, c, figures[name] = run_consumer(cmd, fresh, series)
            walls.setdefault(name, []).append(w)
            cpus.setdefault(name, []).append(c)
    med = {k: statistics.median(v) for k, v in walls.items()}
    return {
        "rows": rows,
        "samples": figures["consumer"]["samples"],
        "bytes": path.stat().st_size,
        "wall_seconds": walls,
        "cpu_seconds": cpus,
        "median_rows_per_s": {k: rows / v for k, v in med.items()},
        "best_rows_per_s": {k: rows / min(v) for k, v in walls.items()},
        "median_cpu_seconds": {k: statistics.median(v) for k, v in cpus.items()},
        "consumer_read_seconds": figures["consumer"]["input"]["read_seconds"],
        "rerun_detect_samples_per_s": figures["rerun"].get("samples_per_s"),
    }


def main() -> None:
    """Write the inputs, time every variant, print a summary (stderr) and JSON (stdout)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=float, default=1e8)
    p.add_argument("--csv_rows", type=float, default=1e7)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", default="/tmp/bench-inputs")
    p.add_argument("--only", nargs="*", choices=["default", "plain", "csv"])
    p.add_argument("--keep", action="store_true")
    p.add_argument("--reuse", action="store_true", help="use the inputs already in --dir")
    a = p.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    if a.reuse:
        paths = {
            "default": d / "default.parquet",
            "plain": d / "plain.parquet",
            "csv": d / "data.csv",
        }
    else:
        paths = write_files(d, int(a.rows), int(a.csv_rows))
        print(f"wrote inputs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    results = {}
    try:
        for name, path in paths.items():
            if a.only and name not in a.only:
                continue
            r = results[name] = bench_file(path, d, a.runs)
            best = r["best_rows_per_s"]
            rates = ", ".join(
                f"{k} {v / 1e6:.1f} (best {best[k] / 1e6:.1f}, {r['median_cpu_seconds'][k]:.2f} "
                "CPU s)"
                for k, v in r["median_rows_per_s"].items()
            )
            print(f"{path.name}: {r['rows']:,} rows: M rows/s {rates}", file=sys.stderr)
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
