"""Stream format and commit protocol shared by the producer and the consumer.

A stream is two files side by side:

* the data file, a standard NPY file (format 1.0) holding a 1-D little-endian
  float64 or float32 array whose header carries the final shape from the
  start, so ``np.load(path, mmap_mode="r")`` works at any time;
* the sidecar ``<stem>.stream.json``, a JSON document replaced atomically
  (write a temporary file, fsync it, rename it over the old one) that records
  the layout, the generation parameters, the producer's status and heartbeat,
  and the CRC-32 of every committed chunk.

Commit protocol: the writer writes all bytes of a chunk (``pwrite``), optionally
``fdatasync``s them, and only then publishes a sidecar whose ``chunks[i]`` is
the chunk's CRC-32 instead of ``null``.  A reader re-reads the sidecar, reads
only chunks whose entry is not ``null``, and may check their CRC-32.  Because
the sidecar is only ever renamed into place, a reader sees either the previous
or the next complete document, never a torn one.

The README's "Stream format" section documents the same thing for third-party
readers.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import glob
import json
import mmap
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.checksum import crc32  # CRC-32 of raw bytes, equal to zlib.crc32
from shared.errors import FormatError, ProducerFailed, StreamError, UsageError

FORMAT_NAME = "tsstream"
FORMAT_VERSION = 1  # what file streams write
READ_VERSION = 2  # the newest sidecar readers understand (2: ring streams, shared.ring)
SIDECAR_SUFFIX = ".stream.json"
NPY_ALIGN = 64
SUPPORTED_DTYPES = {"float64": "<f8", "float32": "<f4"}
DEFAULT_CHUNK_SIZE = 1 << 20
STATUSES = ("running", "complete", "failed")


LABELS_SUFFIX = ".labels.npy"  # the producer's labels file beside the stream


def sibling(path: str | os.PathLike[str], suffix: str) -> Path:
    """``gen.npy`` + ``.labels.npy`` -> ``gen.labels.npy`` (same directory)."""
    p = Path(path)
    return p.with_name(p.stem + suffix)


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``gen.npy`` -> ``gen.stream.json``."""
    return sibling(path, SIDECAR_SUFFIX)


# --------------------------------------------------------------------------- NPY header


def npy_header(dtype: str, num_samples: int) -> bytes:
    """NPY 1.0 header for a C-ordered 1-D array, padded to a 64-byte boundary."""
    descr = np.dtype(dtype).str
    body = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({num_samples},), }}"
    prefix_len = 6 + 2 + 2  # magic, version, uint16 header length
    total = prefix_len + len(body) + 1
    pad = (-total) % NPY_ALIGN
    body = body + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body.encode("latin1")


@dataclass(frozen=True)
class NpyInfo:
    """What a 1-D NPY header says: dtype, length, header bytes."""

    dtype: np.dtype
    num_samples: int
    header_len: int


