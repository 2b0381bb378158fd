"""NAB generalisation check: leave-one-category-out thresholds, for our detectors and NAB's.

    python bench/nab_loco.py --nab ../shared/data/nab --detector likelihood zscore

For each category (the first folder of a file's path), the threshold of each profile is
optimised on the *other* categories' files and the held-out category is scored at it; the
raw scores are summed over categories and normalised over all files.  A threshold tuned on
the whole corpus flatters a detector; this one was never chosen on the files it scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from consumer import nab
from consumer.evaluate import DetectorSpec, data_files, read_result_scores, run_detector
from shared.errors import StopRequest


def loco(scores: dict[str, object], data: Path, windows: Path, profiles: Path) -> dict:
    """Normalised score per profile with leave-one-category-out thresholds."""
    categories = sorted({name.split("/")[0] for name in scores})
    raw: dict[str, float] = {}
    bounds: dict[str, tuple[float, float]] = {}
    for held_out in categories:
        train = {k: v for k, v in scores.items() if not k.startswith(held_out + "/")}
        test = {k: v for k, v in scores.items() if k.startswith(held_out + "/")}
        chosen = nab.evaluate(train, data, windows, profiles)
        given = {p: r.threshold for p, r in chosen.items()}
        for p, r in nab.evaluate(test, data, windows, profiles, thresholds=given).items():
            raw[p] = raw.get(p, 0.0) + r.raw
    for p, r in nab.evaluate(scores, data, windows, profiles).items():
        bounds[p] = (r.null, r.perfect)
    return {p: round(nab.normalized_score(raw[p], *bounds[p]), 2) for p in raw}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nab", required=True, help="folder with data/, combined_windows.json ...")
    ap.add_argument("--detector", nargs="*", default=["likelihood"])
    ap.add_argument("--published", nargs="*", default=["numenta", "twitterADVec"])
    args = ap.parse_args(argv)
    root = Path(args.nab)
    data, windows = root / "data", root / "combined_windows.json"
    profiles = root / "config" / "profiles.json"
    names = data_files(data)
    for det in args.detector:
        scores = run_detector(DetectorSpec(det), data, names, StopRequest())
        print(json.dumps({"detector": det, "loco": loco(scores, data, windows, profiles)}))
    for det in args.published:
        scores = read_result_scores(root / "results", det, names)
        print(json.dumps({"detector": det, "loco": loco(scores, data, windows, profiles)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
