"""Reader API of the stream format: committed ranges, waiting, stale producers."""

from __future__ import annotations

import json
import time
import zlib

import numpy as np
import pytest

from shared.errors import ProducerFailed
from shared.stream import StreamReader, sidecar_path


@pytest.fixture
def stream(tmp_path, run_producer):
    rc, _, err = run_producer(
        "--num_samples", "500000", "--file", "s.npy", "--chunk_size", "65536", "--seed", "3"
    )
    assert rc == 0, err
    return tmp_path / "s.npy"


def test_committed_ranges_cover_the_stream_once(stream):
    x = np.load(stream)
    with StreamReader(stream) as r:
        ranges = list(r.committed_ranges(timeout=1))
        sums = r.poll().checksums
        chunks = [c for c, _, _ in ranges]
        assert sorted(chunks) == list(range(r.layout.num_chunks)) == chunks
        assert ranges[0][1] == 0 and ranges[-1][2] == len(x)
        for (c, a, b), (_, a2, _) in zip(ranges, ranges[1:] + [(0, len(x), 0)], strict=True):
            assert b == a2
            got = r.read(a, b)
            np.testing.assert_array_equal(got, x[a:b])
            assert zlib.crc32(got) == sums[c]


def test_committed_ranges_wait_then_fail_on_a_stale_producer(stream):
    side = sidecar_path(stream)
    doc = json.loads(side.read_text())
    doc["status"] = "running"
    doc["heartbeat"] = time.time()  # fresh now, stale after the timeout
    doc["chunks"][5:] = [None] * (len(doc["chunks"]) - 5)
    side.write_text(json.dumps(doc))
    with StreamReader(stream) as r:
        seen = []
        t0 = time.monotonic()
        with pytest.raises(ProducerFailed, match="heartbeat"):
            for c, _, _ in r.committed_ranges(timeout=0.5, poll_interval=0.01):
                seen.append(c)
        assert seen == [0, 1, 2, 3, 4]
        assert 0.4 < time.monotonic() - t0 < 5


def test_committed_ranges_no_follow_stops_at_what_is_committed(stream):
    side = sidecar_path(stream)
    doc = json.loads(side.read_text())
    doc["status"] = "running"
    doc["chunks"][3] = None
    side.write_text(json.dumps(doc))
    with StreamReader(stream) as r:
        got = [c for c, _, _ in r.committed_ranges(follow=False)]
    assert got == [c for c in range(len(doc["chunks"])) if c != 3]
