"""Throughput-over-time chart from ``MetricsRecorder`` JSON-lines files.

    python -m shared.plot producer.jsonl consumer.jsonl --out throughput.png

Top panel: samples/s per role; bottom panel (when both a producer and a
consumer are present): lag = producer samples - consumer samples.

Drawn with Pillow, not matplotlib: ``single_machine.py`` renders this chart
after the pipeline ends, on the wall clock its users time, and matplotlib cost
about 1 s there (import 0.5-0.9 s, render 0.3-0.45 s); Pillow's import plus
render costs under 0.1 s (``python bench/plot_cost.py``).  The picture is drawn
at ``_SUPERSAMPLE`` times its size and box-reduced, which antialiases lines and
text, and written as PNG by ``_png_bytes`` (Pillow's own PNG writer took 75 ms).
"""

from __future__ import annotations

import argparse
import functools
import math
import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shared.errors import StreamError, UsageError
from shared.metrics import read_metrics

__all__ = [
    "Axes",
    "Box",
    "Series",
    "chart_axes",
    "format_ticks",
    "lag_series",
    "load_series",
    "main",
    "nice_ticks",
    "panel_boxes",
    "render_throughput",
    "samples_per_second",
    "to_pixels",
]

# Fixed figure geometry so the PNG size depends only on the panel count.
FIG_WIDTH_IN = 10.0
FIG_HEIGHT_ONE_PANEL_IN = 4.5
FIG_HEIGHT_TWO_PANELS_IN = 7.5
FIG_DPI = 110

_ROLE_ORDER = ("producer", "consumer")
# matplotlib's "tab" palette, so charts look as they did: tab:blue, tab:orange, then the rest.
_ROLE_COLORS = {"producer": (31, 119, 180), "consumer": (255, 127, 14)}
_OTHER_COLORS = ((44, 160, 44), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127))
_LAG_COLOR = (214, 39, 40)  # tab:red
_LAG_FILL = (249, 223, 223)  # tab:red at 15 % on white
_GRID_COLOR = (225, 225, 225)
_INK = (0, 0, 0)
_WHITE = (255, 255, 255)

_SUPERSAMPLE = 2  # drawn at 2x, box-reduced: antialiased for a few ms
_LINE_WIDTH = 2.25  # output pixels (matplotlib's 1.5 pt at 110 dpi)
# Margins in output pixels: room for the title and legend row above, tick labels around.
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 95, 25, 66, 56
_PANEL_GAP = 40  # between the two panels: the lag panel's legend row
_FONT_TICK, _FONT_LABEL, _FONT_TITLE = 13, 14, 17


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

    Parameters
    ----------
    paths
        ``MetricsRecorder`` JSON-lines files; the same file may appear twice.

    Returns
    -------
    list of Series
        Producers first, then consumers, then other roles; by start time within a role.

    Raises
    ------
    UsageError
        A missing, unreadable or empty file, or a record without role, ``t`` or ``samples``.
    FormatError
        Malformed content (a complete line that is not JSON).
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
    """Rate of a cumulative counter.

    Finite differences smoothed by taking each interval together with
    ``halfwidth`` neighbours on each side and dividing total samples by total
    time, which stays exact for a constant rate even with uneven spacing.

    Parameters
    ----------
    t, samples
        1-D arrays of equal length: times (any order; repeated times dropped) and counts.
    halfwidth
        Neighbouring intervals taken on each side.

    Returns
    -------
    mid, rate : numpy.ndarray
        Interval midpoints and samples/s; empty with fewer than two distinct times.
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
    """Producer samples minus consumer samples on the union of both time axes.

    Parameters
    ----------
    producers, consumers
        The series of each side; a process counts 0 before its first record and
        holds its last count after its last one.

    Returns
    -------
    t, lag : numpy.ndarray
        Unix times and the lag at each; empty when either side is empty.
    """
    if not producers or not consumers:
        return np.zeros(0), np.zeros(0)
    grid = np.sort(np.concatenate([s.t for s in (*producers, *consumers)]))
    grid = grid[np.r_[True, np.diff(grid) > 0]]  # np.unique would import numpy.ma (~20 ms)
    return grid, _sum_on(grid, producers) - _sum_on(grid, consumers)


# -- axes: pure geometry -------------------------------------------------------------


class Box(NamedTuple):
    """A panel's plotting area in output pixels (edges inclusive, y grows downwards)."""

    left: int
    top: int
    right: int
    bottom: int


