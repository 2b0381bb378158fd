"""Range labels (windows) and event-wise detection figures.

``--labels`` takes labelled indices (``.npy`` or a Zarr stream store, scored
point-wise by ``consumer.sink.label_figures``) or windows:

* NAB's ``combined_windows.json``: an object mapping data files (paths relative
  to NAB's data folder) to lists of ``[start, end]`` timestamps; the input's
  windows are those of the longest key that is a path suffix of the input (or
  of the file a replayed stream was read from);
* a CSV with a header ``start,end`` (or any two columns): timestamps (the input
  needs a timestamp column) or sample indices.

A window ``[start, end]`` includes both ends; with timestamps it covers the grid
samples whose times lie in it.  Event figures: a window is *detected* when at
least one flag lies in it, its *delay* is the samples (and seconds) from the
window's first sample to its first flag; flags outside every window are
*false alarms*, also given per 1000 samples of the series.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from consumer.inputs import TimeGrid
from shared.errors import UsageError


def labels_kind(path: str | os.PathLike[str]) -> str:
    """``"windows"`` for ``.json`` or ``.csv``, else ``"points"`` (``.npy``, a Zarr store)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        return "windows"
    if suffix in (".csv", ".tsv"):
        return "windows"
    return "points"


def _parse_time(text: str, where: str) -> int:
    try:
        return int(
            np.datetime64(str(text).strip().replace(" ", "T").rstrip("Z"), "ns").astype(np.int64)
        )
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a timestamp") from None


def _nab_windows(path: Path, source: Path) -> list[tuple[int, int]]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such labels file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: expected a JSON object of file -> windows (NAB's layout)")
    parts = source.resolve().parts
    best: str | None = None
    for key in doc:
        kp = Path(key).parts
        if kp and len(kp) <= len(parts) and tuple(parts[-len(kp) :]) == kp:
            if best is None or len(kp) > len(Path(best).parts):
                best = key
    if best is None:
        # A copy outside NAB's folders: its file name, if exactly one key has it.
        same = [k for k in doc if Path(k).name == source.name]
        if len(same) == 1:
            best = same[0]
    if best is None:
        raise UsageError(f"{path}: no windows for {source} (no key is a suffix of its path)")
    pairs = doc[best]
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs
    ):
        raise UsageError(f"{path}: '{best}' must map to a list of [start, end] timestamps")
    where = f"{path}: '{best}'"
    return [(_parse_time(a, where), _parse_time(b, where)) for a, b in pairs]


def check_windows_file(path: str | os.PathLike[str], source: Path) -> None:
    """Early check of a windows file (readable, and has the input's windows if NAB JSON).

    Timestamps are mapped to samples only once the input's time grid is known.
    """
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such labels file")
    if p.is_dir():
        raise UsageError(f"{p}: is a directory")
    if p.suffix.lower() == ".json":
        _nab_windows(p, source)
    else:
        _csv_windows(p)


def _csv_windows(path: Path) -> tuple[list[tuple[Any, Any]], str]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such labels file") from None
    except pa.ArrowInvalid as e:
        raise UsageError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    names = table.column_names
    cols = ["start", "end"] if {"start", "end"} <= set(names) else names[:2]
    if len(cols) < 2:
        raise UsageError(f"{path}: expected two columns start,end")
    a, b = table.column(cols[0]), table.column(cols[1])
    for c, name in ((a, cols[0]), (b, cols[1])):
        if c.null_count:
            row = int(np.argmax(c.is_null().to_numpy(zero_copy_only=False))) + 1
            raise UsageError(f"{path}: row {row}: no '{name}'")
    if pa.types.is_integer(a.type) and pa.types.is_integer(b.type):
        kind = "indices"
        pairs = list(zip(a.to_pylist(), b.to_pylist(), strict=True))
    else:
        kind = "times"
        pairs = []
        for i, (s, e) in enumerate(zip(a.to_pylist(), b.to_pylist(), strict=True)):
            where = f"{path}: row {i + 1}"
            pairs.append(
                (
                    _parse_time(s, where) if not hasattr(s, "year") else _dt_ns(s),
                    _parse_time(e, where) if not hasattr(e, "year") else _dt_ns(e),
                )
            )
    return pairs, kind


def _dt_ns(value: Any) -> int:
    return int(np.datetime64(value.replace(tzinfo=None), "ns").astype(np.int64))


