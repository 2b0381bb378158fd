"""Generation kernel throughput, optionally against the kernel of another git revision.

Times, on one thread, what the producer's async writer calls
(``BlockGenerator.blocks(start, start + N, out, reuse=True)`` with a one-block
``out``, fresh RNG blocks every repeat, so the per-block key and anomaly draws
are included; ``label_counts`` runs first, as in the producer) and the bare
fill (``BlockGenerator._fill`` of one 2^20-sample buffer: the numba kernel(s)
alone).  Cases: ``plain`` (normal, nothing else), ``default`` (single_machine's
defaults: integer period, so the table path, and anomalies), ``sin`` (a
non-integer period: the ``sin`` path), ``uniform`` and ``default-f32``.

With ``--baseline REV`` the same runs are made against ``git archive REV``
(unpacked once into a temp dir) in alternating worker processes, and the
sha256 of the samples of every verification case is compared: the speed ratio
and the "same bytes" answer come from one run.

    python bench/generate_kernel.py                    # this tree only
    python bench/generate_kernel.py --baseline HEAD~1  # before/after, bytes checked

Timings on a shared machine are noisy: compare within one run, not across runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 1 << 20

DEFAULTS = dict(
    seasonality={"amplitude": 5, "period": 200}, anomalies={"rate": 1e-4, "magnitude": 8}
)
CASES = {
    "plain": ({}, "float64"),
    "default": (DEFAULTS, "float64"),
    "sin": (dict(DEFAULTS, seasonality={"amplitude": 5, "period": 200.5}), "float64"),
    "uniform": ({"type": "uniform"}, "float64"),
    "default-f32": (DEFAULTS, "float32"),
}
# Byte checks (with --baseline): every kernel variant, float32 rounding, trend, spikes.
VERIFY = {
    **CASES,
    "trend-f32": ({"params": {"mean": -4, "std": 3}, "trend": {"slope": 1e-4}}, "float32"),
    "int-phase-trend": (
        {
            "seasonality": {"amplitude": 1.5, "period": 365, "phase": 0.7},
            "trend": {"slope": -2e-5},
            "anomalies": {"rate": 0.01},
        },
        "float64",
    ),
    "uniform-sin-all": (
        {
            "type": "uniform",
            "params": {"low": -1, "high": 1},
            "seasonality": {"amplitude": 0.5, "period": 2.5, "phase": -2.0},
            "trend": {"slope": 3e-6},
            "anomalies": {"rate": 0.05, "magnitude": 5.0},
        },
        "float32",
    ),
    "multi-season": (
        {
            "seasonality": [{"amplitude": 2, "period": 24}, {"amplitude": 1, "period": 168}],
            "anomalies": {"rate": 0.9, "magnitude": 2.0},
        },
        "float64",
    ),
    "uniform-table-trend": (
        {"type": "uniform", "seasonality": {"amplitude": 3, "period": 7}, "trend": {"slope": 1}},
        "float64",
    ),
}


# -- worker: runs inside one tree -------------------------------------------------------


def _generator(case: str, table: dict, num_samples: int):
    from producer.generate import BlockGenerator
    from shared.params import generation_params

    kwargs, dtype = table[case]
    return BlockGenerator(generation_params(seed=7, **kwargs), num_samples, dtype)


def _time_case(case: str, repeats: int) -> dict[str, list[float]]:
    import numpy as np

    from producer.generate import BLOCK_SIZE

    gen = _generator(case, CASES, N * (repeats + 1))
    gen.warm_up()
    gen.label_counts()  # as the producer does before it writes (space check, labels file)
    out = np.empty(BLOCK_SIZE, gen.dtype)
    blocks = []
    for r in range(repeats + 1):  # fresh blocks each time; the first round warms up
        t = time.perf_counter()
        for _ in gen.blocks(r * N, (r + 1) * N, out, reuse=True):
            pass
        blocks.append(time.perf_counter() - t)
    buf = np.empty(N, gen.dtype)
    keys, pos, spike = gen._block(0)
    fill = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        gen._fill(buf, 0, 0, keys, pos, spike)
        fill.append(time.perf_counter() - t)
    return {"blocks": blocks[1:], "fill": fill[1:]}


def _digests() -> dict[str, str]:
    """sha256 of samples and labels of each VERIFY case: whole, and from inside a block."""
    import numpy as np

    n = 3 * (1 << 16) + 4321
    found = {}
    for case in VERIFY:
        gen = _generator(case, VERIFY, n)
        h = hashlib.sha256()
        for a, b in ((0, n), (100_003, 170_000), (5, 6), (n - 777, n)):
            out = np.empty(b - a, gen.dtype)
            h.update(gen.fill(a, b, out).tobytes())
            h.update(out.tobytes())
        found[case] = h.hexdigest()
    return found


def worker(tree: str, cases: list[str], repeats: int, verify: bool) -> None:
    sys.path.insert(0, tree)
    import importlib

    where = Path(importlib.import_module("producer.generate").__file__).resolve()
    if not where.is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"imported {where}, not the tree {tree}")
    result = {"times": {c: _time_case(c, repeats) for c in cases}}
    if verify:
        result["digests"] = _digests()
    print(json.dumps(result))


# -- driver ----------------------------------------------------------------------------


def _baseline_tree(rev: str) -> str:
    """``git archive rev`` unpacked into a temp dir named by its commit (kept: numba cache).

    A directory is taken as it is (another checkout or copy of the tree).
    """
    if Path(rev).is_dir():
        return str(Path(rev).resolve())
    sha = subprocess.check_output(["git", "rev-parse", rev], cwd=ROOT, text=True).strip()
    tree = Path(tempfile.gettempdir()) / f"tsstream-kernel-{sha[:12]}"
    if not tree.exists():
        part = Path(tempfile.mkdtemp(prefix=tree.name + "-"))
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(part)], input=archive.stdout, check=True)
        part.rename(tree)
    return str(tree)


def _run_worker(tree: str, cases: list[str], repeats: int, verify: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", tree, "--repeats", str(repeats)]
    cmd += ["--cases", ",".join(cases)] + ["--verify"] * int(verify)
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode:
        raise SystemExit(f"worker in {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _msps(times: list[float]) -> float:
    return N / statistics.median(times) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", metavar="REV", help="git revision (or tree) to compare with")
    p.add_argument("--repeats", type=int, default=7, help="timed runs per case and process")
    p.add_argument("--rounds", type=int, default=3, help="worker processes per tree")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset")
    p.add_argument("--worker", metavar="TREE", help=argparse.SUPPRESS)
    p.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    cases = args.cases.split(",")
    if unknown := set(cases) - set(CASES):
        p.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    if args.worker:
        return worker(args.worker, cases, args.repeats, args.verify)

    trees = {"current": str(ROOT)}
    if args.baseline:
        trees = {"baseline": _baseline_tree(args.baseline), **trees}
    times = {name: {c: {"blocks": [], "fill": []} for c in cases} for name in trees}
    digests = {}
    order = list(trees)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
            verify = r == 0 and args.baseline is not None
            got = _run_worker(trees[name], cases, args.repeats, verify)
            for c in cases:
                for kind in ("blocks", "fill"):
                    times[name][c][kind] += got["times"][c][kind]
            if verify:
                digests[name] = got["digests"]

    print(f"M samples/s, median of {args.rounds} x {args.repeats} runs of 2^20 samples, 1 thread")
    head = f"{'case':<12} {'what':<7}" + "".join(f"{n:>10}" for n in trees)
    print(head + ("     ratio" if args.baseline else ""))
    for c in cases:
        for kind in ("blocks", "fill"):
            rates = [_msps(times[n][c][kind]) for n in trees]
            line = f"{c:<12} {kind:<7}" + "".join(f"{x:10.1f}" for x in rates)
            print(line + (f"{rates[-1] / rates[0]:10.2f}" if args.baseline else ""))
    if args.baseline:
        same = [c for c in VERIFY if digests["baseline"][c] == digests["current"][c]]
        differ = [c for c in VERIFY if c not in same]
        print(f"bytes identical to {args.baseline}: {len(same)}/{len(VERIFY)} cases", end="")
        print(f"; DIFFERENT: {', '.join(differ)}" if differ else "")
        if differ:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
