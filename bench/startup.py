"""Start-up: wall clock from launch to exit of each CLI on a tiny stream, against bare imports.

    python bench/startup.py --runs 11
    python bench/startup.py --runs 11 --before /tmp/old   # also another checkout's CLIs

Writes a 1e5-sample producer stream once (untimed), then alternates, each run a
fresh process:

* baseline: ``python -c "import numpy, pyarrow.parquet"``;
* consumer: ``python -m consumer --file tiny.npy --type zscore --overwrite --quiet``;
* producer: ``python -m producer --num_samples 100000 --file p.npy --overwrite --quiet``;

after one untimed run of each (which also fills numba's cache, so the timed runs
are warm).  Prints the medians of wall clock and of CPU time (user + system: on a
machine loaded by other jobs, the better guide to a quiet machine's wall clock)
and each CLI's ratios to the baseline (``--json``: also one JSON line).
``--before DIR`` also times the CLIs of another checkout of the project (run in
that directory, which ``python -m`` puts first on the path), alternated with
this one's, for before/after figures from one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BASELINE = [PY, "-c", "import numpy, pyarrow.parquet"]


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds from launch to exit of ``cmd`` run in ``cwd``; exits if it fails.

    CPU is the child's user + system time: start-up runs on one thread, so on a
    machine loaded by other jobs it is closer to the quiet machine's wall clock.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def cli_commands(stream: Path, out: Path, n: int, detector: str) -> dict[str, list[str]]:
    """The two timed CLI commands: the consumer reads ``stream``; their files go to ``out``."""
    consumer = [PY, "-m", "consumer", "--file", str(stream), "--type", detector]
    for flag, name in (("--indices", "i.npy"), ("--out", "o.parquet"), ("--summary", "s.json")):
        consumer += [flag, str(out / name)]
    consumer += ["--overwrite", "--quiet"]
    producer = [PY, "-m", "producer", "--num_samples", str(n), "--file", str(out / "p.npy")]
    producer += ["--overwrite", "--quiet"]
    return {"consumer": consumer, "producer": producer}


def measure(roots: dict[str, Path], n: int, detector: str, runs: int) -> dict[str, float]:
    """Medians over ``runs`` alternated runs (wall ``_s``, CPU ``_cpu_s``) and each CLI's
    ratios to the baseline (``_ratio``, ``_cpu_ratio``).

    ``roots``: label -> checkout whose CLIs run (in that directory); the labels
    prefix the figures' names (``""`` for this checkout, ``"before_"``).
    """
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        d = Path(tmp)
        stream = [PY, "-m", "producer", "--num_samples", str(n), "--file", str(d / "tiny.npy")]
        timed(stream, ROOT)
        cmds: dict[str, tuple[list[str], Path]] = {"baseline": (BASELINE, ROOT)}
        for label, root in roots.items():
            out = d / (label or "this")
            out.mkdir()
            for name, cmd in cli_commands(d / "tiny.npy", out, n, detector).items():
                cmds[label + name] = (cmd, root)
        for cmd, cwd in cmds.values():
            timed(cmd, cwd)  # untimed: page cache, numba's cache
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
        for k in range(runs):
            for name, (cmd, cwd) in cmds.items():
                times[name].append(timed(cmd, cwd))
            line = ", ".join(f"{name} {t[-1][0]:.3f} s" for name, t in times.items())
            print(f"run {k + 1}: {line}", flush=True)
    med: dict[str, float] = {}
    for name, t in times.items():
        med[f"{name}_s"] = statistics.median(w for w, _ in t)
        med[f"{name}_cpu_s"] = statistics.median(c for _, c in t)
    for name in list(times)[1:]:
        med[f"{name}_ratio"] = med[f"{name}_s"] / med["baseline_s"]
        med[f"{name}_cpu_ratio"] = med[f"{name}_cpu_s"] / med["baseline_cpu_s"]
    return med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=11, help="timed runs of each command (11)")
    p.add_argument("--n", type=float, default=1e5, help="samples of the tiny stream (1e5)")
    p.add_argument("--type", default="zscore", help="the consumer's detector (zscore)")
    p.add_argument("--before", help="also time the CLIs of this checkout (e.g. an older commit)")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = p.parse_args()
    roots = {"": ROOT} | ({"before_": Path(args.before).resolve()} if args.before else {})
    r = measure(roots, int(args.n), args.type, args.runs)
    print(
        f"medians of {args.runs}: import numpy, pyarrow.parquet {r['baseline_s']:.3f} s "
        f"(CPU {r['baseline_cpu_s']:.3f} s)"
    )
    for label, root in roots.items():
        for name in ("consumer", "producer"):
            k = label + name
            print(
                f"  {name:<9} {r[k + '_s']:.3f} s = {r[k + '_ratio']:.2f}x "
                f"(CPU {r[k + '_cpu_s']:.3f} s = {r[k + '_cpu_ratio']:.2f}x)  ({root})"
            )
    if args.json:
        print(json.dumps({"runs": args.runs, "root": str(ROOT), "before": args.before, **r}))


if __name__ == "__main__":
    main()
