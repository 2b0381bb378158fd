"""Rolling z-score speed: the consumer over a page-cached stream, and the kernel alone.

    python bench/zscore_speed.py --n 1e9 --runs 3 --kernel_n 1e8 [--baseline 58ed0cf]

Builds a ``--n``-sample producer stream once (kept in ``--dir``, default
``$TMPDIR/tsstream-zscore-speed``; with too little free space it falls back to 5e8
samples and says so), reads it once so that it is page-cached, then runs
``python -m consumer --file ... --type zscore`` (rolling, the default parameters)
``--runs`` times and prints the medians of

* the in-process rate: the ``samples_per_s`` of the consumer's summary, samples
  over the time from its first scheduled chunk to its last result (after start-up,
  numba loading and the warm-up call; before the final publication of the outputs),
  the figure the README and issue 10 quote;
* the wall clock from launch to exit, and the CPU seconds (user + system) of the run.

With ``--baseline REV`` the consumer of a git worktree of REV runs alternately with
this tree's (same stream, same outputs), and the ratio of the medians is printed.

Then the kernel alone on an in-memory float64 array of ``--kernel_n`` samples, in
consumer-sized chunks of 2**20 samples: the native kernel the consumer runs, numba's
lanes kernel (its fallback without a C compiler) and the scalar reference kernel, on
1 and on ``--threads`` threads (the kernels release the GIL).  On a shared machine
these figures are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1 << 20


def _stream(folder: Path, n: int) -> tuple[Path, int]:
    """The cached stream of ``n`` samples (5e8 if the disk is too small), built if missing."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    path = folder / f"z{n}.npy"
    if not path.exists() and free < 8 * n * 1.05 + 2**30:
        print(f"only {free / 2**30:.1f} GiB free in {folder}: using 5e8 samples instead of {n:g}")
        n = 500_000_000
        path = folder / f"z{n}.npy"
    side = path.with_name(path.stem + ".stream.json")
    done = side.exists() and all(c is not None for c in json.loads(side.read_text())["chunks"])
    if not done:
        cmd = [sys.executable, "-m", "producer", "--num_samples", str(n), "--file", str(path)]
        subprocess.run([*cmd, "--quiet", "--overwrite"], cwd=ROOT, check=True)
    return path, n


def _warm(path: Path) -> float:
    """Read the whole file once (into the page cache); returns GB/s of that read."""
    buf = bytearray(1 << 24)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buf):
            pass
    return path.stat().st_size / (time.perf_counter() - t0) / 1e9


