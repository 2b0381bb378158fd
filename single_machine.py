"""End-to-end demo: producer and consumer as two concurrent processes over one stream.

    python single_machine.py                                  # quick demo, < 1 minute
    python single_machine.py --num_samples 1000000000 --detector stl

The consumer tails the stream while the producer writes it: a ring of chunk
slots in shared memory (``/dev/shm`` when it has room, else the temporary
directory; ``--ring``), so any length runs in bounded memory and never waits on
a disk, or with ``--file`` a full ``.npy`` stream kept on disk.  Both append
throughput samples to JSONL metrics files; at the end a table of figures is
printed and a throughput/lag chart is rendered.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.cli import OneLineParser
from shared.errors import StreamError, UsageError
from shared.jit import is_kernel_notice
from shared.launch import Forked, preload, start
from shared.metrics import read_metrics
from shared.params import generation_params, parse_json_object, positive_float, positive_int
from shared.stream import DEFAULT_CHUNK_SIZE, LABELS_SUFFIX, sibling

# What the forked producer and consumer import anyway (not their __main__ modules,
# which runpy runs afresh in each child).
PRELOAD = ("numba", "pyarrow.parquet", "producer.write", "consumer.run")
DEFAULT_N = 20_000_000
DEFAULT_SEASONALITY = '{"amplitude": 5, "period": 200}'
DEFAULT_ANOMALIES = '{"rate": 1e-4, "magnitude": 8}'
DEFAULT_RING = 256 << 20  # bytes: 31 slots of the default 8 MiB chunks
SHARED_MEMORY = Path("/dev/shm")
ROOM_BESIDE = 64 << 20  # outputs, metrics and the chart beside the ring
DEFAULT_DETECTOR_PARAMS = {
    "stl": '{"threshold": 5}',
    "zscore": '{"window": 1000, "threshold": 5}',
    "likelihood": "{}",
}


def build_parser() -> argparse.ArgumentParser:
    """single_machine.py's command-line options."""
    p = OneLineParser(
        prog="single_machine.py",
        description="Run the producer and a tailing consumer concurrently, then report "
        "throughput, detection quality and a throughput chart.",
    )
    p.add_argument(
        "--num_samples",
        "--num-samples",
        default=str(DEFAULT_N),
        help=f"samples to generate (default {DEFAULT_N})",
    )
    p.add_argument(
        "--file", help="write a full .npy stream here (default: a temporary ring stream)"
    )
    p.add_argument(
        "--ring",
        help=f"size of the ring stream (default {DEFAULT_RING >> 20}MiB, less when /dev/shm "
        "has less room); with --file, a ring at that path",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --file stream")
    # generation options, as the producer spells them (distribution params: --gen_params)
    p.add_argument("--type", default="normal", help="distribution: normal or uniform")
    p.add_argument("--gen_params", "--gen-params", help="distribution JSON (producer --params)")
    p.add_argument(
        "--seasonality",
        default=DEFAULT_SEASONALITY,
        help=f"seasonality JSON (default {DEFAULT_SEASONALITY}; '' for none)",
    )
    p.add_argument("--trend", help="trend JSON")
    p.add_argument(
        "--anomalies",
        default=DEFAULT_ANOMALIES,
        help=f"anomalies JSON (default {DEFAULT_ANOMALIES}; '' for none)",
    )
    p.add_argument("--seed", default="42")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--chunk_size", "--chunk-size", default=None)
    p.add_argument("--sync", action="store_true", help="producer writes strictly in order")
    # replay of a real table instead of generation
    p.add_argument(
        "--replay",
        help="replay this CSV / Parquet / Arrow table as the producer stream (no generation)",
    )
    p.add_argument("--column", help="--replay: the value column")
    p.add_argument("--timestamp", help="--replay: the timestamp column")
    p.add_argument("--rate", help="--replay: samples per second (default: as fast as possible)")
    p.add_argument(
        "--labels",
        help="consumer --labels (with --replay: NAB windows JSON, start,end CSV or indices .npy)",
    )
    # detection
    p.add_argument(
        "--detector",
        default=None,
        choices=list(DEFAULT_DETECTOR_PARAMS),
        help="consumer detector (default stl; likelihood with --replay)",
    )
    p.add_argument("--params", help="detector JSON (default: threshold 5; likelihood: {})")
    p.add_argument("--producer_threads", "--producer-threads", default=None)
    p.add_argument("--consumer_threads", "--consumer-threads", default=None)
    p.add_argument("--threads", default=None, help="threads for each side (default: all cores)")
    p.add_argument("--timeout", default="10", help="consumer's producer-heartbeat timeout")
    p.add_argument("--plot", help="throughput chart path (default <stem>.throughput.png)")
    p.add_argument("--quiet", action="store_true", help="no live progress")
    p.add_argument(
        "--time", action="store_true", help="also print the figures as one JSON line at the end"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _last_samples(path: Path) -> int:
    """Samples done according to the last record of a live metrics file (0 before any)."""
    try:
        records = read_metrics(path)
    except FileNotFoundError:
        return 0
    return int(records[-1]["samples"]) if records else 0


def _figures(stdout: str) -> dict[str, Any]:
    """The JSON line a side prints with --time."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {}


def _stderr_tail(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


@dataclass
class Plan:
    """A validated run: the two commands and every path they write."""

    n: int
    stream: Path
    tmpdir: Path | None
    prod_metrics: Path
    cons_metrics: Path
    plot: Path
    producer: list[str]
    consumer: list[str]
    ring: int | None = None  # bytes of a ring stream (None: a file stream)


def plan(args: argparse.Namespace) -> Plan:
    """Validate everything, before any process starts or any file is made."""
    if args.detector is None:
        args.detector = "likelihood" if args.replay else "stl"
    if args.replay:
        if not args.column:
            raise UsageError("--replay needs --column (the value column)")
        if not Path(args.replay).exists():
            raise UsageError(f"--replay: {args.replay}: no such file")
        if args.rate:
            positive_float("--rate", args.rate)
    elif args.column or args.timestamp or args.rate:
        raise UsageError("--column, --timestamp and --rate are for --replay")
    n = positive_int("--num_samples", args.num_samples) if not args.replay else 0
    both = positive_int("--threads", args.threads) if args.threads else None
    pt = (
        positive_int("--producer_threads", args.producer_threads) if args.producer_threads else both
    )
    ct = (
        positive_int("--consumer_threads", args.consumer_threads) if args.consumer_threads else both
    )
    gen = None
    if not args.replay:
        gen = generation_params(
            seed=positive_int("--seed", args.seed, minimum=0),
            type=args.type,
            params=args.gen_params,
            seasonality=args.seasonality or None,
            trend=args.trend,
            anomalies=args.anomalies or None,
            cli=True,
        )
    det_params = args.params if args.params is not None else DEFAULT_DETECTOR_PARAMS[args.detector]
    parse_json_object("--params", det_params)
    if args.labels and not Path(args.labels).exists():
        raise UsageError(f"--labels: {args.labels}: no such file")
    ring, where = _ring_plan(args, n, gen)
    tmpdir = None if args.file else Path(tempfile.mkdtemp(prefix="tsstream-", dir=where))
    stream = Path(args.file) if args.file else tmpdir / "stream.npy"
    metrics = [sibling(stream, f".{side}.metrics.jsonl") for side in ("producer", "consumer")]
    for p in metrics:
        if p.exists():
            if not args.overwrite:
                raise UsageError(f"{p} exists; pass --overwrite to replace it")
            p.unlink()
    plot = Path(args.plot) if args.plot else sibling(stream, ".throughput.png")
    if args.replay:
        prod = _replay_command(args, stream, metrics[0])
    else:
        prod = _producer_command(args, n, stream, gen, metrics[0], pt)
        prod += ["--ring", str(ring)] if ring else []
    cons = _consumer_command(args, stream, det_params, metrics[1], ct)
    if args.labels:
        cons += ["--labels", str(Path(args.labels).resolve())]
    elif gen is not None and gen.anomalies:
        cons += ["--labels", str(sibling(stream, LABELS_SUFFIX))]
    return Plan(n, stream, tmpdir, metrics[0], metrics[1], plot, prod, cons, ring)


def _ring_plan(args: argparse.Namespace, n: int, gen) -> tuple[int | None, Path | None]:
    """The ring's size (None: a file stream) and the directory for the temporary run.

    Without ``--file`` the stream is a ring in ``/dev/shm`` when that has room for it
    (the default size shrinks to half the room left there, down to eight chunks),
    else in the temporary directory; with ``--file``, a ring only if ``--ring`` is given.
    """
    from shared.ring import parse_size

    if args.replay:
        if args.ring:
            raise UsageError("--ring is for generated streams, not --replay")
        return None, None
    size = parse_size("--ring", args.ring) if args.ring else None
    if args.file:
        return size, None
    chunk = positive_int("--chunk_size", args.chunk_size) if args.chunk_size else None
    chunk_bytes = (chunk or DEFAULT_CHUNK_SIZE) * (4 if args.dtype == "float32" else 8)
    labels = 8 * int(n * gen.anomalies.rate) + (1 << 20) if gen.anomalies else 0
    try:
        room = shutil.disk_usage(SHARED_MEMORY).free - labels - ROOM_BESIDE
        usable = os.access(SHARED_MEMORY, os.W_OK)
    except OSError:
        room, usable = 0, False
    if size is None and usable and room < DEFAULT_RING:
        size = (room // 2) >> 20 << 20  # a smaller ring that fits, if it holds 8 chunks
        if size < 8 * chunk_bytes + (1 << 20):
            size = None
    size = size or DEFAULT_RING
    return size, (SHARED_MEMORY if usable and size <= room else None)


def _replay_command(args, stream: Path, metrics: Path) -> list[str]:
    cmd = [sys.executable, "-m", "producer.replay", "--input", str(Path(args.replay).resolve())]
    cmd += ["--column", args.column, "--file", str(stream), "--metrics", str(metrics)]
    cmd += ["--quiet", "--time"] + ["--overwrite"] * args.overwrite
    if args.timestamp:
        cmd += ["--timestamp", args.timestamp]
    if args.rate:
        cmd += ["--rate", str(args.rate)]
    if args.chunk_size:
        cmd += ["--chunk_size", str(args.chunk_size)]
    return cmd


def _producer_command(args, n: int, stream: Path, gen, metrics: Path, threads) -> list[str]:
    g = gen.to_json()
    cmd = [sys.executable, "-m", "producer", "--num_samples", str(n), "--file", str(stream)]
    cmd += ["--type", g["type"], "--params", json.dumps(g["params"]), "--seed", str(gen.seed)]
    # Not --quiet unless we are: a side that must compile its kernels first says so.
    cmd += ["--dtype", args.dtype, "--metrics", str(metrics), "--time"] + ["--quiet"] * args.quiet
    for key in ("seasonality", "trend", "anomalies"):
        if g[key]:
            cmd += [f"--{key}", json.dumps(g[key])]
    if args.chunk_size:
        cmd += ["--chunk_size", str(args.chunk_size)]
    cmd += ["--sync"] * args.sync + ["--overwrite"] * args.overwrite
    return cmd + (["--threads", str(threads)] if threads else [])


def _consumer_command(args, stream: Path, det_params: str, metrics: Path, threads) -> list[str]:
    cmd = [sys.executable, "-m", "consumer", "--file", str(stream), "--type", args.detector]
    cmd += ["--params", det_params, "--metrics", str(metrics), "--timeout", str(args.timeout)]
    cmd += ["--time"] + ["--quiet"] * args.quiet + ["--overwrite"] * args.overwrite
    return cmd + (["--threads", str(threads)] if threads else [])


def supervise(pl: Plan, live: bool) -> tuple[dict[str, tuple[str, str]], float]:
    """Run both processes to their end with live progress; (their stdout/stderr, wall s).

    If one side fails, the other is stopped (SIGTERM) and the failure is raised.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    # Start the consumer first: it waits (--wait) for the stream to appear, so its set-up
    # (kernel loads) overlaps the producer's instead of eating into its generation.
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}
    # Both sides start as forks of this process once it has imported what they need
    # (shared.launch): neither pays those imports again (launch to first sample at 3e8:
    # 0.92-0.94 s before, 0.73-0.87 s after, single runs).
    preload(PRELOAD)
    consumer = start(pl.consumer + ["--wait", "120"], **pipes)
    procs = {"producer": start(pl.producer, **pipes), "consumer": consumer}
    reads = {name: _Output(proc) for name, proc in procs.items()}
    outputs: dict[str, tuple[str, str]] = {}
    progress = _Progress(pl, t0) if live else None
    failure: str | None = None
    try:
        while len(outputs) < 2:
            for read in reads.values():
                for line in read.notices():
                    _show_line(progress, line)
            for name, proc in procs.items():
                if name not in outputs and proc.poll() is not None:
                    outputs[name] = reads[name].communicate()
                    if proc.returncode != 0 and failure is None:
                        tail = _stderr_tail(outputs[name][1])
                        failure = f"{name} failed (exit {proc.returncode}): {tail}"
                        _terminate(p for p in procs.values() if p is not proc)
            if progress:
                progress.show()
            time.sleep(0.05)
    except BaseException:
        _terminate(procs.values())
        for proc in procs.values():
            proc.wait()
        if progress:
            progress.close()  # end a terminal's progress line before the messages
        raise
    wall = time.perf_counter() - t0
    if progress:
        progress.close()
    if failure:
        raise StreamError(failure)
    return outputs, wall


class _Output:
    """A child's stdout and stderr, read by threads as they come, so that its compile
    notice (``shared.jit.compile_notice``) can be shown while it compiles."""

    def __init__(self, proc: subprocess.Popen | Forked) -> None:
        self.proc = proc
        self.text: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.text
        ]
        for t in self.threads:
            t.start()

    def _read(self, name: str) -> None:
        for line in getattr(self.proc, name):
            self.text[name].append(line)
            if name == "stderr" and is_kernel_notice(line):
                self.queue.put(line)

    def notices(self) -> list[str]:
        """The compile and fallback notices printed since the last call."""
        lines = []
        while not self.queue.empty():
            lines.append(self.queue.get())
        return lines

    def communicate(self) -> tuple[str, str]:
        """(stdout, stderr) of the exited child."""
        self.proc.wait()
        for t in self.threads:
            t.join()
        return "".join(self.text["stdout"]), "".join(self.text["stderr"])


