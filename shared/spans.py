"""Task spans: whole chunks per Dask task, and page-safe writes into a shared file.

Spans.  The chunks of a stream are grouped into a fixed grid of spans
``[s * k, (s + 1) * k)`` (``k`` chunks each, the last one shorter), fixed in
absolute chunk index, so a span's outputs can carry an idempotent name.  A task
covers the chunks of one grid cell that are still to do (:func:`spans`).

Pages.  Chunk boundaries cannot be page-aligned in the ``.npy`` file: the NPY
header (a multiple of 64 bytes, 128 for our streams) comes first and the bytes
must equal the local engine's, so every boundary falls inside a page.  On a
shared filesystem (NFS, Lustre, GPFS, CephFS) two clients that write different
bytes of one page may each write back a whole cached page and lose the other's
bytes, so no page is written from two nodes: a worker writes only the whole
``PAGE``-aligned pages inside its span (:class:`PageSafeWriter`) and hands the
two partial edge pages' bytes back to the driver, which writes them (a single
writer for every boundary page).  ``PAGE`` is 64 KiB, the largest base page of
common kernels (arm64, ppc64), so it also covers 4 KiB-page nodes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

PAGE = 1 << 16  # bytes
_BUFFERS = threading.local()


def task_buffer(n: int, dtype: np.dtype) -> np.ndarray:
    """``n`` samples of a buffer kept per worker thread and reused by its next tasks.

    Fresh memory is costly here: a new 128 MiB array faults in 32768 pages (about
    0.2-0.3 s on the development VM), more than reading or generating a span into it.
    """
    buf = getattr(_BUFFERS, "buf", None)
    if buf is None or buf.dtype != np.dtype(dtype) or len(buf) < n:
        buf = _BUFFERS.buf = None  # let the old one go first
        buf = _BUFFERS.buf = np.empty(n, dtype)
    return buf[:n]


@dataclass(frozen=True)
class Span:
    """Chunks ``[first, last)`` of one grid cell, samples ``[start, stop)``."""

    cell: int
    first: int
    last: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        """An idempotent name for the span's outputs (chunk range, zero-padded)."""
        return f"{self.first:010d}-{self.last:010d}"


def chunks_per_span(span_samples: int, chunk_size: int) -> int:
    """Whole chunks per task: ``span_samples`` rounded to the nearest chunk count (>= 1)."""
    return max(1, round(span_samples / chunk_size))


def spans(layout, per_span: int, todo: Sequence[bool] | None = None) -> Iterator[Span]:
    """The spans of ``layout`` (a ``shared.stream.Layout``), ``per_span`` chunks each.

    With ``todo`` (per chunk), each grid cell gives its maximal runs of chunks to
    do (a resumed run skips what is committed).
    """
    for cell in range(-(-layout.num_chunks // per_span)):
        lo, hi = cell * per_span, min(layout.num_chunks, (cell + 1) * per_span)
        c = lo
        while c < hi:
            if todo is not None and not todo[c]:
                c += 1
                continue
            end = c + 1
            while end < hi and (todo is None or todo[end]):
                end += 1
            yield Span(cell, c, end, layout.bounds(c)[0], layout.bounds(end - 1)[1])
            c = end


class PageSafeWriter:
    """Writes samples ``[start, stop)`` of a shared file: whole pages here, edges kept.

    Parameters
    ----------
    fd
        The open file.
    header_len, dtype
        Where sample 0 lies and the sample type.
    start, stop
        The samples this writer owns.
    page
        The page size in bytes.

    Pieces are given to :meth:`write` in any order; the bytes of the partial
    pages at either end go to :meth:`edges` instead of the file.
    """

    def __init__(
        self, fd: int, header_len: int, dtype: np.dtype, start: int, stop: int, page: int = PAGE
    ) -> None:
        self.fd, self.header_len, self.dtype = fd, header_len, np.dtype(dtype)
        size = self.dtype.itemsize
        # Our NPY headers are multiples of 64 bytes, so page boundaries fall between samples.
        assert header_len % size == 0 and page % size == 0, "samples must not straddle pages"
        first_page = -(-(header_len + start * size) // page) * page
        last_page = (header_len + stop * size) // page * page
        lo = min(stop, (first_page - header_len) // size)
        hi = max(start, (last_page - header_len) // size)
        if hi <= lo:  # no whole page inside: all of it is edge
            lo = hi = stop
        self.start, self.stop, self.body = start, stop, (lo, hi)
        self._head = np.empty(lo - start, self.dtype)
        self._tail = np.empty(stop - self.body[1], self.dtype)

    def write(self, first: int, values: np.ndarray) -> None:
        """Write samples ``[first, first + len(values))`` (inside the owned range)."""
        last = first + len(values)
        lo, hi = self.body
        for a, b, out in ((self.start, lo, self._head), (hi, self.stop, self._tail)):
            x, y = max(first, a), min(last, b)
            if x < y:
                out[x - a : y - a] = values[x - first : y - first]
        x, y = max(first, lo), min(last, hi)
        if x < y:
            view = memoryview(np.ascontiguousarray(values[x - first : y - first])).cast("B")
            offset = self.header_len + x * self.dtype.itemsize
            done = 0
            while done < len(view):
                done += os.pwrite(self.fd, view[done:], offset + done)

    def edges(self) -> list[tuple[int, np.ndarray]]:
        """``(first sample, values)`` of the partial pages, for the driver to write."""
        lo, hi = self.body
        return [(s, v) for s, v in ((self.start, self._head), (hi, self._tail)) if len(v)]
