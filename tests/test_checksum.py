"""shared.checksum.crc32 against zlib.crc32 (the reference every reader of the format has)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.checksum import FOLDING, crc32


def test_reports_which_kernel_runs():
    # On x86-64 with PCLMULQDQ (every CI and development machine we use) the folding
    # kernel must be the one under test, or the tests below would only test zlib.
    if platform.machine() in ("x86_64", "AMD64") and not os.environ.get("NUMBA_CPU_NAME"):
        import llvmlite.binding as llvm

        assert FOLDING == ("+pclmul" in llvm.get_host_cpu_features().flatten().split(","))


@pytest.mark.parametrize(
    ("cpu", "features", "folding"),
    [
        ("generic", "", False),  # a portable numba target: no PCLMULQDQ, so zlib
        ("generic", "+sse2,+pclmul", True),
    ],
)
def test_pinned_numba_target(cpu, features, folding, tmp_path):
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("x86-64 only")
    code = (
        "import zlib, numpy as np; from shared.checksum import FOLDING, crc32; "
        "x = np.random.default_rng(1).standard_normal(10_000); "
        "print(FOLDING, crc32(x) == zlib.crc32(x), crc32(x[1:], 7) == zlib.crc32(x[1:], 7))"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ,
        NUMBA_CPU_NAME=cpu,
        NUMBA_CPU_FEATURES=features,
        NUMBA_CACHE_DIR=str(tmp_path),
        PYTHONPATH=root,
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(folding), "True", "True"]


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
