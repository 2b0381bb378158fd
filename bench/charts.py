"""PNG charts from a pytest-benchmark JSON file.

    pytest bench --benchmark-json bench.json
    python bench/charts.py bench.json --out charts/

Only benchmarks whose ``extra_info`` has ``samples_per_s`` are used; the other
keys read from ``extra_info`` are ``threads``, ``baseline``, ``kernel`` and
``label``.  Writes ``<group>_threads.png`` for every group with thread-scaling
runs and ``kernels_vs_baseline.png`` comparing each kernel's best run with its
baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as `python bench/charts.py`: make the repository's packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from shared.errors import StreamError, UsageError  # noqa: E402

__all__ = ["BenchResult", "KernelComparison", "compare_kernels", "load_results", "main"]

_DPI = 110


@dataclass(frozen=True)
class BenchResult:
    """One benchmark that reported a throughput."""

    name: str
    group: str
    samples_per_s: float
    threads: int | None
    baseline: bool
    kernel: str | None
    label: str


@dataclass(frozen=True)
class KernelComparison:
    """A kernel's fastest non-baseline run against its fastest baseline."""

    kernel: str
    best: BenchResult | None
    baseline: BenchResult | None

    @property
    def speedup(self) -> float | None:
        if self.best is None or self.baseline is None:
            return None
        return self.best.samples_per_s / self.baseline.samples_per_s


