"""Wall clock from launch to exit: tsstream against the demo it replaces, alternated in one run.

    python bench/wall_clock.py pipeline --n 3e8 --runs 5      # single_machine.py vs serial loop
    python bench/wall_clock.py consumer --n 1e8 --runs 5      # consumer CLI vs demo consumer

``pipeline`` times ``single_machine.py --num_samples N --detector zscore --quiet``
against ``bench/demo_baselines.py serial`` (numpy normal chunks of 3e7 generated
and z-scored in memory, one after the other).  ``consumer`` writes an N-sample
producer stream once, reads it once so it is page-cached, then times
``python -m consumer --type zscore --overwrite`` against
``bench/demo_baselines.py consumer`` over the same file.  The two commands of a
pair alternate, every run is a fresh process, and the medians and their ratio
are printed (and written as one JSON line with ``--json``).
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

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def _timed(cmd: list[str]) -> float:
    """Seconds from launch to exit of ``cmd``; raises with its stderr if it fails."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return seconds


def _alternate(ours: list[str], baseline: list[str], runs: int) -> dict[str, float]:
    """Run the two commands alternately ``runs`` times each (after one untimed warm-up each)."""
    _timed(ours)
    _timed(baseline)
    t_ours, t_base = [], []
    for k in range(runs):
        t_ours.append(_timed(ours))
        t_base.append(_timed(baseline))
        print(f"run {k + 1}: tsstream {t_ours[-1]:.2f} s, baseline {t_base[-1]:.2f} s", flush=True)
    ours_s, base_s = statistics.median(t_ours), statistics.median(t_base)
    return {"tsstream_s": ours_s, "baseline_s": base_s, "ratio": base_s / ours_s}


def pipeline(n: int, runs: int, extra: list[str]) -> dict[str, float]:
    """single_machine.py (zscore) against the demo's serial in-memory loop."""
    ours = [PY, "single_machine.py", "--num_samples", str(n), "--detector", "zscore", "--quiet"]
    base = [PY, "bench/demo_baselines.py", "serial", "--num_samples", str(n)]
    return _alternate(ours + extra, base, runs)


def consumer(n: int, runs: int, extra: list[str], workdir: Path) -> dict[str, float]:
    """The consumer CLI (zscore) against the demo's per-chunk numpy consumer, page-cached."""
    stream = workdir / f"wall_{n}.npy"
    if not stream.exists():
        subprocess.run(
            [PY, "-m", "producer", "--num_samples", str(n), "--file", str(stream), "--quiet"],
            cwd=ROOT,
            check=True,
        )
    with open(stream, "rb") as f:  # page-cache it
        while f.read(1 << 24):
            pass
    ours = [PY, "-m", "consumer", "--file", str(stream), "--type", "zscore", "--overwrite"]
    ours += ["--quiet", *extra]
    base = [PY, "bench/demo_baselines.py", "consumer", "--file", str(stream)]
    base += ["--out", str(workdir / "demo_anomalies.npy")]
    return _alternate(ours, base, runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["pipeline", "consumer"])
    p.add_argument("--n", type=float, default=1e8, help="samples")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dir", help="where the consumer's stream is kept (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args, extra = p.parse_known_args(argv)
    n = int(args.n)
    if args.what == "pipeline":
        fig = pipeline(n, args.runs, extra)
    elif args.dir:
        fig = consumer(n, args.runs, extra, Path(args.dir))
    else:
        with tempfile.TemporaryDirectory(dir="/tmp") as d:
            fig = consumer(n, args.runs, extra, Path(d))
    print(
        f"{args.what} n={n:.0e}: tsstream {fig['tsstream_s']:.2f} s, baseline "
        f"{fig['baseline_s']:.2f} s (medians of {args.runs}): {fig['ratio']:.2f}x"
    )
    if args.json:
        print(json.dumps({"what": args.what, "n": n, "runs": args.runs, **fig}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