@dataclass(frozen=True)
class Axes:
    """A panel: its pixel box and the data limits mapped onto it."""

    box: Box
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def x_pixels(self, x: np.ndarray | float) -> np.ndarray:
        """Columns of data ``x`` (floats: a pixel's centre is its integer index)."""
        return to_pixels(x, self.xlim, (self.box.left, self.box.right))

    def y_pixels(self, y: np.ndarray | float) -> np.ndarray:
        """Rows of data ``y``: ``ylim[0]`` at the bottom edge, ``ylim[1]`` at the top."""
        return to_pixels(y, self.ylim, (self.box.bottom, self.box.top))


def to_pixels(
    values: np.ndarray | float, limits: tuple[float, float], pixels: tuple[float, float]
) -> np.ndarray:
    """Map data linearly from ``limits`` onto pixel coordinates ``pixels``.

    Parameters
    ----------
    values
        Data values.
    limits
        ``(lo, hi)`` data limits, ``lo != hi``.
    pixels
        Pixel coordinates of ``lo`` and ``hi`` (``hi``'s may be smaller, as for rows).

    Returns
    -------
    numpy.ndarray
        Float pixel coordinates, not clipped.
    """
    (lo, hi), (p_lo, p_hi) = limits, pixels
    if lo == hi:
        raise ValueError("limits must differ")
    return p_lo + (np.asarray(values, dtype=np.float64) - lo) * ((p_hi - p_lo) / (hi - lo))


def panel_boxes(n_panels: int) -> list[Box]:
    """Pixel boxes of the chart's panels, top to bottom, stacked with equal heights.

    Parameters
    ----------
    n_panels
        1 (throughput only) or 2 (throughput and lag).

    Returns
    -------
    list of Box
        Inside an image of ``image_size(n_panels)``.
    """
    if n_panels not in (1, 2):
        raise ValueError(f"n_panels must be 1 or 2, got {n_panels!r}")
    width, height = _image_size(n_panels)
    usable = height - _MARGIN_TOP - _MARGIN_BOTTOM - _PANEL_GAP * (n_panels - 1)
    step = usable // n_panels
    right = width - 1 - _MARGIN_RIGHT
    return [
        Box(_MARGIN_LEFT, top, right, top + step - 1)
        for top in (_MARGIN_TOP + i * (step + _PANEL_GAP) for i in range(n_panels))
    ]


def _image_size(n_panels: int) -> tuple[int, int]:
    height_in = FIG_HEIGHT_TWO_PANELS_IN if n_panels == 2 else FIG_HEIGHT_ONE_PANEL_IN
    return round(FIG_WIDTH_IN * FIG_DPI), round(height_in * FIG_DPI)


def nice_ticks(lo: float, hi: float, max_ticks: int = 6) -> np.ndarray:
    """Round tick values inside ``[lo, hi]``: multiples of the finest 1-2-5 step that fits.

    Parameters
    ----------
    lo, hi
        Finite axis limits, ``lo < hi``.
    max_ticks
        At most this many ticks, >= 5: then the finest fitting step always leaves two
        (the next finer one, at most 2.5 times finer, gave more than ``max_ticks``).

    Returns
    -------
    numpy.ndarray
        Increasing multiples of ``m * 10**k`` (``m`` in 1, 2, 5), e.g. 0, 20e6, ..., 80e6
        for ``0..87e6``.
    """
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"need finite lo < hi, got {lo!r}, {hi!r}")
    if max_ticks < 5:
        raise ValueError(f"max_ticks must be >= 5, got {max_ticks!r}")
    exponent = math.floor(math.log10((hi - lo) / max_ticks))
    slack = 1e-9  # a limit that is a multiple of the step up to rounding gets its tick
    for k in (exponent, exponent + 1):
        for m in (1, 2, 5):
            step = m * 10.0**k
            first, last = math.ceil(lo / step - slack), math.floor(hi / step + slack)
            if last - first + 1 <= max_ticks:
                return np.arange(first, last + 1) * step
    raise AssertionError("unreachable: a step of 2*10**(exponent+1) always fits")