def load_results(path: Path | str) -> tuple[list[BenchResult], dict[str, Any]]:
    """Usable benchmarks of a pytest-benchmark JSON file, and its ``machine_info``.

    Raises ``UsageError`` for a missing or malformed file, wrongly typed
    throughput fields, or a file with no benchmark reporting ``samples_per_s``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"benchmark file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise UsageError(f"cannot read benchmark file {path}: {reason}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise UsageError(f"{path}: expected pytest-benchmark JSON with a 'benchmarks' list")
    results = []
    for index, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict):
            raise UsageError(f"{path}: benchmarks[{index}] is not an object")
        result = _parse_bench(bench, f"{path}: benchmarks[{index}]")
        if result is not None:
            results.append(result)
    if not results:
        raise UsageError(f"{path}: no benchmark has extra_info.samples_per_s")
    machine = doc.get("machine_info")
    return results, machine if isinstance(machine, dict) else {}


def _parse_bench(bench: dict[str, Any], where: str) -> BenchResult | None:
    extra = bench.get("extra_info") or {}
    if not isinstance(extra, dict):
        raise UsageError(f"{where}: extra_info is not an object")
    if "samples_per_s" not in extra:
        return None
    name = str(bench.get("name") or bench.get("fullname") or "?")
    where = f"{where} ({name})"
    rate = extra["samples_per_s"]
    # Strict on our own fields: a silently skipped result would hide a broken suite.
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise UsageError(f"{where}: samples_per_s must be a number, got {rate!r}")
    if not math.isfinite(rate) or rate <= 0:
        raise UsageError(f"{where}: samples_per_s must be finite and > 0, got {rate!r}")
    threads = extra.get("threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise UsageError(f"{where}: threads must be a positive integer, got {threads!r}")
    baseline = extra.get("baseline", False)
    if not isinstance(baseline, bool):
        raise UsageError(f"{where}: baseline must be true or false, got {baseline!r}")
    kernel = extra.get("kernel")
    if kernel is not None and (not isinstance(kernel, str) or not kernel):
        raise UsageError(f"{where}: kernel must be a non-empty string, got {kernel!r}")
    label = extra.get("label", name)
    if not isinstance(label, str) or not label:
        raise UsageError(f"{where}: label must be a non-empty string, got {label!r}")
    group = bench.get("group")
    return BenchResult(
        name=name,
        group=str(group) if group else "default",
        samples_per_s=float(rate),
        threads=threads,
        baseline=baseline,
        kernel=kernel,
        label=label,
    )


def _fastest(results: Sequence[BenchResult]) -> BenchResult | None:
    return max(results, key=lambda r: r.samples_per_s, default=None)


def compare_kernels(results: Sequence[BenchResult]) -> list[KernelComparison]:
    """Per kernel (in first-seen order): fastest non-baseline vs fastest baseline.

    The fastest baseline is used so the reported speed-up is the conservative one.
    """
    kernels = list(dict.fromkeys(r.kernel for r in results if r.kernel is not None))
    rows = []
    for kernel in kernels:
        mine = [r for r in results if r.kernel == kernel]
        rows.append(
            KernelComparison(
                kernel=kernel,
                best=_fastest([r for r in mine if not r.baseline]),
                baseline=_fastest([r for r in mine if r.baseline]),
            )
        )
    return rows


def _machine_note(machine: dict[str, Any]) -> str:
    cpu = machine.get("cpu") if isinstance(machine.get("cpu"), dict) else {}
    parts = [str(cpu[key]) for key in ("brand_raw", "count") if cpu.get(key)]
    if len(parts) == 2:
        parts[1] = f"{parts[1]} logical CPUs"
    return ", ".join(parts)


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "group"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _threads_chart(
    group: str, results: Sequence[BenchResult], all_results: Sequence[BenchResult], note: str
) -> Figure:
    lines: dict[str, dict[int, float]] = {}
    for r in results:
        if r.baseline or r.threads is None:
            continue
        per_thread = lines.setdefault(r.label, {})
        # Several runs at one thread count (other params): show the best.
        per_thread[r.threads] = max(per_thread.get(r.threads, 0.0), r.samples_per_s)
    kernels = {r.kernel for r in results if not r.baseline and r.kernel is not None}
    baselines: dict[str, float] = {}
    for r in all_results:
        if r.baseline and (r.kernel in kernels or (r.kernel is None and r.group == group)):
            baselines[r.label] = max(baselines.get(r.label, 0.0), r.samples_per_s)

    fig = _new_figure(8.0, 5.0)
    ax = fig.subplots()
    thread_counts: set[int] = set()
    for index, (label, per_thread) in enumerate(lines.items()):
        xs = sorted(per_thread)
        thread_counts.update(xs)
        ax.plot(xs, [per_thread[x] / 1e6 for x in xs], marker="o", label=label, color=f"C{index}")
    for index, (label, rate) in enumerate(baselines.items(), start=len(lines)):
        ax.axhline(rate / 1e6, linestyle="--", color=f"C{index}", label=f"{label} (baseline)")
    ax.set_xticks(sorted(thread_counts))
    ax.set_xlabel("threads")
    ax.set_ylabel("throughput (M samples/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(f"{group}: throughput vs threads" + (f"\n{note}" if note else ""))
    fig.tight_layout()
    return fig


def _kernels_chart(rows: Sequence[KernelComparison], note: str) -> Figure:
    fig = _new_figure(max(6.0, 2.2 * len(rows) + 2.0), 5.5)
    ax = fig.subplots()
    width = 0.38
    top = 0.0
    bottom = math.inf
    tick_labels = []
    for x, row in enumerate(rows):
        heights = []
        for offset, result, color, hatch in (
            (-width / 2, row.best, "tab:blue", None),
            (width / 2, row.baseline, "tab:gray", "//"),
        ):
            if result is None:
                continue
            value = result.samples_per_s / 1e6
            heights.append(value)
            ax.bar(x + offset, value, width, color=color, hatch=hatch, edgecolor="black")
            ax.annotate(
                f"{value:.3g}",
                (x + offset, value),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize="small",
            )
        top = max(top, *heights)
        bottom = min(bottom, *heights)
        ratio = row.speedup
        if ratio is not None:
            # Above the pair, clear of the value labels (log axis: multiply, not add).
            ax.text(x, max(heights) * 2.2, f"{ratio:.3g}×", ha="center", fontweight="bold")
        ours = row.best.label if row.best is not None else "(no run)"
        base = row.baseline.label if row.baseline is not None else "(no baseline)"
        tick_labels.append(f"{row.kernel}\n{ours}\nvs {base}")
    ax.set_yscale("log")
    # Log bars need an explicit floor well under the shortest bar to stay visible.
    ax.set_ylim(bottom / 5, top * 8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(tick_labels, fontsize="small")
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("throughput (M samples/s, log scale)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(
        handles=[
            Patch(facecolor="tab:blue", edgecolor="black", label="best non-baseline"),
            Patch(facecolor="tab:gray", edgecolor="black", hatch="//", label="baseline"),
        ],
        loc="upper right",
        fontsize="small",
    )
    ax.set_title("Kernels vs baseline (speed-up in bold)" + (f"\n{note}" if note else ""))
    fig.tight_layout()
    return fig


def write_charts(bench_json: Path | str, out_dir: Path | str) -> list[Path]:
    """Render all charts for ``bench_json`` into ``out_dir``; returns the paths written."""
    results, machine = load_results(bench_json)
    note = _machine_note(machine)
    out_dir = Path(out_dir)
    figures: list[tuple[Path, Figure]] = []
    groups = list(dict.fromkeys(r.group for r in results))
    for group in groups:
        members = [r for r in results if r.group == group]
        if any(not r.baseline and r.threads is not None for r in members):
            fig = _threads_chart(group, members, results, note)
            figures.append((out_dir / f"{_safe_filename(group)}_threads.png", fig))
    rows = compare_kernels(results)
    if rows:
        figures.append((out_dir / "kernels_vs_baseline.png", _kernels_chart(rows, note)))
    if not figures:
        raise UsageError(
            f"{bench_json}: nothing to chart (no benchmark has extra_info threads or kernel)"
        )
    written = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, fig in figures:
            fig.savefig(path, format="png")
            written.append(path)
    except OSError as exc:
        raise UsageError(f"cannot write charts to {out_dir}: {exc.strerror or exc}") from None
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python bench/charts.py",
        description="Render throughput charts from a pytest-benchmark JSON file.",
    )
    parser.add_argument("bench_json", type=Path, help="file written by pytest --benchmark-json")
    parser.add_argument("--out", type=Path, default=Path("charts"), help="output directory")
    args = parser.parse_args(argv)
    try:
        written = write_charts(args.bench_json, args.out)
    except StreamError as exc:
        print(f"charts: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
