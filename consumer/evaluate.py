"""``python -m consumer.evaluate``: NAB scores of our detectors and of published results.

Runs each ``--detector`` over every data file under ``--data`` (recursively) and/or
reads other detectors' per-file results in NAB's layout (``--results``), then scores
them all on the same files with NAB's rule (``consumer.nab``) under every application
profile::

    python -m consumer.evaluate --data NAB/data --windows NAB/labels/combined_windows.json \\
        --detector stl --params '{"period": "1d"}' --detector zscore --params '{"window": 500}' \\
        --results NAB/results [--thresholds NAB/config/thresholds.json] [--json]

Each ``--params`` belongs to the ``--detector`` before it.  A ``"period"`` given as a
duration (``"1d"``, ``"12h"``, ``"30min"``, ``"90s"``, ``"1w"``) becomes samples at the
file's cadence (its median timestamp step, rounded); ``stl`` and ``likelihood`` without a
period use one day of samples.  Per-row scores in [0, 1] are ``consumer.score``'s: each
detector's documented unit score (NaN rows count as 0).  Thresholds are optimised per
profile over the files scored, unless ``--thresholds`` gives a detector's (NAB's
``thresholds.json`` layout; detectors missing from it are still optimised).

Data files are read directly, with no conversion step, by the consumer's readers
(``consumer.inputs.read_rows``): CSV, Parquet, Parquet datasets (folders named
``*.parquet``), Arrow IPC / Feather and ``.npy`` series with a time grid, with the
consumer's ``--column`` / ``--timestamp`` / ``--format`` options.  A file is scored
row by row in file order, under the windows of the key with its path (``x.parquet``
takes the windows of ``x.csv``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from consumer import nab
from consumer.inputs import SUFFIXES, TableOptions, input_format
from shared.cli import OneLineParser, exit_now, run_cli
from shared.errors import StopRequest, UsageError
from shared.params import for_option, parse_json_object

PROG = "consumer.evaluate"
DAY_NS = 86_400 * 10**9
DURATION_UNITS_NS = {"w": 7 * DAY_NS, "d": DAY_NS, "h": 3600 * 10**9, "min": 60 * 10**9}
DURATION_UNITS_NS.update({"m": 60 * 10**9, "s": 10**9})
DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(w|d|h|min|m|s)\s*$")
DATASET_SUFFIXES = (".parquet", ".pq")  # a folder with such a name is one Parquet dataset
# Suffixes left out when a data file is matched to a windows key (x.series.npy -> x.csv).
KEY_SUFFIXES = {*SUFFIXES, ".gz", ".bz2", ".zst", ".lz4", ".series"}


@dataclass
class DetectorSpec:
    """One ``--detector`` with the ``--params`` text that followed it (if any)."""

    type: str
    params_text: str | None = None

    @property
    def label(self) -> str:
        """The detector's name in the table (with its parameters, if any)."""
        return self.type if not self.params_text else f"{self.type} {self.params_text.strip()}"


@dataclass
class Entry:
    """One row of the score table: a detector and its results per profile."""

    name: str
    source: str  # "detector" (run here) or "results" (read from --results)
    thresholds: str  # "optimised" or "given"
    results: dict[str, nab.ProfileResult]


class _DetectorAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        specs = getattr(namespace, self.dest, None) or []
        specs.append(DetectorSpec(str(values)))
        setattr(namespace, self.dest, specs)


class _ParamsAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None) -> None:
        specs = getattr(namespace, "detectors", None) or []
        if not specs:
            parser.error("--params must follow the --detector it belongs to")
        if specs[-1].params_text is not None:
            parser.error(f"--detector {specs[-1].type} has two --params")
        specs[-1].params_text = str(values)


