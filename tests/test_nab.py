"""NAB scoring (``consumer.nab``) and its command (``python -m consumer.evaluate``).

Checked against NAB's own published per-row scores and thresholds (the shared NAB
sample, skipped when absent), and against a loop-by-loop oracle on random corpora.
"""

from __future__ import annotations

import json
import math
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from oracles import naive_nab_raw_score

from consumer import nab

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
DETECTORS = [
    "ARTime",
    "contextOSE",
    "knncad",
    "numenta",
    "relativeEntropy",
    "twitterADVec",
    "windowedGaussian",
]
# Results that NAB 1.1's sweeping scorer wrote: S(t) is each row's term as if it were a
# detection, whatever the threshold.  The others come from NAB 1.0's scorer: S(t) holds
# the terms at the threshold (a window's on its first row, a false positive's on its row).
SWEEPER_LAYOUT = {"ARTime"}


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not (NAB_DIR / "combined_windows.json").is_file():
        pytest.skip(f"NAB sample not found at {NAB_DIR}")
    return NAB_DIR


@pytest.fixture(scope="module")
def windows(corpus: Path) -> dict:
    return nab.load_windows(corpus / "combined_windows.json")


@pytest.fixture(scope="module")
def profiles(corpus: Path) -> dict:
    return nab.load_profiles(corpus / "config" / "profiles.json")


def result_path(corpus: Path, detector: str, name: str) -> Path:
    category, file = name.split("/")
    return corpus / "results" / detector / category / f"{detector}_{file}"


def result_scores(corpus: Path, detector: str, names: list[str]) -> dict[str, np.ndarray]:
    return {name: nab.read_scores(result_path(corpus, detector, name))[1] for name in names}


# --------------------------------------------------------------------------- (a) NAB's S(t)


@pytest.mark.parametrize("detector", DETECTORS)
def test_row_scores_reproduce_nab_columns(corpus, windows, profiles, detector):
    thresholds = nab.load_thresholds(corpus / "config" / "thresholds.json", detector)
    columns = {"timestamp": "timestamp", "anomaly_score": "float"}
    columns.update({f"S(t)_{p}": "float" for p in profiles})
    for name in sorted(windows):
        published = nab.read_columns(result_path(corpus, detector, name), columns)
        timestamps, _ = nab.read_series(corpus / "data" / name)
        assert (timestamps == published["timestamp"]).all()
        layout = nab.file_layout(timestamps, windows[name])
        for pname, profile in profiles.items():
            expected = published[f"S(t)_{pname}"]
            scored = nab.score_file(
                layout, published["anomaly_score"], None, thresholds[pname], profile
            )
            assert scored.row_scores.sum() == pytest.approx(scored.raw, abs=1e-9)
            if detector in SWEEPER_LAYOUT:
                got = nab.row_terms(layout, None, profile)
            else:
                got = scored.row_scores
            worst = np.abs(got - expected).max()
            assert worst < 1e-9, f"{detector} {name} {pname}: S(t) off by {worst}"


def test_window_at_three_window_lengths_scores_as_nab(corpus, windows):
    """A false positive exactly 3 window lengths past a window is not yet -1 (NAB: p > 3)."""
    name = "realKnownCause/nyc_taxi.csv"
    timestamps, _ = nab.read_series(corpus / "data" / name)
    layout = nab.file_layout(timestamps, windows[name])
    rows = layout.window_rows[0]
    row = rows[-1] + 3 * (len(rows) - 1)
    assert layout.fp_value[row] == pytest.approx(2.0 / (1.0 + math.exp(15.0)) - 1.0, abs=1e-15)
    assert layout.fp_value[row + 1] == -1.0


# --------------------------------------------------------------------------- (b) optimiser


