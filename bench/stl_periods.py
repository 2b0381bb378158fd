"""STL period sweep and MSTL, against statsmodels in the same run.

    python bench/stl_periods.py --n 10000000 --rounds 3 --out stl_periods.json

For each period: ``stl_decompose`` on ``--n`` samples with ``--inner_iter`` (default 2,
as the README's STL rows) on one thread and on all threads, and statsmodels' STL on
``max(--sm_n, 3 period)`` samples (1 thread); rates in samples/s and the ratio.  Then MSTL
at periods ``--mstl`` (default 24 168): ``mstl_decompose`` on ``--mstl_n`` samples vs
statsmodels' MSTL on ``--sm_n`` samples, both with their defaults.  Medians of
``--rounds``; one JSON object per line, all of them in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import median_time  # noqa: E402


def _series(n: int, periods: list[int], seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(n)
    t = np.arange(n)
    for k, p in enumerate(periods):
        x += (5.0 - k) * np.sin(2 * np.pi * (t % p) / p)
    return x


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=float, default=1e7)
    ap.add_argument("--sm_n", type=float, default=2e4)
    ap.add_argument("--mstl_n", type=float, default=1e6)
    ap.add_argument("--periods", type=int, nargs="+", default=[2, 7, 24, 200, 1440, 8736, 10080])
    ap.add_argument("--mstl", type=int, nargs="+", default=[24, 168])
    ap.add_argument("--inner_iter", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sm_rounds", type=int, default=1)
    ap.add_argument("--out", default="stl_periods.json")
    a = ap.parse_args(argv)

    import numba
    from statsmodels.tsa.seasonal import MSTL, STL

    from consumer.kernels.mstl import mstl_decompose
    from consumer.kernels.stl import stl_decompose

    results = []

    def record(**r):
        print(json.dumps(r), flush=True)
        results.append(r)

    n = int(a.n)
    ni = a.inner_iter
    for p in a.periods:
        xp = _series(n, [p])
        stl_decompose(xp[: 4 * p + 100], p, inner_iter=ni)  # load the kernels
        rates = {}
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            t = median_time(
                lambda xp=xp, p=p, k=threads: stl_decompose(xp, p, inner_iter=ni, threads=k),
                a.rounds,
            )
            rates[threads] = n / t
        m = max(int(a.sm_n), 3 * p)
        xs = xp[:m]
        t = median_time(
            lambda xs=xs, p=p: STL(xs, period=p).fit(inner_iter=ni, outer_iter=0), a.sm_rounds
        )
        sm = m / t
        record(
            what="stl_decompose",
            period=p,
            inner_iter=ni,
            samples=n,
            rate_1_thread=rates[1],
            rate_all_threads=rates[max(rates)],
            threads=max(rates),
            statsmodels_samples=m,
            statsmodels_rate=sm,
            ratio_1_thread=rates[1] / sm,
        )
    mn = int(a.mstl_n)
    xm = _series(mn, a.mstl)
    mstl_decompose(xm[:5000], a.mstl)
    t = median_time(lambda: mstl_decompose(xm, a.mstl), a.rounds)
    ours = mn / t
    sn = int(a.sm_n)
    xs = xm[:sn]
    t = median_time(lambda: MSTL(xs, periods=a.mstl).fit(), a.sm_rounds)
    sm = sn / t
    record(
        what="mstl_decompose",
        periods=a.mstl,
        samples=mn,
        rate_1_thread=ours,
        statsmodels_samples=sn,
        statsmodels_rate=sm,
        ratio_1_thread=ours / sm,
    )
    Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
