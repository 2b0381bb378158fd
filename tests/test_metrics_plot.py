"""Tests for shared.metrics, shared.plot and bench/charts.py (real files, no mocks)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shared.errors import FormatError, UsageError
from shared.metrics import MetricsRecorder, peak_rss_bytes, read_metrics
from shared.plot import (
    _png_bytes,
    chart_axes,
    format_ticks,
    lag_series,
    load_series,
    main,
    nice_ticks,
    panel_boxes,
    render_throughput,
    samples_per_second,
    to_pixels,
)

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
    with Image.open(path) as image:
        width, height = image.size
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
    # 10 x 7.5 in and 10 x 4.5 in at 110 dpi: the lag panel only exists with both roles.
    assert _png_shape(both) == (825, 1100)
    assert _png_shape(alone) == (495, 1100)


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


# -- plot: axes, ticks, pixels ---------------------------------------------------------

TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's tab:blue, tab:orange
TAB_GREEN, TAB_RED = (44, 160, 44), (214, 39, 40)


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "RGB"
        return np.asarray(image).astype(np.int16)


def _near(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 12) -> np.ndarray:
    return np.all(np.abs(rgb - np.array(colour)) <= tol, axis=-1)


@pytest.mark.parametrize(
    ("lo", "hi", "max_ticks", "expected"),
    [
        (0.0, 87e6, 6, [0, 20e6, 40e6, 60e6, 80e6]),
        (-26e6, 62e6, 6, [-20e6, 0, 20e6, 40e6, 60e6]),
        (0.0, 1.0, 6, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0.3, 0.7, 6, [0.3, 0.4, 0.5, 0.6, 0.7]),
        (0.0, 5.3, 11, [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5]),
        (0.0, 10.0, 11, list(range(11))),
        (1.0, 1.0001, 6, [1.0, 1.00002, 1.00004, 1.00006, 1.00008, 1.0001]),
        (3.1e9, 3.9e9, 6, [3.2e9, 3.4e9, 3.6e9, 3.8e9]),
    ],
)
def test_nice_ticks_hand_computed(
    lo: float, hi: float, max_ticks: int, expected: list[float]
) -> None:
    ticks = nice_ticks(lo, hi, max_ticks)
    np.testing.assert_allclose(ticks, expected, rtol=1e-12, atol=1e-12 * abs(hi))


def test_nice_ticks_finest_fitting_one_two_five_step() -> None:
    rng = np.random.default_rng(7)
    for _ in range(300):
        span = float(rng.uniform(0.01, 10) * 10.0 ** rng.integers(-6, 10))
        lo = span * float(rng.uniform(-20, 20))  # axes here start within a few spans of 0
        hi = lo + span
        max_ticks = int(rng.integers(5, 12))
        ticks = nice_ticks(lo, hi, max_ticks)
        step = float(ticks[-1] - ticks[0]) / (ticks.size - 1)
        # k * step far from 0 carries rounding of the tick's size, not the step's.
        np.testing.assert_allclose(np.diff(ticks), step, rtol=1e-9, atol=1e-14 * abs(ticks).max())
        mantissa = step / 10.0 ** math.floor(math.log10(step) + 1e-9)
        assert min(abs(mantissa - m) for m in (1, 2, 5)) < 1e-6
        assert 2 <= ticks.size <= max_ticks
        assert lo - 1e-9 * span <= ticks[0] and ticks[-1] <= hi + 1e-9 * span
        assert ticks[0] - step < lo and ticks[-1] + step > hi  # no tick left out
        # The next finer 1-2-5 step would give too many ticks (or the finest is in use).
        finer = step / 2.5 if abs(mantissa - 5) < 1e-6 else step / 2
        count = math.floor(hi / finer + 1e-9) - math.ceil(lo / finer - 1e-9) + 1
        assert count > max_ticks


def test_nice_ticks_rejects_bad_ranges() -> None:
    for lo, hi in ((1.0, 1.0), (2.0, 1.0), (0.0, float("nan")), (0.0, float("inf"))):
        with pytest.raises(ValueError, match="lo < hi"):
            nice_ticks(lo, hi)
    with pytest.raises(ValueError, match="max_ticks"):
        nice_ticks(0.0, 1.0, max_ticks=4)


def test_format_ticks_si_suffixes() -> None:
    assert format_ticks([0, 20e6, 40e6, 60e6, 80e6]) == ["0", "20M", "40M", "60M", "80M"]
    assert format_ticks([0, 0.5e6, 1e6, 1.5e6]) == ["0", "0.5M", "1.0M", "1.5M"]
    assert format_ticks([0, 200e3, 400e3]) == ["0", "200k", "400k"]
    assert format_ticks([-20e6, 0, 20e6]) == ["-20M", "0", "20M"]
    assert format_ticks([2e9, 4e9]) == ["2G", "4G"]
    assert format_ticks([0, 2, 4]) == ["0", "2", "4"]
    assert format_ticks([0, 0.5, 1.0, 1.5], si=False) == ["0", "0.5", "1.0", "1.5"]
    assert format_ticks([1000, 2000], si=False) == ["1000", "2000"]


def test_to_pixels_maps_limits_onto_pixels() -> None:
    rows = to_pixels([0.0, 25.0, 100.0, 110.0], (0.0, 100.0), (400.0, 100.0))
    np.testing.assert_allclose(rows, [400.0, 325.0, 100.0, 70.0])  # y grows downwards
    np.testing.assert_allclose(to_pixels(-1.0, (-2.0, 2.0), (10.0, 50.0)), 20.0)
    with pytest.raises(ValueError, match="limits"):
        to_pixels(1.0, (3.0, 3.0), (0.0, 10.0))


def test_panel_boxes_fit_the_image_and_stack() -> None:
    (only,) = panel_boxes(1)
    top, bottom = panel_boxes(2)
    assert 0 < only.left < only.right < 1100 and 0 < only.top < only.bottom < 495
    assert (top.left, top.right) == (bottom.left, bottom.right) == (only.left, only.right)
    assert top.top == only.top and top.bottom < bottom.top and bottom.bottom < 825
    assert top.bottom - top.top == bottom.bottom - bottom.top
    with pytest.raises(ValueError, match="n_panels"):
        panel_boxes(3)


@pytest.mark.parametrize("shape", [(37, 53), (1, 5), (4, 1)])
def test_png_bytes_round_trip_through_pillow(tmp_path: Path, shape: tuple[int, int]) -> None:
    # Random bytes make every "Up" difference wrap around somewhere.
    rgb = np.random.default_rng(3).integers(0, 256, (*shape, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    path.write_bytes(_png_bytes(rgb))
    np.testing.assert_array_equal(_rgb(path), rgb)


def test_chart_draws_each_role_in_its_colour(tmp_path: Path) -> None:
    files = [tmp_path / f"{role}.jsonl" for role in ("producer", "consumer", "checker")]
    for path, pid, rate in zip(files, (1, 2, 3), (3e6, 2e6, 1e6), strict=True):
        _write_metrics(path, path.stem, pid, 1000.0, rate, 20)
    both = _rgb(render_throughput(files, tmp_path / "both.png"))
    alone = _rgb(render_throughput(files[:1], tmp_path / "alone.png"))
    top, bottom = panel_boxes(2)

    def columns(mask: np.ndarray, box: Any) -> int:
        """Columns of the box with a pixel of the colour."""
        return int(mask[box.top : box.bottom + 1, box.left : box.right + 1].any(axis=0).sum())

    # Rates at interval midpoints 0.25..9.25 s of a 0..9.5 s axis; the lag spans it all.
    rate_cols, lag_cols = 9.0 / 9.5 * (top.right - top.left), bottom.right - bottom.left
    cases = [(TAB_BLUE, top, bottom, rate_cols), (TAB_ORANGE, top, bottom, rate_cols),
             (TAB_GREEN, top, bottom, rate_cols), (TAB_RED, bottom, top, lag_cols)]  # fmt: skip
    for colour, box, other, span in cases:
        mask = _near(both, colour)
        assert columns(mask, box) >= 0.97 * span, colour
        assert columns(mask, other) == 0, colour
    assert columns(_near(alone, TAB_BLUE), panel_boxes(1)[0]) >= 0.97 * rate_cols
    assert not _near(alone, TAB_ORANGE).any() and not _near(alone, TAB_RED).any()


def test_constant_rates_lie_on_their_mapped_rows(tmp_path: Path) -> None:
    producer, consumer = tmp_path / "p.jsonl", tmp_path / "c.jsonl"
    _write_metrics(producer, "producer", 1, 1000.0, 3e6, 21)  # 0..10 s
    _write_metrics(consumer, "consumer", 2, 1000.0, 2e6, 21)
    rate_axes, lag_axes = chart_axes(load_series([producer, consumer]))
    assert rate_axes.xlim == lag_axes.xlim == (0.0, 10.0)
    assert rate_axes.ylim[0] == 0.0 and 3e6 < rate_axes.ylim[1] <= 3.3e6
    rgb = _rgb(render_throughput([producer, consumer], tmp_path / "chart.png"))
    col = round(float(rate_axes.x_pixels(5.5)))  # between ticks: no tick mark or label
    column = rgb[:, col]

    def row_of(colour: tuple[int, int, int]) -> float:
        rows = np.flatnonzero(_near(column, colour))
        assert rows.size and np.ptp(rows) <= 3, (colour, rows)
        return float(rows.mean())

    assert row_of(TAB_BLUE) == pytest.approx(float(rate_axes.y_pixels(3e6)), abs=1.0)
    assert row_of(TAB_ORANGE) == pytest.approx(float(rate_axes.y_pixels(2e6)), abs=1.0)
    # The lag grows by 1e6 samples/s from 0: 5.5e6 at 5.5 s.
    assert row_of(TAB_RED) == pytest.approx(float(lag_axes.y_pixels(5.5e6)), abs=1.0)
    # Independent of the mapping: heights above the panel's bottom edge scale as the rates.
    frame = np.flatnonzero(np.all(column[: lag_axes.box.top] == 0, axis=-1))
    assert frame.size == 2  # the rate panel's top and bottom edges
    bottom = frame[1]
    ratio = (bottom - row_of(TAB_BLUE)) / (bottom - row_of(TAB_ORANGE))
    assert ratio == pytest.approx(1.5, abs=0.03)


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
