"""Committed-chunk source: which chunks can be processed now, with their halos.

A chunk is ready when every chunk that its detector window ``[ws, we)`` touches
is committed.  Chunks are released in order (the producer commits roughly in
order, and in-order release lets the sinks write without reordering much).

On a ring stream the tail also knows the consumer's cursor (``shared.ring``):
which chunk it may release once a checkpoint is durable (:func:`needed_chunk`)
and when its producer is about to wait for that release (``wants_release``).
"""

from __future__ import annotations

from typing import Any

from consumer.detectors.base import Detector
from shared.stream import CommitFollower, Layout, StreamReader


def needed_chunk(layout: Layout, detector: Detector, chunk: int) -> int:
    """The first chunk that processing ``chunk`` and every later chunk reads: where its
    detector window starts (``num_chunks`` once every chunk is done)."""
    if chunk >= layout.num_chunks:
        return layout.num_chunks
    return detector.window_for(*layout.bounds(chunk))[0] // layout.chunk_size


def window_chunks(layout: Layout, detector: Detector) -> int:
    """How many chunks one chunk's detector window touches (a ring must hold them all)."""
    chunk = layout.num_chunks // 2  # interior chunks have the widest windows
    ws, we = detector.window_for(*layout.bounds(chunk))
    return (we - 1) // layout.chunk_size - ws // layout.chunk_size + 1


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
    cursor
        A ring consumer's ``shared.ring.RingCursor`` (None for a file stream).
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
        cursor: Any = None,
    ) -> None:
        self.detector = detector
        self.cursor = cursor
        self.layout = reader.layout
        self.next = first_chunk
        self.poll_interval = poll_interval
        self.follower = CommitFollower(
            reader, timeout=timeout, poll_interval=poll_interval, follow=follow
        )

    def wants_release(self, next_chunk: int) -> bool:
        """Whether a ring's producer is about to wait for chunks that a checkpoint of
        ``next_chunk`` would release (it has claimed within a quarter ring of the cursor)."""
        st = self.follower.status
        if self.cursor is None or st is None or st.status != "running":
            return False
        if needed_chunk(self.layout, self.detector, next_chunk) <= self.cursor.released:
            return False
        return st.frontier + max(1, st.slots // 4) >= self.cursor.released + st.slots

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