def _terminate(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)


class _Progress:
    """The live progress line: in place on a terminal, every 5 s otherwise."""

    def __init__(self, pl: Plan, t0: float) -> None:
        self.pl, self.t0, self.last = pl, t0, 0.0
        self.tty = sys.stderr.isatty()

    def show(self) -> None:
        now = time.perf_counter()
        if now - self.last < (0.25 if self.tty else 5.0):
            return
        self.last = now
        p_done, c_done = _last_samples(self.pl.prod_metrics), _last_samples(self.pl.cons_metrics)
        line = (
            f"[{now - self.t0:6.1f} s] producer {p_done / 1e6:8.1f}M  "
            f"consumer {c_done / 1e6:8.1f}M  lag {(p_done - c_done) / 1e6:7.1f}M "
            f"of {self.pl.n / 1e6:.1f}M"
        )
        sys.stderr.write(("\r" + line) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _show_line(progress: _Progress | None, line: str) -> None:
    """Print a child's line above the live progress line (which the next ``show`` redraws)."""
    if progress is not None and progress.tty:
        line = "\r\x1b[K" + line
        progress.last = 0.0
    sys.stderr.write(line)
    sys.stderr.flush()


def report(pl: Plan, args: argparse.Namespace, pf: dict, cf: dict, wall: float) -> float | None:
    """Print the table of figures; return the pipeline span in seconds (or None)."""
    n = pl.n or cf.get("samples_total", cf.get("samples", 0))
    rows = [
        ("", "producer", "consumer"),
        ("samples", f"{pf.get('samples', 0):,}", f"{cf.get('samples', 0):,}"),
        ("seconds", f"{pf.get('seconds', 0):.2f}", f"{cf.get('seconds', 0):.2f}"),
        ("M samples/s", *(f"{f.get('samples_per_s', 0) / 1e6:.1f}" for f in (pf, cf))),
        ("peak RSS MiB", *(f"{f.get('peak_rss_bytes', 0) / 2**20:.0f}" for f in (pf, cf))),
    ]
    print()
    width = max(14, *(len(c) + 2 for r in rows for c in r[1:]))  # 1e10 has 14 characters
    for r in rows:
        print(f"  {r[0]:<14}{r[1]:>{width}}{r[2]:>{width}}")
    print(
        f"  end to end: {n:,} samples in {wall:.2f} s = {n / wall / 1e6:.1f}M samples/s "
        "(both processes, start to finish)"
    )
    span = None
    if pf.get("started_at") and cf.get("finished_at"):
        # From the start of generation to the consumer's last result: the pipeline
        # without each process's start-up (interpreter, imports, numba's first load).
        span = cf["finished_at"] - pf["started_at"]
        print(
            f"  pipeline: {span:.2f} s from first generated sample to last result = "
            f"{n / span / 1e6:.1f}M samples/s"
        )
    print(
        f"  anomalies found: {cf.get('anomalies', 0):,} (detector {args.detector}, "
        f"params {json.dumps(cf.get('detector', {}))})"
    )
    if "events" in cf:
        ev = cf["events"]
        print(
            f"  against {ev['windows']} labelled windows: {ev['windows_detected']} detected, "
            f"{ev['windows_missed']} missed, {ev['false_alarms']} false alarms "
            f"({ev['false_alarms_per_1000']:.2f} per 1000 samples), median delay "
            f"{ev['median_delay']} samples"
        )
    if "time_range" in cf:
        print(f"  time range: {cf['time_range']['start']} .. {cf['time_range']['end']}")
    if "precision" in cf:
        print(
            f"  against {cf['labels']:,} injected labels: precision {cf['precision']:.4f}, "
            f"recall {cf['recall']:.4f}, F1 {cf['f1']:.4f}"
        )
    if pl.ring:
        print(f"  stream: a ring of {pl.ring / 2**20:.0f} MiB at {pl.stream}")
    print(f"  throughput chart: {pl.plot}")
    outs = cf.get("outputs", {})
    summary = sibling(pl.stream, ".summary.json")
    print(f"  outputs: {outs.get('indices')}, {outs.get('parquet')}, {summary}")
    return span


def _clean_up(pl: Plan, args: argparse.Namespace) -> None:
    """Remove the temporary directory (keeping a copy of the chart) unless --keep."""
    if pl.tmpdir is None:
        return
    if args.keep:
        print(f"  kept {pl.tmpdir}")
        return
    if not args.plot:
        keep_plot = Path.cwd() / "throughput.png"
        shutil.copy(pl.plot, keep_plot)
        print(f"  (temporary files removed; chart copied to {keep_plot}; --keep keeps all)")
    shutil.rmtree(pl.tmpdir)


def _stopped(pl: Plan, args: argparse.Namespace) -> None:
    """After an interrupt or a failure: say how far both sides got, and remove the
    temporary directory (a ring in ``/dev/shm`` is memory) unless ``--keep``."""
    done = [_last_samples(m) for m in (pl.prod_metrics, pl.cons_metrics)]
    of = f" of {pl.n:,}" if pl.n else ""
    line = f"single_machine.py: stopped at {done[0]:,}{of} samples generated, {done[1]:,} consumed"
    if pl.tmpdir is None:
        line += f"; the stream and outputs stay at {pl.stream} (rerun with --overwrite)"
    elif args.keep:
        line += f"; kept {pl.tmpdir}"
    else:
        shutil.rmtree(pl.tmpdir, ignore_errors=True)
        line += "; temporary files removed (--keep keeps them)"
    sys.stderr.write(line + "\n")


def run(args: argparse.Namespace) -> int:
    """Plan, run both sides, render the chart, report, clean up."""
    pl = plan(args)
    try:
        outputs, wall = supervise(pl, live=not args.quiet)
    except BaseException:
        _stopped(pl, args)
        raise
    pf, cf = _figures(outputs["producer"][0]), _figures(outputs["consumer"][0])
    from shared.plot import render_throughput

    n = pl.n or cf.get("samples_total", 0)
    title = f"{n:,} samples, detector {args.detector}"
    if args.replay:
        title = f"replay of {Path(args.replay).name}, detector {args.detector}"
    render_throughput([pl.prod_metrics, pl.cons_metrics], pl.plot, title=title)
    span = report(pl, args, pf, cf, wall)
    _clean_up(pl, args)
    if args.time:
        figures = {
            "samples": n,
            "detector": args.detector,
            "stream": str(pl.stream),
            "ring_bytes": pl.ring,
            "wall_seconds": round(wall, 4),
            "wall_samples_per_s": n / wall,
            "pipeline_seconds": round(span, 4) if span else None,
            "pipeline_samples_per_s": n / span if span else None,
            "producer": pf,
            "consumer": cf,
        }
        print(json.dumps(figures))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the demo on ``argv``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except StreamError as e:
        if args.debug:
            raise
        sys.stderr.write(f"single_machine.py: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("single_machine.py: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
