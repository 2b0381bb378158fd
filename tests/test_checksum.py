"""shared.checksum.crc32 against zlib.crc32 (the reference every reader of the format has)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.checksum import FOLDING, crc32


def test_reports_which_kernel_runs():
    # On x86-64 with PCLMULQDQ (every CI and development machine we use) the folding
    # kernel must be the one under test, or the tests below would only test zlib.
    import platform

    if platform.machine() in ("x86_64", "AMD64"):
        import llvmlite.binding as llvm

        assert FOLDING == ("+pclmul" in llvm.get_host_cpu_features().flatten().split(","))


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
    assert crc32(memoryview(x)) == zlib.crc32(x)
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
