"""Committed-chunk source: which chunks can be processed now, with their halos.

A chunk is ready when every chunk that its detector window ``[ws, we)`` touches
is committed.  Chunks are released in order (the producer commits roughly in
order, and in-order release lets the sinks write without reordering much).
"""

from __future__ import annotations

from consumer.detectors.base import Detector
from shared.stream import CommitFollower, StreamReader


class Tail:
    """Releases, in order, the chunks whose detector windows are wholly committed.

    Follows the stream with the one :class:`shared.stream.CommitFollower`.

    Parameters
    ----------
    reader, detector
        The stream and the detector whose ``window_for`` gives each chunk's halo.
    first_chunk
        Where to start (a resumed run's next chunk).
    follow, timeout, poll_interval
        As for :class:`~shared.stream.CommitFollower`.
    """

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
        self.detector = detector
        self.layout = reader.layout
        self.next = first_chunk
        self.poll_interval = poll_interval
        self.follower = CommitFollower(
            reader, timeout=timeout, poll_interval=poll_interval, follow=follow
        )

    @property
    def exhausted(self) -> bool:
        """Whether every chunk has been released."""
        return self.next >= self.layout.num_chunks

    def _ready(self, chunk: int) -> bool:
        start, stop = self.layout.bounds(chunk)
        ws, we = self.detector.window_for(start, stop)
        return self.follower.committed(
            ws // self.layout.chunk_size, (we - 1) // self.layout.chunk_size
        )

    def poll_ready(self, limit: int) -> list[int]:
        """Up to ``limit`` newly ready chunks (possibly none); raises if the producer died.

        With ``follow=False`` an incomplete stream ends the tail at the first
        chunk that is not ready (``exhausted`` becomes true).
        """
        self.follower.refresh()
        out: list[int] = []
        while len(out) < limit and not self.exhausted and self._ready(self.next):
            out.append(self.next)
            self.next += 1
        if not out and not self.exhausted and limit > 0 and not self.follower.stalled():
            self.next = self.layout.num_chunks  # --no-follow: stop at what is committed
        return out