def test_optimised_thresholds_beat_nabs_and_match_published_subset_scores(corpus, windows):
    names = sorted(windows)
    data, labels = corpus / "data", corpus / "combined_windows.json"
    profiles_file = corpus / "config" / "profiles.json"
    table = {}
    for detector in DETECTORS:
        scores = result_scores(corpus, detector, names)
        given = nab.load_thresholds(corpus / "config" / "thresholds.json", detector)
        optimised = nab.evaluate(scores, data, labels, profiles_file)
        at_nab = nab.evaluate(scores, data, labels, profiles_file, given)
        for pname, result in optimised.items():
            assert result.raw >= at_nab[pname].raw - 1e-9, (detector, pname)
            assert result.null == -result.profile.fn_weight * 25
            assert result.perfect == result.profile.tp_weight * 25
        table[detector] = optimised["standard"].normalized
    # The figures for these 18 files (standard profile, optimised threshold).
    assert round(table["twitterADVec"], 1) == 33.4
    assert round(table["windowedGaussian"], 1) == 12.1
    assert round(table["numenta"], 1) == 61.3


def test_scoring_the_sample_is_fast(corpus, windows):
    names = sorted(windows)
    scores = result_scores(corpus, "numenta", names)  # the most distinct score values
    start = time.perf_counter()
    nab.evaluate(scores, corpus / "data", corpus / "combined_windows.json")
    assert time.perf_counter() - start < 5.0  # about 0.05 s here; generous for slow CI


# --------------------------------------------------------------------------- (c) oracle


def random_file(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list]:
    n = int(rng.integers(20, 260))
    timestamps = np.datetime64("2020-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(
        5, "m"
    ).astype("timedelta64[ns]")
    # Coarse scores so that many rows tie; a few NaNs, which never detect.
    scores = np.round(rng.random(n) ** 3, int(rng.integers(1, 4)))
    scores[rng.random(n) < 0.03] = np.nan
    cuts = np.sort(rng.choice(n, size=2 * int(rng.integers(0, 4)), replace=False))
    windows = [(timestamps[a], timestamps[b]) for a, b in cuts.reshape(-1, 2)]
    if rng.random() < 0.2:  # a one-row window
        i = int(rng.integers(0, n))
        if all(not (a <= timestamps[i] <= b) for a, b in windows):
            windows = sorted(windows + [(timestamps[i], timestamps[i])])
    return timestamps, scores, windows


def oracle_raw(files, threshold: float, profile: nab.Profile) -> float:
    return sum(
        naive_nab_raw_score(
            list(t),
            list(s),
            w,
            threshold,
            profile.tp_weight,
            profile.fp_weight,
            profile.fn_weight,
        )
        for t, s, w in files
    )


@pytest.mark.parametrize("seed", range(12))
def test_score_file_matches_naive_oracle(seed):
    rng = np.random.default_rng(seed)
    profile = list(nab.DEFAULT_PROFILES.values())[seed % 3]
    for _ in range(5):
        timestamps, scores, windows = random_file(rng)
        for threshold in [*rng.random(4), 0.0, 1.0, 1.1]:
            got = nab.score_file(timestamps, scores, windows, float(threshold), profile)
            want = oracle_raw([(timestamps, scores, windows)], float(threshold), profile)
            assert got.raw == pytest.approx(want, abs=1e-9)
            assert got.tp + got.fn == len(windows)


@pytest.mark.parametrize("seed", range(6))
def test_sweep_matches_naive_oracle_at_its_thresholds(seed):
    rng = np.random.default_rng(100 + seed)
    files = [random_file(rng) for _ in range(3)]
    layouts = [nab.file_layout(t, w) for t, _, w in files]
    curves = nab.sweep(layouts, [s for _, s, _ in files])
    for profile in nab.DEFAULT_PROFILES.values():
        raw = curves.raw(profile)
        some = rng.choice(len(raw), size=min(len(raw), 30), replace=False)
        checked = np.unique(np.concatenate([some, [0, len(raw) - 1, int(np.argmax(raw))]]))
        want = [oracle_raw(files, float(curves.thresholds[j]), profile) for j in checked]
        np.testing.assert_allclose(raw[checked], want, rtol=0, atol=1e-9)
        # No threshold in between, below or above the candidates does better.
        probes = np.concatenate([rng.random(20), [-1.0, 2.0]])
        assert max(oracle_raw(files, float(t), profile) for t in probes) <= raw.max() + 1e-9
        best = nab.best_threshold(curves, profile)
        assert oracle_raw(files, best, profile) == pytest.approx(raw.max(), abs=1e-9)


