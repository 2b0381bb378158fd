"""MSTL: STL with several seasonal periods (Bandara, Hyndman & Bergmeir 2021).

``mstl_decompose`` follows ``statsmodels.tsa.seasonal.MSTL(...).fit()`` (without
the Box-Cox transform): periods in increasing order, each extracted in turn by
:func:`consumer.kernels.stl.stl_decompose` from the series with the other
seasonal components removed, the whole round repeated ``iterate`` times; the
trend and robustness weights are those of the last STL fit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from consumer.kernels.stl import (
    _AT_LEAST_0,
    _PERIOD,
    _SEASONAL,
    _check,
    as_series,
    stl_alignment,
    stl_decompose,
    stl_radius,
)
from shared.params import ParamError, ParamTypeError

__all__ = ["MSTLResult", "mstl_alignment", "mstl_decompose", "mstl_periods", "mstl_radius"]

# stl_decompose's arguments that stl_kwargs may set (as statsmodels' STL takes them).
_STL_KEYS = (
    "trend",
    "low_pass",
    "seasonal_deg",
    "trend_deg",
    "low_pass_deg",
    "robust",
    "seasonal_jump",
    "trend_jump",
    "low_pass_jump",
    "inner_iter",
    "outer_iter",
)


class MSTLResult(NamedTuple):
    """``seasonal`` (``(n, k)`` for ``k`` periods in increasing order; ``(n,)`` for one),
    ``trend``, ``resid`` and ``weights`` (the last STL fit's robustness weights, or None)."""

    seasonal: np.ndarray
    trend: np.ndarray
    resid: np.ndarray
    weights: np.ndarray | None


def mstl_periods(
    periods: Any, windows: Any = None, n: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validated ``(periods, windows)``, sorted by period; windows default to ``7 + 4 i``.

    ``periods``: an integer >= 2 or a list of distinct ones (each shorter than
    half the series when ``n`` is given); ``windows``: None, an odd integer >= 3
    or one per period.
    """
    if isinstance(periods, (int, np.integer)) and not isinstance(periods, bool):
        periods = [periods]
    if not isinstance(periods, Sequence) or isinstance(periods, str) or not periods:
        raise ParamTypeError(
            "periods", f"must be an integer or a list of integers, not {periods!r}"
        )
    ps = tuple(_check(_PERIOD, "periods", p) for p in periods)
    if len(set(ps)) != len(ps):
        dup = next(p for p in ps if ps.count(p) > 1)
        raise ParamError("periods", f"must be distinct, got {dup} twice in {list(ps)}")
    if n is not None:
        for p in ps:
            if p >= n / 2:
                raise ParamError(
                    "periods",
                    f"must each be shorter than half the series ({n} samples), got {p}",
                )
    if windows is None:
        ws = tuple(7 + 4 * i for i in range(1, len(ps) + 1))
        return tuple(sorted(ps)), ws
    if isinstance(windows, (int, np.integer)) and not isinstance(windows, bool):
        windows = [windows]
    if not isinstance(windows, Sequence) or isinstance(windows, str):
        raise ParamTypeError(
            "windows", f"must be an integer or a list of integers, not {windows!r}"
        )
    ws = tuple(_check(_SEASONAL, "windows", w) for w in windows)
    if len(ws) != len(ps):
        raise ParamError("windows", f"must give one window per period ({len(ps)}), got {len(ws)}")
    pairs = sorted(zip(ps, ws, strict=True))
    return tuple(p for p, _ in pairs), tuple(w for _, w in pairs)


def _stl_kwargs(stl_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    kw = dict(stl_kwargs or {})
    for key in ("endog", "period", "seasonal"):  # overridden per period, as statsmodels does
        kw.pop(key, None)
    unknown = sorted(set(kw) - set(_STL_KEYS))
    if unknown:
        raise ParamError(
            "stl_kwargs", f"has an unknown key {unknown[0]!r} (allowed: {', '.join(_STL_KEYS)})"
        )
    return kw


def mstl_decompose(
    x: np.ndarray,
    periods: int | Sequence[int],
    windows: int | Sequence[int] | None = None,
    iterate: int = 2,
    stl_kwargs: Mapping[str, Any] | None = None,
    *,
    threads: int | None = 1,
    offset: int = 0,
    total_length: int | None = None,
) -> MSTLResult:
    """MSTL decomposition of ``x`` into seasonal components, trend and remainder.

    Parameters, defaults and results are those of ``statsmodels.tsa.seasonal.
    MSTL(x, periods=periods, windows=windows, iterate=iterate,
    stl_kwargs=stl_kwargs).fit()`` without Box-Cox: ``windows`` default to
    ``7 + 4 i`` (``i = 1..k``) after sorting the periods, ``iterate`` is 1 for a
    single period, ``stl_kwargs`` are :func:`stl_decompose`'s arguments
    (``inner_iter``/``outer_iter`` included; ``period`` and ``seasonal`` are
    ignored).  Missing values (NaN) follow :func:`stl_decompose`'s rule at
    every stage; ``resid`` is NaN there.  ``threads``, ``offset`` and
    ``total_length`` are passed to every STL fit; non-robust windows equal
    the whole series' result beyond :func:`mstl_radius`.

    Raises :class:`shared.params.ParamError` (a ``ValueError``) naming the
    argument: a period < 2 or not an integer, duplicate periods, a period of at
    least half the series (statsmodels drops those with a warning), windows
    not odd or not one per period, ``iterate`` < 1, unknown ``stl_kwargs``,
    and every argument :func:`stl_decompose` refuses.
    """
    y = as_series(x)
    n = y.shape[0]
    ps, ws = mstl_periods(periods, windows, n)
    it = _check(_AT_LEAST_0, "iterate", iterate)
    if it < 1:
        raise ParamError("iterate", f"must be an integer >= 1, got {iterate!r}")
    if len(ps) == 1:
        it = 1
    kw = _stl_kwargs(stl_kwargs)
    k = len(ps)
    seasonal = np.zeros((k, n))
    deseas = y
    res = None
    for _ in range(it):
        for i in range(k):
            deseas = deseas + seasonal[i]
            res = stl_decompose(
                deseas,
                ps[i],
                ws[i],
                **kw,
                threads=threads,
                offset=offset,
                total_length=total_length,
            )
            seasonal[i] = res.seasonal
            deseas = deseas - seasonal[i]
    assert res is not None
    out = np.ascontiguousarray(seasonal.T)
    return MSTLResult(out[:, 0] if k == 1 else out, res.trend, deseas - res.trend, res.weights)


def mstl_radius(
    periods: int | Sequence[int],
    windows: int | Sequence[int] | None = None,
    iterate: int = 2,
    stl_kwargs: Mapping[str, Any] | None = None,
) -> int:
    """Dependency radius of non-robust MSTL: ``iterate * sum_i stl_radius(p_i, w_i, ...)``.

    Each STL fit maps an input that is clean (equal to the whole series' one)
    at depth ``e`` to outputs clean at depth ``e + R_i`` (:func:`stl_radius`),
    and the fits run one after the other, each on the previous fits' output,
    so the depths add up over the ``iterate * k`` fits (``iterate`` is 1 for
    one period).
    """
    ps, ws = mstl_periods(periods, windows)
    kw = _stl_kwargs(stl_kwargs)
    it = 1 if len(ps) == 1 else _check(_AT_LEAST_0, "iterate", iterate)
    robust = bool(kw.get("robust", False))
    ni = kw.get("inner_iter")
    ni = (2 if robust else 5) if ni is None else ni
    total = 0
    for p, w in zip(ps, ws, strict=True):
        total += stl_radius(
            p,
            w,
            kw.get("trend"),
            kw.get("low_pass"),
            kw.get("seasonal_jump", 1),
            kw.get("trend_jump", 1),
            kw.get("low_pass_jump", 1),
            inner_iter=ni,
        )
    return it * total


def mstl_alignment(
    periods: int | Sequence[int], stl_kwargs: Mapping[str, Any] | None = None
) -> int:
    """Window starts that are multiples of this keep every STL fit's evaluation grids."""
    ps, _ = mstl_periods(periods)
    kw = _stl_kwargs(stl_kwargs)
    a = 1
    for p in ps:
        a = math.lcm(
            a,
            stl_alignment(
                p, kw.get("seasonal_jump", 1), kw.get("trend_jump", 1), kw.get("low_pass_jump", 1)
            ),
        )
    return a