def read_npy_header(path: Path, integer: bool = False) -> NpyInfo:
    """Parse and validate the header of a 1-D float (or int64 if ``integer``) NPY file."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
            if len(head) < 10 or head[:6] != b"\x93NUMPY":
                raise FormatError(f"{path}: not an NPY file (bad magic)")
            major = head[6]
            if major == 1:
                hlen = int.from_bytes(head[8:10], "little")
                start = 10
            elif major in (2, 3):
                f.seek(0)
                head = f.read(12)
                hlen = int.from_bytes(head[8:12], "little")
                start = 12
            else:
                raise FormatError(f"{path}: unsupported NPY version {major}")
            text = f.read(hlen)
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a data file") from None
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    if len(text) < hlen:
        raise FormatError(f"{path}: truncated NPY header")
    try:
        d = ast.literal_eval(text.decode("latin1"))
        dtype = np.dtype(d["descr"])
        shape = tuple(d["shape"])
        fortran = bool(d["fortran_order"])
    except Exception:
        raise FormatError(f"{path}: malformed NPY header") from None
    if len(shape) != 1:
        raise UsageError(f"{path}: expected a 1-D array, found shape {shape}")
    if integer:
        if dtype.kind != "i" or dtype.itemsize != 8:
            raise FormatError(f"{path}: expected int64 indices, found dtype {dtype}")
    elif dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise UsageError(f"{path}: expected float32 or float64 samples, found dtype {dtype}")
    if dtype.byteorder == ">":
        raise UsageError(f"{path}: big-endian data is not supported")
    if fortran and shape[0] > 1:
        raise FormatError(f"{path}: Fortran-ordered data is not supported")
    header_len = start + hlen
    n = int(shape[0])
    expected = header_len + n * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise FormatError(
            f"{path}: file size {actual} disagrees with its header "
            f"({n} x {dtype} samples need {expected} bytes)"
        )
    return NpyInfo(dtype=dtype.newbyteorder("<"), num_samples=n, header_len=header_len)


def check_output_path(path: Path) -> Path:
    """Usage checks for a file about to be written; returns its directory."""
    if path.is_dir():
        raise UsageError(f"{path}: is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{path}: directory {parent} is not writable")
    return parent


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Layout:
    """Where every chunk lives in the data file."""

    num_samples: int
    dtype: np.dtype
    chunk_size: int
    header_len: int

    @property
    def num_chunks(self) -> int:
        """Number of chunks (the last may be short)."""
        return -(-self.num_samples // self.chunk_size)

    @property
    def itemsize(self) -> int:
        """Bytes per sample."""
        return self.dtype.itemsize

    @property
    def file_size(self) -> int:
        """Bytes of the whole data file, header included."""
        return self.header_len + self.num_samples * self.itemsize

    def bounds(self, chunk: int) -> tuple[int, int]:
        """Sample range ``[start, stop)`` of ``chunk``."""
        start = chunk * self.chunk_size
        return start, min(self.num_samples, start + self.chunk_size)

    def offset(self, sample: int) -> int:
        """File offset of sample ``sample``."""
        return self.header_len + sample * self.itemsize

    def pieces(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """``(file offset, samples)`` runs that hold samples ``[start, stop)``: one for a
        file (a ring's layout splits where a window wraps)."""
        yield self.offset(start), stop - start


# --------------------------------------------------------------------------- sidecar


_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


def atomic_temp(path: Path) -> Path:
    """Where this thread writes ``path`` before renaming it into place
    (``.<name>.<pid>.<thread>.tmp``: hidden, and unique to its writer)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def atomic_temps(path: Path) -> Iterator[Path]:
    """The temporaries :func:`atomic_temp` names for ``path`` that exist now: a writer
    killed between writing one and renaming it leaves it behind for the next run to
    remove."""
    return path.parent.glob(f".{glob.escape(path.name)}.*.tmp")


def _atomic_write_text(path: Path, text: str, fsync: bool = True, exclusive: bool = False) -> None:
    """Write ``text`` to a temporary file, then rename it to ``path``.

    ``exclusive``: hard-link it into place instead, which fails (``FileExistsError``)
    when ``path`` exists, so of two writers racing to create ``path`` one wins.
    """
    tmp = atomic_temp(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            data = memoryview(text.encode())
            while data:  # a short write (disk filling up) must not publish a torn document
                data = data[os.write(fd, data) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, path)
            except OSError as e:
                if e.errno not in _NO_HARD_LINKS:
                    raise
                # A filesystem without hard links (FAT, some network ones): check, rename.
                if path.exists():
                    exists = os.strerror(errno.EEXIST)
                    raise FileExistsError(errno.EEXIST, exists, str(path)) from None
                os.replace(tmp, path)
            else:
                tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, doc: dict[str, Any], fsync: bool = True) -> None:
    """Replace ``path`` with ``doc`` so that readers see the old or new file, never a mix."""
    _atomic_write_text(path, json.dumps(doc, separators=(",", ":")), fsync=fsync)


def load_sidecar(path: Path) -> dict[str, Any]:
    """Read and validate a sidecar document."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FormatError(f"{path}: sidecar missing") from None
    return parse_sidecar(text, path)


def parse_sidecar(text: str, path: Any) -> dict[str, Any]:
    """Validate a sidecar document read from ``path`` (a file, or a Zarr store's URL)."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise FormatError(f"{path}: corrupt sidecar (not valid JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: corrupt sidecar (not a {FORMAT_NAME} document)")
    version = doc.get("version")
    if not isinstance(version, int) or version > READ_VERSION:
        raise FormatError(
            f"{path}: sidecar format version {version!r} is newer than this program "
            f"understands ({READ_VERSION}); upgrade tsstream"
        )
    ring = doc.get("kind") == "ring"
    try:
        n = int(doc["num_samples"])
        chunk_size = int(doc["chunk_size"])
        chunks = None if ring else doc["chunks"]
        status = doc["status"]
        dtype = doc["dtype"]
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{path}: corrupt sidecar (missing fields)") from None
    if (
        chunk_size <= 0
        or not (ring or (isinstance(chunks, list) and len(chunks) == -(-n // chunk_size)))
        or status not in STATUSES
        or dtype not in SUPPORTED_DTYPES
    ):
        raise FormatError(f"{path}: corrupt sidecar (inconsistent fields)")
    if ring:
        from shared.ring import check_ring_doc

        check_ring_doc(path, doc)
    return doc


def resume_mismatch(path: Path, doc: dict[str, Any], want: dict[str, Any]) -> None:
    """Refuse to resume ``doc``'s stream with other parameters, naming the one that differs."""
    for key, value in want.items():
        have = doc.get(key)
        if have != value:
            if isinstance(have, dict) and isinstance(value, dict):
                # Name the generation parameter that differs (seed, seasonality, ...).
                key = next(k for k in {**have, **value} if have.get(k) != value.get(k))
                have, value = have.get(key), value.get(key)
            raise UsageError(
                f"cannot resume {path}: parameter '{key}' differs "
                f"(stream has {json.dumps(have)}, asked for {json.dumps(value)})"
            )


def map_samples(
    fd: int, offset: int, count: int, dtype: np.dtype, shared: bool = False
) -> tuple[mmap.mmap, np.ndarray]:
    """``count`` samples at byte ``offset`` of the open file ``fd``, as (the map, an
    array over it): a private copy-on-write map for readers, or with ``shared`` a
    shared, writable map whose pages are faulted in at once (``MAP_POPULATE``) for a
    writer.  The map starts at the page boundary below ``offset``."""
    base = offset - offset % mmap.ALLOCATIONGRANULARITY
    size = offset - base + count * np.dtype(dtype).itemsize
    if shared:
        flags, prot = mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ | mmap.PROT_WRITE
        pages = mmap.mmap(fd, size, flags=flags, prot=prot, offset=base)
    else:
        pages = mmap.mmap(fd, size, access=mmap.ACCESS_COPY, offset=base)
    return pages, np.frombuffer(pages, dtype, count, offset - base)


# --------------------------------------------------------------------------- writer


def publish_loop(
    stop: threading.Event,
    dirty: threading.Event,
    heartbeat_interval: float,
    publish_interval: float,
    publish: Callable[[], None],
) -> None:
    """A writer's publisher thread: ``publish()`` when ``dirty`` is set (commits arriving
    within ``publish_interval`` of the last publish are batched into one) and at least every
    ``heartbeat_interval`` seconds, until ``stop`` is set.

    An ``OSError`` from one publish is left to the next to retry; the writer's
    ``finish()`` and ``fail()`` publish themselves and surface persistent errors.
    """
    last = 0.0
    while not stop.is_set():
        dirty.wait(heartbeat_interval)
        if stop.is_set():
            break
        wait = publish_interval - (time.monotonic() - last)
        if wait > 0 and dirty.is_set():
            time.sleep(wait)  # batch commits that arrive close together
        dirty.clear()
        try:
            publish()
        except OSError:
            pass
        last = time.monotonic()


class StreamWriter:
    """Single writer of a stream: owns the advisory lock, the data file and the sidecar.

    ``write_chunk`` may be called from many threads; commits are published by a
    background thread at most every ``publish_interval`` seconds (batched), and
    the heartbeat at least every ``heartbeat_interval`` seconds.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_samples: int,
        dtype: str,
        chunk_size: int,
        extra: dict[str, Any],
        overwrite: bool = False,
        resume: bool = False,
        fsync: bool = False,
        heartbeat_interval: float = 0.5,
        publish_interval: float = 0.02,
        preallocate: bool = True,
        companions: Callable[[], dict[Path, int]] | None = None,
    ) -> None:
        self.path = Path(path)
        # Sizes of files written beside the stream (the labels file), for the space
        # check; asked for only once the data file itself fits.
        self.companions = companions
        self.preallocate = preallocate
        self.sidecar = sidecar_path(self.path)
        self.fsync = fsync
        self.heartbeat_interval = heartbeat_interval
        self.publish_interval = publish_interval
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._spare: Path | None = None
        if resume:
            self._open_resume(num_samples, dtype, chunk_size, extra)
        else:
            self._create(num_samples, dtype, chunk_size, extra, overwrite)
        self._thread = threading.Thread(
            target=self._publisher, name="commit-publisher", daemon=True
        )
        self._thread.start()

    # -- setup -------------------------------------------------------------------------

    def _lock_fd(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StreamError(f"{self.path}: another producer is writing this stream") from None

    def _remove_stale_temps(self) -> None:
        """Temporary sidecars and the spare file left by a killed writer (we hold the
        lock: none is in use)."""
        for tmp in atomic_temps(self.sidecar):
            tmp.unlink(missing_ok=True)
        self.sidecar.with_name(f".{self.sidecar.name}.spare").unlink(missing_ok=True)

    def _make_spare(self) -> None:
        """Hold back some disk space (a hidden file) so that ``fail()`` can still publish
        the failure when the disk fills up; best effort, removed by ``close()``."""
        spare = self.sidecar.with_name(f".{self.sidecar.name}.spare")
        try:
            fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.posix_fallocate(fd, 0, (1 << 16) + 16 * self.layout.num_chunks)
            finally:
                os.close(fd)
            self._spare = spare
        except OSError:
            spare.unlink(missing_ok=True)

    def _drop_spare(self) -> bool:
        spare, self._spare = self._spare, None
        if spare is None:
            return False
        spare.unlink(missing_ok=True)
        return True

    def _create(
        self, n: int, dtype: str, chunk_size: int, extra: dict[str, Any], overwrite: bool
    ) -> None:
        """Start a stream from nothing, in an order that a kill at any step leaves resumable.

        The sidecar (no chunk committed) is published before the data file exists or
        is touched, so every state set-up can leave has our sidecar beside it: nothing;
        the sidecar alone; the sidecar and a data file being sized; the finished
        set-up.  ``--resume`` takes each of them for "not started" and starts afresh,
        while a data file *without* a sidecar is never ours (a user's .npy) and is
        refused.  A reader never finds a readable data file without its sidecar, or
        beside a previous run's sidecar.  An existing data file is locked before
        anything is published, so a live producer's stream is never touched.
        """
        path = self.path
        parent = check_output_path(path)
        if not overwrite:
            for p in (path, self.sidecar):
                if p.exists():
                    raise UsageError(
                        f"{p} exists; pass --overwrite to replace it or --resume to continue it"
                    )
        header = npy_header(dtype, n)
        self.layout = Layout(n, np.dtype(SUPPORTED_DTYPES[dtype]), chunk_size, len(header))
        # Check space before touching anything; an overwritten file's blocks come back.
        free = shutil.disk_usage(parent).free

        def check(needed: int, files: list[Path]) -> None:
            reclaim = sum(p.stat().st_blocks * 512 for p in files if p.is_file())
            if needed > free + reclaim:
                raise StreamError(
                    f"{path}: not enough disk space: need {needed} bytes, {free + reclaim} free"
                )

        check(self.layout.file_size, [path])
        if self.companions is not None:  # sized only once the data itself fits
            beside = self.companions()
            check(self.layout.file_size + sum(beside.values()), [path, *beside])
        self.doc = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "data_file": path.name,
            "dtype": dtype,
            "num_samples": n,
            "header_len": self.layout.header_len,
            "chunk_size": chunk_size,
            "checksum": "crc32",
            **extra,
            "status": "running",
            "message": "",
            "pid": os.getpid(),
            "created": time.time(),
            "heartbeat": time.time(),
            "chunks": [None] * self.layout.num_chunks,
        }
        created = self._claim_and_lock(overwrite)
        fd = self._fd
        try:
            self._publish()  # ours now (replacing a previous run's sidecar, if any)
            os.ftruncate(fd, 0)
            self._reserve(self.layout.file_size)
            os.pwrite(fd, header, 0)
            self._make_spare()  # after the data's reservation, which must not fail for it
        except BaseException as e:
            # Best effort: readers of the sidecar just published learn that this failed.
            self.doc["status"] = "failed"
            self.doc["message"] = str(e) or type(e).__name__
            try:
                self._publish()
            except OSError:
                pass
            os.close(fd)
            self._fd = -1
            self._drop_spare()
            if created:  # leave nothing behind for a stream that never started
                for p in (path, self.sidecar):  # data first: a lone sidecar is still ours
                    p.unlink(missing_ok=True)
            raise

    def _claim_and_lock(self, overwrite: bool) -> bool:
        """Claim the stream's name with our sidecar, then open and lock the data file.

        A new stream's sidecar is published first; without ``overwrite`` the claim is
        exclusive (a hard link), so of two producers starting the same new stream one
        is refused.  The data file is opened without truncating so that a live
        producer's lock is honoured first.  Returns whether the data file was new.
        """
        created = not self.path.exists()
        if created:
            try:
                self._publish(exclusive=not overwrite)
            except FileExistsError:
                raise UsageError(
                    f"{self.sidecar} exists; pass --overwrite to replace it or --resume to "
                    "continue it"
                ) from None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._lock_fd(fd)
        self._fd = fd
        self._remove_stale_temps()
        return created

    def _reserve(self, size: int) -> None:
        try:
            if not self.preallocate:
                os.ftruncate(self._fd, size)  # sparse: space is claimed as chunks are written
                return
            os.posix_fallocate(self._fd, 0, size)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise StreamError(f"{self.path}: not enough disk space for {size} bytes") from None
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                os.ftruncate(self._fd, size)  # filesystem cannot preallocate: sparse file
            elif e.errno == errno.EFBIG:
                raise StreamError(f"{self.path}: file size limit exceeded ({size} bytes)") from None
            else:
                raise

    def _sidecar_to_resume(self) -> dict[str, Any] | None:
        """The sidecar ``--resume`` continues, or None for a stream not begun (neither file).

        A data file without a sidecar is not one of ours and is refused, untouched.
        """
        path = self.path
        if path.is_dir():
            raise UsageError(f"{path}: is a directory")
        if not self.sidecar.exists():
            if path.exists():
                raise UsageError(
                    f"{path}: exists but has no sidecar ({self.sidecar.name}), so it is not "
                    "a stream this program wrote; nothing to resume (--overwrite replaces it)"
                )
            return None
        return load_sidecar(self.sidecar)

    def _open_resume(self, n: int, dtype: str, chunk_size: int, extra: dict[str, Any]) -> None:
        """Continue the stream; start it if it does not exist or was killed while setting up.

        Whatever state a kill left (see :meth:`_create`), our sidecar says what it is:
        no sidecar and no data file is a stream not begun; a sidecar with no committed
        chunk is one still setting up (nothing worth keeping: start afresh, keeping
        its chunk size for any reader already following it).  A data file without a
        sidecar is not one of ours and is refused, untouched.
        """
        path = self.path
        doc = self._sidecar_to_resume()
        if doc is None:
            self._create(n, dtype, chunk_size, extra, overwrite=False)  # not begun: begin
            return
        fresh = all(c is None for c in doc["chunks"])  # nothing committed yet
        if not fresh and not path.exists():
            raise FormatError(
                f"{path}: data file missing beside a sidecar with committed chunks; "
                "cannot resume (--overwrite starts again)"
            )
        info = None if fresh else read_npy_header(path)
        if info is not None and np.dtype(SUPPORTED_DTYPES[doc["dtype"]]) != info.dtype:
            raise FormatError(
                f"{path}: sidecar says {doc['dtype']} but the NPY header says {info.dtype}"
            )
        resume_mismatch(path, doc, {"num_samples": n, "dtype": dtype, **extra})
        if fresh:
            # Killed while setting up (perhaps before the data file existed or had its
            # header): nothing is worth keeping, so resuming is starting afresh.
            self._create(n, dtype, int(doc["chunk_size"]), extra, overwrite=True)
            return
        fd = os.open(path, os.O_RDWR)
        self._lock_fd(fd)
        self._fd = fd
        self._remove_stale_temps()
        self.layout = Layout(n, info.dtype, int(doc["chunk_size"]), info.header_len)
        self.doc = doc
        if doc["status"] != "complete":
            self._make_spare()
            doc["status"] = "running"
            doc["message"] = ""
            doc["pid"] = os.getpid()
            doc["heartbeat"] = time.time()
            self._publish()

    # -- state -------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """The stream's status as last published: running, complete or failed."""
        return self.doc["status"]

    def committed(self) -> list[bool]:
        """Per chunk, whether it is committed."""
        with self._lock:
            return [c is not None for c in self.doc["chunks"]]

    def _publish(self, exclusive: bool = False) -> None:
        with self._lock:
            self.doc["heartbeat"] = time.time()
            text = json.dumps(self.doc, separators=(",", ":"))
        _atomic_write_text(self.sidecar, text, fsync=True, exclusive=exclusive)

    def _publisher(self) -> None:
        publish_loop(
            self._stop, self._dirty, self.heartbeat_interval, self.publish_interval, self._publish
        )

    # -- writing -----------------------------------------------------------------------

    def claim(self, chunk: int, halted: Callable[[], bool] | None = None) -> bool:
        """Wait until ``chunk`` may be written (always at once: in a file every chunk has its
        own place; ``shared.ring.RingWriter`` waits for a free slot).  True: write it."""
        return True

    def write_chunk(self, chunk: int, data: np.ndarray, checksum: int | None = None) -> None:
        """Write one whole chunk, then mark it committed with its CRC-32."""
        start, stop = self.layout.bounds(chunk)
        if data.dtype != self.layout.dtype or data.shape != (stop - start,):
            raise ValueError(f"chunk {chunk}: expected {stop - start} x {self.layout.dtype}")
        self.write_at(start, data)
        self.commit(chunk, crc32(data) if checksum is None else checksum)

    # Whether workers generate straight into the data file (``shared.ring.RingWriter``
    # maps a preallocated ring's slots); a file stream is written with ``pwrite``.
    maps_slots = False

    def write_at(self, sample: int, data: np.ndarray) -> None:
        """Write samples at ``sample`` (part of a chunk; not visible until ``commit``)."""
        view = memoryview(data).cast("B")
        offset = self.layout.offset(sample)
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def commit(self, chunk: int, checksum: int) -> None:
        """Mark ``chunk`` committed: every byte of it must already be written."""
        if self.fsync:
            os.fdatasync(self._fd)
        with self._lock:
            self.doc["chunks"][chunk] = checksum
        self._dirty.set()

    def write_labels_meta(self, **fields: Any) -> None:
        """Record the labels file's name and count in the sidecar."""
        with self._lock:
            self.doc.update(fields)

    def _shutdown_publisher(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Mark the stream complete (all chunks must be committed)."""
        self._shutdown_publisher()
        if not all(self.committed()):
            raise StreamError("internal error: finishing a stream with uncommitted chunks")
        if self.fsync:
            os.fsync(self._fd)
        self.doc["status"] = "complete"
        self.doc["message"] = ""
        self._publish()
        self.close()

    def fail(self, message: str) -> None:
        """Mark the stream failed with ``message``; committed chunks stay valid for --resume."""
        self._shutdown_publisher()
        self.doc["status"] = "failed"
        self.doc["message"] = message
        try:
            try:
                self._publish()
            except OSError as e:
                # Disk full: give back the spare space so that readers learn why we stopped.
                if e.errno != errno.ENOSPC or not self._drop_spare():
                    raise
                self._publish()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the publisher and close the file (no status change)."""
        self._shutdown_publisher()
        if self._fd >= 0:
            os.close(self._fd)  # releases the flock
            self._fd = -1
        self._drop_spare()


# --------------------------------------------------------------------------- reader


@dataclass
class StreamStatus:
    """One reading of the sidecar: status, message, heartbeat, commits, CRC-32 values."""

    status: str
    message: str
    heartbeat: float
    committed: np.ndarray  # bool per chunk
    checksums: list[int | None]

    def ready(self, first: int, last: int) -> bool:
        """Whether chunks ``first..last`` (inclusive) are all committed."""
        return bool(self.committed[first : last + 1].all())

    def all_done(self) -> bool:
        """Whether every chunk is committed."""
        return bool(self.committed.all())


class StreamReader:
    """Reads a stream (or a plain NPY / raw file) following the commit protocol.

    Reads go through ``os.preadv`` into caller-supplied buffers so that reading a
    long stream does not grow the process's RSS the way touching a memmap would.
    Check that a chunk is committed (:meth:`poll`, :meth:`committed_ranges`)
    before reading it: the sidecar publishes a chunk only after all its bytes
    are written.

    Parameters
    ----------
    path : str or path
        The ``.npy`` data file (its sidecar ``<stem>.stream.json`` is read if present;
        without one the file is treated as complete).
    raw_dtype : {"float64", "float32"}, optional
        Read a headerless raw file of this sample type instead of an NPY file.
    chunk_size : int, optional
        Chunk size for a file without sidecar (default 1048576); a stream's own
        chunk size comes from its sidecar.

    A ring stream (``shared.ring``) reads the same way: its layout maps each
    chunk to its slot and :meth:`poll` returns a ``shared.ring.RingStatus``.  A
    reader that must not lose chunks to the producer registers first
    (``shared.ring.RingCursor``; the consumer does).

    Examples
    --------
    >>> from shared.stream import StreamReader
    >>> with StreamReader("gen.npy") as r:  # doctest: +SKIP
    ...     for chunk, start, stop in r.committed_ranges():
    ...         x = r.read(start, stop)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        raw_dtype: str | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"{self.path}: is a directory, not a data file")
        if not self.path.exists():
            raise UsageError(f"{self.path}: no such file")
        self.sidecar_path = sidecar_path(self.path)
        self.doc: dict[str, Any] | None = None
        if raw_dtype is not None:
            if raw_dtype not in SUPPORTED_DTYPES:
                raise UsageError(f"--dtype must be float64 or float32, not {raw_dtype!r}")
            dtype = np.dtype(SUPPORTED_DTYPES[raw_dtype])
            size = self.path.stat().st_size
            if size % dtype.itemsize:
                raise FormatError(
                    f"{self.path}: raw file size {size} is not a multiple of {dtype.itemsize}"
                )
            info = NpyInfo(dtype, size // dtype.itemsize, 0)
        else:
            info = read_npy_header(self.path)
            if self.sidecar_path.exists():
                self.doc = load_sidecar(self.sidecar_path)
                if np.dtype(SUPPORTED_DTYPES[self.doc["dtype"]]) != info.dtype:
                    raise FormatError(
                        f"{self.path}: sidecar says {self.doc['dtype']} "
                        f"but the NPY header says {info.dtype}"
                    )
                ring = self.is_ring
                # A ring's array is its S slots of chunk_size samples, not the stream.
                held = self.doc["slots"] * self.doc["chunk_size"] if ring else None
                if int(held or self.doc["num_samples"]) != info.num_samples:
                    raise FormatError(
                        f"{self.path}: sidecar says {held or self.doc['num_samples']} samples "
                        f"but the NPY header says {info.num_samples}"
                    )
        if info.num_samples == 0:
            raise UsageError(f"{self.path}: the array is empty")
        if self.doc is not None:
            chunk = int(self.doc["chunk_size"])
        else:
            chunk = chunk_size or DEFAULT_CHUNK_SIZE
        if self.is_ring:
            from shared.ring import RingLayout

            n = int(self.doc["num_samples"])
            self.layout = RingLayout(n, info.dtype, chunk, info.header_len, self.doc["slots"])
        else:
            self.layout = Layout(info.num_samples, info.dtype, chunk, info.header_len)
        self._fd = os.open(self.path, os.O_RDONLY)

    @property
    def is_stream(self) -> bool:
        """Whether the file has a producer sidecar (else it is a plain, complete file)."""
        return self.doc is not None

    @property
    def is_ring(self) -> bool:
        """Whether the stream is a ring of chunk slots (``shared.ring``)."""
        return self.doc is not None and self.doc.get("kind") == "ring"

    @property
    def num_samples(self) -> int:
        """Length of the series."""
        return self.layout.num_samples

    @property
    def generation(self) -> dict[str, Any]:
        """The generation parameters recorded in the sidecar ({} for a plain file)."""
        return dict(self.doc.get("generation", {})) if self.doc else {}

    def poll(self) -> StreamStatus:
        """Re-read the sidecar (a plain file is always complete)."""
        if self.doc is None:
            n = self.layout.num_chunks
            return StreamStatus("complete", "", time.time(), np.ones(n, bool), [None] * n)
        self.doc = load_sidecar(self.sidecar_path)
        if self.is_ring:
            from shared.ring import RingStatus

            return RingStatus(self.doc, self.layout.num_chunks)  # type: ignore[return-value]
        chunks = self.doc["chunks"]
        committed = np.fromiter((c is not None for c in chunks), bool, len(chunks))
        return StreamStatus(
            self.doc["status"],
            str(self.doc.get("message", "")),
            float(self.doc.get("heartbeat", 0.0)),
            committed,
            chunks,
        )

    def committed_ranges(
        self, *, timeout: float = 10.0, poll_interval: float = 0.02, follow: bool = True
    ) -> Iterator[tuple[int, int, int]]:
        """Yield ``(chunk, start, stop)`` once for every chunk, as soon as it is committed.

        Waits for more while the producer is alive; raises ``ProducerFailed`` if
        it reports failure or its heartbeat is older than ``timeout`` seconds.
        With ``follow=False`` it yields what is committed now and stops (raising
        ``ProducerFailed`` if the producer reported failure).
        """
        follower = CommitFollower(self, timeout=timeout, poll_interval=poll_interval, follow=follow)
        done = np.zeros(self.layout.num_chunks, bool)
        while not done.all():
            new = np.nonzero(follower.refresh().committed & ~done)[0]
            for chunk in new:
                done[chunk] = True
                yield (int(chunk), *self.layout.bounds(int(chunk)))
            if not len(new):
                if follower.status.status == "complete":  # a ring overwrote the rest
                    raise StreamError(f"{self.path}: chunks overwritten before they were read")
                if not follower.stalled():
                    if follower.status.status == "failed":
                        raise ProducerFailed(f"producer failed: {follower.status.message}")
                    return
                time.sleep(poll_interval)

    def check_alive(self, st: StreamStatus, timeout: float) -> None:
        """Raise if an incomplete stream's producer failed or its heartbeat is stale."""
        if st.status == "failed":
            raise ProducerFailed(f"producer failed: {st.message or 'no message'}")
        if st.status == "complete":
            if not st.all_done():
                raise FormatError(f"{self.sidecar_path}: marked complete with chunks missing")
            return
        age = time.time() - st.heartbeat
        if age > timeout:
            raise ProducerFailed(
                f"producer heartbeat is {age:.1f} s old (timeout {timeout:g} s): "
                "it has stopped or died"
            )

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Read samples [start, stop) into the front of ``out``; returns that view."""
        view = out[: stop - start]
        at = 0
        for offset, n in self.layout.pieces(start, stop):  # one piece unless a ring wraps
            buf = memoryview(view[at : at + n]).cast("B")
            done = 0
            while done < len(buf):
                got = os.preadv(self._fd, [buf[done:]], offset + done)
                if got == 0:
                    raise FormatError(
                        f"{self.path}: unexpected end of file at byte {offset + done}"
                    )
                done += got
            at += n
        return view

    def map_window(self, start: int, stop: int) -> np.ndarray | None:
        """Samples ``[start, stop)`` as a private map of the file's pages (no copy).

        A read of 1e9 float64 samples into a buffer alone costs about 0.8 s here; the
        kernels can read the page cache in place instead.  The map goes when the last
        view of it does, so RSS stays O(threads x window).  None (read instead) for a
        window that wraps around a ring or lies past the end of the file (damaged:
        ``read_into`` names the problem).
        """
        pieces = list(self.layout.pieces(start, stop))
        if len(pieces) != 1 or stop <= start:
            return None
        offset, size = pieces[0][0], (stop - start) * self.layout.itemsize
        if os.fstat(self._fd).st_size < offset + size:
            return None
        # Private (copy-on-write): a writable array (the kernels are compiled for those),
        # never written.
        return map_samples(self._fd, offset, stop - start, self.layout.dtype)[1]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)`` as a new array."""
        return self.read_into(start, stop, np.empty(stop - start, self.layout.dtype))

    def verify(self, chunks: list[int] | None = None) -> list[int]:
        """Recompute the CRC-32 of committed chunks; return the indices that differ."""
        if self.doc is None:
            raise UsageError(f"{self.path}: no sidecar, so there are no checksums to verify")
        if self.is_ring:
            from shared.ring import verify_ring

            return verify_ring(self)  # the chunks the ring holds now
        st = self.poll()
        bad: list[int] = []
        buf = np.empty(self.layout.chunk_size, self.layout.dtype)
        todo = range(self.layout.num_chunks) if chunks is None else chunks
        for i in todo:
            want = st.checksums[i]
            if want is None:
                continue
            a, b = self.layout.bounds(i)
            if crc32(self.read_into(a, b, buf)) != want:
                bad.append(i)
        return bad

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CommitFollower:
    """The one follower of the commit protocol: which chunks are committed now.

    Re-reads the sidecar at most every ``poll_interval`` seconds.  When nothing
    new is ready, :meth:`wait` decides: with ``follow`` it checks that the
    producer is alive (raising ``ProducerFailed`` if it failed or its heartbeat
    is older than ``timeout`` seconds), sleeps and says to go on; without
    ``follow`` it says to stop at what is committed.

    Parameters
    ----------
    reader
        The stream.
    timeout, poll_interval
        Seconds.
    follow
        Wait for a running producer.
    """

    def __init__(
        self,
        reader: StreamReader,
        *,
        timeout: float = 10.0,
        poll_interval: float = 0.02,
        follow: bool = True,
    ) -> None:
        self.reader = reader
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.follow = follow
        self.status: StreamStatus | None = None
        self._last_poll = 0.0

    def refresh(self) -> StreamStatus:
        """The stream's status, re-read if it is older than ``poll_interval``."""
        if self.status is not None and self.status.status == "complete":
            return self.status  # a complete stream no longer changes: no more re-reads
        now = time.monotonic()
        if self.status is None or now - self._last_poll >= self.poll_interval:
            self.status = self.reader.poll()
            self._last_poll = now
        return self.status

    def committed(self, first: int, last: int) -> bool:
        """Whether chunks ``first..last`` (inclusive) are all committed."""
        return self.refresh().ready(first, last)

    def stalled(self) -> bool:
        """Nothing new is ready: True to keep waiting for the producer, False to stop here.

        Raises ``ProducerFailed`` when following a producer that failed or stopped beating.
        """
        if not self.follow:
            return False
        self.reader.check_alive(self.refresh(), self.timeout)
        return True
