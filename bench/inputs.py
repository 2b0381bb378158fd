"""Read rates of table inputs: pyarrow alone, ``consumer.inputs.convert``, the z-score consumer.

    python bench/inputs.py --rows 1e8 --csv_rows 1e7 --runs 3 --dir /tmp/bench-inputs

Writes a Parquet file and a CSV of (timestamp, value) rows (1 s cadence, every
1000th row missing so there are gaps), then times, each ``--runs`` times
(medians reported, wall clock):

* ``pyarrow``: reading the two columns to numpy in record batches (the baseline:
  ``ParquetFile.iter_batches`` / ``pyarrow.csv.open_csv``);
* ``convert``: ``consumer.inputs.convert`` (read, validate, place on the grid,
  write the float64 series);
* ``consumer``: ``python -m consumer --file F --column value --timestamp timestamp``
  (zscore), the whole process: start-up, reading, detection, outputs.

The files are deleted at the end (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def write_files(d: Path, rows: int, csv_rows: int) -> tuple[Path, Path]:
    """The Parquet and CSV inputs (timestamps every second, every 1000th row left out)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    t0 = np.datetime64("2020-01-01T00:00:00", "ns").astype(np.int64)
    pq_path, csv_path = d / "big.parquet", d / "big.csv"
    schema = pa.schema([("timestamp", pa.timestamp("ns")), ("value", pa.float64())])
    step = 1 << 22

    def table(a: int, b: int) -> pa.Table:
        i = np.arange(a, b, dtype=np.int64)
        i = i[i % 1000 != 999]
        ts = pa.array(t0 + i * 10**9, pa.timestamp("ns"))
        return pa.Table.from_arrays([ts, pa.array(rng.standard_normal(len(i)))], schema=schema)

    with pq.ParquetWriter(pq_path, schema) as w:
        for a in range(0, rows, step):
            w.write_table(table(a, min(rows, a + step)), row_group_size=1 << 20)
    with pacsv.CSVWriter(csv_path, schema) as w:
        for a in range(0, csv_rows, step):
            w.write_table(table(a, min(csv_rows, a + step)))
    return pq_path, csv_path


def read_pyarrow(path: Path) -> int:
    """Rows read by pyarrow alone, both columns to numpy, in record batches."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix == ".csv":
        convert = pacsv.ConvertOptions(column_types={"value": pa.float64()})
        batches = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=16 << 20), convert_options=convert
        )
    else:
        batches = pq.ParquetFile(path).iter_batches(batch_size=1 << 20)
    n = 0
    for b in batches:
        b.column(0).cast(pa.int64()).to_numpy()
        b.column(1).to_numpy(zero_copy_only=False)
        n += b.num_rows
    return n


def time_it(fn, runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` calls."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    """Write the inputs, time the three readers, print a table and JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=float, default=1e8)
    p.add_argument("--csv_rows", type=float, default=1e7)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", default="/tmp/bench-inputs")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    from consumer.inputs import TableOptions, convert

    t = time.perf_counter()
    pq_path, csv_path = write_files(d, int(a.rows), int(a.csv_rows))
    print(f"wrote inputs in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    results = {}
    try:
        for path in (pq_path, csv_path):
            rows = read_pyarrow(path)  # also warms the page cache
            series = d / "series.npy"
            opts = TableOptions("value", "timestamp")
            convert(path, series, opts)  # numba compile / cache load
            samples = int(np.load(series, mmap_mode="r").shape[0])
            cmd = [sys.executable, "-m", "consumer", "--file", str(path), "--column", "value"]
            cmd += ["--timestamp", "timestamp", "--overwrite", "--quiet", "--time"]
            cmd += ["--series", str(series), "--summary", str(d / "s.json")]
            cmd += ["--out", str(d / "o.parquet"), "--indices", str(d / "o.npy")]
            cmd += ["--params", '{"window": 1000, "threshold": 6}']
            figures: dict = {}

            def consumer(cmd=cmd, figures=figures) -> None:
                out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
                figures.update(json.loads(out.stdout.strip().splitlines()[-1]))

            timings = {
                "pyarrow": time_it(lambda p=path: read_pyarrow(p), a.runs),
                "convert": time_it(lambda p=path, s=series, o=opts: convert(p, s, o), a.runs),
                "consumer": time_it(consumer, a.runs),
            }
            med = {k: statistics.median(v) for k, v in timings.items()}
            results[path.suffix[1:]] = {
                "rows": rows,
                "samples": samples,
                "bytes": path.stat().st_size,
                "seconds": timings,
                "median_rows_per_s": {k: rows / v for k, v in med.items()},
                "consumer_detect_samples_per_s": figures.get("samples_per_s"),
                "consumer_read_seconds": figures.get("input", {}).get("read_seconds"),
            }
            print(
                f"{path.name}: {rows:,} rows, {path.stat().st_size / 1e9:.2f} GB: "
                + ", ".join(
                    f"{k} {med[k]:.2f} s = {rows / med[k] / 1e6:.1f} M rows/s" for k in med
                ),
                file=sys.stderr,
            )
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