def test_probation_period_is_capped_as_nab_caps_it():
    assert nab.probation_rows(4032) == 604
    assert nab.probation_rows(10320) == 750
    assert nab.probation_rows(10) == 1
    assert nab.probation_rows(0) == 0


def test_detection_in_probation_or_after_first_does_not_count():
    t = np.datetime64("2020-01-01", "ns") + np.arange(100) * np.timedelta64(60, "s")
    windows = [(t[40], t[59])]
    profile = nab.DEFAULT_PROFILES["standard"]
    scores = np.zeros(100)
    scores[[5, 50, 55]] = 1.0  # row 5 is probationary (15 rows)
    got = nab.score_file(t, scores, windows, 0.5, profile)
    assert (got.tp, got.fp, got.fn) == (1, 0, 0)
    expected_tp = nab.scaled_sigmoid(-(59 - 50 + 1) / 20) / nab.MAX_TP
    assert got.raw == pytest.approx(float(expected_tp))
    scores[40] = 1.0  # the window's first row earns exactly tpWeight
    assert nab.score_file(t, scores, windows, 0.5, profile).raw == pytest.approx(1.0)


# --------------------------------------------------------------------------- (d) the command


def test_cli_scores_results_side_by_side(corpus, run_module):
    rc, out, err = run_module(
        "consumer.evaluate",
        "--data",
        corpus / "data",
        "--windows",
        corpus / "combined_windows.json",
        "--results",
        corpus / "results",
    )
    assert rc == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[3:]}
    assert set(rows) == set(DETECTORS)
    assert rows["twitterADVec"][1] == "33.42"
    assert rows["numenta"][1] == "61.30"
    assert "18 files, 25 windows" in out


def test_cli_json_at_nab_thresholds(corpus, run_module):
    rc, out, err = run_module(
        "consumer.evaluate",
        "--data",
        corpus / "data",
        "--windows",
        corpus / "combined_windows.json",
        "--profiles",
        corpus / "config" / "profiles.json",
        "--results",
        corpus / "results",
        "--thresholds",
        corpus / "config" / "thresholds.json",
        "--json",
    )
    assert rc == 0, err
    report = json.loads(out)
    numenta = next(d for d in report["detectors"] if d["name"] == "numenta")
    assert numenta["thresholds"] == "given"
    assert numenta["profiles"]["standard"]["threshold"] == 0.5421876907348634
    assert report["windows"] == 25 and len(report["files"]) == 18


def test_cli_runs_a_detector(corpus, windows, run_module, tmp_path):
    names = ["realKnownCause/nyc_taxi.csv", "artificialWithAnomaly/art_daily_jumpsup.csv"]
    data = tmp_path / "data"
    for name in names:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes((corpus / "data" / name).read_bytes())
    labels = json.loads((corpus / "combined_windows.json").read_text())
    (tmp_path / "windows.json").write_text(json.dumps({n: labels[n] for n in names}))
    rc, out, err = run_module(
        "consumer.evaluate",
        "--data",
        data,
        "--windows",
        tmp_path / "windows.json",
        "--detector",
        "zscore",
        "--params",
        '{"window": 200}',
        "--detector",
        "zscore",
        "--json",
    )
    assert rc == 0, err
    report = json.loads(out)
    assert [d["name"] for d in report["detectors"]] == ['zscore {"window": 200}', "zscore"]
    for d in report["detectors"]:
        assert set(d["profiles"]) == set(nab.DEFAULT_PROFILES)
        assert all(math.isfinite(p["score"]) for p in d["profiles"].values())


