"""Table inputs (CSV, Parquet file and folder, Arrow/Feather), range labels, unit scores, replay.

Real files, real processes: each CLI test runs ``python -m consumer`` (or the
replayer, or ``single_machine.py``) on files written here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from consumer.events import event_figures
from consumer.inputs import TableOptions, convert
from shared.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
NAB = REPO.parent / "shared" / "data" / "nab"
T0 = np.datetime64("2024-01-01T00:00:00", "ns")
CADENCE = np.timedelta64(300, "s")


def _series(n: int = 3000, gap: tuple[int, int] | None = (1000, 1010), spike: int = 2000):
    """Times (5 min cadence) with a gap of missing rows, values with one spike."""
    idx = np.arange(n)
    rng = np.random.default_rng(1)
    values = np.sin(2 * np.pi * idx / 288) + 0.1 * rng.standard_normal(n)
    values[spike] += 20.0
    keep = np.ones(n, bool)
    if gap:
        keep[gap[0] : gap[1]] = False
    return T0 + idx[keep] * CADENCE, values[keep], idx[keep]


def _table(times, values) -> pa.Table:
    return pa.table({"timestamp": pa.array(times, pa.timestamp("ns")), "value": values})


def _write(fmt: str, directory: Path, table: pa.Table) -> Path:
    if fmt == "csv":
        p = directory / "data.csv"
        pacsv.write_csv(table, p)
    elif fmt == "parquet":
        p = directory / "data.parquet"
        pq.write_table(table, p, row_group_size=700)
    elif fmt == "dataset":
        p = directory / "ds"
        p.mkdir()
        step = len(table) // 3 + 1
        for k, a in enumerate(range(0, len(table), step)):
            pq.write_table(table.slice(a, step), p / f"part-{k:03d}.parquet")
    else:
        p = directory / "data.feather"
        feather.write_feather(table, p, chunksize=500)
    return p


def _expected(n, values, idx):
    want = np.full(n, np.nan)
    want[idx] = values
    return want


@pytest.mark.parametrize("fmt", ["csv", "parquet", "dataset", "feather"])
def test_every_format_gives_the_same_grid_with_gaps_as_nan(tmp_path, fmt, run_consumer):
    times, values, idx = _series()
    src = _write(fmt, tmp_path, _table(times, values))
    code, out, err = run_consumer(
        "--file", src, "--column", "value", "--timestamp", "timestamp",
        "--params", '{"window": 200, "threshold": 6}', "--out", tmp_path / "o.parquet",
        "--indices", tmp_path / "o.npy", "--summary", tmp_path / "o.json",
    )  # fmt: skip
    assert code == 0, err
    series = np.load(tmp_path / "o.series.npy")
    np.testing.assert_array_equal(series, _expected(3000, values, idx))
    summary = json.loads((tmp_path / "o.json").read_text())
    assert summary["time_range"]["start"] == "2024-01-01"
    assert summary["time_range"]["cadence_seconds"] == 300.0
    assert summary["input"]["missing_samples"] == 10
    flags = np.load(tmp_path / "o.npy")
    assert 2000 in flags.tolist()
    rows = pq.read_table(tmp_path / "o.parquet")
    assert rows.column_names == ["index", "timestamp", "value", "score"]
    ts = rows.column("timestamp").to_numpy()
    np.testing.assert_array_equal(ts, T0 + rows.column("index").to_numpy() * CADENCE)
    # Same flags as the detector on the in-memory grid (NaN for the gap).
    import consumer

    want = consumer.detect(_expected(3000, values, idx), window=200, threshold=6)
    np.testing.assert_array_equal(flags, want)


def test_npy_input_unchanged_and_rows_without_timestamps(tmp_path, run_consumer):
    x = np.sin(np.arange(5000.0))
    x[4000] = 30
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_consumer("--file", tmp_path / "x.npy", "--params", '{"window": 300}')
    assert code == 0, err
    assert pq.read_table(tmp_path / "x.anomalies.parquet").column_names == [
        "index",
        "value",
        "score",
    ]
    pacsv.write_csv(pa.table({"value": x}), tmp_path / "rows.csv")
    code, _, err = run_consumer(
        "--file", tmp_path / "rows.csv", "--column", "value", "--params", '{"window": 300}'
    )
    assert code == 0, err
    np.testing.assert_array_equal(
        np.load(tmp_path / "rows.anomalies.npy"), np.load(tmp_path / "x.anomalies.npy")
    )
    summary = json.loads((tmp_path / "rows.summary.json").read_text())
    assert "time_range" not in summary


def _csv(path: Path, lines: list[str]) -> Path:
    path.write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    return path


def _lines(n=50, start=0):
    return [f"2024-01-01 {(m // 60):02d}:{m % 60:02d}:00,{m % 7}" for m in range(start, start + n)]


_BAD = "2024-01-01 00:{}:00,{}"


@pytest.mark.parametrize(
    "lines, message",
    [
        (_lines(10) + [_BAD.format("05", 1)] + _lines(5, 10), "row 11: timestamp 2024-01-01T00:05"),
        (_lines(10) + [_BAD.format("09", 1)] + _lines(5, 10), "row 11: timestamp 2024-01-01T00:09"),
        (_lines(10) + ["2024-01-01 00:10:30,1"] + _lines(5, 11), "row 11: step 90 s is not a"),
        (_lines(10) + [_BAD.format("10", "abc")], "row 11: value 'abc' in column 'value' is not"),
        (_lines(10) + ["not a time,1"], "row 11: timestamp 'not a time'"),
        (["2024-01-01 00:00:00,1"] * 3, "cannot infer the cadence"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_the_row(
    tmp_path, run_consumer, snapshot, lines, message
):
    src = _csv(tmp_path / "bad.csv", lines)
    (tmp_path / "bad.anomalies.npy").write_bytes(b"keep me")
    before = snapshot(tmp_path)
    code, out, err = run_consumer(
        "--file", src, "--column", "value", "--timestamp", "timestamp",
        "--max-irregular", "0", "--overwrite",
    )  # fmt: skip
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert snapshot(tmp_path) == before  # nothing written, nothing touched


def test_missing_column_and_non_numeric_typed_column(tmp_path, run_consumer):
    times, values, _ = _series(100, gap=None, spike=50)
    for fmt in ("csv", "parquet", "feather"):
        d = tmp_path / fmt
        d.mkdir()
        src = _write(fmt, d, _table(times, values))
        code, _, err = run_consumer("--file", src, "--column", "nope", "--timestamp", "timestamp")
        assert code == 2 and "'nope'" in err and len(err.strip().splitlines()) == 1, err
    t = pa.table(
        {"timestamp": pa.array(times, pa.timestamp("ns")), "value": ["1.5"] * 5 + ["x"] * 95}
    )
    pq.write_table(t, tmp_path / "s.parquet")
    code, _, err = run_consumer("--file", tmp_path / "s.parquet", "--column", "value")
    assert code == 2 and "row 6: value 'x'" in err, err
    t = pa.table({"timestamp": pa.array(times, pa.timestamp("ns")), "value": [True] * 100})
    pq.write_table(t, tmp_path / "b.parquet")
    code, _, err = run_consumer("--file", tmp_path / "b.parquet", "--column", "value")
    assert code == 2 and "not numbers" in err, err
    code, _, err = run_consumer("--file", tmp_path / "csv" / "data.csv", "--timestamp", "timestamp")
    assert code == 2 and "--column" in err, err


def _bad_table(case: str) -> pa.Table:
    """20 rows one minute apart with row 11 (1-based) broken as ``case``."""
    minutes = list(range(20))
    values: list = [float(m % 7) for m in minutes]
    if case == "out_of_order":
        minutes[10] = 5
    elif case == "duplicate":
        minutes[10] = 9
    elif case == "off_grid":
        minutes[10:] = [m + 0.5 for m in minutes[10:]]
    elif case == "not_a_number":
        values = [str(v) for v in values]
        values[10] = "abc"
    times = [T0 + np.timedelta64(int(m * 60), "s") for m in minutes]
    ts = pa.array(times, pa.timestamp("ns"))
    if case == "no_timestamp":
        ts = pa.array(times[:10] + [None] + times[11:], pa.timestamp("ns"))
    return pa.table({"timestamp": ts, "value": values})


def _write_small(fmt: str, d: Path, table: pa.Table) -> Path:
    """``table`` in ``fmt`` with row 11 in a later batch, row group or file than row 1."""
    if fmt == "csv":
        pacsv.write_csv(table, d / "t.csv")
        return d / "t.csv"
    if fmt == "csv.gz":
        with pa.CompressedOutputStream(str(d / "t.csv.gz"), "gzip") as out:
            pacsv.write_csv(table, out)
        return d / "t.csv.gz"
    if fmt == "arrows":  # the Arrow IPC stream format
        with pa.ipc.new_stream(str(d / "t.arrows"), table.schema) as out:
            out.write_table(table, max_chunksize=4)
        return d / "t.arrows"
    if fmt == "parquet":
        pq.write_table(table, d / "t.parquet", row_group_size=4)
        return d / "t.parquet"
    if fmt == "dataset":
        (d / "ds").mkdir()
        for k in range(0, 20, 6):
            pq.write_table(table.slice(k, 6), d / "ds" / f"p{k:02d}.parquet", row_group_size=4)
        return d / "ds"
    feather.write_feather(table, d / "t.feather", chunksize=4)
    return d / "t.feather"


_CASES = {
    "out_of_order": "row 11: timestamp 2024-01-01T00:05:00.000000000 is earlier than the prev",
    "duplicate": "row 11: timestamp 2024-01-01T00:09:00.000000000 repeats a sample",
    "off_grid": "row 11: step 90 s is not a multiple of the cadence (60 s)",
    "not_a_number": "row 11: value 'abc' in column 'value' is not a number",
    "no_timestamp": "row 11: no timestamp in column 'timestamp'",
}


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet", "dataset", "feather", "arrows"])
def test_every_error_names_the_first_offending_row_in_every_format(tmp_path, fmt):
    strict = TableOptions("value", "timestamp", format="parquet" if fmt == "dataset" else None)
    strict = TableOptions(strict.column, strict.timestamp, strict.format, max_irregular=0)
    for case, message in _CASES.items():
        d = tmp_path / case
        d.mkdir()
        src = _write_small(fmt, d, _bad_table(case))
        with pytest.raises(UsageError, match=re.escape(message)):
            convert(src, d / "s.npy", strict)
        assert sorted(p.name for p in d.iterdir()) == [src.name], case  # nothing written
    src = _write_small(fmt, tmp_path, _bad_table("none"))
    with pytest.raises(UsageError, match="no column 'nope'"):
        convert(src, tmp_path / "s.npy", TableOptions("nope", "timestamp", strict.format))
    with pytest.raises(UsageError, match="no column 'when'"):
        convert(src, tmp_path / "s.npy", TableOptions("value", "when", strict.format))
    c = convert(src, tmp_path / "s.npy", strict)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), np.arange(20) % 7)
    assert (c.rows, c.samples, c.missing) == (20, 20, 0)


def test_parquet_reader_paths_give_the_same_bytes_and_checksums(tmp_path, monkeypatch):
    import consumer.inputs as inputs
    from shared.stream import StreamReader

    rng = np.random.default_rng(3)
    n = 60_000
    slots = np.sort(rng.choice(70_000, n, replace=False))  # gaps everywhere
    slots -= slots[0]  # the grid starts at the first row
    values = rng.standard_normal(n)
    values[rng.choice(n, 50, replace=False)] = np.nan  # missing values too
    order = np.arange(n)
    order[[40_000, 40_001]] = order[[40_001, 40_000]]  # two rows swapped...
    times = T0 + slots[order] * CADENCE
    times[50_000] = times[5_000]  # ...and one far back in time, into a written chunk
    table = _table(times, values[order])
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=5_000)
    pacsv.write_csv(table, tmp_path / "t.csv")
    opts = TableOptions("value", "timestamp", max_irregular=0.01)
    out = {}
    for name, big, ahead in [("pool", 64 << 20, 96 << 20), ("alone", 1, 1), ("one", 64 << 20, 1)]:
        monkeypatch.setattr(inputs, "ROW_GROUP_BYTES", big)
        monkeypatch.setattr(inputs, "READ_AHEAD_BYTES", ahead)
        monkeypatch.setattr(inputs, "BATCH_ROWS", 3_000)
        c = convert(tmp_path / "t.parquet", tmp_path / f"{name}.npy", opts, chunk_size=4096)
        out[name] = np.load(tmp_path / f"{name}.npy")
        with StreamReader(tmp_path / f"{name}.npy") as r:
            assert r.verify() == []  # the CRCs taken while writing are the file's
            assert r.doc["missing_samples"] == c.missing == int(np.isnan(out[name]).sum())
        assert (c.irregular.out_of_order, c.irregular.duplicate, c.irregular.off_grid) == (2, 0, 0)
    c = convert(tmp_path / "t.csv", tmp_path / "csv.npy", opts, chunk_size=4096)
    want = np.full(slots[-1] + 1, np.nan)
    want[slots] = values
    want[slots[5_000]] = np.nanmean([values[5_000], values[50_000]])
    want[slots[50_000]] = np.nan  # its row went back to slot 5000
    for got in [*out.values(), np.load(tmp_path / "csv.npy")]:
        np.testing.assert_array_equal(got, want)


def test_csv_is_read_in_blocks_cut_at_line_ends(tmp_path, monkeypatch):
    import consumer.inputs as inputs

    times, values, idx = _series(500, gap=(100, 110), spike=200)
    stamps = [str(t.astype("datetime64[s]")) for t in times]
    lines = [f"{t},{float(v)!r}" for t, v in zip(stamps, values, strict=True)]
    lines[300] = f"{stamps[300]}.000,{float(values[300])!r}"  # finer times in a later block
    text = "timestamp,value\r\n" + "\r\n".join(lines)  # CRLF, no line end at the end
    (tmp_path / "t.csv").write_text(text)
    with pa.CompressedOutputStream(str(tmp_path / "t.csv.gz"), "gzip") as out:
        out.write(text.encode())
    opts = TableOptions("value", "timestamp", max_irregular=0)
    whole = convert(tmp_path / "t.csv", tmp_path / "whole.npy", opts)
    monkeypatch.setattr(inputs, "CSV_BLOCK", 97)  # a few lines per block, cut mid-line
    for name in ("t.csv", "t.csv.gz"):
        c = convert(tmp_path / name, tmp_path / "s.npy", opts)
        assert (c.rows, c.samples) == (whole.rows, whole.samples) == (490, 500)
        np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), _expected(500, values, idx))
    lines[400] = lines[400].split(",")[0] + ",abc"
    (tmp_path / "t.csv").write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="row 401: value 'abc'"):
        convert(tmp_path / "t.csv", tmp_path / "s.npy", opts)
    lines[400] = "12345,1.0"  # an integer among date-times
    (tmp_path / "t.csv").write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    with pytest.raises(UsageError, match="row 401: timestamp '12345' mixes date-times"):
        convert(tmp_path / "t.csv", tmp_path / "s.npy", opts)


def test_a_stop_request_leaves_nothing_and_a_rerun_reuses_the_series(tmp_path):
    from consumer.run import run_consumer
    from shared.errors import Interrupted, StopRequest

    times, values, idx = _series()
    src = _write("parquet", tmp_path, _table(times, values))
    stop = StopRequest()
    stop.request(2)
    with pytest.raises(Interrupted):
        convert(src, tmp_path / "s.npy", TableOptions("value", "timestamp"), stop=stop)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.parquet"]
    kw = dict(column="value", timestamp="timestamp", params='{"window": 200}', overwrite=True)
    first = run_consumer(src, **kw)
    series = tmp_path / "data.series.npy"
    inode = series.stat().st_ino
    again = run_consumer(src, **kw)
    assert not first["input"]["series_reused"] and again["input"]["series_reused"]
    assert series.stat().st_ino == inode and again["anomalies"] == first["anomalies"]
    values[2500] += 50.0  # the input changes: it is read again
    pq.write_table(_table(times, values), src, row_group_size=700)
    third = run_consumer(src, **kw)
    assert not third["input"]["series_reused"] and series.stat().st_ino != inode
    np.testing.assert_array_equal(np.load(series), _expected(3000, values, idx))


def test_irregular_rows_are_repaired_within_the_budget(tmp_path):
    # A repeated hour (clock set back), a duplicate, a step off the grid.
    lines = _lines(30) + _lines(5, 25) + _lines(10, 30)
    lines[40] = lines[40].replace(":00,", ":20,")  # 20 s off the grid: nearest slot
    src = _csv(tmp_path / "glitch.csv", lines)
    with pytest.raises(ValueError, match="row 31: timestamp 2024-01-01T00:25"):
        convert(src, tmp_path / "s.npy", TableOptions("value", "timestamp", max_irregular=0))
    with pytest.raises(ValueError, match="irregular .* first: row 31"):
        convert(src, tmp_path / "s.npy", TableOptions("value", "timestamp", max_irregular=0.05))
    c = convert(src, tmp_path / "s.npy", TableOptions("value", "timestamp", max_irregular=0.5))
    # The row 20 s off the grid, and the next (40 s after it), go to their nearest slots.
    assert (c.irregular.out_of_order, c.irregular.duplicate, c.irregular.off_grid) == (1, 4, 2)
    x = np.load(tmp_path / "s.npy")
    assert len(x) == 40 and not np.isnan(x).any()
    # Minutes 25..29 were given twice with the same values: their mean is that value.
    np.testing.assert_array_equal(x[:40], np.arange(40) % 7)


def test_nab_every_file_zscore_and_stl(tmp_path, run_module):
    if not NAB.is_dir():
        pytest.skip("NAB data not available")
    code, out, err = run_module(
        None,
        "-c",
        _NAB_LOOP,
        str(NAB / "data"),
        str(tmp_path),
        str(NAB / "combined_windows.json"),
        timeout=300,
    )
    assert code == 0, err
    results = json.loads(out.strip().splitlines()[-1])
    assert len(results) == 18 * 2
    assert all(r["status"] == "complete" for r in results)
    windows = json.loads((NAB / "combined_windows.json").read_text())
    names = [p.relative_to(NAB / "data").as_posix() for p in (NAB / "data").rglob("*.csv")]
    assert sum(r["windows"] for r in results) == 2 * sum(len(windows[n]) for n in names)


# One interpreter for 36 runs (each CLI start costs ~1 s on 2 cores): consumer.__main__.main.
_NAB_LOOP = r"""
import json, sys
from pathlib import Path
from consumer.__main__ import main
data, out, windows = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
results = []
for f in sorted(data.rglob("*.csv")):
    for det in ("zscore", "stl"):
        args = ["--file", str(f), "--column", "value", "--timestamp", "timestamp", "--type", det,
                "--out", str(out / "o.parquet"), "--indices", str(out / "o.npy"),
                "--summary", str(out / "o.json"), "--labels", windows, "--overwrite", "--quiet"]
        if det == "stl":
            args += ["--params", json.dumps({"period": "1d"})]
        code = main(args)
        if code:
            sys.exit(f"{f} {det}: exit {code}")
        s = json.loads((out / "o.json").read_text())
        results.append({"status": s["status"], "windows": s["events"]["windows"]})
