"""Start-up of the command-line programs: the first-run compile notice and what they load.

An empty numba cache directory (``NUMBA_CACHE_DIR``) makes the first run
compile; a second run over the same directory finds every kernel cached.  The
producer compiles the fewest numba kernels (a few seconds), so the default suite
checks numba's notice with it.  The default z-score consumer imports no numba at
all: its kernel is native, built once (in about a second) into the same directory.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

import consumer
from consumer.kernels import zscore_native
from shared.jit import compile_notice, is_compile_notice

PARAMS = {"window": 200, "threshold": 4.0}

# Run the consumer CLI in-process in a child and report which heavy modules it loaded.
PROBE = """
import json, sys
from consumer.__main__ import main
rc = main(sys.argv[1:])
heavy = ["numba", "scipy.linalg", "consumer.kernels.stl", "psutil", "pandas"]
print(json.dumps({"rc": rc, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def notices(err: str) -> list[str]:
    return [line for line in err.splitlines() if is_compile_notice(line)]


def test_cached_consumer_run_loads_no_numba_set_up_and_says_nothing(run_module, tmp_path):
    x = np.random.default_rng(5).standard_normal(20_000)
    x[[3000, 9000, 15000]] += 12.0
    np.save(tmp_path / "x.npy", x)
    want = consumer.detect(x, **PARAMS)
    args = ["--file", "x.npy", "--params", json.dumps(PARAMS), "--overwrite"]
    rc, out, err = run_module("consumer", *args, "--quiet")  # the project's cache, warm now
    assert rc == 0, err
    # Cached: no notice, the same results, and a run loads no numba (its kernel is native,
    # so not SciPy's BLAS probe either) and no module that only other detectors, metrics
    # or pandas need.
    rc, out, err = run_module(None, "-c", PROBE, *args)
    assert rc == 0 and err == "", err
    assert json.loads(out.splitlines()[-1]) == {"rc": 0, "loaded": []}, out
    np.testing.assert_array_equal(np.load(tmp_path / "x.anomalies.npy"), want)


def test_consumer_builds_its_native_kernel_on_a_cold_cache_only(run_module, tmp_path):
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler on PATH: the native z-score kernel cannot be built")
    x = np.random.default_rng(5).standard_normal(20_000)
    np.save(tmp_path / "x.npy", x)
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--file", "x.npy", "--params", json.dumps(PARAMS), "--overwrite"]
    rc, out, err = run_module("consumer", *args, env=env)
    assert rc == 0, err
    build = compile_notice("consumer", "native z-score", zscore_native.BUILD_SECONDS)
    assert notices(err) == [build], err
    assert len(list((tmp_path / "cache" / "tsstream").glob("zscore_native-*.so"))) == 1
    want = consumer.detect(x, **PARAMS)
    np.testing.assert_array_equal(np.load(tmp_path / "x.anomalies.npy"), want)
    rc, out, err = run_module("consumer", *args, env=env)
    assert rc == 0 and err == "", err
    assert not list((tmp_path / "cache").rglob("*.nbi")), "numba compiled something"


def test_consumer_without_a_compiler_says_so_and_runs_numbas_kernel(run_module, tmp_path):
    x = np.random.default_rng(6).standard_normal(300_000)
    x[[3000, 90_000, 150_000]] += 12.0
    x[200_000:200_500] = np.nan
    np.save(tmp_path / "x.npy", x)
    args = ["--file", "x.npy", "--params", json.dumps(PARAMS), "--overwrite"]
    rc, out, err = run_module("consumer", *args, "--quiet")
    assert rc == 0, err
    outputs = ("x.anomalies.npy", "x.summary.json")
    native = {name: (tmp_path / name).read_bytes() for name in outputs}
    rc, out, err = run_module("consumer", *args, env={"CC": "/no/such/cc"})
    assert rc == 0, err
    want = "consumer: no C compiler (/no/such/cc) on PATH: the z-score runs numba's kernel"
    assert [line for line in err.splitlines() if "compiler" in line] == [
        want + " (same results, slower start)"
    ], err
    assert (tmp_path / "x.anomalies.npy").read_bytes() == native["x.anomalies.npy"]
    rc, out, err = run_module(None, "-c", PROBE, *args, "--quiet", env={"TSSTREAM_NATIVE": "0"})
    assert rc == 0 and json.loads(out.splitlines()[-1]) == {"rc": 0, "loaded": ["numba"]}, out
    assert (tmp_path / "x.anomalies.npy").read_bytes() == native["x.anomalies.npy"]
    summary = json.loads((tmp_path / "x.summary.json").read_text())
    for key in ("anomalies", "samples", "detector"):
        assert summary[key] == json.loads(native["x.summary.json"])[key]


def test_compile_notice_on_a_cold_cache_only(run_module, tmp_path):
    """The producer compiles the fewest kernels (a few seconds); both CLIs share the code."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}  # empty: everything compiles
    args = ["--num_samples", 70_000, "--file", "p.npy", "--overwrite"]
    rc, out, err = run_module("producer", *args, env=env)
    assert rc == 0, err
    assert notices(err) == [compile_notice("producer", "generator", 3)], err
    assert "later runs use the cache" in err
    assert any((tmp_path / "cache").rglob("*.nbi")), "nothing was cached"
    want = (tmp_path / "p.npy").read_bytes()
    rc, out, err = run_module("producer", *args, env=env)  # cached now: nothing to say
    assert rc == 0 and err == "", err
    assert (tmp_path / "p.npy").read_bytes() == want


def test_notice_wording_and_no_numba_to_import_it(run_module):
    line = compile_notice("consumer", "stl", 29.6)
    assert line == (
        "consumer: compiling the stl kernels (first run, about 30 s); later runs use the cache"
    )
    assert is_compile_notice(line) and is_compile_notice(compile_notice("producer", "x", 0.2))
    assert not is_compile_notice("consumer: stl: estimated period 48")
    code = "import sys, shared.jit; print('numba' in sys.modules)"
    assert run_module(None, "-c", code)[1].strip() == "False"
