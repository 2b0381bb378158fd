"""Run ``single_machine.py`` several times and report median end-to-end figures.

    python bench/end_to_end.py --runs 5 -- --num_samples 100000000 --detector zscore

Everything after ``--`` goes to single_machine.py.  Prints one line per run and
the medians of the wall-clock rate (both processes, start to finish) and the
pipeline rate (start of generation to the consumer's last result).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    cmd = [sys.executable, str(ROOT / "single_machine.py"), "--quiet", "--time", *extra]
    walls, pipes = [], []
    for k in range(args.runs):
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            return out.returncode
        fig = json.loads(out.stdout.strip().splitlines()[-1])
        walls.append(fig["wall_samples_per_s"] / 1e6)
        pipes.append(fig["pipeline_samples_per_s"] / 1e6)
        print(
            f"run {k + 1}: wall {fig['wall_seconds']:.2f} s = {walls[-1]:.1f} M/s, "
            f"pipeline {fig['pipeline_seconds']:.2f} s = {pipes[-1]:.1f} M/s, "
            f"producer {fig['producer']['samples_per_s'] / 1e6:.1f} M/s, "
            f"peak RSS {fig['producer']['peak_rss_bytes'] / 2**20:.0f} / "
            f"{fig['consumer']['peak_rss_bytes'] / 2**20:.0f} MiB",
            flush=True,
        )
    print(
        f"median of {args.runs}: wall {statistics.median(walls):.1f} M/s, "
        f"pipeline {statistics.median(pipes):.1f} M/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