print(json.dumps(results))
"""


def test_window_labels_csv_and_event_figures(tmp_path, run_consumer):
    times, values, idx = _series()
    src = _write("parquet", tmp_path, _table(times, values))
    labels = tmp_path / "w.csv"
    rows = ["2024-01-07 22:00:00,2024-01-07 23:00:00", "2024-01-02 00:00:00,2024-01-02 01:00:00"]
    labels.write_text("start,end\n" + "\n".join(rows) + "\n")
    code, out, err = run_consumer(
        "--file", src, "--column", "value", "--timestamp", "timestamp", "--labels", labels,
        "--params", '{"window": 200, "threshold": 6}',
    )  # fmt: skip
    assert code == 0, err
    s = json.loads((tmp_path / "data.summary.json").read_text())
    ev = s["events"]
    # Window 1: samples 288..300 (no spike); window 2: 1992..2004 holds the spike at 2000.
    assert ev["windows"] == 2 and ev["windows_detected"] == 1 and ev["windows_missed"] == 1
    assert ev["delays"] == [None, 8] and ev["median_delay_seconds"] == 8 * 300
    flags = np.load(tmp_path / "data.anomalies.npy")
    assert ev["false_alarms"] == int(np.sum((flags < 1992) | (flags > 2004)) - 0)
    # Index windows, and the same against the event oracle.
    labels.write_text("start,end\n1990,2010\n5,9\n")
    code, _, err = run_consumer(
        "--file", src, "--column", "value", "--timestamp", "timestamp", "--labels", labels,
        "--params", '{"window": 200, "threshold": 6}', "--overwrite",
    )  # fmt: skip
    assert code == 0, err
    ev = json.loads((tmp_path / "data.summary.json").read_text())["events"]
    assert ev == event_figures(flags, np.array([[5, 9], [1990, 2010]]), 3000, None) | {
        k: ev[k] for k in ev if k.endswith("_seconds")
    }
    assert ev["delays"] == [None, 10]


def test_event_figures_oracle():
    rng = np.random.default_rng(5)
    flags = np.unique(rng.integers(0, 10_000, 300))
    windows = np.array([[100, 200], [150, 400], [5000, 5001], [9990, 9999], [7000, 7000]])
    ev = event_figures(flags, windows, 10_000)
    inside = np.zeros(10_000, bool)
    for a, b in windows:
        inside[a : b + 1] = True
    assert ev["false_alarms"] == int((~inside[flags]).sum())
    for k, (a, b) in enumerate(windows):
        hits = flags[(flags >= a) & (flags <= b)]
        assert ev["delays"][k] == (int(hits[0] - a) if len(hits) else None)


def test_unit_scores_in_unit_interval_nan_for_missing(tmp_path, run_consumer):
    times, values, idx = _series()
    src = _write("csv", tmp_path, _table(times, values))
    for scale in ("raw", "unit"):
        code, _, err = run_consumer(
            "--file", src, "--column", "value", "--timestamp", "timestamp", "--overwrite",
            "--params", '{"window": 200}', "--scores", tmp_path / f"{scale}.npy",
            "--score-scale", scale,
        )  # fmt: skip
        assert code == 0, err
    raw, unit = np.load(tmp_path / "raw.npy"), np.load(tmp_path / "unit.npy")
    assert np.isnan(unit[1000:1010]).all() and np.isnan(unit[:200]).all()
    ok = ~np.isnan(unit)
    assert ((unit[ok] >= 0) & (unit[ok] <= 1)).all()
    order = np.argsort(raw[ok], kind="stable")
    assert (np.diff(unit[ok][order]) >= -1e-6).all()  # monotone in the raw score
    import consumer

    want = consumer.score(_expected(3000, values, idx), window=200)
    np.testing.assert_allclose(unit, want, rtol=1e-6, equal_nan=True)
    code, _, err = run_consumer(
        "--file", src, "--column", "value", "--score-scale", "unit", "--overwrite"
    )
    assert code == 2 and "--scores" in err


def test_replay_is_tailed_like_a_live_stream(tmp_path, spawn_module, run_module):
    times, values, idx = _series(20_000, gap=(5000, 5100))
    src = _write("csv", tmp_path, _table(times, values))
    consumer = spawn_module(
        "consumer", "--file", tmp_path / "live.npy", "--wait", "60", "--time", "--quiet",
        "--params", '{"window": 200, "threshold": 6}',
    )  # fmt: skip
    code, out, err = run_module(
        "producer.replay", "--input", src, "--column", "value", "--timestamp", "timestamp",
        "--file", tmp_path / "live.npy", "--chunk_size", "2048", "--rate", "40000", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    out, err = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["samples"] == 20_000 and summary["time_range"]["start"] == "2024-01-01"
    metrics_free = np.load(tmp_path / "live.anomalies.npy")
    import consumer as c

    np.testing.assert_array_equal(
        metrics_free, c.detect(_expected(20_000, values, idx), window=200, threshold=6)
    )
    assert not list(tmp_path.glob(".live.replay-series*"))  # the replayer's work file is gone


def test_single_machine_replay_with_nab_windows(tmp_path, run_module):
    if not NAB.is_dir():
        pytest.skip("NAB data not available")
    code, out, err = run_module(
        None, REPO / "single_machine.py", "--replay",
        NAB / "data" / "realKnownCause" / "nyc_taxi.csv", "--column", "value",
        "--timestamp", "timestamp", "--labels", NAB / "combined_windows.json",
        "--chunk_size", "2048", "--file", tmp_path / "s.npy", "--quiet", "--time",
    )  # fmt: skip
    assert code == 0, err
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["samples"] == 10320
    assert figures["consumer"]["events"]["windows"] == 5
    assert "labelled windows" in out