def test_period_durations_become_samples_at_the_file_cadence():
    from consumer.evaluate import resolve_params

    five_min = np.datetime64("2020-01-01", "ns") + np.arange(10) * np.timedelta64(300, "s")
    assert resolve_params("stl", {}, five_min)["period"] == 288
    assert resolve_params("stl", {"period": "30min"}, five_min)["period"] == 6
    assert resolve_params("stl", {"period": "1h"}, five_min)["period"] == 12
    assert resolve_params("stl", {"period": 7}, five_min)["period"] == 7
    assert "period" not in resolve_params("zscore", {"window": 5}, five_min)


def bad_invocations(corpus: Path, tmp_path: Path) -> dict[str, list[object]]:
    data, labels = corpus / "data", corpus / "combined_windows.json"
    no_columns = tmp_path / "bad" / "realKnownCause"
    no_columns.mkdir(parents=True)
    (no_columns / "nyc_taxi.csv").write_text("time,x\n2014-07-01 00:00:00,1\n")
    return {
        "missing data dir": ["--data", tmp_path / "nope", "--windows", labels, "--results", data],
        "CSV without columns": [
            "--data",
            tmp_path / "bad",
            "--windows",
            labels,
            "--detector",
            "zscore",
        ],
        "unknown detector": ["--data", data, "--windows", labels, "--detector", "nosuch"],
        "malformed params": [
            "--data",
            data,
            "--windows",
            labels,
            "--detector",
            "zscore",
            "--params",
            "{window: 3",
        ],
        "bad period": [
            "--data",
            data,
            "--windows",
            labels,
            "--detector",
            "stl",
            "--params",
            '{"period": "1 fortnight"}',
        ],
        "params without detector": ["--data", data, "--windows", labels, "--params", "{}"],
        "nothing to score": ["--data", data, "--windows", labels],
        "missing windows": ["--data", data, "--windows", tmp_path / "no.json", "--results", data],
        "missing results dir": ["--data", data, "--windows", labels, "--results", tmp_path / "x"],
        "missing thresholds": [
            "--data",
            data,
            "--windows",
            labels,
            "--results",
            corpus / "results",
            "--thresholds",
            tmp_path / "no.json",
        ],
    }


@pytest.fixture
def evaluate_main(capsys):
    """``evaluate_main(*args)`` -> (status, stderr) of ``consumer.evaluate.main`` in-process.

    Restores the signal handlers that the command installs.
    """
    from consumer.evaluate import main

    def run(*args: object) -> tuple[int, str]:
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            status = main([str(a) for a in args])
        except SystemExit as e:  # argparse errors
            status = e.code
        finally:
            for s, handler in saved.items():
                signal.signal(s, handler)
        return status, capsys.readouterr().err

    return run


def test_cli_bad_inputs_exit_2_with_one_line(corpus, evaluate_main, tmp_path):
    for what, args in bad_invocations(corpus, tmp_path).items():
        status, err = evaluate_main(*args)
        assert status == 2, f"{what}: exit {status}, stderr {err!r}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("consumer.evaluate"), (what, err)


@pytest.mark.parametrize("what", ["missing data dir", "unknown detector"])
def test_cli_bad_input_in_a_real_process(corpus, run_module, tmp_path, what):
    rc, out, err = run_module("consumer.evaluate", *bad_invocations(corpus, tmp_path)[what])
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- (e) every input format

EVAL_FILES = ["realKnownCause/nyc_taxi.csv", "artificialWithAnomaly/art_daily_jumpsup.csv"]


def _copy_as(fmt: str, corpus: Path, root: Path) -> Path:
    """The NAB files of ``EVAL_FILES`` copied into ``root`` as ``fmt`` (same rows)."""
    import pyarrow.csv as pacsv
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    from consumer.inputs import TableOptions, convert

    for name in EVAL_FILES:
        src = corpus / "data" / name
        out = (root / name).with_suffix("")
        out.parent.mkdir(parents=True, exist_ok=True)
        table = pacsv.read_csv(src)
        if fmt == "csv":
            out.with_suffix(".csv").write_bytes(src.read_bytes())
        elif fmt == "parquet":
            pq.write_table(table, out.with_suffix(".parquet"), row_group_size=3000)
        elif fmt == "dataset":  # a folder of part files
            (folder := out.with_suffix(".parquet")).mkdir()
            half = len(table) // 2
            pq.write_table(table.slice(0, half), folder / "part-0.parquet")
            pq.write_table(table.slice(half), folder / "part-1.parquet")
        elif fmt == "feather":
            feather.write_feather(table, out.with_suffix(".feather"), chunksize=1000)
        else:  # the consumer's series: these two files have no gaps, so samples == rows
            conv = convert(src, out.with_suffix(".series.npy"), TableOptions("value", "timestamp"))
            assert conv.samples == conv.rows == len(table)
    return root


