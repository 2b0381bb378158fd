"""Cost of the throughput chart: ``import shared.plot`` plus one two-role render.

    python bench/plot_cost.py --runs 7
    python bench/plot_cost.py --runs 7 --before /tmp/old   # also another checkout's shared/

Writes a producer and a consumer metrics file shaped like a ``single_machine.py``
run (records every 0.25 s for ``--seconds``; producer ~75 M samples/s, consumer
starting late, at 80 % of the rate for longer), then times, in fresh interpreters, alternating
checkouts: numpy's import (``single_machine.py`` has already paid it), then
``from shared.plot import render_throughput`` and one render.  Prints the
medians of import + render (numpy excluded) and of the whole process's wall clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy
t1 = time.perf_counter()
from shared.plot import render_throughput
t2 = time.perf_counter()
render_throughput(sys.argv[1:3], sys.argv[3], title="300,000,000 samples, detector zscore")
t3 = time.perf_counter()
print(json.dumps({"numpy": t1 - t0, "import": t2 - t1, "render": t3 - t2}))
"""


def write_metrics(path: Path, role: str, start: float, rate: float, seconds: float) -> None:
    """Cumulative counts every 0.25 s at a noisy ``rate`` from ``start`` (unix seconds)."""
    rng = np.random.default_rng(len(role))
    t = start + np.arange(0.0, seconds + 1e-9, 0.25)
    samples = np.cumsum(np.r_[0.0, rate * 0.25 * rng.uniform(0.8, 1.2, t.size - 1)])
    with path.open("w") as f:
        for i, (ti, si) in enumerate(zip(t, samples, strict=True)):
            record = {"t": ti, "elapsed": ti - start, "role": role, "pid": 100 + len(role),
                      "samples": int(si), "total": None, "rss": 2**28, "cpu": 99.0}  # fmt: skip
            if i == t.size - 1:
                record["final"] = True
            f.write(json.dumps(record) + "\n")


def time_once(checkout: Path, metrics: list[Path], out: Path) -> dict[str, float]:
    """One fresh interpreter in ``checkout``: its figures plus the process wall clock."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, metrics), str(out)],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(proc.stdout)
    figures["process"] = time.perf_counter() - t0
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the fake run")
    parser.add_argument("--before", type=Path, help="another checkout to time alongside")
    args = parser.parse_args()
    checkouts = {"this": REPO} | ({"before": args.before} if args.before else {})
    with tempfile.TemporaryDirectory() as tmp:
        metrics = [Path(tmp) / "p.jsonl", Path(tmp) / "c.jsonl"]
        write_metrics(metrics[0], "producer", 1000.0, 75e6, args.seconds * 0.8)
        write_metrics(metrics[1], "consumer", 1000.3, 60e6, args.seconds)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
        for i in range(args.runs + 1):  # the first round warms the page cache, untimed
            for name, checkout in checkouts.items():
                figures = time_once(checkout, metrics, Path(tmp) / f"{name}.png")
                if i:
                    runs[name].append(figures)
    for name, figures in runs.items():
        med = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
        print(
            f"{name}: import+render {med['import'] + med['render']:.3f} s "
            f"(import {med['import']:.3f}, render {med['render']:.3f}; numpy {med['numpy']:.3f}),"
            f" process {med['process']:.3f} s  [median of {args.runs}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
