"""The two naive programs that tsstream replaces, as baselines timed from launch to exit.

    python bench/demo_baselines.py serial --num_samples 300000000
    python bench/demo_baselines.py consumer --file gen.npy

* ``serial``: the demo's in-memory loop.  It draws numpy normal chunks of 3e7
  samples, z-scores each chunk with its own mean and standard deviation, keeps
  the indices above the threshold, and only then draws the next chunk; nothing
  touches a disk.
* ``consumer``: the demo's consumer over a (page-cached) ``.npy`` file: reads it
  in chunks, z-scores each chunk with its own mean and standard deviation, and
  saves the indices above the threshold as an int64 ``.npy`` at the end.

Both are one-threaded numpy, as the demo was; ``bench/wall_clock.py`` times them
against the tsstream commands in the same run.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

CHUNK = 30_000_000


def _flags(x: np.ndarray, threshold: float) -> np.ndarray:
    """Indices (within ``x``) whose per-chunk z-score exceeds ``threshold``."""
    z = (x - x.mean()) / x.std()
    return np.nonzero(np.abs(z) > threshold)[0]


def serial(num_samples: int, threshold: float, seed: int) -> int:
    """Generate and detect chunk by chunk in memory; return the number of flags."""
    rng = np.random.default_rng(seed)
    found = []
    for start in range(0, num_samples, CHUNK):
        x = rng.normal(0.0, 1.0, min(CHUNK, num_samples - start))
        found.append(_flags(x, threshold) + start)
    return int(sum(len(f) for f in found))


def consumer(path: str, out: str, threshold: float, chunk: int) -> int:
    """Per-chunk z-score over a ``.npy`` file; save the flagged indices; return their count."""
    data = np.load(path, mmap_mode="r")
    found = []
    for start in range(0, len(data), chunk):
        x = np.array(data[start : start + chunk])
        found.append(_flags(x, threshold) + start)
    idx = np.concatenate(found).astype(np.int64) if found else np.empty(0, np.int64)
    np.save(out, idx)
    return len(idx)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serial", help="the in-memory generate-then-detect loop")
    s.add_argument("--num_samples", type=float, default=3e8)
    s.add_argument("--seed", type=int, default=42)
    c = sub.add_parser("consumer", help="the per-chunk numpy consumer over a file")
    c.add_argument("--file", required=True)
    c.add_argument("--out", default="demo_anomalies.npy")
    c.add_argument("--chunk", type=int, default=1 << 20)
    for q in (s, c):
        q.add_argument("--threshold", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.what == "serial":
        n = serial(int(args.num_samples), args.threshold, args.seed)
    else:
        n = consumer(args.file, args.out, args.threshold, args.chunk)
    print(f"{n} flags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