def build_parser() -> argparse.ArgumentParser:
    """The evaluation command's options."""
    p = OneLineParser(
        prog=PROG,
        description="Score detectors with the Numenta Anomaly Benchmark rule on a folder of "
        "NAB-style CSVs (timestamp,value), for NAB's three application profiles.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="folder of data files, searched recursively: CSV, Parquet (files, or dataset "
        "folders named *.parquet), Arrow/Feather, .npy series",
    )
    p.add_argument("--column", default="value", help="the value column (default value)")
    p.add_argument(
        "--timestamp", default="timestamp", help="the timestamp column (default timestamp)"
    )
    p.add_argument("--format", help="only data files of this format: csv, parquet, arrow or npy")
    p.add_argument("--windows", required=True, help="labelled windows (combined_windows.json)")
    p.add_argument("--profiles", help="NAB profiles.json (default: NAB's standard weights)")
    p.add_argument(
        "--detector",
        dest="detectors",
        action=_DetectorAction,
        help="run this detector (zscore, stl, ...); may be repeated",
    )
    p.add_argument(
        "--params",
        action=_ParamsAction,
        help="JSON parameters of the preceding --detector; 'period' may be a duration "
        'such as "1d"',
    )
    p.add_argument(
        "--results",
        help="NAB results folder: <detector>/<category>/<detector>_<file>.csv (anomaly_score)",
    )
    p.add_argument(
        "--thresholds",
        help="NAB thresholds.json: score those detectors at its thresholds instead of optimising",
    )
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


# --------------------------------------------------------------------------- inputs


def data_files(data_dir: Path, format: str | None = None) -> list[str]:
    """Every data file under ``data_dir``, as sorted POSIX paths relative to it.

    A data file has an input suffix (``consumer.inputs.SUFFIXES``: CSV, Parquet,
    Arrow / Feather, ``.npy``) or is a folder named ``*.parquet`` / ``*.pq`` (a
    Parquet dataset, not searched into); names starting with ``.`` or ``_`` are
    left out.  ``format`` keeps only the files of that format.
    """
    if not data_dir.is_dir():
        raise UsageError(f"--data: {data_dir}: no such folder")
    if format is not None:
        input_format(data_dir, format)  # a bad --format: its one-line error
    names = []
    stack = [data_dir]
    while stack:
        for p in stack.pop().iterdir():
            if p.name.startswith((".", "_")):
                continue
            dataset = p.is_dir() and p.suffix.lower() in DATASET_SUFFIXES
            if p.is_dir() and not dataset:
                stack.append(p)
            elif dataset or p.suffix.lower() in SUFFIXES:
                if format is None or input_format(p) == format:
                    names.append(p.relative_to(data_dir).as_posix())
    if not names:
        kind = f"{format} files" if format else "data files"
        raise UsageError(f"--data: {data_dir}: no {kind} in it")
    return sorted(names)


def _strip_suffixes(name: str) -> str:
    path = PurePosixPath(name)
    while path.suffix.lower() in KEY_SUFFIXES:
        path = path.with_suffix("")
    return path.as_posix()


def window_key(name: str, keys: Iterable[str]) -> str:
    """The windows file's key for data file ``name``.

    The key equal to ``name``, else the one key that names the same path with
    other input suffixes (``realKnownCause/nyc_taxi.parquet``, or ``.series.npy``,
    takes the windows of ``realKnownCause/nyc_taxi.csv``).
    """
    keys = list(keys)
    if name in keys:
        return name
    stem = _strip_suffixes(name)
    same = [k for k in keys if _strip_suffixes(k) == stem]
    if len(same) != 1:
        raise UsageError(f"{name}: not in the windows file (no labels for it)")
    return same[0]


def corpus_keys(names: list[str], windows: Iterable[str]) -> dict[str, str]:
    """Data file name -> windows key, refusing two data files for one key."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        key = window_key(name, windows)
        if key in seen:
            raise UsageError(
                f"--data: {seen[key]} and {name} both hold '{key}'; "
                "keep one (or choose with --format)"
            )
        seen[key] = out[name] = key
    return out


def table_options(args: argparse.Namespace) -> TableOptions:
    """The columns (and format) to read data files with."""
    return TableOptions(args.column, args.timestamp, args.format)


def cadence_ns(timestamps: np.ndarray) -> int:
    """The median step between consecutive timestamps, in nanoseconds."""
    steps = np.diff(timestamps.astype("datetime64[ns]").astype(np.int64))
    step = int(np.median(steps)) if len(steps) else 0
    if step <= 0:
        raise UsageError("cannot tell the sampling cadence (timestamps do not advance)")
    return step


def duration_ns(text: str) -> int:
    """``"1d"``, ``"12h"``, ``"30min"``, ``"90s"``, ``"1w"`` in nanoseconds."""
    match = DURATION.match(text)
    if not match:
        raise UsageError(
            f'--params: \'period\' {text!r} is not a duration like "1d", "12h", "30min"'
        )
    return round(float(match.group(1)) * DURATION_UNITS_NS[match.group(2)])


def resolve_params(type: str, params: dict[str, Any], timestamps: np.ndarray) -> dict[str, Any]:
    """Detector parameters for one file: a duration ``period`` becomes samples at its cadence.

    ``stl`` and ``likelihood`` without a ``period`` get one day of samples.
    """
    out = dict(params)
    period = out.get("period")
    if period is None and type in ("stl", "likelihood"):
        period = "1d"
    if isinstance(period, str):
        samples = round(duration_ns(period) / cadence_ns(timestamps))
        if samples < 2:
            raise UsageError(f"--params: 'period' {period!r} is under two samples at this cadence")
        out["period"] = samples
    return out


def read_result_scores(results_dir: Path, detector: str, names: list[str]) -> dict[str, Any]:
    """Anomaly scores of one detector in NAB's results layout, for each data file."""
    out = {}
    for name in names:
        category, _, file = name.rpartition("/")
        path = results_dir / detector / category / f"{detector}_{file}"
        if not path.is_file():
            raise UsageError(f"--results: {detector} has no result for {name} ({path})")
        out[name] = nab.read_scores(path)[1]
    return out


def result_detectors(results_dir: Path) -> list[str]:
    """The detector folders of a NAB results folder."""
    if not results_dir.is_dir():
        raise UsageError(f"--results: {results_dir}: no such folder")
    names = sorted(p.name for p in results_dir.iterdir() if p.is_dir())
    if not names:
        raise UsageError(f"--results: {results_dir}: no detector folders in it")
    return names


# --------------------------------------------------------------------------- detectors


def _detector_scores(values: np.ndarray, type: str, params: dict[str, Any]) -> np.ndarray:
    """Per-row anomaly scores in [0, 1] of detector ``type`` (``consumer.score``).

    Rows without a score (NaN: missing samples, or too early for the detector's
    window) get 0, as NAB takes every row's score as given.
    """
    import consumer

    with for_option("--params"):
        unit = consumer.score(np.asarray(values, np.float64), type, **params)
    return np.nan_to_num(unit, nan=0.0)


def run_detector(
    spec: DetectorSpec,
    data_dir: Path,
    names: list[str],
    stop: StopRequest,
    options: TableOptions | None = None,
) -> dict[str, np.ndarray]:
    """Scores of one ``--detector`` on every data file (read with ``options``' columns)."""
    params = parse_json_object("--params", spec.params_text)
    options = options or TableOptions("value", "timestamp")
    out = {}
    for name in names:
        if stop.is_set():
            raise stop.interrupted()
        timestamps, values = _read(data_dir / name, options)
        try:
            file_params = resolve_params(spec.type, params, timestamps)
            out[name] = _detector_scores(values, spec.type, file_params)
        except UsageError as e:
            raise UsageError(f"--detector {spec.type} on {name}: {e}") from None
    return out


def _read(path: Path, options: TableOptions) -> tuple[np.ndarray, np.ndarray]:
    assert options.timestamp is not None
    return nab.read_series(path, options.column, options.timestamp, options.format)


# --------------------------------------------------------------------------- scoring


def score_all(args: argparse.Namespace, stop: StopRequest) -> tuple[list[str], list[Entry]]:
    """Every table row: the ``--detector`` runs, then each ``--results`` detector."""
    data_dir = Path(args.data)
    names = data_files(data_dir, args.format)
    specs: list[DetectorSpec] = args.detectors or []
    if not specs and not args.results:
        raise UsageError("give --detector and/or --results (nothing to score)")
    for spec in specs:
        parse_json_object("--params", spec.params_text)  # malformed JSON: fail before any work
    keys = corpus_keys(names, nab.load_windows(args.windows))
    nab.load_profiles(args.profiles)
    given = nab.load_all_thresholds(args.thresholds) if args.thresholds else {}
    options = table_options(args)
    timestamps = {keys[name]: _read(data_dir / name, options)[0] for name in names}
    runs = [(label, "detector", spec) for label, spec in zip(_labels(specs), specs, strict=True)]
    if args.results:
        runs += [(name, "results", name) for name in result_detectors(Path(args.results))]
    entries = []
    for label, source, what in runs:
        if source == "detector":
            by_name = run_detector(what, data_dir, names, stop, options)
            scores = {keys[name]: s for name, s in by_name.items()}
        else:
            scores = read_result_scores(Path(args.results), what, sorted(timestamps))
        # Detectors missing from --thresholds are optimised.
        thresholds = given.get(label if source == "results" else what.type)
        results = nab.evaluate(
            scores, data_dir, args.windows, args.profiles, thresholds, timestamps=timestamps
        )
        entries.append(Entry(label, source, "given" if thresholds else "optimised", results))
    return names, entries


def _labels(specs: list[DetectorSpec]) -> list[str]:
    """Row names: the detector and its params, numbered where the same one is repeated."""
    labels = [spec.label for spec in specs]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return out


# --------------------------------------------------------------------------- output


def as_json(names: list[str], entries: list[Entry]) -> dict[str, Any]:
    """Machine-readable scores: per detector and profile."""
    return {
        "files": names,
        "windows": _num_windows(entries),
        "detectors": [
            {
                "name": e.name,
                "source": e.source,
                "thresholds": e.thresholds,
                "profiles": {
                    pname: {
                        "score": None if math.isnan(r.normalized) else r.normalized,
                        "threshold": r.threshold,
                        "raw": r.raw,
                        "null": r.null,
                        "perfect": r.perfect,
                        "tp": sum(f.tp for f in r.files.values()),
                        "fp": sum(f.fp for f in r.files.values()),
                        "fn": sum(f.fn for f in r.files.values()),
                    }
                    for pname, r in e.results.items()
                },
            }
            for e in entries
        ],
    }


def _num_windows(entries: list[Entry]) -> int:
    if not entries:
        return 0
    first = next(iter(entries[0].results.values()))
    return round(first.perfect / first.profile.tp_weight) if first.profile.tp_weight else 0


def format_table(names: list[str], entries: list[Entry]) -> str:
    """The score table: normalised score and threshold per profile, one row per detector."""
    profiles = list(entries[0].results)
    width = max(len("detector"), *(len(e.name) for e in entries))
    cell = 24
    head = f"{'detector':<{width}}  " + "".join(f"{p:<{cell}}" for p in profiles) + "thresholds"
    sub = f"{'':<{width}}  " + "".join(f"{'score':>7} {'threshold':<{cell - 8}}" for _ in profiles)
    lines = [
        f"NAB scores on {len(names)} files, {_num_windows(entries)} windows "
        "(normalised: 0 = no detections, 100 = perfect)",
        head,
        sub.rstrip(),
    ]
    for e in entries:
        cells = "".join(
            f"{r.normalized:>7.2f} {r.threshold:<{cell - 8}.12g}" for r in e.results.values()
        )
        lines.append(f"{e.name:<{width}}  {cells}{e.thresholds}")
    return "\n".join(lines)


def _run(args: argparse.Namespace, stop: StopRequest) -> int:
    names, entries = score_all(args, stop)
    if args.json:
        print(json.dumps(as_json(names, entries), indent=1))
    else:
        print(format_table(names, entries))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation CLI on ``argv``; return the exit status."""
    return run_cli(PROG, build_parser(), _run, argv)


if __name__ == "__main__":
    exit_now(main())
