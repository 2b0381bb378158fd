"""The one benchmark run in the default suite: the real bench suite at a tiny size, then charts.

It proves that `pytest bench --benchmark-json ...` and `bench/charts.py` work together; it
asserts nothing about speed (benchmarks are not timed tests).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_suite_and_charts_smoke(tmp_path):
    env = dict(
        os.environ,
        BENCH_N="300000",
        BENCH_STL_N="20000",
        BENCH_SM_N="2000",
        BENCH_ROUNDS="1",
        PYTHONPATH=str(ROOT),
    )
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "bench",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--benchmark-json={out}",
            "-k",
            "not to_file or 1-False",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())
    rates = {b["name"]: b["extra_info"].get("samples_per_s") for b in data["benchmarks"]}
    assert rates and all(r and r > 0 for r in rates.values()), rates
    kernels = {b["extra_info"]["kernel"] for b in data["benchmarks"]}
    assert {"generate", "zscore"} <= kernels
    assert any(b["extra_info"]["baseline"] for b in data["benchmarks"])

    charts = tmp_path / "charts"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "charts.py"), str(out), "--out", str(charts)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    pngs = sorted(p.name for p in charts.glob("*.png"))
    assert "kernels_vs_baseline.png" in pngs and "generate_threads.png" in pngs, pngs
    for p in charts.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_median_interval_of_the_dask_bench_covers_the_median():
    """The bench's confidence interval for a paired median: the textbook order statistics
    (n = 25: the 8th and 18th), and for every n the widest k whose exact binomial coverage
    is still >= 95% (computed here by summing the distribution)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from dask_scaling import median_interval
    finally:
        sys.path.remove(str(ROOT / "bench"))

    def coverage(n: int, k: int) -> float:  # P(x_(k) <= median <= x_(n+1-k))
        return sum(math.comb(n, j) for j in range(k, n - k + 1)) / 2**n

    assert median_interval([float(v) for v in range(25, 0, -1)]) == [8.0, 18.0]
    assert median_interval([1.0] * 5) is None
    for n in range(6, 41):
        lo, hi = median_interval([float(v) for v in range(1, n + 1)])
        k = int(lo)
        assert hi == n + 1 - k
        assert coverage(n, k) >= 0.95 > coverage(n, k + 1)