_SI_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def format_ticks(ticks: np.ndarray | Sequence[float], si: bool = True) -> list[str]:
    """Tick labels with one number of decimals for the whole axis.

    Parameters
    ----------
    ticks
        Evenly spaced tick values (as from ``nice_ticks``).
    si
        Scale by the SI prefix of the largest magnitude (``50M``, ``1.5G``, ``200k``).

    Returns
    -------
    list of str
        One label per tick; zero is ``"0"``.
    """
    ticks = np.asarray(ticks, dtype=np.float64)
    step = float(np.min(np.diff(ticks))) if ticks.size > 1 else abs(float(ticks[0])) or 1.0
    scale, suffix = 1.0, ""
    top = float(np.max(np.abs(ticks)))
    if si:
        scale, suffix = next(((s, p) for s, p in _SI_PREFIXES if top >= s), (1.0, ""))
    decimals = max(0, -math.floor(math.log10(step / scale) + 1e-9))
    labels = []
    for value in ticks / scale:
        text = f"{value:.{decimals}f}"
        labels.append("0" if float(text) == 0 else text + suffix)
    return labels


def _limits(values: np.ndarray, margin: float = 0.05) -> tuple[float, float]:
    """Data limits including 0, padded by ``margin`` on each side that is not 0."""
    lo = min(float(values.min()), 0.0) if values.size else 0.0
    hi = max(float(values.max()), 0.0) if values.size else 1.0
    if lo == hi:
        return (lo - 1.0, hi + 1.0) if lo else (0.0, 1.0)
    pad = margin * (hi - lo)
    return (lo - pad if lo < 0 else lo, hi + pad if hi > 0 else hi)


# -- panels: what is drawn -----------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    x: np.ndarray  # seconds since the first record
    y: np.ndarray
    color: tuple[int, int, int]
    label: str


@dataclass(frozen=True)
class _Panel:
    axes: Axes
    lines: list[_Line]
    ylabel: str
    x_labels: bool  # tick labels and title under the x axis (the bottom panel only)
    fill: bool = False  # fill between the line and zero (the lag)
    message: str | None = None  # shown centred when there is nothing to draw
    legend: list[_Line] = field(default_factory=list)


