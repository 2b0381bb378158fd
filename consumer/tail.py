"""Committed-chunk source: which chunks can be processed now, with their halos.

A chunk is ready when every chunk that its detector window ``[ws, we)`` touches
is committed.  Chunks are released in order (the producer commits roughly in
order, and in-order release lets the sinks write without reordering much).
"""

from __future__ import annotations

import time

from consumer.detectors.base import Detector
from shared.stream import StreamReader, StreamStatus


class Tail:
    def __init__(
        self,
        reader: StreamReader,
        detector: Detector,
        *,
        first_chunk: int = 0,
        follow: bool = True,
        timeout: float = 10.0,
        poll_interval: float = 0.02,
    ) -> None:
        self.reader = reader
        self.detector = detector
        self.layout = reader.layout
        self.next = first_chunk
        self.follow = follow
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.status: StreamStatus | None = None
        self._last_poll = 0.0

    @property
    def exhausted(self) -> bool:
        return self.next >= self.layout.num_chunks

    def _ready(self, chunk: int) -> bool:
        start, stop = self.layout.bounds(chunk)
        ws, we = self.detector.window_for(start, stop)
        c0 = ws // self.layout.chunk_size
        c1 = (we - 1) // self.layout.chunk_size
        return bool(self.status.committed[c0 : c1 + 1].all())

    def poll_ready(self, limit: int) -> list[int]:
        """Up to ``limit`` newly ready chunks (possibly none); raises if the producer died.

        With ``follow=False`` an incomplete stream ends the tail at the first
        chunk that is not ready (``exhausted`` becomes true).
        """
        now = time.monotonic()
        if self.status is None or now - self._last_poll >= self.poll_interval:
            self.status = self.reader.poll()
            self._last_poll = now
        out: list[int] = []
        while len(out) < limit and not self.exhausted and self._ready(self.next):
            out.append(self.next)
            self.next += 1
        if not out and not self.exhausted and limit > 0:
            if not self.follow:
                self.stopped_early = self.next
                self.next = self.layout.num_chunks
            else:
                self.reader.check_alive(self.status, self.timeout)
        return out