def _consumer(path: Path, out: Path, threads: int, tree: Path = ROOT) -> tuple[float, ...]:
    """One consumer run from ``tree``: (wall s, in-process samples/s, anomalies, CPU s)."""
    cmd = [sys.executable, "-m", "consumer", "--file", str(path), "--type", "zscore"]
    cmd += ["--threads", str(threads), "--quiet", "--overwrite"]
    cmd += ["--indices", str(out / "i.npy"), "--out", str(out / "o.parquet")]
    cmd += ["--summary", str(out / "s.json")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=tree, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    s = json.loads((out / "s.json").read_text())
    return wall, s["samples_per_s"], s["anomalies"], cpu


def _kernel_rates(n: int, threads: int, rounds: int) -> dict[str, float]:
    """Samples/s of the native, the lanes and the scalar kernel over ``n`` in-memory samples."""
    sys.path.insert(0, str(ROOT))
    from consumer.kernels import zscore as zk
    from consumer.kernels import zscore_native as zn

    x = np.random.default_rng(1).standard_normal(n)
    window, thr = 1000, 3.0
    kinds = ["native", "lanes", "scalar"] if zn.flags_kernel() is not None else ["lanes", "scalar"]

    scratch = threading.local()  # flag buffers and the lanes kernel's scratch, per thread

    def chunk(c: int, kind: str) -> int:
        a, b = c * CHUNK, min(n, (c + 1) * CHUNK)
        ws, we = zk.rolling_zscore_window(a, b, n, window)
        if not hasattr(scratch, "work"):
            scratch.work = zk.lane_work()
            scratch.idx, scratch.sc = np.empty(CHUNK, np.int64), np.empty(CHUNK)
        idx, sc = scratch.idx, scratch.sc
        if kind == "native":
            return zn.rolling_zscore_flags(x[ws:we], ws, a, b, window, thr, idx, sc)
        if kind == "lanes":
            return zk._rolling_zscore_lanes(
                x[ws:we], ws, a, b, window, thr, zk.RESYNC, idx, sc, scratch.work
            )
        empty = np.empty(0, np.float32)
        return zk._rolling_zscore(x[ws:we], ws, a, b, window, thr, zk.RESYNC, idx, sc, empty)

    for kind in kinds:  # load (or build) each kernel before timing
        chunk(0, kind)
    out = {}
    nchunks = -(-n // CHUNK)
    for kind in kinds:
        for t in sorted({1, threads}):
            with ThreadPoolExecutor(t) as pool:
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    flags = sum(pool.map(chunk, range(nchunks), [kind] * nchunks))
                    times.append(time.perf_counter() - t0)
            out[f"{kind}, {t} thread{'s' * (t > 1)}"] = n / min(times)
            out[f"flags {kind}"] = flags
    return out


def _run_figures(runs: list[tuple[float, ...]]) -> dict[str, object]:
    """Per-run and median figures of consumer runs (wall, rate, anomalies, CPU)."""
    return {
        "in_process_Mps": [round(r[1] / 1e6, 1) for r in runs],
        "wall_s": [round(r[0], 3) for r in runs],
        "cpu_s": [round(r[3], 3) for r in runs],
        "anomalies": sorted({r[2] for r in runs}),
        "median_in_process_Mps": round(statistics.median(r[1] for r in runs) / 1e6, 1),
        "median_wall_s": round(statistics.median(r[0] for r in runs), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e9, help="stream samples (default 1e9)")
    ap.add_argument("--runs", type=int, default=3, help="consumer runs (medians)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kernel_n", type=float, default=1e8, help="in-memory samples (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="kernel rounds (best of)")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "tsstream-zscore-speed"))
    ap.add_argument("--baseline", help="git revision whose consumer runs alternate with this one")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    figures: dict[str, object] = {}
    if args.runs > 0:
        path, n = _stream(Path(args.dir), int(args.n))
        figures["samples"] = n
        figures["page_cache_read_GBps"] = round(_warm(path), 2)
        out = Path(args.dir) / "out"
        out.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tsstream-zscore-base-") as tmp:
            trees = {"now": ROOT}
            if args.baseline:
                trees["baseline"] = Path(tmp) / "tree"
                git = ["git", "worktree", "add", "-q", "--detach", str(trees["baseline"])]
                subprocess.run([*git, args.baseline], cwd=ROOT, check=True)
            try:
                if args.baseline:
                    _consumer(path, out, args.threads, trees["baseline"])  # its numba cache
                runs: dict[str, list[tuple[float, ...]]] = {name: [] for name in trees}
                for _ in range(args.runs):  # alternated, so that both see the same machine
                    for name, tree in trees.items():
                        runs[name].append(_consumer(path, out, args.threads, tree))
            finally:
                if args.baseline:
                    rm = ["git", "worktree", "remove", "--force", str(trees["baseline"])]
                    subprocess.run(rm, cwd=ROOT, check=False)
        for name, rs in runs.items():
            figures[name] = _run_figures(rs)
        if args.baseline:
            now, base = figures["now"], figures["baseline"]
            figures["ratio_in_process"] = round(
                now["median_in_process_Mps"] / base["median_in_process_Mps"], 2
            )
    if args.kernel_n > 0:
        k = _kernel_rates(int(args.kernel_n), args.threads, args.rounds)
        figures["kernel_Mps"] = {
            name: round(v / 1e6, 1) for name, v in k.items() if "flags" not in name
        }
        if len({v for name, v in k.items() if "flags" in name}) != 1:
            raise SystemExit("the kernels disagree on the number of flags")
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