def _rate_lines(series: Sequence[Series], t0: float) -> list[_Line]:
    per_role: dict[str, int] = {}
    for s in series:
        per_role[s.role] = per_role.get(s.role, 0) + 1
    others = iter(_OTHER_COLORS * (1 + len(series) // len(_OTHER_COLORS)))
    colors = {role: _ROLE_COLORS.get(role) or next(others) for role in per_role}
    lines = []
    for s in series:
        mid, rate = samples_per_second(s.t, s.samples)
        if mid.size:
            label = s.role if per_role[s.role] == 1 else f"{s.role} (pid {s.pid})"
            lines.append(_Line(mid - t0, rate, colors[s.role], label))
    return lines


def _panels(series: Sequence[Series]) -> list[_Panel]:
    """The rate panel, and the lag panel when both a producer and a consumer are present."""
    t0 = min(float(s.t[0]) for s in series)
    xlim = _limits(np.array([max(float(s.t[-1]) for s in series) - t0]), margin=0.0)
    producers = [s for s in series if s.role == "producer"]
    consumers = [s for s in series if s.role == "consumer"]
    boxes = panel_boxes(2 if producers and consumers else 1)
    lines = _rate_lines(series, t0)
    rates = np.concatenate([line.y for line in lines]) if lines else np.zeros(0)
    rate = _Panel(
        Axes(boxes[0], xlim, _limits(rates)),
        lines,
        "samples/s",
        x_labels=len(boxes) == 1,
        message=None if lines else "fewer than two records per process: no rate",
        legend=lines,
    )
    if len(boxes) == 1:
        return [rate]
    t, lag = lag_series(producers, consumers)
    lag_line = _Line(t - t0, lag, _LAG_COLOR, "producer - consumer")
    lag_axes = Axes(boxes[1], xlim, _limits(lag))
    return [rate, _Panel(lag_axes, [lag_line], "lag (samples)", True, True, legend=[lag_line])]


def chart_axes(series: Sequence[Series]) -> list[Axes]:
    """The axes ``render_throughput`` draws ``series`` on, top to bottom.

    Parameters
    ----------
    series
        As from ``load_series`` (non-empty).

    Returns
    -------
    list of Axes
        The throughput panel (samples/s from 0), then the lag panel (samples) when
        both a producer and a consumer are present.  x is seconds since the first record.
    """
    if not series:
        raise ValueError("series must not be empty")
    return [panel.axes for panel in _panels(series)]


# -- drawing ------------------------------------------------------------------------


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled scalable font (Pillow >= 10.1): no font search, no matplotlib.
    return ImageFont.load_default(size=size * _SUPERSAMPLE)


class _Canvas:
    """An image drawn at ``_SUPERSAMPLE`` x, addressed in output pixels."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self.image = Image.new("RGB", (size[0] * _SUPERSAMPLE, size[1] * _SUPERSAMPLE), _WHITE)
        self.draw = ImageDraw.Draw(self.image)

    @staticmethod
    def at(x: float, y: float) -> tuple[float, float]:
        """Supersampled point at the centre of output pixel coordinates (x, y)."""
        half = (_SUPERSAMPLE - 1) / 2
        return x * _SUPERSAMPLE + half, y * _SUPERSAMPLE + half

    def cells(self, left: int, top: int, right: int, bottom: int, color: tuple) -> None:
        """Fill output pixels left..right x top..bottom exactly (crisp rules and frames)."""
        s = _SUPERSAMPLE
        self.draw.rectangle((left * s, top * s, right * s + s - 1, bottom * s + s - 1), color)

    def text(self, xy: tuple[float, float], text: str, size: int, anchor: str) -> None:
        self.draw.text(self.at(*xy), text, fill=_INK, font=_font(size), anchor=anchor)

    def text_width(self, text: str, size: int) -> float:
        return _font(size).getlength(text) / _SUPERSAMPLE

    def vertical_text(self, centre: tuple[float, float], text: str, size: int) -> None:
        """Text rotated 90 degrees counter-clockwise (a y-axis label)."""
        font = _font(size)
        left, top, right, bottom = font.getbbox(text)
        mask = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
        mask = mask.transpose(Image.Transpose.ROTATE_90)
        x, y = self.at(*centre)
        corner = (round(x - mask.width / 2), round(y - mask.height / 2))
        self.image.paste(_INK, (*corner, corner[0] + mask.width, corner[1] + mask.height), mask)

    def png(self, out: Path) -> None:
        out.write_bytes(_png_bytes(np.asarray(self.image.reduce(_SUPERSAMPLE))))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    # PNG's chunk CRC is zlib's CRC-32 over the type and the data.
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of an ``(height, width, 3)`` uint8 array.

    Not ``Image.save``: that imports five format plugins (~45 ms) and tries every
    filter on every row (~30 ms).  Here every row gets the "Up" filter (the
    difference to the row above, modulo 256: mostly zeros in a chart) and zlib
    level 1, a few ms in all.
    """
    height, width, _ = rgb.shape
    rows = np.empty((height, 1 + 3 * width), dtype=np.uint8)
    rows[:, 0] = 2  # filter type "Up"
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    rows[1:, 1:] -= rgb[:-1].reshape(height - 1, 3 * width)  # uint8 wraps, as PNG's sum does
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _png_chunk(b"IEND", b""),
        )
    )


def _draw_grid(canvas: _Canvas, axes: Axes, x_labels: bool) -> None:
    """Grid lines, tick marks and tick labels of both axes."""
    box = axes.box
    xticks, yticks = nice_ticks(*axes.xlim, max_ticks=11), nice_ticks(*axes.ylim)
    xcols = axes.x_pixels(xticks).round().astype(int)
    for col, label in zip(xcols, format_ticks(xticks, False), strict=True):
        canvas.cells(col, box.top, col, box.bottom, _GRID_COLOR)
        canvas.cells(col, box.bottom + 1, col, box.bottom + 4, _INK)
        if x_labels:
            canvas.text((col, box.bottom + 8), label, _FONT_TICK, "mt")
    yrows = axes.y_pixels(yticks).round().astype(int)
    for row, label in zip(yrows, format_ticks(yticks), strict=True):
        canvas.cells(box.left, row, box.right, row, _GRID_COLOR)
        canvas.cells(box.left - 4, row, box.left - 1, row, _INK)
        canvas.text((box.left - 8, row), label, _FONT_TICK, "rm")


