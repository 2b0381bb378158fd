"""Ring streams: a bounded ring of chunk slots instead of an N-sample file.

A ring stream has the same three files as a file stream (data file, sidecar,
labels) plus one small cursor file per attached consumer:

* data file: an NPY 1.0 file of shape ``(S * C,)`` (``S`` slots of ``C`` =
  ``chunk_size`` samples) whose header is ``RING_HEADER_LEN`` bytes; chunk ``k``
  (samples ``[k C, min(N, (k+1) C))``) lives at the start of slot ``k mod S``,
  byte ``header_len + ((k mod S) * C + i - k C) * itemsize`` for its sample ``i``;
* sidecar ``<stem>.stream.json`` (replaced atomically, version 2, ``"kind":
  "ring"``): the file stream's fields except ``chunks``, plus ``slots`` and the
  slot table ``ring``: per slot ``null`` (never written), ``[k, null]`` (claimed for
  chunk ``k``, being written: the chunk it held before is gone) or ``[k, crc]``
  (holds committed chunk ``k``), and ``consumers``, the producer's
  acknowledgements ``{name: {"session": s, "first": f}}``;
* cursor ``<stem>.consumers/<name>.json`` (replaced atomically, written by its
  consumer only): ``session``, ``released`` (the first chunk it still needs),
  ``pid``, ``heartbeat``.

Protocol (the README's "Ring streams" section says the same for third-party code):
the producer writes into a slot that holds a committed chunk only after it has
published the slot as claimed, and claims chunk ``k`` over chunk ``j`` only when
``j`` is committed, at least ``ring_consumers`` cursors are registered and every
cursor's effective ``released`` (the larger of its ``released`` and its
acknowledged ``first``) is above ``j``.  It acknowledges each new cursor session
with ``first = max(released, floor)``, ``floor`` being the first chunk not yet
overwritten.  A consumer registers, waits for its acknowledgement (or a
``complete`` / ``failed`` stream, which no longer changes), refuses to start if
``first`` is after the first chunk it needs (it missed chunks), reads chunk
``k`` only while the table says ``[k, crc]``, and raises ``released`` only after
its own checkpoint has made those chunks unnecessary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.checksum import crc32
from shared.errors import FormatError, StreamError, UsageError
from shared.stream import (
    FORMAT_NAME,
    SUPPORTED_DTYPES,
    Layout,
    StreamWriter,
    _atomic_write_text,
    atomic_temps,
    atomic_write_json,
    check_output_path,
    map_samples,
    npy_header,
    read_npy_header,
    resume_mismatch,
    sibling,
    sidecar_path,
)

RING_KIND = "ring"
RING_VERSION = 2  # sidecar version of a ring (file streams stay at 1)
RING_HEADER_LEN = 128  # len(npy_header(dtype, S * C)) for every shape below 10**62
CONSUMERS_SUFFIX = ".consumers"
DEFAULT_RING_TIMEOUT = 60.0
HEARTBEAT_S = 0.5  # a cursor's heartbeat interval

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(i?)b?|(b?))\s*$", re.IGNORECASE)
_POWERS = {"k": 1, "m": 2, "g": 3, "t": 4}


class RingMissed(StreamError):
    """A consumer needs chunks that the ring has already overwritten."""


def parse_size(option: str, text: str) -> int:
    """Bytes from ``"512MiB"``, ``"2GiB"``, ``"1.5G"`` (K, M, G, T alone are binary too),
    ``"500MB"`` (decimal) or ``"4096"`` / ``"4096B"``."""
    m = _SIZE.match(str(text))
    if m is None:
        raise UsageError(f"{option} must be a size such as 512MiB or 2GiB, not {text!r}")
    number, prefix, binary = m.group(1), m.group(2), m.group(3)
    base = 1024 if binary or not str(text).strip().lower().endswith("b") else 1000
    size = int(float(number) * base ** _POWERS[prefix.lower()]) if prefix else int(float(number))
    if size <= 0:
        raise UsageError(f"{option} must be a positive size, not {text!r}")
    return size


def ring_slots(size: int, chunk_size: int, itemsize: int, num_chunks: int, option: str) -> int:
    """Slots of a ring of ``size`` bytes: ``(size - header) // chunk bytes``, at most the chunks.

    Fewer than two slots is a usage error (naming ``option``).
    """
    chunk_bytes = chunk_size * itemsize
    slots = (size - RING_HEADER_LEN) // chunk_bytes
    if slots < 2:
        raise UsageError(
            f"{option}: a ring needs at least 2 chunk slots of {chunk_bytes} bytes "
            f"({chunk_size} samples) plus a {RING_HEADER_LEN}-byte header "
            f"({2 * chunk_bytes + RING_HEADER_LEN} bytes), not {size}"
        )
    return max(1, min(slots, num_chunks))


def consumers_dir(path: str | os.PathLike[str]) -> Path:
    """``ring.npy`` -> ``ring.consumers`` (the cursor files' directory)."""
    return sibling(path, CONSUMERS_SUFFIX)


def is_ring(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``'s sidecar describes a ring (False if it has none or it is unreadable)."""
    try:
        return json.loads(sidecar_path(path).read_text()).get("kind") == RING_KIND
    except (OSError, ValueError, AttributeError):
        return False


def consumer_name(checkpoint: Path) -> str:
    """A consumer's cursor name, from its checkpoint path: the same outputs, the same cursor."""
    stem = checkpoint.name.split(".")[0] or "consumer"
    tag = zlib.crc32(str(checkpoint.resolve()).encode()) & 0xFFFFFFFF
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', stem)[:40]}-{tag:08x}"


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class RingLayout(Layout):
    """A ring's layout: the stream's chunks (``Layout``) placed in ``slots`` slots."""

    slots: int

    @property
    def file_size(self) -> int:
        """Bytes of the ring's data file, header included."""
        return self.header_len + self.slots * self.chunk_size * self.itemsize

    def offset(self, sample: int) -> int:
        """File offset of stream sample ``sample`` (in its chunk's slot)."""
        chunk, within = divmod(sample, self.chunk_size)
        return self.header_len + ((chunk % self.slots) * self.chunk_size + within) * self.itemsize

    def pieces(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        """``(file offset, samples)`` runs holding samples ``[start, stop)``: consecutive
        chunks sit in consecutive slots, so a window splits only where it wraps."""
        while start < stop:
            chunk = start // self.chunk_size
            wrap = (chunk - chunk % self.slots + self.slots) * self.chunk_size
            end = min(stop, wrap)
            yield self.offset(start), end - start
            start = end


def check_ring_doc(path: Path, doc: dict[str, Any]) -> None:
    """Validate a ring sidecar's own fields (``load_sidecar`` checks the common ones)."""
    slots, table = doc.get("slots"), doc.get("ring")
    ok = (
        isinstance(slots, int)
        and slots >= 1
        and isinstance(table, list)
        and len(table) == slots
        and isinstance(doc.get("consumers", {}), dict)
        and all(
            e is None
            or (
                isinstance(e, list)
                and len(e) == 2
                and isinstance(e[0], int)
                and e[0] % slots == s
                and (e[1] is None or isinstance(e[1], int))
            )
            for s, e in enumerate(table)
        )
    )
    if not ok:
        raise FormatError(f"{path}: corrupt sidecar (inconsistent ring table)")


class RingStatus:
    """One reading of a ring's sidecar, with the interface of ``StreamStatus``.

    Chunk ``k``'s state comes from slot ``k mod S`` alone, so every question costs
    O(1) per chunk and the table O(S), whatever the stream's length.
    """

    def __init__(self, doc: dict[str, Any], num_chunks: int) -> None:
        self.status = doc["status"]
        self.message = str(doc.get("message", ""))
        self.heartbeat = float(doc.get("heartbeat", 0.0))
        self.slots = int(doc["slots"])
        self.table: list[list[int | None] | None] = doc["ring"]
        self.acks: dict[str, dict[str, Any]] = doc.get("consumers") or {}
        self.num_chunks = num_chunks

    def state(self, chunk: int) -> str:
        """``committed``, ``gone`` (overwritten), ``writing`` or ``pending`` (not yet)."""
        e = self.table[chunk % self.slots]
        if e is None or e[0] < chunk:
            return "pending"
        if e[0] > chunk:
            return "gone"
        return "writing" if e[1] is None else "committed"

    def checksum(self, chunk: int) -> int | None:
        """Chunk ``chunk``'s CRC-32 while the ring holds it (else None)."""
        e = self.table[chunk % self.slots]
        return e[1] if e is not None and e[0] == chunk else None

    def done(self, chunk: int) -> bool:
        """Whether ``chunk`` was committed (and may since have been overwritten)."""
        return self.state(chunk) in ("committed", "gone")

    @property
    def frontier(self) -> int:
        """One past the highest chunk claimed or committed (0 before any)."""
        return max((e[0] + 1 for e in self.table if e is not None), default=0)

    @property
    def floor(self) -> int:
        """The first chunk not overwritten yet."""
        return max(0, self.frontier - self.slots)

    def ready(self, first: int, last: int) -> bool:
        """Whether chunks ``first..last`` are all in the ring (``RingMissed`` if one is gone)."""
        ok = True
        for k in range(first, last + 1):
            s = self.state(k)
            if s == "gone":
                raise RingMissed(
                    f"missed chunk {k}: the ring has overwritten it (it holds chunks from "
                    f"{self.floor} on); was the consumer's cursor file removed?"
                )
            ok = ok and s == "committed"
        return ok

    def all_done(self) -> bool:
        """Whether every chunk was committed (the last ``S`` are then all in the ring)."""
        return all(
            self.done(k) for k in range(max(0, self.num_chunks - self.slots), self.num_chunks)
        )

    @property
    def committed(self) -> np.ndarray:
        """Per chunk, whether the ring holds it committed now (O(N / C): for reports only)."""
        out = np.zeros(self.num_chunks, bool)
        for e in self.table:
            if e is not None and e[1] is not None and e[0] < self.num_chunks:
                out[e[0]] = True
        return out

    @property
    def checksums(self) -> list[int | None]:
        """Per chunk, its CRC-32 while the ring holds it (O(N / C): for reports only)."""
        out: list[int | None] = [None] * self.num_chunks
        for e in self.table:
            if e is not None and e[1] is not None and e[0] < self.num_chunks:
                out[e[0]] = e[1]
        return out


def verify_ring(reader: Any) -> list[int]:
    """CRC-32 of every chunk the ring holds; the chunks that differ (and were not
    overwritten meanwhile, which a second reading of the table rules out)."""
    st = reader.poll()
    bad = []
    buf = np.empty(reader.layout.chunk_size, reader.layout.dtype)
    for e in st.table:
        if e is not None and e[1] is not None:
            a, b = reader.layout.bounds(e[0])
            if crc32(reader.read_into(a, b, buf)) != e[1]:
                bad.append(e[0])
    after = reader.poll()
    return sorted(k for k in bad if after.checksum(k) == st.checksum(k))


# --------------------------------------------------------------------------- consumer side


@dataclass(frozen=True)
class Cursor:
    """One consumer's cursor file as the producer reads it."""

    name: str
    session: str
    released: int
    pid: int | None
    heartbeat: float
    path: Path


def read_cursors(directory: Path) -> dict[str, Cursor]:
    """Every cursor in ``directory`` (none if it does not exist).

    A file that is not a valid cursor counts as a consumer that holds everything
    and never beats, so a ring never loses chunks to a damaged file: the
    producer stops with a message naming it once it waits for it.
    """
    out: dict[str, Cursor] = {}
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return out
    for fname in names:
        if fname.startswith(".") or not fname.endswith(".json"):
            continue  # temporary files of an atomic replace
        name, path = fname[:-5], directory / fname
        try:
            d = json.loads(path.read_text())
            out[name] = Cursor(
                name,
                str(d["session"]),
                int(d["released"]),
                d.get("pid"),
                float(d["heartbeat"]),
                path,
            )
        except FileNotFoundError:
            continue  # unregistered meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            out[name] = Cursor(name, "?", 0, None, 0.0, path)
    return out


class RingCursor:
    """A consumer's registration on a ring: its cursor file, kept beating by a thread.

    Parameters
    ----------
    ring
        The ring's data file.
    name
        The cursor's name (``consumer_name`` of the consumer's checkpoint).
    """

    def __init__(self, ring: Path, name: str) -> None:
        self.ring = ring
        self.name = name
        self.path = consumers_dir(ring) / f"{name}.json"
        self.session = os.urandom(8).hex()
        self.released = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: bytes | None = None

    def _write(self) -> None:
        with self._lock:
            doc = {
                "session": self.session,
                "released": self.released,
                "pid": os.getpid(),
                "heartbeat": time.time(),
            }
            atomic_write_json(self.path, doc, fsync=False)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError:
                pass  # the next beat retries; a producer waiting on us sees the age

    def register(self, released: int) -> None:
        """Write the cursor (a new session holding chunks from ``released`` on); start beating."""
        self.path.parent.mkdir(exist_ok=True)
        self._remove_stale_temps()
        try:
            self._previous = self.path.read_bytes()
        except FileNotFoundError:
            self._previous = None
        self.released = released
        self._write()
        self._thread = threading.Thread(target=self._beat, name="ring-cursor", daemon=True)
        self._thread.start()

    def _remove_stale_temps(self) -> None:
        """Remove the temporaries of this cursor's atomic writes that an earlier run left
        (killed between writing one and renaming it: the cursor is rewritten at every
        release, so a SIGKILL lands there now and then).  Only this cursor's name, and
        not this process's own."""
        mine = f".{os.getpid()}."
        for p in atomic_temps(self.path):
            if not p.name[len(self.path.name) + 1 :].startswith(mine):
                p.unlink(missing_ok=True)

    def wait_ack(self, reader: Any, timeout: float, stop: Any, poll_interval: float = 0.01) -> int:
        """Wait for the producer to acknowledge this session; the first chunk it guarantees.

        A ``complete`` ring no longer changes: its floor is guaranteed.  A ``failed``
        one may be resumed by a producer started just after this consumer (both sides
        resumed at once): it gets ``timeout`` seconds to be, as a silent producer does,
        and then its floor is guaranteed (the tail then reports the failure).  Raises
        ``ProducerFailed`` when a running producer's heartbeat is older than ``timeout``.
        """
        since = time.monotonic()
        while True:
            st = reader.poll()
            ack = st.acks.get(self.name)
            if ack is not None and ack.get("session") == self.session:
                return int(ack["first"])
            waited = time.monotonic() - since
            if st.status == "complete" or (st.status == "failed" and waited > timeout):
                return st.floor
            if st.status != "failed":
                reader.check_alive(st, timeout)
            if stop is not None and stop.is_set():
                raise stop.interrupted() if hasattr(stop, "interrupted") else StreamError("stopped")
            time.sleep(poll_interval)

    def release(self, chunk: int) -> None:
        """Let the producer overwrite every chunk before ``chunk`` (never moves back)."""
        if chunk > self.released:
            self.released = chunk
            self._write()

    def _halt(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def close(self, done: bool) -> None:
        """Stop beating; ``done``: unregister (the file goes), else keep it for ``--resume``."""
        self._halt()
        if done:
            self.path.unlink(missing_ok=True)

    def abandon(self) -> None:
        """Undo ``register`` (a run that failed to start): the previous file, or none."""
        self._halt()
        if self._previous is None:
            self.path.unlink(missing_ok=True)
        else:
            _atomic_write_text(self.path, self._previous.decode(), fsync=False)


# --------------------------------------------------------------------------- producer side


class RingWriter(StreamWriter):
    """The single writer of a ring stream: ``StreamWriter``'s interface plus ``claim``.

    A worker calls ``claim(chunk)`` before writing any byte of ``chunk``: it
    returns once the chunk's slot may be written (its previous chunk committed
    and released by every consumer, and the claim published), or False when
    ``halted()`` says to stop; it raises ``StreamError`` after ``ring_timeout``
    seconds without a live consumer to wait for.

    Parameters
    ----------
    path
        The ring's data file.
    ring_bytes
        Size of the data file (``None``: resume an existing ring as it is).
    ring_consumers
        Registered consumers required before the first slot is overwritten.
    ring_timeout
        Seconds a consumer may go without a heartbeat while the producer waits for it.
    **kwargs
        As for :class:`shared.stream.StreamWriter`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ring_bytes: int | None,
        ring_consumers: int = 1,
        ring_timeout: float = DEFAULT_RING_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        self.ring_bytes = ring_bytes
        self.ring_consumers = ring_consumers
        self.ring_timeout = ring_timeout
        self.consumers_dir = consumers_dir(Path(path))
        self._publish_lock = threading.Lock()
        self._scan_lock = threading.Lock()  # one waiting worker rescans, the others sleep
        self._cond = threading.Condition()  # replaced by one over the writer's lock
        self._cursors: dict[str, tuple[int, Cursor]] = {}
        self._claim_seq = self._published_seq = 0
        self._seq_of: dict[int, int] = {}  # slot -> claim whose publication it needs
        self._keep_cursors = False  # --resume restarting a ring that never got going
        super().__init__(path, **kwargs)

    # -- setup -------------------------------------------------------------------------

    def _ring_layout(self, n: int, dtype: str, chunk_size: int, option: str) -> RingLayout:
        itemsize = np.dtype(SUPPORTED_DTYPES[dtype]).itemsize
        if self.ring_bytes is None:
            raise UsageError(f"{self.path}: no ring to resume; give its size with --ring")
        slots = ring_slots(self.ring_bytes, chunk_size, itemsize, -(-n // chunk_size), option)
        header_len = len(npy_header(dtype, slots * chunk_size))
        return RingLayout(n, np.dtype(SUPPORTED_DTYPES[dtype]), chunk_size, header_len, slots)

    def _create(
        self, n: int, dtype: str, chunk_size: int, extra: dict[str, Any], overwrite: bool
    ) -> None:
        path = self.path
        parent = check_output_path(path)
        if not overwrite:
            for p in (path, self.sidecar):
                if p.exists():
                    raise UsageError(
                        f"{p} exists; pass --overwrite to replace it or --resume to continue it"
                    )
        self.layout = layout = self._ring_layout(n, dtype, chunk_size, "--ring")
        self._check_space(parent, layout)
        now = time.time()
        self.doc = {
            "format": FORMAT_NAME,
            "version": RING_VERSION,
            "kind": RING_KIND,
            "data_file": path.name,
            "dtype": dtype,
            "num_samples": n,
            "header_len": layout.header_len,
            "chunk_size": chunk_size,
            "slots": layout.slots,
            "checksum": "crc32",
            **extra,
            "status": "running",
            "message": "",
            "pid": os.getpid(),
            "created": now,
            "heartbeat": now,
            "ring_consumers": self.ring_consumers,
            "ring_timeout": self.ring_timeout,
            "ring": [None] * layout.slots,
            "consumers": {},
        }
        self._cond = threading.Condition(self._lock)
        # The set-up order of a file stream: our sidecar claims the name first, so
        # whatever a kill leaves has it beside the data file and --resume starts afresh.
        created = self._claim_and_lock(overwrite)
        fd = self._fd
        if not self._keep_cursors:
            # No consumer can be attached to this ring yet (its data file has no
            # header): cursors left there belong to a replaced stream.
            self._drop_cursors()
        self.consumers_dir.mkdir(exist_ok=True)
        header = npy_header(dtype, layout.slots * chunk_size)
        # Restarting a ring whose set-up had finished: a consumer may have it open
        # already, so keep its header in place (no chunk is committed: no slot matters).
        laid_out = (
            self._keep_cursors
            and os.fstat(fd).st_size == layout.file_size
            and os.pread(fd, len(header), 0) == header
        )
        try:
            self._publish()  # ours now (replacing a previous stream's sidecar, if any)
            if not laid_out:
                os.ftruncate(fd, 0)
                self._reserve(layout.file_size)
                os.pwrite(fd, header, 0)
            self._make_spare()
        except BaseException as e:
            self._abort_create(e, created)
            raise

    def _check_space(self, parent: Path, layout: RingLayout) -> None:
        """Refuse before touching anything when the ring (and labels) cannot fit."""
        files = [self.path]
        needed = layout.file_size
        if self.companions is not None:
            beside = self.companions()
            needed += sum(beside.values())
            files += list(beside)
        free = shutil.disk_usage(parent).free
        free += sum(p.stat().st_blocks * 512 for p in files if p.is_file())  # replaced
        if needed > free:
            raise StreamError(
                f"{self.path}: not enough disk space for a ring of {layout.slots} slots: "
                f"need {needed} bytes, {free} free (a smaller --ring or another path)"
            )

    def _abort_create(self, e: BaseException, created: bool) -> None:
        """A ring that failed while being set up: say so, and leave nothing if it was new."""
        self.doc["status"] = "failed"
        self.doc["message"] = str(e) or type(e).__name__
        try:
            self._publish()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1
        self._drop_spare()
        if created:
            for p in (self.path, self.sidecar):
                p.unlink(missing_ok=True)
            self._drop_cursors()
            try:
                self.consumers_dir.rmdir()
            except OSError:
                pass  # not ours, or not empty: leave it

    def _drop_cursors(self) -> None:
        """Remove the cursor files (only those: the directory could hold anything else)."""
        for p in self.consumers_dir.glob("*.json"):
            p.unlink(missing_ok=True)

    def _open_resume(self, n: int, dtype: str, chunk_size: int, extra: dict[str, Any]) -> None:
        """Continue the ring; start it if it does not exist or was killed while setting up
        (the states of ``StreamWriter._open_resume``)."""
        path = self.path
        doc = self._sidecar_to_resume()
        if doc is None:
            return self._create(n, dtype, chunk_size, extra, overwrite=False)  # not begun
        if doc.get("kind") != RING_KIND:
            raise UsageError(f"{path}: a file stream, not a ring; resume it without --ring")
        resume_mismatch(path, doc, {"num_samples": n, "dtype": dtype, **extra})
        chunk_size = int(doc["chunk_size"])
        if all(e is None for e in doc["ring"]):
            if self.ring_bytes is None:  # resumed without --ring: the ring's own size
                self.ring_bytes = int(doc["header_len"]) + int(doc["slots"]) * chunk_size * (
                    np.dtype(SUPPORTED_DTYPES[dtype]).itemsize
                )
            self._keep_cursors = True  # consumers attached to it stay attached
            return self._create(n, dtype, chunk_size, extra, overwrite=True)  # nothing written
        if not path.exists():
            raise FormatError(
                f"{path}: data file missing beside a sidecar with committed chunks; "
                "cannot resume (--overwrite starts again)"
            )
        info = read_npy_header(path)
        slots = int(doc["slots"])
        if info.num_samples != slots * chunk_size:
            raise FormatError(f"{path}: its header disagrees with the ring's {slots} slots")
        if self.ring_bytes is not None:
            want = self._ring_layout(n, dtype, chunk_size, "--ring").slots
            if want != slots:
                raise UsageError(
                    f"cannot resume {path}: the ring has {slots} slots of {chunk_size} "
                    f"samples, --ring gives {want}"
                )
        fd = os.open(path, os.O_RDWR)
        self._lock_fd(fd)
        self._fd = fd
        self._remove_stale_temps()
        self.consumers_dir.mkdir(exist_ok=True)
        self.layout = RingLayout(n, info.dtype, chunk_size, info.header_len, slots)
        self.doc = doc
        doc.setdefault("consumers", {})
        doc["ring_consumers"], doc["ring_timeout"] = self.ring_consumers, self.ring_timeout
        self._cond = threading.Condition(self._lock)
        if doc["status"] != "complete":
            self._make_spare()
            doc.update(status="running", message="", pid=os.getpid(), heartbeat=time.time())
            self._publish()

    # -- state -------------------------------------------------------------------------

    def _status(self) -> RingStatus:
        return RingStatus(self.doc, self.layout.num_chunks)

    def committed(self) -> list[bool]:
        """Per chunk, whether it was committed (it may since have been overwritten)."""
        with self._lock:
            st = self._status()
            return [st.done(k) for k in range(self.layout.num_chunks)]

    def _publish(self, exclusive: bool = False) -> None:
        # One publisher at a time: an older snapshot renamed over a newer one could
        # hide a claim, and a reader would then trust a slot that is being written.
        with self._publish_lock:
            self._scan_consumers()
            with self._lock:
                seq = self._claim_seq
            super()._publish(exclusive=exclusive)
            self._published_seq = seq

    def _scan_consumers(self) -> None:
        """Re-read the cursors; acknowledge new sessions at ``max(released, floor)``."""
        cursors = read_cursors(self.consumers_dir)
        with self._cond:
            acks = self.doc["consumers"]
            floor = self._status().floor
            new = {}
            for name, c in cursors.items():
                a = acks.get(name)
                if a is None or a.get("session") != c.session:
                    a = {"session": c.session, "first": max(c.released, floor)}
                new[name] = a
            if new != acks:
                self.doc["consumers"] = new
                self._dirty.set()
            held = {n: (max(c.released, new[n]["first"]), c) for n, c in cursors.items()}
            if held != self._cursors:
                self._cursors = held
                self._cond.notify_all()  # a waiting claim may go on

    # -- claiming slots ----------------------------------------------------------------

    def _blocker(self, chunk: int) -> tuple[str, Cursor | None] | None:
        """Why ``chunk``'s slot cannot be claimed now (None: it can). Holds the lock."""
        slots = self.layout.slots
        e = self.doc["ring"][chunk % slots]
        if e is None:
            # A slot's first chunk; a later one waits for the earlier chunks of its slot.
            return None if chunk < slots else ("writing", None)
        if e[0] >= chunk:
            raise StreamError(f"internal error: chunk {chunk} claimed over chunk {e[0]}")
        if e[1] is None or e[0] != chunk - slots:
            # The slot's previous chunk (chunk - S) is still to be written or committed by
            # another worker: claiming over an earlier one would skip it.
            return ("writing", None)
        if len(self._cursors) < self.ring_consumers:
            return ("consumers", None)
        for released, c in self._cursors.values():
            if released <= e[0]:
                return ("consumer", c)
        return None

    def _claim_from(self, chunk: int) -> bool:
        """Claim ``chunk`` and up to a quarter ring after it; whether ``chunk``'s claim
        must be published before it is written (its slot held a committed chunk)."""
        table, slots = self.doc["ring"], self.layout.slots
        batch = max(1, min(64, slots // 4))
        k = chunk
        while k < min(chunk + batch, self.layout.num_chunks):
            e = table[k % slots]
            if e is not None and e[0] == k:
                k += 1
                continue
            if self._blocker(k) is not None:
                break
            if e is not None:
                self._claim_seq += 1
                self._seq_of[k % slots] = self._claim_seq
            table[k % slots] = [k, None]
            k += 1
        return self._seq_of.get(chunk % slots, 0) > self._published_seq

    def claim(self, chunk: int, halted: Callable[[], bool] | None = None) -> bool:
        """Wait until ``chunk``'s slot may be written; False if ``halted()`` asked to stop."""
        slot = chunk % self.layout.slots
        since = time.time()  # a consumer gets ring_timeout from here to beat again
        while True:
            with self._cond:
                e = self.doc["ring"][slot]
                if e is not None and e[0] == chunk:
                    publish = self._seq_of.get(slot, 0) > self._published_seq
                    blocker = None
                else:
                    blocker = self._blocker(chunk)
                    publish = self._claim_from(chunk) if blocker is None else False
            if blocker is None:
                if publish:
                    self._publish()  # the claim is visible before any byte is written
                return True
            if halted is not None and halted():
                return False
            if blocker[0] != "writing":
                self._check_wait(blocker, since)
                if self._scan_lock.acquire(blocking=False):
                    try:
                        self._scan_consumers()  # notifies the others if anything changed
                    finally:
                        self._scan_lock.release()
            with self._cond:
                self._cond.wait(0.01)

    def _check_wait(self, blocker: tuple[str, Cursor | None], since: float) -> None:
        """Give up (resumable) on a ring nobody attaches to or whose consumer died
        (``since``: when this wait began, Unix time)."""
        kind, c = blocker
        if kind == "consumers" and time.time() - since > self.ring_timeout:
            raise StreamError(
                f"{self.path}: no consumer attached within {self.ring_timeout:g} s "
                f"(--ring-consumers {self.ring_consumers}, {len(self._cursors)} attached); "
                "rerun the producer with --resume, then start one"
            )
        if kind == "consumer" and c is not None:
            # Silent for ring_timeout while we waited (a resumed run's old cursor gets
            # that long for its consumer to come back).
            age = time.time() - max(c.heartbeat, since)
            if age > self.ring_timeout:
                raise StreamError(
                    f"{self.path}: consumer {c.name} (pid {c.pid}) holds chunk {c.released} "
                    f"and has not beaten for {age:.0f} s of waiting (--ring-timeout "
                    f"{self.ring_timeout:g}): "
                    "rerun the producer with --resume, then resume that consumer with "
                    f"--resume (or delete {c.path} to detach it)"
                )

    # -- writing -----------------------------------------------------------------------

    @property
    def maps_slots(self) -> bool:
        """Whether workers may generate straight into the slots (:meth:`fill_slot`).

        Only when every byte of the data file is allocated (a preallocated ring):
        a store through a map into a hole that the filesystem cannot fill kills
        the process with SIGBUS, where ``pwrite`` would return ENOSPC.
        """
        if self._fd < 0:
            return False
        return os.fstat(self._fd).st_blocks * 512 >= self.layout.file_size

    def fill_slot(self, chunk: int, fill: Callable[[np.ndarray], int]) -> int:
        """Call ``fill(view)`` with ``chunk``'s slot as a writable array over a shared
        map (after ``claim``; visible at ``commit``); return what it returns.

        Generating in place saves the copy ``pwrite`` makes (in a profile of
        ``single_machine.py`` at 3e8, the producer's threads spent 0.9 of their 3.5
        CPU-seconds in the kernel, mostly that copy).  The map covers only this chunk
        and is unmapped before returning, so the writer's RSS stays O(threads x
        chunk).  ``fill`` must not keep the view.
        """
        a, b = self.layout.bounds(chunk)
        pages, view = map_samples(
            self._fd, self.layout.offset(a), b - a, self.layout.dtype, shared=True
        )
        # If ``fill`` raises, its traceback holds the view: the map goes with it.
        result = fill(view)
        del view
        pages.close()  # BufferError if ``fill`` kept a view: a bug
        return result

    def write_at(self, sample: int, data: np.ndarray) -> None:
        """Write samples at ``sample`` into their slots (after ``claim``; visible at ``commit``)."""
        view = memoryview(data).cast("B")
        w = self.layout.itemsize
        done = 0
        for offset, count in self.layout.pieces(sample, sample + len(data)):
            piece = view[done : done + count * w]
            written = 0
            while written < len(piece):
                written += os.pwrite(self._fd, piece[written:], offset + written)
            done += count * w

    def write_chunk(self, chunk: int, data: np.ndarray, checksum: int | None = None) -> None:
        """Claim ``chunk``'s slot (waiting for it), write the chunk and commit it."""
        self.claim(chunk)
        super().write_chunk(chunk, data, checksum)

    def commit(self, chunk: int, checksum: int) -> None:
        """Mark ``chunk`` committed in its slot: every byte of it must already be written."""
        if self.fsync:
            os.fdatasync(self._fd)
        with self._cond:
            slot = chunk % self.layout.slots
            e = self.doc["ring"][slot]
            if e is None or e[0] != chunk:
                raise StreamError(f"internal error: chunk {chunk} committed without its claim")
            self.doc["ring"][slot] = [chunk, checksum]
            self._cond.notify_all()
        self._dirty.set()
