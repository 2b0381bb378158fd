"""Consumer speed now against an earlier commit, on one page-cached stream, alternating runs.

    python bench/consumer_vs_commit.py --baseline fe7b74d --n 1e8 --runs 5 --type zscore stl

Checks out ``--baseline`` (and ``--now``, if given, else the working tree is used) in
temporary git worktrees, writes one stream with the current
producer, warms both trees' numba caches, then runs ``python -m consumer ... --time`` from
each tree in turn (wall clock from launch to exit, and the in-process samples/s the consumer
reports) and prints medians and the ratio now / baseline per detector.
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

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"zscore": '{"window": 1000, "threshold": 4}', "stl": '{"threshold": 5}'}


def _consumer(tree: Path, stream: Path, out: Path, type_: str) -> tuple[float, float]:
    """One consumer run from ``tree``: (wall seconds, in-process samples/s)."""
    cmd = [sys.executable, "-m", "consumer", "--file", str(stream), "--type", type_]
    cmd += ["--params", PARAMS.get(type_, "{}"), "--quiet", "--overwrite", "--time"]
    cmd += ["--indices", str(out / "i.npy"), "--out", str(out / "o.parquet")]
    cmd += ["--summary", str(out / "s.json")]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, figures["samples_per_s"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="git revision to compare with")
    ap.add_argument("--now", help="git revision to measure (default: the working tree)")
    ap.add_argument("--n", type=float, default=1e8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--type", nargs="+", default=["zscore", "stl"])
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tsstream-bench-") as tmp:
        work = Path(tmp)
        base = work / "baseline"
        subprocess.run(["git", "worktree", "add", "-q", str(base), args.baseline], cwd=ROOT)
        now = ROOT
        if args.now:
            now = work / "now"
            subprocess.run(["git", "worktree", "add", "-q", str(now), args.now], cwd=ROOT)
        try:
            stream = work / "s.npy"
            subprocess.run(
                [sys.executable, "-m", "producer", "--num_samples", str(int(args.n))]
                + ["--file", str(stream), "--quiet", "--seasonality"]
                + ['{"amplitude": 5, "period": 200}'],
                cwd=now,
                check=True,
            )
            for type_ in args.type:
                runs: dict[str, list[tuple[float, float]]] = {"now": [], "baseline": []}
                for tree in (now, base):  # warm the numba caches and the page cache
                    _consumer(tree, stream, work, type_)
                for _ in range(args.runs):
                    for name, tree in (("now", now), ("baseline", base)):
                        runs[name].append(_consumer(tree, stream, work, type_))
                med = {
                    k: (statistics.median(w for w, _ in v), statistics.median(r for _, r in v))
                    for k, v in runs.items()
                }
                print(
                    json.dumps(
                        {
                            "type": type_,
                            "samples": int(args.n),
                            "runs": args.runs,
                            "wall_s": {k: round(v[0], 3) for k, v in med.items()},
                            "in_process_samples_per_s": {k: round(v[1]) for k, v in med.items()},
                            "wall_ratio_baseline_over_now": med["baseline"][0] / med["now"][0],
                            "rate_ratio_now_over_baseline": med["now"][1] / med["baseline"][1],
                        }
                    ),
                    flush=True,
                )
        finally:
            for tree in {base, now} - {ROOT}:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
