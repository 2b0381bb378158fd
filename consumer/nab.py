"""Numenta Anomaly Benchmark (NAB) scoring, built in (numpy only).

The scoring rule of Lavin & Ahmad (2015), "Evaluating Real-time Anomaly Detection
Algorithms - the Numenta Anomaly Benchmark", as NAB's scorer applies it:

* A detection is a row whose anomaly score is ``>= threshold`` (NaN never detects).
* The first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of a file (the probationary
  period) are never scored as detections.
* A labelled window ``[start, end]`` holds the rows whose timestamps lie in it
  (``start <= t <= end``); ``first``, ``last`` and ``length`` are the first and last
  such row index and their count.  Only the window's first detection counts: at row
  ``i`` it scores ``tpWeight * sigma(-(last - i + 1) / length) / sigma(-1)``, so a
  detection on the window's first row earns exactly ``tpWeight``.  A window without
  a detection costs ``fnWeight``.
* A detection outside every window is a false positive: ``fpWeight * sigma(p)`` with
  ``p = (i - last) / (length - 1)`` of the closest window that ended before ``i``,
  or ``-fpWeight`` when no window precedes it.
* ``sigma(p) = 2 / (1 + exp(5 p)) - 1`` (NAB's scaled sigmoid), and ``-1`` for
  ``p > 3``.
* A file's raw score is the sum of those terms; a corpus's is the sum over files.
  Normalised: ``100 * (raw - null) / (perfect - null)`` with the null detector (no
  detections: ``-fnWeight`` per window) and the perfect one (``tpWeight`` per window).

The threshold is one value for all files of a corpus, chosen per profile to maximise
the summed raw score; ``evaluate`` sweeps every distinct score value exactly.

Two details that NAB leaves undefined are fixed here: a false positive after a window
of one row is scored as if that window had two rows (NAB divides by zero), and a
window whose rows all lie in the probationary period still counts as missed (as
NAB's scorer did when it wrote the published ``S(t)`` columns).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from shared.errors import UsageError

PROBATION_FRACTION = 0.15
PROBATION_CAP_ROWS = 5000  # NAB caps the probationary period at 0.15 * 5000 = 750 rows
FAR_PAST_WINDOW = 3.0  # relative positions beyond this score -1 (a plain false positive)

Window = tuple[np.datetime64, np.datetime64]


class Profile(NamedTuple):
    """An application profile: NAB's cost matrix (true negatives weigh nothing)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


DEFAULT_PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


class FileScore(NamedTuple):
    """The score of one file at one threshold under one profile.

    ``tp`` and ``fn`` count windows (detected / missed), ``fp`` counts false-positive
    detections (rows).  ``row_scores`` is NAB's ``S(t)`` column: each window's term
    (true positive or missed) on the window's first row, each false positive's on its
    own row, zero elsewhere; it sums to ``raw``.
    """

    raw: float
    tp: int
    fp: int
    fn: int
    row_scores: np.ndarray


@dataclass(frozen=True)
class ProfileResult:
    """The score of a set of files under one profile at one (corpus-wide) threshold."""

    profile: Profile
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    files: dict[str, FileScore]


# --------------------------------------------------------------------------- reading


def read_columns(path: str | Path, columns: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Read the named columns of a CSV file with a header row.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    columns : mapping of str to str
        Column name to kind: ``"timestamp"`` (``datetime64[ns]``, no missing values)
        or ``"float"`` (float64, missing values as NaN).

    Returns
    -------
    dict of str to numpy.ndarray
        One array per requested column.

    Raises
    ------
    UsageError
        If the file is not a CSV with those columns, or a timestamp is missing.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    kinds = {"timestamp": pa.timestamp("ns"), "float": pa.float64()}
    options = pacsv.ConvertOptions(
        column_types={name: kinds[kind] for name, kind in columns.items()},
        include_columns=list(columns),
    )
    try:
        table = pacsv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, KeyError) as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UsageError(
            f"{path}: not a CSV with columns {', '.join(columns)} ({first_line})"
        ) from None
    out: dict[str, np.ndarray] = {}
    for name, kind in columns.items():
        column = table.column(name)
        if kind == "timestamp":
            if column.null_count:
                raise UsageError(f"{path}: {column.null_count} rows without a '{name}'")
            out[name] = column.to_numpy().astype("datetime64[ns]")
        else:
            out[name] = column.to_numpy(zero_copy_only=False).astype(np.float64)
    return out


