"""MSTL: agreement with statsmodels' MSTL, missing values, streaming windows, arguments."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from statsmodels.tsa.seasonal import MSTL

import consumer
from consumer.kernels.mstl import mstl_alignment, mstl_decompose, mstl_radius
from shared.params import ParamError


def _series(n: int, periods, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = rng.standard_normal(n) + 0.03 * np.cumsum(rng.standard_normal(n)) + 20.0
    for k, p in enumerate(periods):
        x += (3.0 - k) * np.sin(2 * np.pi * t / p + k)
    return x


GRID = [
    (2_000, [7, 24], {}),
    (5_000, [24, 168], {}),
    (3_000, [168, 24, 12], {}),  # unsorted, three periods
    (4_000, [12, 50], {"windows": [9, 13], "iterate": 3}),
    (3_000, [7, 30], {"stl_kwargs": {"robust": True, "outer_iter": 2}}),
    (6_000, [24, 168, 1440], {"stl_kwargs": {"inner_iter": 2}}),  # a long period
    (1_500, [24], {}),  # one period: iterate is 1
    (3_000, [12, 50], {"stl_kwargs": {"seasonal_deg": 0, "trend_jump": 3, "low_pass_jump": 2}}),
]


@pytest.mark.parametrize(("n", "periods", "kw"), GRID)
def test_matches_statsmodels(n, periods, kw):
    x = _series(n, periods, seed=n)
    ref = MSTL(x, periods=periods, **copy.deepcopy(kw)).fit()  # statsmodels pops stl_kwargs
    got = mstl_decompose(x, periods, **kw)
    tol = 1e-8 * (1 + np.abs(x).max())
    for a, b in zip(got[:3], (ref.seasonal, ref.trend, ref.resid), strict=True):
        b = np.asarray(b)
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= tol
    w = np.asarray(ref.weights)
    assert (got.weights is None and np.all(w == 1)) or np.abs(got.weights - w).max() <= 1e-8


def test_exported_lazily():
    assert consumer.mstl_decompose is mstl_decompose


def test_missing_values_and_threads():
    x = _series(20_000, [24, 168], seed=1)
    x[np.random.default_rng(2).choice(len(x), 500, replace=False)] = np.nan
    x[5_000:5_500] = np.nan
    a = mstl_decompose(x, [24, 168])
    assert np.isfinite(a.seasonal).all() and np.isfinite(a.trend).all()
    assert np.array_equal(np.isnan(a.resid), np.isnan(x))
    b = mstl_decompose(x, [24, 168], threads=2)
    for u, v in zip(a[:3], b[:3], strict=True):
        assert np.array_equal(u, v, equal_nan=True)


def test_radius_windows_equal_the_whole_series():
    """Windows extending mstl_radius beyond [a, b) equal the whole series there, bit for bit."""
    periods, kw = [12, 30], {"inner_iter": 2}
    n = 12_000
    x = _series(n, periods, seed=4)
    whole = mstl_decompose(x, periods, stl_kwargs=kw)
    r = mstl_radius(periods, stl_kwargs=kw)
    assert mstl_alignment(periods, kw) == 1
    a, b = 4_000, 8_000
    lo, hi = a - r, b + r
    part = mstl_decompose(x[lo:hi], periods, stl_kwargs=kw, offset=lo, total_length=n)
    for p, w in zip(part[:3], whole[:3], strict=True):
        assert np.array_equal(p[a - lo : b - lo], w[a:b])


@pytest.mark.parametrize(
    ("args", "name", "message"),
    [
        ({"periods": [1, 24]}, "periods", "integer >= 2"),
        ({"periods": [24.5, 7]}, "periods", "integer >= 2"),
        ({"periods": [24, 24]}, "periods", "distinct"),
        ({"periods": [24, 600]}, "periods", "half the series"),
        ({"periods": []}, "periods", "integer or a list"),
        ({"periods": [7, 24], "windows": [7]}, "windows", "one window per period"),
        ({"periods": [7, 24], "windows": [7, 8]}, "windows", "odd integer"),
        ({"periods": [7, 24], "iterate": 0}, "iterate", ">= 1"),
        ({"periods": [7, 24], "stl_kwargs": {"bogus": 1}}, "stl_kwargs", "unknown key"),
        ({"periods": [7, 24], "stl_kwargs": {"trend_deg": 2}}, "trend_deg", "0 or 1"),
    ],
)
def test_bad_arguments(args, name, message):
    with pytest.raises(ParamError, match=message) as info:
        mstl_decompose(_series(1000, [7], 0), **args)
    assert info.value.name == name and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_entirely_missing_series():
    with pytest.raises(ParamError, match="entirely missing"):
        mstl_decompose(np.full(1000, np.nan), [7, 24])