@pytest.fixture(scope="module")
def csv_report(corpus, tmp_path_factory):
    return _eval_json(corpus, _copy_as("csv", corpus, tmp_path_factory.mktemp("csv")))


def _eval_json(corpus: Path, data: Path, *extra: str) -> dict:
    import contextlib
    import io

    from consumer.evaluate import main

    labels = json.loads((corpus / "combined_windows.json").read_text())
    windows = data.parent / f"{data.name}.windows.json"
    windows.write_text(json.dumps({n: labels[n] for n in EVAL_FILES}))
    args = ["--data", data, "--windows", windows, "--detector", "zscore", "--detector"]
    args += ["likelihood", "--results", corpus / "results", "--json", *extra]
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            assert main([str(a) for a in args]) == 0
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    return json.loads(out.getvalue())


@pytest.mark.parametrize("fmt", ["parquet", "dataset", "feather", "npy"])
def test_evaluate_takes_every_input_format_with_the_csv_scores(corpus, csv_report, tmp_path, fmt):
    report = _eval_json(corpus, _copy_as(fmt, corpus, tmp_path / "data"))
    suffix = {"parquet": ".parquet", "dataset": ".parquet", "feather": ".feather"}
    want = [str(Path(n).with_suffix(suffix.get(fmt, ".series.npy"))) for n in EVAL_FILES]
    assert report["files"] == sorted(want)
    assert report["detectors"] == csv_report["detectors"]  # every score, threshold, count
    assert report["windows"] == csv_report["windows"] == 6  # 5 in nyc_taxi, 1 in jumpsup
    names = [d["name"] for d in report["detectors"]]
    assert names[:2] == ["zscore", "likelihood"] and "numenta" in names


def test_evaluate_data_folder_rules(corpus, csv_report, tmp_path, evaluate_main):
    import pyarrow.parquet as pq

    data = _copy_as("csv", corpus, tmp_path / "data")
    _copy_as("parquet", corpus, data)
    labels = corpus / "combined_windows.json"
    status, err = evaluate_main("--data", data, "--windows", labels, "--detector", "zscore")
    assert status == 2 and "both hold 'artificialWithAnomaly/art_daily_jumpsup.csv'" in err, err
    report = _eval_json(corpus, data, "--format", "parquet")
    assert report["files"] == sorted(str(Path(n).with_suffix(".parquet")) for n in EVAL_FILES)
    assert report["detectors"] == csv_report["detectors"]
    # Other column names, given as for the consumer.
    for name in report["files"]:
        t = pq.read_table(data / name)
        pq.write_table(t.rename_columns(["ts", "v"]), data / name)
    status, err = evaluate_main(
        "--data", data, "--windows", labels, "--format", "parquet", "--detector", "zscore"
    )
    assert status == 2 and "no column 'value'" in err, err
    report = _eval_json(corpus, data, "--format", "parquet", "--column", "v", "--timestamp", "ts")
    assert report["detectors"] == csv_report["detectors"]
    # An .npy without a time grid cannot be placed in NAB's windows.
    np.save(data / "realKnownCause" / "nyc_taxi.npy", np.arange(10.0))
    args = ["--data", data, "--windows", labels, "--format", "npy", "--detector", "zscore"]
    status, err = evaluate_main(*args)
    assert status == 2 and "nyc_taxi.npy: no timestamps" in err, err
