"""Start-up of the command-line programs: the first-run compile notice and what they load.

One empty numba cache directory (``NUMBA_CACHE_DIR``) per test makes the first
run compile; a second run over the same directory finds every kernel cached.
The z-score consumer compiles the fewest kernels (about a second).
"""

from __future__ import annotations

import json

import numpy as np

import consumer
from shared.jit import compile_notice, is_compile_notice

PARAMS = {"window": 200, "threshold": 4.0}

# Run the consumer CLI in-process in a child and report which heavy modules it loaded.
PROBE = """
import json, sys
from consumer.__main__ import main
rc = main(sys.argv[1:])
heavy = ["scipy.linalg", "numba.np.arraymath", "consumer.kernels.stl", "psutil", "pandas"]
print(json.dumps({"rc": rc, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def notices(err: str) -> list[str]:
    return [line for line in err.splitlines() if is_compile_notice(line)]


def test_compile_notice_on_a_cold_cache_only_and_cached_loads_skip_numba_set_up(
    run_module, tmp_path
):
    x = np.random.default_rng(5).standard_normal(20_000)
    x[[3000, 9000, 15000]] += 12.0
    np.save(tmp_path / "x.npy", x)
    want = consumer.detect(x, **PARAMS)
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--file", "x.npy", "--params", json.dumps(PARAMS), "--overwrite"]

    rc, out, err = run_module("consumer", *args, env=env)
    assert rc == 0, err
    assert notices(err) == [compile_notice("consumer", "zscore", 1)], err
    assert "later runs use the cache" in err
    np.testing.assert_array_equal(np.load(tmp_path / "x.anomalies.npy"), want)
    assert any((tmp_path / "cache").rglob("*.nbi")), "nothing was cached"

    # Cached now: no notice, the same results, and a run loads no numba registries (so not
    # SciPy's BLAS probe) and no module that only other detectors, metrics or pandas need.
    rc, out, err = run_module(None, "-c", PROBE, *args, env=env)
    assert rc == 0 and err == "", err
    assert json.loads(out.splitlines()[-1]) == {"rc": 0, "loaded": []}, out
    np.testing.assert_array_equal(np.load(tmp_path / "x.anomalies.npy"), want)


def test_producer_notice(run_module, tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    args = ["--num_samples", 70_000, "--file", "p.npy", "--overwrite"]
    rc, out, err = run_module("producer", *args, env=env)
    assert rc == 0, err
    assert notices(err) == [compile_notice("producer", "generator", 3)], err
    rc, out, err = run_module("producer", *args, env=env)  # cached now
    assert rc == 0 and err == "", err


def test_notice_wording_and_no_numba_to_import_it(run_module):
    line = compile_notice("consumer", "stl", 29.6)
    assert line == (
        "consumer: compiling the stl kernels (first run, about 30 s); later runs use the cache"
    )
    assert is_compile_notice(line) and is_compile_notice(compile_notice("producer", "x", 0.2))
    assert not is_compile_notice("consumer: stl: estimated period 48")
    code = "import sys, shared.jit; print('numba' in sys.modules)"
    assert run_module(None, "-c", code)[1].strip() == "False"