def read_series(
    path: str | Path, column: str = "value", timestamp: str = "timestamp", format: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a data file's rows: a NAB CSV, or the same columns in any input format.

    Goes through the consumer's readers (``consumer.inputs.read_rows``): CSV,
    Parquet file or dataset folder, Arrow IPC / Feather, or an ``.npy`` series
    with a time grid in its sidecar.

    Parameters
    ----------
    path : str or Path
        The data file.
    column, timestamp : str
        The value and timestamp columns (NAB's ``value`` and ``timestamp``).
    format : str, optional
        ``csv``, ``parquet``, ``arrow`` or ``npy`` (default: from the suffix).

    Returns
    -------
    timestamps : numpy.ndarray
        ``datetime64[ns]``, one per row, in file order.
    values : numpy.ndarray
        float64; missing values are NaN.

    Raises
    ------
    UsageError
        A missing or bad column, integer timestamps, or an ``.npy`` without a time grid.
    """
    from consumer.inputs import TableOptions, read_rows

    rows = read_rows(path, TableOptions(column, timestamp, format))
    if rows.times is None:
        raise UsageError(f"{path}: no timestamps (an .npy needs a time grid in its sidecar)")
    if rows.unit != "ns":
        raise UsageError(
            f"{path}: column '{timestamp}' holds integers, not date-times "
            "(NAB's windows are date-times)"
        )
    return rows.times.view("datetime64[ns]"), rows.values


def read_scores(path: str | Path, column: str = "anomaly_score") -> tuple[np.ndarray, np.ndarray]:
    """Read a NAB results file: its timestamps and one score column (default ``anomaly_score``).

    Returns
    -------
    timestamps : numpy.ndarray
        ``datetime64[ns]``.
    scores : numpy.ndarray
        float64; missing values are NaN (never a detection).
    """
    cols = read_columns(path, {"timestamp": "timestamp", column: "float"})
    return cols["timestamp"], cols[column]


def _read_json(path: str | Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such {what} file") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: malformed JSON ({e})") from None


def load_windows(path: str | Path) -> dict[str, list[Window]]:
    """Read NAB's labelled windows (``combined_windows.json``).

    Parameters
    ----------
    path : str or Path
        JSON object mapping each data file (path relative to the data folder, e.g.
        ``"realKnownCause/nyc_taxi.csv"``) to a list of ``[start, end]`` timestamps.

    Returns
    -------
    dict of str to list of (numpy.datetime64, numpy.datetime64)
        The windows of each file as ``datetime64[ns]`` pairs, in file order.
    """
    raw = _read_json(path, "windows")
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a JSON object of file -> windows")
    windows: dict[str, list[Window]] = {}
    for name, pairs in raw.items():
        if not isinstance(pairs, list) or not all(_is_pair(p) for p in pairs):
            raise UsageError(f"{path}: '{name}' must map to a list of [start, end] timestamps")
        try:
            windows[name] = [(_timestamp(a), _timestamp(b)) for a, b in pairs]
        except ValueError as e:
            raise UsageError(f"{path}: '{name}': bad timestamp ({e})") from None
    return windows


def _is_pair(p: Any) -> bool:
    return isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)


def _timestamp(text: str) -> np.datetime64:
    return np.datetime64(text.strip().replace(" ", "T"), "ns")


def load_profiles(path: str | Path | None = None) -> dict[str, Profile]:
    """Read application profiles in NAB's ``profiles.json`` layout.

    Parameters
    ----------
    path : str or Path, optional
        ``{name: {"CostMatrix": {"tpWeight": .., "fpWeight": .., "fnWeight": ..}}}``.
        ``None`` gives NAB's three standard profiles (``DEFAULT_PROFILES``).

    Returns
    -------
    dict of str to Profile
    """
    if path is None:
        return dict(DEFAULT_PROFILES)
    raw = _read_json(path, "profiles")
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{path}: expected a JSON object of profile -> {{'CostMatrix': ...}}")
    profiles: dict[str, Profile] = {}
    for name, body in raw.items():
        matrix = body.get("CostMatrix") if isinstance(body, dict) else None
        weights = []
        for key in ("tpWeight", "fpWeight", "fnWeight"):
            value = matrix.get(key) if isinstance(matrix, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{path}: profile '{name}' needs a number CostMatrix.{key}")
            weights.append(float(value))
        profiles[name] = Profile(name, *weights)
    return profiles


def load_thresholds(path: str | Path, detector: str) -> dict[str, float]:
    """Read one detector's thresholds from NAB's ``thresholds.json`` layout.

    Parameters
    ----------
    path : str or Path
        ``{detector: {profile: {"threshold": t, "score": s}}}``.
    detector : str
        The detector whose thresholds to return.

    Returns
    -------
    dict of str to float
        Profile name to threshold.
    """
    table = load_all_thresholds(path)
    if detector not in table:
        raise UsageError(f"{path}: no thresholds for detector '{detector}'")
    return table[detector]


def load_all_thresholds(path: str | Path) -> dict[str, dict[str, float]]:
    """Every detector's thresholds in NAB's ``thresholds.json``: detector -> profile -> value."""
    raw = _read_json(path, "thresholds")
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a JSON object of detector -> profile -> threshold")
    table: dict[str, dict[str, float]] = {}
    for detector, body in raw.items():
        if not isinstance(body, dict):
            raise UsageError(f"{path}: '{detector}' must map profiles to thresholds")
        table[detector] = {}
        for profile, entry in body.items():
            value = entry.get("threshold") if isinstance(entry, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UsageError(f"{path}: '{detector}'/'{profile}' has no number 'threshold'")
            table[detector][profile] = float(value)
    return table


# --------------------------------------------------------------------------- the rule


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 p)) - 1``, and ``-1`` where ``p > 3``.

    ``p = -1`` (a window's first row) gives 0.98661, ``p = 0`` (just past its end) 0,
    ``p = 1`` -0.98661.
    """
    p = np.asarray(position, dtype=np.float64)
    bounded = np.minimum(p, FAR_PAST_WINDOW)  # no overflow in exp; the far side is -1 anyway
    value = 2.0 * (1.0 / (1.0 + np.exp(5.0 * bounded))) - 1.0
    return np.where(p > FAR_PAST_WINDOW, -1.0, value)


MAX_TP = float(scaled_sigmoid(-1.0))  # a detection on a window's first row


def probation_rows(num_rows: int) -> int:
    """Rows at the start of a file that are never scored: ``min(floor(0.15 n), 750)``."""
    limit = min(math.floor(PROBATION_FRACTION * num_rows), PROBATION_FRACTION * PROBATION_CAP_ROWS)
    return max(0, math.ceil(limit))  # rows i < limit


class FileLayout(NamedTuple):
    """What the rule needs of one file, independent of scores and weights.

    ``window_rows[k]`` are the row indices of window ``k`` (sorted), ``window_tp[k]``
    the unweighted true-positive term of a first detection on each of them
    (``sigma(-(last - i + 1) / length) / sigma(-1)``).  ``fp_value`` is the unweighted
    false-positive term of every row (0 inside windows), ``outside`` marks rows
    outside every window, ``probation`` the unscored leading rows.
    """

    num_rows: int
    probation: int
    window_rows: list[np.ndarray]
    window_tp: list[np.ndarray]
    outside: np.ndarray
    fp_value: np.ndarray


def file_layout(timestamps: np.ndarray, windows: list[Window]) -> FileLayout:
    """Locate the windows of one file in its rows and precompute every row's terms.

    Parameters
    ----------
    timestamps : numpy.ndarray
        ``datetime64`` per row, in file order (need not be sorted).
    windows : list of (numpy.datetime64, numpy.datetime64)
        The file's labelled windows, inclusive at both ends.

    Returns
    -------
    FileLayout
    """
    t = np.asarray(timestamps).astype("datetime64[ns]")
    n = len(t)
    outside = np.ones(n, dtype=bool)
    window_rows, window_tp = [], []
    for start, end in windows:
        rows = np.flatnonzero((t >= start) & (t <= end))
        outside[rows] = False
        window_rows.append(rows)
        if len(rows):
            position = -(rows[-1] - rows + 1) / float(len(rows))
            window_tp.append(scaled_sigmoid(position) / MAX_TP)
        else:
            window_tp.append(np.empty(0))
    fp_value = np.where(outside, _false_positive_terms(n, window_rows), 0.0)
    return FileLayout(n, probation_rows(n), window_rows, window_tp, outside, fp_value)


def _false_positive_terms(num_rows: int, window_rows: list[np.ndarray]) -> np.ndarray:
    """Unweighted false-positive term of each row, by distance past the closest earlier window."""
    spans = [(rows[-1], len(rows)) for rows in window_rows if len(rows)]
    out = np.full(num_rows, -1.0)
    if not spans:
        return out
    spans.sort()
    lasts = np.array([s[0] for s in spans])
    lengths = np.array([s[1] for s in spans])
    i = np.arange(num_rows)
    preceding = np.searchsorted(lasts, i, side="left") - 1  # window with the largest last < i
    has_one = preceding >= 0
    k = preceding[has_one]
    position = (i[has_one] - lasts[k]) / np.maximum(lengths[k] - 1, 1).astype(np.float64)
    out[has_one] = scaled_sigmoid(position)
    return out


def score_file(
    timestamps: np.ndarray | FileLayout,
    scores: np.ndarray,
    windows: list[Window] | None,
    threshold: float,
    profile: Profile | Mapping[str, float],
) -> FileScore:
    """Score one file at one threshold under one profile.

    Parameters
    ----------
    timestamps : numpy.ndarray or FileLayout
        ``datetime64`` per row, or a layout from ``file_layout`` (then ``windows``
        is ignored).
    scores : numpy.ndarray
        Anomaly score per row (normally in [0, 1]); NaN never detects.
    windows : list of (numpy.datetime64, numpy.datetime64) or None
        The file's labelled windows.
    threshold : float
        Rows with ``score >= threshold`` are detections.
    profile : Profile or mapping
        The weights; a mapping may use NAB's keys (``tpWeight``, ``fpWeight``,
        ``fnWeight``, as in a ``CostMatrix``).

    Returns
    -------
    FileScore
    """
    layout = _as_layout(timestamps, windows)
    weights = as_profile(profile)
    s = _check_scores(scores, layout.num_rows)
    detected = s >= threshold
    detected[: layout.probation] = False
    row_scores = np.zeros(layout.num_rows)
    false_positive = detected & layout.outside
    row_scores[false_positive] = layout.fp_value[false_positive] * weights.fp_weight
    found = 0
    window_total = 0.0
    for rows, tp_terms in zip(layout.window_rows, layout.window_tp, strict=True):
        hits = np.flatnonzero(detected[rows])
        if len(hits):  # only the first detection counts
            term = tp_terms[hits[0]] * weights.tp_weight
            found += 1
        else:
            term = -weights.fn_weight
        window_total += term
        if len(rows):
            row_scores[rows[0]] = term
    raw = window_total + float(row_scores[false_positive].sum())
    missed = len(layout.window_rows) - found
    return FileScore(raw, found, int(false_positive.sum()), missed, row_scores)


def row_terms(
    timestamps: np.ndarray | FileLayout,
    windows: list[Window] | None,
    profile: Profile | Mapping[str, float],
) -> np.ndarray:
    """Each row's weighted term if it were a detection (and the first of its window).

    This is the ``S(t)`` column that NAB 1.1's sweeping scorer writes: it does not
    depend on the threshold or the scores, and covers probationary rows too.  (NAB 1.0's
    scorer wrote the thresholded layout of ``FileScore.row_scores`` instead.)

    Parameters
    ----------
    timestamps : numpy.ndarray or FileLayout
        ``datetime64`` per row, or a layout from ``file_layout`` (then ``windows``
        is ignored).
    windows : list of (numpy.datetime64, numpy.datetime64) or None
        The file's labelled windows.
    profile : Profile or mapping
        The weights.

    Returns
    -------
    numpy.ndarray
        float64 per row: ``tp_weight * sigma(..) / sigma(-1)`` inside windows,
        ``fp_weight * sigma(..)`` outside.
    """
    layout = _as_layout(timestamps, windows)
    weights = as_profile(profile)
    terms = layout.fp_value * weights.fp_weight
    for rows, tp_terms in zip(layout.window_rows, layout.window_tp, strict=True):
        terms[rows] = tp_terms * weights.tp_weight
    return terms


def _as_layout(timestamps: np.ndarray | FileLayout, windows: list[Window] | None) -> FileLayout:
    if isinstance(timestamps, FileLayout):
        return timestamps
    return file_layout(timestamps, windows or [])


def as_profile(profile: Profile | Mapping[str, float], name: str = "custom") -> Profile:
    """A ``Profile`` from a ``Profile`` or a NAB cost-matrix mapping."""
    if isinstance(profile, Profile):
        return profile
    try:
        return Profile(
            name,
            float(profile["tpWeight"]),
            float(profile["fpWeight"]),
            float(profile["fnWeight"]),
        )
    except (KeyError, TypeError, ValueError):
        raise UsageError(
            f"profile: expected a Profile or a mapping with tpWeight, fpWeight, fnWeight, "
            f"not {profile!r}"
        ) from None


def _check_scores(scores: np.ndarray, num_rows: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (num_rows,):
        raise UsageError(f"expected {num_rows} anomaly scores (one per row), got shape {s.shape}")
    return s


# --------------------------------------------------------------------------- threshold sweep


class SweepCurves(NamedTuple):
    """Unweighted score parts of a corpus at every candidate threshold (ascending).

    At ``thresholds[j]``: ``tp[j]`` is the sum of first-detection terms, ``fp[j]`` the
    sum of false-positive terms and ``missed[j]`` the number of missed windows, all
    files together; a profile's raw score is
    ``tp_weight * tp + fp_weight * fp - fn_weight * missed``.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    missed: np.ndarray

    def raw(self, profile: Profile) -> np.ndarray:
        """Raw corpus score at every threshold under ``profile``."""
        return (
            profile.tp_weight * self.tp
            + profile.fp_weight * self.fp
            - profile.fn_weight * self.missed
        )


def sweep(layouts: list[FileLayout], scores: list[np.ndarray]) -> SweepCurves:
    """Score parts at every distinct scored value as threshold, plus one above them all.

    Parameters
    ----------
    layouts : list of FileLayout
        One per file.
    scores : list of numpy.ndarray
        The anomaly scores of each file.

    Returns
    -------
    SweepCurves
        The last threshold detects nothing (it is above every score; 1.1 for scores in
        [0, 1], as NAB's sweep starts).
    """
    checked = [_check_scores(s, lay.num_rows) for lay, s in zip(layouts, scores, strict=True)]
    thresholds = _candidate_thresholds(layouts, checked)
    m = len(thresholds)
    tp, fp, missed = np.zeros(m), np.zeros(m), np.zeros(m)
    for layout, s in zip(layouts, checked, strict=True):
        fp += _false_positive_curve(layout, s, thresholds)
        for rows, tp_terms in zip(layout.window_rows, layout.window_tp, strict=True):
            first_tp, window_missed = _window_curve(layout, rows, tp_terms, s, thresholds)
            tp += first_tp
            missed += window_missed
    return SweepCurves(thresholds, tp, fp, missed)


def _scored_mask(layout: FileLayout, s: np.ndarray) -> np.ndarray:
    mask = np.isfinite(s)
    mask[: layout.probation] = False
    return mask


def _candidate_thresholds(layouts: list[FileLayout], scores: list[np.ndarray]) -> np.ndarray:
    values = [s[_scored_mask(lay, s)] for lay, s in zip(layouts, scores, strict=True)]
    distinct = np.unique(np.concatenate(values)) if values else np.empty(0)
    top = float(distinct[-1]) if len(distinct) else 0.0
    above_all = 1.1 if top < 1.1 else float(np.nextafter(top, np.inf))
    return np.append(distinct, above_all)


def _false_positive_curve(layout: FileLayout, s: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Sum of false-positive terms of rows with ``score >= t``, for every ``t``."""
    rows = _scored_mask(layout, s) & layout.outside
    order = np.argsort(s[rows], kind="stable")
    sorted_scores = s[rows][order]
    suffix_sums = np.append(np.cumsum(layout.fp_value[rows][order][::-1])[::-1], 0.0)
    return suffix_sums[np.searchsorted(sorted_scores, thresholds, side="left")]


def _window_curve(
    layout: FileLayout,
    rows: np.ndarray,
    tp_terms: np.ndarray,
    s: np.ndarray,
    thresholds: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold: the window's first-detection term (0 if missed), and 1 where missed.

    The first detected row at threshold ``t`` is the first row whose running maximum of
    scores (over the window's scored rows, in order) reaches ``t``.
    """
    scored = rows >= layout.probation
    window_scores = np.where(np.isfinite(s[rows]), s[rows], -np.inf)[scored]
    terms = tp_terms[scored]
    if len(window_scores) == 0:
        return np.zeros(len(thresholds)), np.ones(len(thresholds))
    running_max = np.maximum.accumulate(window_scores)
    first = np.searchsorted(running_max, thresholds, side="left")
    missed = first == len(window_scores)
    first_terms = np.where(missed, 0.0, terms[np.minimum(first, len(terms) - 1)])
    return first_terms, missed.astype(np.float64)


def best_threshold(curves: SweepCurves, profile: Profile) -> float:
    """The threshold with the highest raw score (the highest such threshold on ties)."""
    raw = curves.raw(profile)
    best = np.flatnonzero(raw == raw.max())[-1]
    return float(curves.thresholds[best])


# --------------------------------------------------------------------------- corpus


def evaluate(
    scores_by_file: Mapping[str, np.ndarray],
    data_dir: str | Path,
    windows_file: str | Path,
    profiles_file: str | Path | None = None,
    thresholds: Mapping[str, float] | None = None,
    *,
    timestamps: Mapping[str, np.ndarray] | None = None,
) -> dict[str, ProfileResult]:
    """Score a detector's per-row anomaly scores on a set of NAB files, per profile.

    Parameters
    ----------
    scores_by_file : mapping of str to numpy.ndarray
        File path relative to ``data_dir`` (e.g. ``"realKnownCause/nyc_taxi.csv"``)
        to its anomaly score per row, in [0, 1]; NaN never detects.
    data_dir : str or Path
        NAB's ``data`` folder (the timestamps come from its CSVs).
    windows_file : str or Path
        ``combined_windows.json``; every scored file must be in it.
    profiles_file : str or Path, optional
        NAB's ``profiles.json``; default NAB's three standard profiles.
    thresholds : mapping of str to float, optional
        Profile name to threshold (e.g. from ``load_thresholds``); default: for each
        profile, the one threshold that maximises the raw score summed over these files.
    timestamps : mapping of str to numpy.ndarray, optional
        Each file's row timestamps (``datetime64[ns]``), already read (from a data file
        in any input format); default: read ``data_dir / name`` (``read_series``).

    Returns
    -------
    dict of str to ProfileResult
        Keyed by profile name.  ``null`` and ``perfect`` are ``-fn_weight`` and
        ``tp_weight`` per window of the scored files; ``normalized`` is NaN when they
        have no windows.
    """
    windows = load_windows(windows_file)
    profiles = load_profiles(profiles_file)
    names = sorted(scores_by_file)
    layouts = {name: _layout_for(name, data_dir, windows, timestamps) for name in names}
    scores = {name: _check_file_scores(name, scores_by_file[name], layouts[name]) for name in names}
    chosen = _choose_thresholds(profiles, layouts, scores, thresholds)
    num_windows = sum(len(layouts[name].window_rows) for name in names)
    return {
        pname: _profile_result(profile, chosen[pname], layouts, scores, num_windows)
        for pname, profile in profiles.items()
    }


def _layout_for(
    name: str,
    data_dir: str | Path,
    windows: dict[str, list[Window]],
    timestamps: Mapping[str, np.ndarray] | None,
) -> FileLayout:
    if name not in windows:
        raise UsageError(f"{name}: not in the windows file (no labels for it)")
    if timestamps is not None:
        return file_layout(timestamps[name], windows[name])
    path = Path(data_dir) / name
    if not path.exists():
        raise UsageError(f"{path}: no such data file")
    times, _ = read_series(path)
    return file_layout(times, windows[name])


def _check_file_scores(name: str, scores: np.ndarray, layout: FileLayout) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (layout.num_rows,):
        raise UsageError(f"{name}: {s.size} anomaly scores for {layout.num_rows} data rows")
    return s


def _choose_thresholds(
    profiles: dict[str, Profile],
    layouts: dict[str, FileLayout],
    scores: dict[str, np.ndarray],
    given: Mapping[str, float] | None,
) -> dict[str, float]:
    if given is not None:
        missing = sorted(set(profiles) - set(given))
        if missing:
            raise UsageError(f"thresholds: none given for profile '{missing[0]}'")
        return {name: float(given[name]) for name in profiles}
    curves = sweep(list(layouts.values()), [scores[name] for name in layouts])
    return {name: best_threshold(curves, profile) for name, profile in profiles.items()}


def _profile_result(
    profile: Profile,
    threshold: float,
    layouts: dict[str, FileLayout],
    scores: dict[str, np.ndarray],
    num_windows: int,
) -> ProfileResult:
    files = {
        name: score_file(layouts[name], scores[name], None, threshold, profile) for name in layouts
    }
    raw = float(sum(f.raw for f in files.values()))
    null = -profile.fn_weight * num_windows
    perfect = profile.tp_weight * num_windows
    return ProfileResult(
        profile, threshold, raw, null, perfect, normalized_score(raw, null, perfect), files
    )


def normalized_score(raw: float, null: float, perfect: float) -> float:
    """``100 * (raw - null) / (perfect - null)``; NaN when perfect equals null."""
    if perfect == null:
        return float("nan")
    return 100.0 * (raw - null) / (perfect - null)
