"""single_machine.py end to end: real producer and consumer processes over one stream."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import consumer
from shared.jit import fallback_notice, is_kernel_notice

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path, *args, timeout=300, env=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "single_machine.py"), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_end_to_end_zscore_with_file(tmp_path):
    res = run(
        tmp_path,
        "--num_samples",
        "3000000",
        "--detector",
        "zscore",
        "--file",
        "s.npy",
        "--seasonality",
        "",
        "--anomalies",
        '{"rate": 1e-4, "magnitude": 9}',
        "--chunk_size",
        "131072",
        "--time",
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for word in (
        "producer",
        "consumer",
        "M samples/s",
        "peak RSS MiB",
        "end to end",
        "pipeline",
        "precision",
        "recall",
        "throughput chart",
    ):
        assert word in out, out
    # --time: the same figures as JSON; the pipeline (start of generation to the last
    # result) lies inside the wall-clock span and after the producer started generating.
    fig = json.loads(out.strip().splitlines()[-1])
    assert fig["samples"] == 3_000_000 and fig["detector"] == "zscore"
    assert 0 < fig["pipeline_seconds"] < fig["wall_seconds"]
    assert fig["producer"]["started_at"] <= fig["producer"]["finished_at"]
    assert fig["producer"]["started_at"] < fig["consumer"]["finished_at"]
    assert fig["pipeline_seconds"] == round(
        fig["consumer"]["finished_at"] - fig["producer"]["started_at"], 4
    )
    # The tailing consumer's result equals a whole-series computation on the final file.
    x = np.load(tmp_path / "s.npy")
    idx = np.load(tmp_path / "s.anomalies.npy")
    np.testing.assert_array_equal(idx, consumer.detect(x, type="zscore", window=1000, threshold=5))
    summary = json.loads((tmp_path / "s.summary.json").read_text())
    assert summary["recall"] > 0.9 and summary["samples"] == 3_000_000
    png = tmp_path / "s.throughput.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for role in ("producer", "consumer"):
        lines = (tmp_path / f"s.{role}.metrics.jsonl").read_text().splitlines()
        assert lines and json.loads(lines[-1])["samples"] == 3_000_000


def test_shows_the_consumers_line_when_it_has_no_compiler(tmp_path):
    res = run(tmp_path, "--num_samples", "300000", "--detector", "zscore", env={"CC": "/no/cc"})
    assert res.returncode == 0, res.stderr
    line = fallback_notice("consumer", "no C compiler (/no/cc) on PATH", "z-score")
    assert line in (res.stdout + res.stderr).splitlines(), res.stdout + res.stderr
    assert is_kernel_notice(line) and not is_kernel_notice("consumer: stl: estimated period 48")


def test_default_detector_stl_in_temporary_directory(tmp_path):
    res = run(tmp_path, "--num_samples", "1000000", "--keep")
    assert res.returncode == 0, res.stderr
    kept = Path(res.stdout.split("kept ")[1].split()[0])
    summary = json.loads((kept / "stream.summary.json").read_text())
    assert summary["detector"]["type"] == "stl" and summary["detector"]["period"] == 200
    assert summary["recall"] >= 0.95 and summary["precision"] >= 0.9, summary
    shutil.rmtree(kept)  # --keep kept it (a ring in /dev/shm: memory, not disk)


def test_a_failing_side_stops_the_other(tmp_path):
    # The consumer refuses window 1 (exit 2): the run stops with the cause, non-zero.
    res = run(
        tmp_path,
        "--num_samples",
        "50000000",
        "--detector",
        "zscore",
        "--params",
        '{"window": 1}',
        "--file",
        "s.npy",
    )
    assert res.returncode != 0
    assert "consumer failed" in res.stderr and "window" in res.stderr, res.stderr
    last = res.stderr.strip().splitlines()[-1]  # progress lines come before it
    assert last.startswith("single_machine.py: error: consumer failed"), res.stderr
    assert "Traceback" not in res.stderr
    # The producer was stopped rather than left to finish 5e7 samples.
    side = json.loads((tmp_path / "s.stream.json").read_text())
    assert side["status"] in ("failed", "complete")


def test_bad_arguments_exit_2_without_files(tmp_path):
    res = run(tmp_path, "--num_samples", "0")
    assert res.returncode == 2 and "num_samples" in res.stderr
    res = run(tmp_path, "--seasonality", "{bad")
    assert res.returncode == 2 and "seasonality" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_report_columns_stay_apart_at_1e10_samples(tmp_path, capsys, monkeypatch):
    """The figures table of a 1e10-sample run: 14-character sample counts, one column each."""
    monkeypatch.syspath_prepend(str(ROOT))
    import single_machine

    stream = tmp_path / "stream.npy"
    pl = single_machine.Plan(
        10**10, stream, None, stream, stream, tmp_path / "t.png", [], [], ring=256 << 20
    )
    side = {"samples": 10**10, "seconds": 65.13, "samples_per_s": 1.536e8, "peak_rss_bytes": 1}
    args = single_machine.build_parser().parse_args(["--detector", "zscore"])
    single_machine.report(pl, args, dict(side), dict(side, seconds=65.06), 66.0)
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:6]}
    assert rows["samples"] == ["10,000,000,000", "10,000,000,000"], rows
    assert rows["seconds"] == ["65.13", "65.06"], rows
