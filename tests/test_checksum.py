"""shared.checksum.crc32 against zlib.crc32 (the reference every reader of the format has)."""

from __future__ import annotations

import builtins
import importlib
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shared.checksum
from shared.checksum import BACKEND, crc32, zlib_crc32


def test_uses_isal_when_installed():
    # isal is a dependency: the tests below must exercise it, not the fallback.
    pytest.importorskip("isal")
    assert BACKEND == "isal"


@pytest.mark.parametrize("offset", range(9))
def test_every_length_offset_and_start_value(offset):
    buf = np.random.default_rng(offset).integers(0, 256, 1200, dtype=np.uint8)
    for n in [*range(0, 300), 511, 512, 513, 1023, 1024, 1025, 1191]:
        part = buf[offset : offset + n]  # unaligned views too
        for value in (0, 1, 0x7FFFFFFF, 0xDEADBEEF, 0xFFFFFFFF):
            assert crc32(part, value) == zlib.crc32(part, value), (offset, n, value)


def test_array_types_and_incremental_use():
    rng = np.random.default_rng(7)
    x = rng.standard_normal(65536 * 3 + 5)
    assert crc32(x) == zlib.crc32(x)
    assert crc32(x.astype(np.float32)) == zlib.crc32(x.astype(np.float32))
    assert crc32(x.tobytes()) == zlib.crc32(x.tobytes())
    assert crc32(bytearray(x.tobytes())) == zlib.crc32(x.tobytes())
    assert crc32(memoryview(x)) == zlib.crc32(x)
    assert crc32(x[:12].reshape(3, 4)) == zlib.crc32(x[:12])
    # Not C-contiguous: the bytes of its C-order copy.
    assert crc32(x[::2]) == zlib.crc32(np.ascontiguousarray(x[::2]))
    # Block by block, as the producer accumulates a chunk's checksum.
    value = 0
    for a in range(0, len(x), 65536):
        value = crc32(x[a : a + 65536], value)
    assert value == zlib.crc32(x)
    # A single flipped bit anywhere changes it.
    y = x.copy()
    y.view(np.uint8)[123_457] ^= 0x10
    assert crc32(y) != crc32(x)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.integers(0, 0xFFFFFFFF))
def test_matches_zlib_on_arbitrary_bytes(data, value):
    assert crc32(data, value) == zlib.crc32(data, value)


def test_fallback_without_isal(monkeypatch):
    # The module as imported where isal is missing: zlib, same values.
    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):
        if name == "isal" or name.startswith("isal."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    for name in [m for m in sys.modules if m == "isal" or m.startswith("isal.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "shared.checksum")
    try:
        fallback = importlib.import_module("shared.checksum")
        assert fallback.BACKEND == "zlib"
        x = np.random.default_rng(3).standard_normal(70_000)
        for value in (0, 1, 0xDEADBEEF, 0xFFFFFFFF):
            assert fallback.crc32(x, value) == zlib.crc32(x, value)
            assert fallback.crc32(x[1:].view(np.uint8)[3:], value) == zlib.crc32(
                x[1:].view(np.uint8)[3:], value
            )
        assert fallback.crc32(x[::3], 5) == zlib.crc32(np.ascontiguousarray(x[::3]), 5)
    finally:
        monkeypatch.undo()
        sys.modules["shared.checksum"] = shared.checksum


def test_fallback_function_matches_zlib():
    data = np.random.default_rng(11).integers(0, 256, 5000, dtype=np.uint8)
    for value in (0, 1, 0x7FFFFFFF, 0xFFFFFFFF):
        assert zlib_crc32(data, value) == zlib.crc32(data, value)
        assert zlib_crc32(data[7:], value) == crc32(data[7:], value)


def _python_runs_during_a_call(big: np.ndarray) -> bool:
    """Whether this thread ran Python code in the middle half of a crc32 call on another."""
    span: list[float] = []
    done = threading.Event()

    def work():
        t0 = time.perf_counter()
        crc32(big)
        span.extend((t0, time.perf_counter()))
        done.set()

    stamps = []
    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    t.join()
    t0, t1 = span
    lo, hi = t0 + (t1 - t0) / 4, t1 - (t1 - t0) / 4
    return any(lo < s < hi for s in stamps)


def test_releases_the_gil():
    # The producer's writer threads checksum in parallel.  A call that kept the
    # GIL would let no other Python thread run until it returned.
    big = np.ones(1 << 25)  # 256 MiB: tens of milliseconds
    assert any(_python_runs_during_a_call(big) for _ in range(3))
