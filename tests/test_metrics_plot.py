"""Tests for shared.metrics, shared.plot and bench/charts.py (real files, no mocks)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from shared.errors import FormatError, UsageError
from shared.metrics import MetricsRecorder, peak_rss_bytes, read_metrics
from shared.plot import lag_series, load_series, main, render_throughput, samples_per_second

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load_charts() -> Any:
    # bench/ is not a package; load the script the way the tests' users run it: by path.
    spec = importlib.util.spec_from_file_location("bench_charts", REPO / "bench" / "charts.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


charts = _load_charts()


def _png_shape(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert height > 0 and width > 0
    return height, width


# -- metrics ---------------------------------------------------------------------


class _Counter:
    """A counter bumped by a real worker thread, like a producer's sample count."""

    def __init__(self) -> None:
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value += 1000
            time.sleep(0.001)

    def __enter__(self) -> _Counter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_recorder_writes_lines_at_interval_with_final_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "producer.jsonl"
    interval = 0.05
    with _Counter() as counter:
        with MetricsRecorder(
            path, "producer", lambda: counter.value, total=10**9, interval=interval
        ):
            time.sleep(0.5)
        final_count = counter.value
    records = read_metrics(path)

    # ~10 periodic lines plus the first and the final one; generous bounds for a loaded box.
    assert 5 <= len(records) <= 14
    assert all(r["role"] == "producer" and r["pid"] == os.getpid() for r in records)
    assert all(r["total"] == 10**9 and r["rss"] > 0 and r["cpu"] >= 0 for r in records)
    assert records[-1].get("final") is True
    assert not any(r.get("final") for r in records[:-1])

    samples = [r["samples"] for r in records]
    assert samples == sorted(samples)
    assert samples[-1] > samples[0]
    assert samples[-1] <= final_count

    elapsed = np.array([r["elapsed"] for r in records])
    t = np.array([r["t"] for r in records])
    assert np.all(np.diff(elapsed) >= 0) and np.all(np.diff(t) >= 0)
    assert abs(elapsed[-1] - 0.5) < 0.3
    gaps = np.diff(elapsed[:-1])  # the final line comes whenever stop() is called
    assert 0.6 * interval < float(np.median(gaps)) < 3 * interval


def test_recorder_appends_and_stop_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"role": "old", "t": 1, "samples": 0}\n')
    recorder = MetricsRecorder(path, "consumer", lambda: 7, interval=10.0)
    recorder.start()
    recorder.stop()
    recorder.stop()
    records = read_metrics(path)
    assert [r["role"] for r in records] == ["old", "consumer", "consumer"]
    assert records[-1]["samples"] == 7 and records[-1]["total"] is None


@pytest.mark.parametrize(
    "kwargs",
    [{"role": ""}, {"interval": 0}, {"interval": float("nan")}, {"total": -1}, {"total": True}],
)
def test_recorder_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"role": "producer", "progress": lambda: 0, **kwargs}
    with pytest.raises(UsageError):
        MetricsRecorder(tmp_path / "m.jsonl", **args)


def test_peak_rss_at_least_current_allocation() -> None:
    block = np.ones(32 * 1024 * 1024 // 8)  # 32 MiB, touched
    assert peak_rss_bytes() >= block.nbytes
    del block


def test_read_metrics_ignores_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    good = [{"t": 1.0, "role": "producer", "samples": 10}, {"t": 2.0, "role": "producer"}]
    text = "".join(json.dumps(r) + "\n" for r in good)
    path.write_text(text + '{"t": 3.0, "role": "prod')
    assert read_metrics(path) == good
    # A complete last line that merely lacks its newline is kept.
    path.write_text(text + json.dumps({"t": 3.0}))
    assert len(read_metrics(path)) == 3


def test_read_metrics_rejects_malformed_complete_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 1}\nnot json\n{"t": 2}\n')
    with pytest.raises(FormatError, match=":2:"):
        read_metrics(path)


# -- plot --------------------------------------------------------------------------


