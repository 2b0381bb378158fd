"""Throughput-over-time chart from ``MetricsRecorder`` JSON-lines files.

    python -m shared.plot producer.jsonl consumer.jsonl --out throughput.png

Top panel: samples/s per role; bottom panel (when both a producer and a
consumer are present): lag = producer samples - consumer samples.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from shared.errors import StreamError, UsageError
from shared.metrics import read_metrics

__all__ = [
    "Series",
    "lag_series",
    "load_series",
    "main",
    "render_throughput",
    "samples_per_second",
]

# Fixed figure geometry (no tight bbox) so the PNG size depends only on the panel count.
FIG_WIDTH_IN = 10.0
FIG_HEIGHT_ONE_PANEL_IN = 4.5
FIG_HEIGHT_TWO_PANELS_IN = 7.5
FIG_DPI = 110

_ROLE_ORDER = ("producer", "consumer")
_ROLE_COLORS = {"producer": "tab:blue", "consumer": "tab:orange"}


@dataclass(frozen=True)
class Series:
    """Cumulative sample counts of one process (role, pid) over unix time."""

    role: str
    pid: int | None
    t: np.ndarray  # unix seconds, strictly increasing
    samples: np.ndarray  # cumulative samples at each t (float64)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def load_series(paths: Sequence[Path | str]) -> list[Series]:
    """Read metrics files and split them into one series per (role, pid).

    Raises ``UsageError`` for a missing, unreadable or empty file and
    ``FormatError`` for malformed content.
    """
    if not paths:
        raise UsageError("no metrics files given")
    points: dict[tuple[str, int | None], list[tuple[float, float]]] = {}
    for path in paths:
        try:
            records = read_metrics(path)
        except FileNotFoundError:
            raise UsageError(f"metrics file not found: {path}") from None
        except OSError as exc:
            raise UsageError(f"cannot read metrics file {path}: {exc.strerror or exc}") from None
        if not records:
            raise UsageError(f"metrics file {path} has no complete records")
        for index, record in enumerate(records, start=1):
            role = record.get("role")
            t = _number(record.get("t"))
            samples = _number(record.get("samples"))
            pid = record.get("pid")
            if not isinstance(role, str) or not role or t is None or samples is None:
                raise UsageError(
                    f"{path}: record {index} lacks a role string or numeric 't'/'samples'"
                )
            if isinstance(pid, bool) or not isinstance(pid, (int, type(None))):
                raise UsageError(f"{path}: record {index} has a non-integer 'pid'")
            points.setdefault((role, pid), []).append((t, samples))
    series = []
    for (role, pid), pts in points.items():
        arr = np.array(sorted(pts), dtype=np.float64)
        # Duplicate timestamps (e.g. the same file given twice) carry no rate information.
        keep = np.r_[True, np.diff(arr[:, 0]) > 0]
        series.append(Series(role, pid, arr[keep, 0], arr[keep, 1]))
    series.sort(key=lambda s: (_role_rank(s.role), s.role, float(s.t[0])))
    return series


def _role_rank(role: str) -> int:
    return _ROLE_ORDER.index(role) if role in _ROLE_ORDER else len(_ROLE_ORDER)


def samples_per_second(
    t: np.ndarray | Sequence[float],
    samples: np.ndarray | Sequence[float],
    halfwidth: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Rate of a cumulative counter: ``(interval midpoints, samples/s)``.

    Finite differences smoothed by taking each interval together with
    ``halfwidth`` neighbours on each side and dividing total samples by total
    time, which stays exact for a constant rate even with uneven spacing.
    """
    t = np.asarray(t, dtype=np.float64)
    s = np.asarray(samples, dtype=np.float64)
    if t.shape != s.shape or t.ndim != 1:
        raise ValueError("t and samples must be 1-D arrays of the same length")
    order = np.argsort(t, kind="stable")
    t, s = t[order], s[order]
    keep = np.r_[True, np.diff(t) > 0] if t.size else np.zeros(0, dtype=bool)
    t, s = t[keep], s[keep]
    n = t.size
    if n < 2:
        return np.zeros(0), np.zeros(0)
    j = np.arange(n - 1)  # interval j spans points j..j+1
    lo = np.maximum(j - halfwidth, 0)
    hi = np.minimum(j + 1 + halfwidth, n - 1)
    rate = (s[hi] - s[lo]) / (t[hi] - t[lo])
    mid = (t[:-1] + t[1:]) / 2
    return mid, rate


