"""The one writer of int64 ``.npy`` files (producer labels, consumer anomaly indices).

Values are written in place with ``pwrite`` at element positions, so a file can
be preallocated and filled in any order (labels) or appended to (indices).
With a fixed header length the element count in the header can be rewritten
without moving the data, so readers always see a valid prefix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from shared.stream import npy_header


def padded_npy_header(count: int, length: int) -> bytes:
    """An int64 NPY 1.0 header for ``count`` elements, padded to exactly ``length`` bytes."""
    h = npy_header("<i8", count)
    if len(h) > length:
        raise ValueError(f"an NPY header for {count} elements does not fit in {length} bytes")
    body = h[10:].rstrip(b"\n").rstrip(b" ")
    body = body + b" " * (length - 10 - len(body) - 1) + b"\n"
    return h[:8] + len(body).to_bytes(2, "little") + body


class Int64File:
    """A 1-D little-endian int64 NPY file written with ``pwrite``.

    Parameters
    ----------
    path
        The file.
    header_len
        Bytes before the data: the header's length, fixed for the file's life.
    create
        Create (or truncate) the file; else open the existing one as it is.
    """

    def __init__(self, path: Path, header_len: int, *, create: bool) -> None:
        self.path = path
        self.header_len = header_len
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0)
        self.fd = os.open(path, flags, 0o644)

    def write_header(self, header: bytes) -> None:
        """Write the header (it must be exactly ``header_len`` bytes)."""
        assert len(header) == self.header_len, "the header length is fixed"
        os.pwrite(self.fd, header, 0)

    def write_at(self, position: int, values: np.ndarray) -> None:
        """Write ``values`` as int64 from element ``position`` on."""
        if len(values):
            os.pwrite(self.fd, values.astype("<i8").tobytes(), self.header_len + 8 * position)

    def resize(self, count: int) -> None:
        """Make the file hold exactly ``count`` elements (zero-filled if it grows)."""
        os.ftruncate(self.fd, self.header_len + 8 * count)

    def sync(self) -> None:
        """Make the written data durable."""
        os.fdatasync(self.fd)

    def close(self) -> None:
        """Close the file (again is a no-op)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