def _write_metrics(path: Path, role: str, pid: int, t0: float, rate: float, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            t = t0 + 0.5 * i
            f.write(json.dumps({"t": t, "role": role, "pid": pid, "samples": int(rate * 0.5 * i)}))
            f.write("\n")


def test_samples_per_second_constant_rate_with_uneven_spacing() -> None:
    t = np.array([0.0, 0.5, 0.7, 1.5, 2.0, 3.2])
    mid, rate = samples_per_second(t, 4e6 * t)
    np.testing.assert_allclose(mid, (t[:-1] + t[1:]) / 2)
    np.testing.assert_allclose(rate, 4e6)
    # A step change shows up, smoothed over neighbouring intervals only.
    t = np.arange(11.0)
    s = np.where(t <= 5, t * 1e6, 5e6 + (t - 5) * 3e6)
    _, rate = samples_per_second(t, s)
    assert rate[0] == pytest.approx(1e6) and rate[-1] == pytest.approx(3e6)
    assert samples_per_second([1.0], [5.0])[0].size == 0


def test_lag_of_two_roles(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "p.jsonl", "producer", 1, 1000.0, 2e6, 9)
    _write_metrics(tmp_path / "c.jsonl", "consumer", 2, 1001.0, 2e6, 9)
    series = load_series([tmp_path / "p.jsonl", tmp_path / "c.jsonl"])
    assert [s.role for s in series] == ["producer", "consumer"]
    t, lag = lag_series(series[:1], series[1:])
    # Consumer starts 1 s late at the same rate: lag grows to 2 M, then stays there.
    assert lag[0] == 0
    np.testing.assert_allclose(lag[(t >= 1001.0) & (t <= 1004.0)], 2e6)


def test_render_throughput_writes_png(tmp_path: Path) -> None:
    producer, consumer = tmp_path / "producer.jsonl", tmp_path / "consumer.jsonl"
    _write_metrics(producer, "producer", 11, 1000.0, 3e6, 20)
    _write_metrics(consumer, "consumer", 12, 1000.7, 2.5e6, 20)
    both = render_throughput([producer, consumer], tmp_path / "out" / "both.png", title="t")
    alone = render_throughput([producer], tmp_path / "alone.png")
    assert both == tmp_path / "out" / "both.png"
    h_both, w_both = _png_shape(both)
    h_alone, w_alone = _png_shape(alone)
    assert w_both == w_alone
    assert h_both > h_alone  # the lag panel only exists with both roles


def test_plot_cli_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = tmp_path / "m.jsonl"
    _write_metrics(metrics, "producer", 1, 50.0, 1e6, 5)
    out = tmp_path / "chart.png"
    assert main([str(metrics), "--out", str(out), "--title", "run"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    _png_shape(out)


def test_plot_cli_missing_file_exits_2_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shared.plot", "no/such/metrics.jsonl", "--out", "x.png"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no/such/metrics.jsonl" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (REPO / "x.png").exists()


@pytest.mark.parametrize(
    "content",
    ["", "not json\n", '{"t": 1, "samples": 3}\n', '{"role": "p", "t": "x", "samples": 1}\n'],
    ids=["empty", "not-json", "no-role", "bad-t"],
)
def test_plot_cli_bad_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    metrics = tmp_path / "m.jsonl"
    metrics.write_text(content)
    assert main([str(metrics), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("plot: error:")
    assert not (tmp_path / "o.png").exists()


# -- bench charts -----------------------------------------------------------------


def _bench(name: str, group: str | None, mean: float, **extra: Any) -> dict[str, Any]:
    return {
        "group": group,
        "name": name,
        "fullname": f"bench/test_x.py::{name}",
        "params": {"threads": extra["threads"]} if "threads" in extra else None,
        "stats": {"mean": mean, "median": mean, "min": mean, "max": mean, "rounds": 3},
        "extra_info": extra,
    }


def _bench_doc() -> dict[str, Any]:
    benchmarks = [
        _bench("test_gen[1]", "generate", 0.1, samples_per_s=1e8, threads=1, kernel="generate",
               label="tsstream generate", baseline=False),
        _bench("test_gen[2]", "generate", 0.05, samples_per_s=1.9e8, threads=2,
               kernel="generate", label="tsstream generate", baseline=False),
        _bench("test_np_normal", "generate", 0.3, samples_per_s=4e7, threads=1,
               kernel="generate", label="np.random.normal", baseline=True),
        _bench("test_zscore[1]", "detect", 0.1, samples_per_s=5e7, threads=1, kernel="zscore",
               label="numba zscore", baseline=False),
        _bench("test_zscore[2]", "detect", 0.1, samples_per_s=9e7, threads=2, kernel="zscore",
               label="numba zscore", baseline=False),
        _bench("test_np_zscore", "baselines", 0.1, samples_per_s=1e7, kernel="zscore",
               label="numpy zscore", baseline=True),
        _bench("test_stl", "stl group", 0.1, samples_per_s=2e6, kernel="stl", label="numba STL"),
        _bench("test_stl_sm", "stl group", 0.1, samples_per_s=1e4, kernel="stl",
               label="statsmodels STL", baseline=True),
        _bench("test_no_rate", "generate", 0.1),  # ignored: no samples_per_s
    ]  # fmt: skip
    return {"machine_info": {"cpu": {"brand_raw": "Test CPU", "count": 2}},
            "benchmarks": benchmarks, "version": "5.1.0"}  # fmt: skip


def test_compare_kernels_picks_best_and_ratio(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench_doc()))
    results, machine = charts.load_results(path)
    assert len(results) == 8 and machine["cpu"]["count"] == 2
    rows = {row.kernel: row for row in charts.compare_kernels(results)}
    assert list(rows) == ["generate", "zscore", "stl"]
    assert rows["generate"].best.threads == 2
    assert rows["generate"].speedup == pytest.approx(1.9e8 / 4e7)
    assert rows["zscore"].speedup == pytest.approx(9.0)
    assert rows["stl"].speedup == pytest.approx(200.0)


def test_charts_writes_expected_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench_doc()))
    out = tmp_path / "charts" / "nested"
    assert charts.main([str(path), "--out", str(out)]) == 0
    expected = {"generate_threads.png", "detect_threads.png", "kernels_vs_baseline.png"}
    # No thread-scaling runs in "baselines" or "stl group": no chart for them.
    assert {p.name for p in out.iterdir()} == expected
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(expected)
    for name in expected:
        _png_shape(out / name)


def test_charts_runs_as_a_script(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench_doc()))
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "charts.py"), str(path), "--out", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "kernels_vs_baseline.png").exists()


@pytest.mark.parametrize(
    "content",
    [
        None,
        "{not json",
        json.dumps({"benchmarks": "nope"}),
        json.dumps({"benchmarks": [_bench("test_x", "g", 0.1)]}),
        json.dumps({"benchmarks": [_bench("test_x", "g", 0.1, samples_per_s="fast")]}),
        json.dumps({"benchmarks": [_bench("test_x", "g", 0.1, samples_per_s=1e6)]}),
    ],
    ids=["missing", "not-json", "no-list", "no-rates", "bad-rate", "nothing-to-chart"],
)
def test_charts_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None
) -> None:
    path = tmp_path / "bench.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "charts"
    assert charts.main([str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("charts: error:")
    assert not out.exists()
