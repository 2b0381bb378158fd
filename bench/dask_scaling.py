"""The Dask engine against the local one: per-task overhead by span, and 1 -> 2 workers.

    python bench/dask_scaling.py --n 67108864 --stl_n 8388608 \\
        --spans 1048576 4194304 16777216 --scale_span 4194304 --stl_span 2097152 \\
        --rounds 3 --dir /dev/shm --out dask_scaling.json
    python bench/dask_scaling.py --n 268435456 --spans 16777216 --rounds 9 --overhead_only

Overhead: the local engine on one thread against a ``LocalCluster`` of one worker
process with one thread, for each of ``--spans`` (samples per task), generating a
stream of ``--n`` samples (``write_stream`` / ``write_stream_dask``) and running the
rolling z-score consumer over it (``run_consumer`` / ``run_consumer_dask``).
Scaling: one and two worker processes (one thread each) for generation and z-score
at ``--scale_span`` and STL (period 200, seasonal 7, on ``--stl_n`` samples) at
``--stl_span``, beside the local engine on one and two threads.  Dask alone: 256
no-op tasks on the one-worker cluster, four in flight as the engines keep them (wall
seconds and this process's CPU seconds: the scheduler's and the client's cost per
task).  Every time is the engine's own (``WriteResult.seconds``, the summary's
``seconds``): from the first chunk submitted to the last one committed or published,
without the cluster's start-up or the workers' warm-up; stage by stage, every
configuration runs once untimed,
then ``--rounds`` rounds run each of the stage's configurations once in turn, forwards
and backwards in alternate rounds (so that a machine whose speed drifts slows all of
them alike), and the median of each is reported (the runs are in the JSON); for one
worker, also the median over rounds of the overhead against the same round's local
run (paired: the figure a drifting machine disturbs least), with a distribution-free
95% confidence interval for that median (order statistics; ``median_interval``), so
that a goal such as "at most 10%" is shown only when the interval's top is under it.
One JSON object per
measurement is printed, all are written to ``--out``, and two Markdown tables close
the output.  On a shared machine the figures are noisy: rerun on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEASON = {"amplitude": 5.0, "period": 200}
ZSCORE = {"type": "zscore", "params": {"window": 1000, "threshold": 4}}
STL = {"type": "stl", "params": {"threshold": 5, "seasonal": 7}}


def _record(results: list, what: str, engine: str, workers: int, span, n: int, s: float) -> None:
    r = {
        "what": what,
        "engine": engine,
        "workers": workers,
        "span": span,
        "samples": n,
        "seconds": round(s, 4),
        "samples_per_s": n / s,
        "cores": os.cpu_count(),
    }
    results.append(r)
    print(json.dumps(r), flush=True)


def _noop(i: int) -> int:
    return i


def _noop_round_trips(client, tasks: int = 256, ahead: int = 4) -> dict:
    """Dask's own cost per task on this machine: ``tasks`` no-op tasks, ``ahead`` in flight
    (as the engines keep them), and the CPU seconds of this process (scheduler, client)."""
    client.submit(_noop, -1, pure=False).result()
    c0, t0 = os.times(), time.perf_counter()
    inflight = []
    for i in range(tasks):
        inflight.append(client.submit(_noop, i, pure=False))
        if len(inflight) >= ahead:
            inflight.pop(0).result()
    client.gather(inflight)
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {"what": "noop", "engine": "dask", "workers": 1, "tasks": tasks, "seconds": wall,
            "driver_cpu_seconds": cpu, "ms_per_task": 1000 * wall / tasks}  # fmt: skip


class Bench:
    """The measurements, on streams in ``work``."""

    def __init__(self, n: int, stl_n: int, work: Path, rounds: int) -> None:
        from shared.params import generation_params

        self.n, self.stl_n, self.work, self.rounds = n, stl_n, work, rounds
        self.params = generation_params(seasonality=SEASON)
        self.results: list[dict] = []

    def generate(self, engine, threads: int, name: str, n: int) -> float:
        """Seconds to write an ``n``-sample stream ``name`` (local: ``threads``)."""
        from producer.dask_engine import write_stream_dask
        from producer.write import write_stream

        path = self.work / name
        if engine is None:
            return write_stream(path, n, self.params, threads=threads, overwrite=True).seconds
        return write_stream_dask(path, n, self.params, engine=engine, overwrite=True).seconds

    def consume(self, engine, threads: int, name: str, det: dict) -> float:
        """Seconds of a consumer run over the stream ``name`` (local: ``threads``)."""
        from consumer.dask_engine import run_consumer_dask
        from consumer.run import ConsumerConfig, OutputPaths, run_consumer

        stem = self.work / f"out-{name}"
        paths = OutputPaths.for_input(stem)
        stream = self.work / name
        if engine is None:
            config = ConsumerConfig(paths=paths, overwrite=True, threads=threads, **det)
            return run_consumer(stream, config)["seconds"]
        config = ConsumerConfig(paths=paths, overwrite=True, **det)
        return run_consumer_dask(stream, config, engine=engine)["seconds"]

    def run(self, plan: list[tuple[str, int, int | None]]) -> None:
        """Measure ``(stage, workers, span)`` configurations (span None: the local engine on
        ``workers`` threads), alternating them round by round so that a machine whose speed
        drifts slows them alike; then record the medians."""
        from distributed import Client, LocalCluster

        from shared.engine import EngineOptions

        clusters = {}
        for workers in sorted({w for _, w, span in plan if span is not None}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            clusters[workers] = (cluster, Client(cluster))
        try:
            runs = []
            for what, workers, span in plan:
                engine = None
                if span is not None:
                    address = clusters[workers][0].scheduler_address
                    engine = EngineOptions(engine="dask", scheduler=address, span=span)
                runs.append(self._stage(what, engine, 1 if engine else workers))
            if 1 in clusters:
                self.results.append(_noop_round_trips(clusters[1][1]))
                print(json.dumps(self.results[-1]), flush=True)
            times: list[list[float]] = [[] for _ in plan]
            for what in dict.fromkeys(w for w, _, _ in plan):
                self._rounds([k for k, p in enumerate(plan) if p[0] == what], runs, times)
            for (what, workers, span), (n, _), t in zip(plan, runs, times, strict=True):
                engine = "local" if span is None else "dask"
                _record(self.results, what, engine, workers, span, n, statistics.median(t))
                self.results[-1]["runs"] = [round(x, 4) for x in t]
                if engine == "dask" and workers == 1:
                    # The same round's local run on one thread: the median of paired ratios,
                    # robust to a machine whose speed drifts between rounds.
                    base = times[plan.index((what, 1, None))]
                    paired = [d / b - 1 for d, b in zip(t, base, strict=True)]
                    self.results[-1]["paired_overhead"] = statistics.median(paired)
                    self.results[-1]["paired_overhead_ci95"] = median_interval(paired)
        finally:
            for _, client in clusters.values():
                client.shutdown()

    def _rounds(self, ks: list[int], runs: list, times: list[list[float]]) -> None:
        """Rounds of one stage's configurations ``ks``: round 0 warms each up, then each
        round runs each once, forwards and backwards in turn (a drift within a round
        slows both ends alike).  A stage's rounds are not interleaved with another
        stage's: a generation run rewriting 2 GB of page cache can slow the run that
        follows it (seen in one-off runs, not measured here)."""
        for r in range(self.rounds + 1):
            for k in ks if r % 2 == 0 else ks[::-1]:
                seconds = runs[k][1]()
                if r:
                    times[k].append(seconds)

    def _stage(self, what: str, engine, threads: int) -> tuple[int, Callable[[], float]]:
        """Samples and a run (returning its seconds) of generation, z-score or STL.

        The detectors read streams written once, by the local engine, not the stream
        the generation runs keep rewriting: how a file's pages sit in the page cache
        (which process wrote them, in what pieces) changes what mapping them costs by
        up to 6x here, and every consumer run must read the same pages.
        """
        inputs = {
            "zscore": (f"z-{self.n}.npy", self.n),
            "stl": (f"stl-{self.stl_n}.npy", self.stl_n),
        }
        if what == "generation":
            return self.n, lambda: self.generate(engine, threads, "gen.npy", self.n)
        stream, n = inputs[what]
        if not (self.work / stream).exists():
            self.generate(None, 2, stream, n)
        return n, lambda: self.consume(engine, threads, stream, ZSCORE if what == "zscore" else STL)


STAGES = ("generation", "zscore", "stl")


def median_interval(xs: list[float], level: float = 0.95) -> list[float] | None:
    """A distribution-free confidence interval for the median of ``xs``: the order
    statistics ``x_(k)`` and ``x_(n+1-k)`` with the largest ``k`` for which
    ``P(Binomial(n, 1/2) < k) <= (1 - level) / 2`` (so the interval covers the median
    with probability >= ``level`` whatever the distribution; no resampling).  None
    for too few values (fewer than 6 at 95%)."""
    n, xs = len(xs), sorted(xs)
    tail, k = 0.0, 0
    while k < n // 2:
        p = math.comb(n, k) / 2**n  # P(Binomial(n, 1/2) = k)
        if tail + p > (1 - level) / 2:
            break
        tail += p
        k += 1
    return None if k == 0 else [xs[k - 1], xs[n - k]]


def summarize(results: list[dict], scale: dict[str, int]) -> list[str]:
    """Markdown tables: overhead per span (1 worker x 1 thread), and 1 -> 2 workers."""
    noop = [r for r in results if r["what"] == "noop"]
    results = [r for r in results if r["what"] != "noop"]
    local = {(r["what"], r["workers"]): r for r in results if r["engine"] == "local"}
    dask = {(r["what"], r["workers"], r["span"]): r for r in results if r["engine"] == "dask"}
    rows = ["| stage | span | local, 1 thread (s) | Dask, 1 worker x 1 thread (s) | overhead |"]
    rows[0] += " paired overhead | 95% interval of the paired median |"
    rows.append("|---|---:|---:|---:|---:|---:|---:|")
    for (what, workers, span), r in sorted(dask.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        if workers == 1:
            base = local[(what, 1)]["seconds"]
            rows.append(
                f"| {what} | 2^{span.bit_length() - 1} | {base:.3f} | {r['seconds']:.3f}"
                f" | {100 * (r['seconds'] / base - 1):+.1f}% | {100 * r['paired_overhead']:+.1f}% |"
                f" {_interval(r.get('paired_overhead_ci95'))} |"
            )
    rows += ["", "| stage (M samples/s) | span | local 1 thread | local 2 threads |"]
    rows[-1] += " Dask 1 x 1 | Dask 2 x 1 | Dask 2 / 1 |"
    rows.append("|---|---:|---:|---:|---:|---:|---:|")
    for what in STAGES:
        one, two = dask.get((what, 1, scale[what])), dask.get((what, 2, scale[what]))
        if one is None or two is None:
            continue
        m = [x["samples_per_s"] / 1e6 for x in (local[(what, 1)], local[(what, 2)], one, two)]
        rows.append(
            f"| {what} | 2^{scale[what].bit_length() - 1} | {m[0]:.1f} | {m[1]:.1f} | {m[2]:.1f}"
            f" | {m[3]:.1f} | {m[3] / m[2]:.2f}x |"
        )
    for r in noop:
        rows += ["", f"Dask alone: {r['tasks']} no-op tasks in {r['seconds']:.3f} s"
                 f" ({r['ms_per_task']:.2f} ms a task), {r['driver_cpu_seconds']:.2f} CPU-s"
                 " in the driver's process"]  # fmt: skip
    return rows


def _interval(ci: list[float] | None) -> str:
    return "-" if ci is None else f"{100 * ci[0]:+.1f}% to {100 * ci[1]:+.1f}%"


def main() -> None:
    """Run the measurements and print their tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = lambda s: int(float(s))  # noqa: E731 - "1e8" and 2**26 alike
    ap.add_argument("--n", type=size, default=1 << 26, help="samples (generation, z-score)")
    ap.add_argument("--stl_n", type=size, default=1 << 23, help="samples of the STL stream")
    ap.add_argument("--spans", type=size, nargs="+", default=[1 << 20, 1 << 22, 1 << 24])
    ap.add_argument("--scale_span", type=size, default=1 << 22, help="span of the scaling runs")
    ap.add_argument("--stl_span", type=size, default=1 << 21, help="span of STL's scaling runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default="/dev/shm", help="where the streams are written")
    ap.add_argument("--out", default="dask_scaling.json")
    ap.add_argument(
        "--overhead_only", action="store_true", help="skip the 1 -> 2 worker scaling runs"
    )
    args = ap.parse_args()
    import tempfile

    logging.getLogger("distributed").setLevel(logging.WARNING)  # the in-process schedulers

    scale = {"generation": args.scale_span, "zscore": args.scale_span, "stl": args.stl_span}
    overhead = [(s, what) for s in sorted(args.spans) for what in ("generation", "zscore")]
    scaling = [(what, scale[what]) for what in STAGES]
    if args.overhead_only:
        plan = [(what, 1, None) for what in ("generation", "zscore")]  # the local engine
        plan += [(what, 1, span) for span, what in overhead]
    else:
        plan = [(what, t, None) for t in (1, 2) for what in STAGES]  # the local engine
        plan += [(what, 1, span) for span, what in overhead]
        plan += [
            (what, w, span) for w in (1, 2) for what, span in scaling if (what, w, span) not in plan
        ]
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        bench = Bench(args.n, args.stl_n, Path(d), args.rounds)
        bench.run(plan)
    Path(args.out).write_text(json.dumps(bench.results, indent=1))
    print("\n".join(summarize(bench.results, scale)))


if __name__ == "__main__":
    main()
