"""shared.launch: a forked ``python -m`` child behaves as the command run afresh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared import launch

pytestmark = pytest.mark.skipif(not launch.CAN_FORK, reason="forks only on Linux")

PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}


# Forks happen in a fresh interpreter (as in single_machine.py), never from pytest's
# process, which may hold other tests' threads.
DRIVER = """
import json, subprocess, sys
from shared import launch
child = launch.start(json.loads(sys.argv[1]), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
assert isinstance(child, launch.Forked), type(child)
out, err = child.stdout.read(), child.stderr.read()
print(json.dumps([child.wait(), out, err]))
"""
ROOT = Path(__file__).resolve().parents[1]


def _forked(cmd: list[str], cwd: Path) -> tuple[int, str, str]:
    run = [sys.executable, "-c", DRIVER, json.dumps(cmd)]
    done = subprocess.run(run, cwd=cwd, capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr
    status, out, err = json.loads(done.stdout)
    return status, out, err


def _env() -> dict[str, str]:
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )


def _fresh(cmd: list[str], cwd: Path) -> tuple[int, str, str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def test_forked_producer_writes_the_same_stream_as_a_fresh_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--num_samples", "200000", "--chunk_size", "65536", "--quiet", "--time"]
    a = [sys.executable, "-m", "producer", "--file", str(tmp_path / "a.npy"), *args]
    b = [sys.executable, "-m", "producer", "--file", str(tmp_path / "b.npy"), *args]
    status, out, err = _forked(a, tmp_path)
    assert (status, err) == (0, ""), err
    assert '"samples": 200000' in out  # the --time line came through the pipe
    assert _fresh(b, tmp_path)[0] == 0
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["producer", "--num_samples", "-3", "--file", "x.npy"],  # usage: exit 2, one line
        ["consumer", "--file", "missing.npy", "--type", "zscore"],  # no such stream
        ["producer", "--no-such-option"],  # argparse's own exit
    ],
)
def test_forked_errors_equal_a_fresh_commands(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    cmd = [sys.executable, "-m", *args]
    forked, fresh = _forked(cmd, tmp_path), _fresh(cmd, tmp_path)
    assert forked == fresh
    assert forked[0] != 0 and not (tmp_path / "x.npy").exists()


SIGNAL_DRIVER = """
import json, signal, subprocess, sys, time
from shared import launch
cmd, pipes = json.loads(sys.argv[1]), {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
statuses = []
for child in (launch.start(cmd, **pipes), subprocess.Popen(cmd, **pipes)):
    time.sleep(1.5)  # waiting for the stream to appear
    assert child.poll() is None
    child.send_signal(signal.SIGTERM)
    child.stderr.read()
    statuses.append(child.wait())
print(json.dumps(statuses))
"""


def test_a_signal_ends_a_forked_child_as_it_ends_a_fresh_one(tmp_path):
    cmd = [sys.executable, "-m", "consumer", "--file", "later.npy", "--wait", "30", "--quiet"]
    run = [sys.executable, "-c", SIGNAL_DRIVER, json.dumps(cmd)]
    done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert done.returncode == 0, done.stderr
    forked, fresh = json.loads(done.stdout)
    assert forked == fresh != 0