def load_windows(
    path: str | os.PathLike[str], source: Path, grid: TimeGrid | None, num_samples: int
) -> np.ndarray:
    """The labelled windows as ``(k, 2)`` int64 inclusive sample ranges, sorted.

    Parameters
    ----------
    path
        NAB ``.json`` windows or a ``start,end`` CSV.
    source
        The input file, matched against the JSON's keys by path suffix.
    grid
        The input's time grid (needed for timestamps), or None.
    num_samples
        The series length: windows are clipped to it (empty ones dropped).

    Returns
    -------
    numpy.ndarray
        ``[[first, last], ...]`` sample indices.
    """
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p}: is a directory")
    if p.suffix.lower() == ".json":
        pairs, kind = _nab_windows(p, source), "times"
    else:
        pairs, kind = _csv_windows(p)
    out = []
    for i, (a, b) in enumerate(pairs):
        if b < a:
            raise UsageError(f"{p}: window {i + 1} ends before it starts")
        if kind == "times":
            if grid is None or grid.unit != "ns":
                raise UsageError(
                    f"{p}: windows given as timestamps need an input with a --timestamp column"
                )
            first = -(-(a - grid.t0) // grid.cadence)
            last = (b - grid.t0) // grid.cadence
        else:
            first, last = int(a), int(b)
        first, last = max(first, 0), min(last, num_samples - 1)
        if first <= last:
            out.append((first, last))
    arr = np.array(sorted(out), np.int64).reshape(-1, 2)
    return arr


def event_figures(
    flags: np.ndarray, windows: np.ndarray, num_samples: int, grid: TimeGrid | None = None
) -> dict[str, Any]:
    """Event-wise figures of sorted ``flags`` against inclusive ``windows``.

    Parameters
    ----------
    flags
        Sorted int64 flagged indices (may be a memory map; read in blocks).
    windows
        ``(k, 2)`` inclusive sample ranges.
    num_samples
        Length of the series (for false alarms per 1000 samples).
    grid
        For delays in seconds.

    Returns
    -------
    dict
        ``windows``, ``windows_detected``, ``windows_missed``, ``false_alarms``,
        ``false_alarms_per_1000``, ``delays`` (samples per detected window, in
        window order; ``None`` for a missed one), ``mean_delay`` and
        ``median_delay`` (samples), and with a time grid the same in seconds.
    """
    windows = np.asarray(windows, np.int64).reshape(-1, 2)
    k = len(windows)
    first_flag = np.full(k, -1, np.int64)
    inside = 0
    step = 1 << 20
    # Windows may overlap: a flag is inside if any window holds it.  Use the union
    # of windows for counting, and each window's own first flag for delays.
    union = _union(windows)
    for a in range(0, len(flags), step):
        idx = np.asarray(flags[a : a + step], np.int64)
        if not len(idx):
            continue
        j = np.searchsorted(union[:, 0], idx, side="right") - 1
        ok = j >= 0
        ok[ok] = idx[ok] <= union[j[ok], 1]
        inside += int(ok.sum())
        todo = first_flag < 0
        if todo.any():
            pos = np.searchsorted(idx, windows[todo, 0], side="left")
            valid = pos < len(idx)
            hit = np.zeros(len(pos), bool)
            hit[valid] = idx[pos[valid]] <= windows[todo, 1][valid]
            sel = np.nonzero(todo)[0][hit]
            first_flag[sel] = idx[pos[hit]]
    detected = first_flag >= 0
    delays = np.where(detected, first_flag - windows[:, 0], -1)
    false_alarms = int(len(flags)) - inside
    out: dict[str, Any] = {
        "windows": k,
        "windows_detected": int(detected.sum()),
        "windows_missed": int(k - detected.sum()),
        "false_alarms": false_alarms,
        "false_alarms_per_1000": 1000.0 * false_alarms / num_samples if num_samples else 0.0,
        "delays": [int(d) if ok else None for d, ok in zip(delays, detected, strict=True)],
        "mean_delay": float(delays[detected].mean()) if detected.any() else None,
        "median_delay": float(np.median(delays[detected])) if detected.any() else None,
    }
    if grid is not None and grid.unit == "ns":
        s = grid.cadence / 1e9
        out["mean_delay_seconds"] = out["mean_delay"] * s if detected.any() else None
        out["median_delay_seconds"] = out["median_delay"] * s if detected.any() else None
    return out


def _union(windows: np.ndarray) -> np.ndarray:
    """Sorted, merged inclusive ranges."""
    if not len(windows):
        return np.empty((0, 2), np.int64)
    w = windows[np.argsort(windows[:, 0], kind="stable")]
    merged = [list(w[0])]
    for a, b in w[1:]:
        if a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.array(merged, np.int64)