def _sum_on(grid: np.ndarray, series: Sequence[Series]) -> np.ndarray:
    total = np.zeros_like(grid)
    for s in series:
        # Before a process's first record it had done nothing; after its last it holds.
        total += np.interp(grid, s.t, s.samples, left=0.0, right=float(s.samples[-1]))
    return total


def lag_series(
    producers: Sequence[Series], consumers: Sequence[Series]
) -> tuple[np.ndarray, np.ndarray]:
    """``(t, producer samples - consumer samples)`` on the union of both time axes."""
    if not producers or not consumers:
        return np.zeros(0), np.zeros(0)
    grid = np.unique(np.concatenate([s.t for s in (*producers, *consumers)]))
    return grid, _sum_on(grid, producers) - _sum_on(grid, consumers)


def render_throughput(
    metrics: Sequence[Path | str], out: Path | str, title: str | None = None
) -> Path:
    """Render a throughput (and lag) chart of the given metrics files to PNG ``out``."""
    series = load_series(list(metrics))
    out = Path(out)
    t0 = min(float(s.t[0]) for s in series)
    producers = [s for s in series if s.role == "producer"]
    consumers = [s for s in series if s.role == "consumer"]
    both = bool(producers and consumers)

    fig = Figure(
        figsize=(FIG_WIDTH_IN, FIG_HEIGHT_TWO_PANELS_IN if both else FIG_HEIGHT_ONE_PANEL_IN),
        dpi=FIG_DPI,
    )
    FigureCanvasAgg(fig)
    if both:
        ax_rate, ax_lag = fig.subplots(2, 1, sharex=True)
    else:
        ax_rate, ax_lag = fig.subplots(), None

    pids_per_role: dict[str, int] = {}
    for s in series:
        pids_per_role[s.role] = pids_per_role.get(s.role, 0) + 1
    drew_rate = False
    for s in series:
        mid, rate = samples_per_second(s.t, s.samples)
        if mid.size == 0:
            continue
        label = s.role if pids_per_role[s.role] == 1 else f"{s.role} (pid {s.pid})"
        ax_rate.plot(mid - t0, rate / 1e6, label=label, color=_ROLE_COLORS.get(s.role))
        drew_rate = True
    if drew_rate:
        ax_rate.legend(loc="best")
    else:
        ax_rate.text(
            0.5,
            0.5,
            "fewer than two records per process: no rate",
            ha="center",
            va="center",
            transform=ax_rate.transAxes,
        )
    ax_rate.set_ylabel("throughput (M samples/s)")
    ax_rate.set_ylim(bottom=0)
    ax_rate.grid(True, alpha=0.3)
    ax_rate.set_title(title or "Throughput over time")

    if ax_lag is not None:
        grid, lag = lag_series(producers, consumers)
        ax_lag.plot(grid - t0, lag / 1e6, color="tab:red", label="producer - consumer")
        ax_lag.fill_between(grid - t0, lag / 1e6, 0.0, color="tab:red", alpha=0.15)
        ax_lag.axhline(0.0, color="black", linewidth=0.8)
        ax_lag.set_ylabel("lag (M samples)")
        ax_lag.legend(loc="best")
        ax_lag.grid(True, alpha=0.3)
        ax_lag.set_xlabel("time since first record (s)")
    else:
        ax_rate.set_xlabel("time since first record (s)")
    fig.tight_layout()

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.plot",
        description="Plot throughput (M samples/s) and producer-consumer lag from metrics files.",
    )
    parser.add_argument("metrics", nargs="+", type=Path, help="MetricsRecorder JSON-lines files")
    parser.add_argument("--out", type=Path, default=Path("throughput.png"), help="PNG to write")
    parser.add_argument("--title", default=None, help="chart title")
    args = parser.parse_args(argv)
    try:
        path = render_throughput(args.metrics, args.out, args.title)
    except StreamError as exc:
        message = " ".join(str(exc).split())  # always one line
        print(f"plot: error: {message}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