def _draw_frame(canvas: _Canvas, box: Box) -> None:
    for edge in (
        (box.left, box.top, box.right, box.top),
        (box.left, box.bottom, box.right, box.bottom),
        (box.left, box.top, box.left, box.bottom),
        (box.right, box.top, box.right, box.bottom),
    ):
        canvas.cells(*edge, _INK)


def _points(axes: Axes, line: _Line) -> list[tuple[float, float]]:
    cols, rows = axes.x_pixels(line.x), axes.y_pixels(line.y)
    return [_Canvas.at(c, r) for c, r in zip(cols.tolist(), rows.tolist(), strict=True)]


def _draw_line(canvas: _Canvas, axes: Axes, line: _Line) -> None:
    points = _points(axes, line)
    width = round(_LINE_WIDTH * _SUPERSAMPLE)
    if len(points) == 1:  # one interval: a dot, as a line needs two points
        (x, y), r = points[0], width / 2
        canvas.draw.ellipse((x - r, y - r, x + r, y + r), fill=line.color)
    else:
        canvas.draw.line(points, fill=line.color, width=width, joint="curve")


def _draw_fill(canvas: _Canvas, axes: Axes, line: _Line) -> None:
    """The area between the line and zero, then the zero rule."""
    zero = float(axes.y_pixels(0.0))
    points = _points(axes, line)
    _, base = _Canvas.at(0.0, zero)
    if len(points) > 1:
        canvas.draw.polygon([*points, (points[-1][0], base), (points[0][0], base)], _LAG_FILL)
    row = round(zero)
    canvas.cells(axes.box.left, row, axes.box.right, row, _INK)


def _draw_legend(canvas: _Canvas, box: Box, lines: Sequence[_Line]) -> None:
    """Right-aligned entries (a short stroke, then the label) in the row above the box."""
    row, x, stroke = box.top - 14, float(box.right), 22
    for line in reversed(lines):
        x -= canvas.text_width(line.label, _FONT_TICK)
        canvas.text((x, row), line.label, _FONT_TICK, "lm")
        x -= 6 + stroke
        start, end = _Canvas.at(x, row), _Canvas.at(x + stroke, row)
        canvas.draw.line([start, end], fill=line.color, width=round(_LINE_WIDTH * _SUPERSAMPLE))
        x -= 18


def _draw_panel(canvas: _Canvas, panel: _Panel) -> None:
    axes, box = panel.axes, panel.axes.box
    _draw_grid(canvas, axes, panel.x_labels)
    for line in panel.lines:
        if panel.fill:
            _draw_fill(canvas, axes, line)
        _draw_line(canvas, axes, line)
    _draw_frame(canvas, box)
    centre_x, centre_y = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    if panel.message:
        canvas.text((centre_x, centre_y), panel.message, _FONT_LABEL, "mm")
    canvas.vertical_text((_MARGIN_LEFT / 5, centre_y), panel.ylabel, _FONT_LABEL)
    if panel.x_labels:
        canvas.text((centre_x, box.bottom + 30), "time since first record (s)", _FONT_LABEL, "mt")
    _draw_legend(canvas, box, panel.legend)


def render_throughput(
    metrics: Sequence[Path | str], out: Path | str, title: str | None = None
) -> Path:
    """Render a throughput (and lag) chart of metrics files to a PNG.

    Parameters
    ----------
    metrics
        ``MetricsRecorder`` JSON-lines files (see ``load_series``).
    out
        PNG to write (parent folders are created), 1100 x 495 pixels, or 1100 x 825
        with the lag panel (when both a producer and a consumer are present).
    title
        Chart title; default "Throughput over time".

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    UsageError
        Bad metrics files (see ``load_series``) or ``out`` cannot be written.
    """
    panels = _panels(load_series(list(metrics)))
    out = Path(out)
    canvas = _Canvas(_image_size(len(panels)))
    canvas.text((canvas.size[0] / 2, 12), title or "Throughput over time", _FONT_TITLE, "mt")
    for panel in panels:
        _draw_panel(canvas, panel)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        canvas.png(out)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point.

    Parameters
    ----------
    argv
        Arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0, or 2 (one-line message on stderr) for bad input.
    """
    parser = argparse.ArgumentParser(
        prog="python -m shared.plot",
        description="Plot throughput (samples/s) and producer-consumer lag from metrics files.",
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
