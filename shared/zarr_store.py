"""Streams in a Zarr v3 store, for object storage (S3, GCS, ... through fsspec) or a local path.

Layout of a store (``gen.zarr``, ``s3://bucket/gen.zarr``)::

    zarr.json      the root group; its attributes hold the stream's fixed metadata
    data/          the samples: 1-D, (N,), <f8 or <f4, chunks of one RNG block
                   (65536 samples), one shard per Dask task span, no compression
    labels/        sorted int64 anomaly indices (when anomalies are injected)
    stream.json    the sidecar: the same document as a ``.npy`` stream's, with
                   "storage": "zarr" (status, heartbeat, CRC-32 of every chunk)

Commit protocol as for ``.npy`` streams: a shard is written whole by one task
(one object PUT, atomic on object stores; zarr's local store writes a temporary
file and renames it), then the driver publishes ``stream.json`` with the CRC-32
values of its chunks.  Only the driver writes ``stream.json`` and ``labels``.

:class:`ZarrStreamWriter` has the commit interface of
``shared.stream.StreamWriter`` (``layout``, ``status``, ``committed``,
``commit``, ``finish``, ``fail``, ``close``); :class:`ZarrStreamReader` is a
``shared.stream.StreamReader`` (``poll``, ``read_into``, ``check_alive``), so the
consumer's tail and ``CommitFollower`` follow a store as they follow a file.
Chunk CRC-32 values are those of the raw little-endian bytes, as in a ``.npy``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import FormatError, StreamError, UsageError
from shared.stream import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SUPPORTED_DTYPES,
    Layout,
    StreamReader,
    StreamStatus,
    atomic_write_json,
    parse_sidecar,
    publish_loop,
    resume_mismatch,
)

STREAM_KEY = "stream.json"
DATA, LABELS = "data", "labels"
ZARR_CHUNK = 1 << 16  # samples per Zarr chunk: one RNG block (producer.generate.BLOCK_SIZE)
LABELS_CHUNK = 1 << 16  # indices per chunk of the labels array
LIVE_WRITER_AGE = 5.0  # seconds: a running stream whose heartbeat is younger has a writer


def store_location(location: str | os.PathLike[str]) -> str:
    """``location`` as text, with a URL that went through ``pathlib.Path`` repaired
    (``Path("s3://b/x")`` is ``s3:/b/x``)."""
    text = str(location)
    m = _COLLAPSED_URL.match(text)
    return f"{m.group(1)}://{m.group(2)}" if m else text


_COLLAPSED_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/([^/].*)$")


def is_zarr(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` names a Zarr store: a URL (``s3://...``) or a path ending ``.zarr``."""
    text = store_location(location)
    return "://" in text or text.rstrip("/").endswith(".zarr")


def output_base(location: str | os.PathLike[str]) -> Path:
    """Where a run's default outputs go: beside a local input, in the current directory
    (named after the store) for a URL."""
    text = str(location)
    if "://" in text and not text.startswith("file://"):
        return Path.cwd() / text.rstrip("/").split("/")[-1]
    return Path(text.removeprefix("file://"))


class ZarrLocation:
    """A store at a local path or an fsspec URL, and its sidecar object.

    Parameters
    ----------
    location
        ``gen.zarr``, ``file:///data/gen.zarr`` or ``s3://bucket/gen.zarr``.
    storage_options
        fsspec options for URLs (``key``, ``secret``, ``endpoint_url``, ...).
    """

    def __init__(self, location: str, storage_options: dict[str, Any] | None = None) -> None:
        self.location = store_location(location).rstrip("/")
        self.storage_options = dict(storage_options or {})
        text = self.location
        self.local = "://" not in text or text.startswith("file://")
        self.root = text.removeprefix("file://") if self.local else text
        self._fs = None
        if self.local:
            parent = Path(self.root).parent
            if not parent.is_dir():
                raise UsageError(f"{self.location}: directory {parent} does not exist")

    @property
    def sidecar(self) -> str:
        """Where the sidecar lives (for messages)."""
        return f"{self.location}/{STREAM_KEY}"

    def fs(self) -> Any:
        """The fsspec filesystem and the store's path in it (URLs only)."""
        if self._fs is None:
            import fsspec

            try:
                self._fs = fsspec.core.url_to_fs(self.location, **self.storage_options)
            except (ImportError, ValueError) as e:
                raise UsageError(f"{self.location}: {e}") from None
        return self._fs

    def store(self, read_only: bool = False) -> Any:
        """The zarr store object."""
        from zarr.storage import FsspecStore, LocalStore

        if self.local:
            return LocalStore(self.root, read_only=read_only)
        return FsspecStore.from_url(
            self.location, storage_options=self.storage_options, read_only=read_only
        )

    def exists(self) -> bool:
        """Whether anything of a store is there (its sidecar or its root group)."""
        if self.local:
            return any((Path(self.root) / k).exists() for k in (STREAM_KEY, "zarr.json"))
        fs, root = self.fs()
        return any(fs.exists(f"{root}/{k}") for k in (STREAM_KEY, "zarr.json"))

    def read_sidecar(self) -> dict[str, Any]:
        """The sidecar, validated as a ``.npy`` stream's is."""
        try:
            if self.local:
                text = (Path(self.root) / STREAM_KEY).read_text()
            else:
                fs, root = self.fs()
                text = fs.cat_file(f"{root}/{STREAM_KEY}").decode()
        except FileNotFoundError:
            raise FormatError(
                f"{self.sidecar}: sidecar missing (not a tsstream Zarr store)"
            ) from None
        doc = parse_sidecar(text, self.sidecar)
        if doc.get("storage") != "zarr":
            raise FormatError(f"{self.sidecar}: not the sidecar of a Zarr stream")
        return doc

    def write_sidecar(self, doc: dict[str, Any]) -> None:
        """Replace the sidecar as one object (a rename locally, one PUT on object stores)."""
        if self.local:
            atomic_write_json(Path(self.root) / STREAM_KEY, doc)
        else:
            fs, root = self.fs()
            fs.pipe_file(f"{root}/{STREAM_KEY}", json.dumps(doc, separators=(",", ":")).encode())


# Arrays opened in this process (workers write many spans of one array).
_ARRAYS: dict[tuple[str, str, str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def open_array(
    location: str, name: str, storage_options: dict[str, Any] | None = None, token: str = ""
) -> Any:
    """The array ``name`` of the store at ``location``, opened once per process.

    ``token`` (the array's ``created`` attribute) keeps a worker from writing
    through a handle to an array that an ``--overwrite`` run has replaced since.
    """
    import zarr

    key = (str(location), json.dumps(storage_options or {}, sort_keys=True), name, token)
    with _ARRAYS_LOCK:
        if key not in _ARRAYS:
            store = ZarrLocation(location, storage_options).store()
            _ARRAYS[key] = zarr.open_array(store, path=name, mode="r+", zarr_format=3)
            while len(_ARRAYS) > 8:
                _ARRAYS.pop(next(iter(_ARRAYS)))
        return _ARRAYS[key]


def write_span(
    location: str,
    name: str,
    start: int,
    values: np.ndarray,
    storage_options: dict[str, Any] | None = None,
    token: str = "",
) -> None:
    """Write ``values`` at ``start`` of array ``name`` (a task's whole shard)."""
    array = open_array(location, name, storage_options, token)
    array[start : start + len(values)] = values


def create_array(
    location: ZarrLocation, name: str, n: int, dtype: str, shard: int, chunk: int = ZARR_CHUNK
) -> str:
    """Create (replacing) a 1-D array of ``chunk``-sample chunks (default: one RNG block)
    and ``shard``-sample shards (a multiple of ``chunk``).

    Returns its token (the ``created`` attribute: when it was created, and by whom).
    """
    import zarr

    token = f"{time.time():.6f}-{os.getpid()}"
    zarr.create_array(
        location.store(),
        name=name,
        shape=(n,),
        dtype=dtype,
        chunks=(chunk,),
        shards=(shard,),
        compressors=None,  # random samples do not compress; zstd would only cost CPU
        fill_value=0,
        attributes={"created": token},
        overwrite=True,
    )
    return token


def array_token(location: ZarrLocation, name: str) -> str:
    """The token of an existing array (see :func:`open_array`)."""
    import zarr

    array = zarr.open_array(location.store(read_only=True), path=name, mode="r", zarr_format=3)
    return str(array.attrs.get("created", ""))


class ZarrStreamWriter:
    """The one writer of a Zarr stream's sidecar and labels (the Dask driver).

    Parameters
    ----------
    location
        The store (``gen.zarr``, ``s3://bucket/gen.zarr``).
    num_samples, dtype, chunk_size, extra
        As for ``shared.stream.StreamWriter`` (``extra``: the generation fields).
    shard
        Samples per shard (a task span; a multiple of ``chunk_size``).
    overwrite, resume
        Replace an existing store / continue one (its shards keep their size).
    storage_options
        fsspec options for URLs.
    heartbeat_interval, publish_interval
        Seconds between heartbeats, and the least between two publishes.
    """

    def __init__(
        self,
        location: str,
        *,
        num_samples: int,
        dtype: str,
        chunk_size: int,
        shard: int,
        extra: dict[str, Any],
        overwrite: bool = False,
        resume: bool = False,
        storage_options: dict[str, Any] | None = None,
        heartbeat_interval: float = 0.5,
        publish_interval: float = 0.02,
    ) -> None:
        if chunk_size % ZARR_CHUNK or shard % chunk_size:
            raise UsageError(
                f"--chunk_size must be a multiple of {ZARR_CHUNK} for a Zarr store, "
                f"not {chunk_size}"
            )
        self.where = ZarrLocation(location, storage_options)
        self.location = self.where.location
        self.heartbeat_interval, self.publish_interval = heartbeat_interval, publish_interval
        self.layout = Layout(num_samples, np.dtype(SUPPORTED_DTYPES[dtype]), chunk_size, 0)
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        if resume:
            self._open_resume(num_samples, dtype, chunk_size, extra)
        else:
            self._create(num_samples, dtype, chunk_size, shard, extra, overwrite)
        self._thread = threading.Thread(target=self._publisher, name="zarr-publisher", daemon=True)
        self._thread.start()

    def _create(self, n, dtype, chunk_size, shard, extra, overwrite) -> None:
        import zarr

        if self.where.exists() and not overwrite:
            raise UsageError(
                f"{self.location} exists; pass --overwrite to replace it or --resume to continue it"
            )
        self.doc = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "storage": "zarr",
            "data_file": DATA,
            "dtype": dtype,
            "num_samples": n,
            "header_len": 0,
            "chunk_size": chunk_size,
            "shard": shard,
            "checksum": "crc32",
            **extra,
            "status": "running",
            "message": "",
            "pid": os.getpid(),
            "created": time.time(),
            "heartbeat": time.time(),
            "chunks": [None] * self.layout.num_chunks,
        }
        fixed = {k: v for k, v in self.doc.items() if k not in ("status", "heartbeat", "chunks")}
        # mode="w" clears the store (an overwritten run's shards and sidecar) first.
        zarr.open_group(self.where.store(), mode="w", attributes={"tsstream": fixed})
        self.token = create_array(self.where, DATA, n, SUPPORTED_DTYPES[dtype], shard)
        self._publish()

    def _open_resume(self, n, dtype, chunk_size, extra) -> None:
        if not self.where.exists():
            raise UsageError(f"{self.location}: nothing to resume (no stream there)")
        doc = self.where.read_sidecar()
        resume_mismatch(self.location, doc, {"num_samples": n, "dtype": dtype, **extra})
        age = time.time() - float(doc.get("heartbeat", 0))
        if doc["status"] == "running" and age < LIVE_WRITER_AGE:
            raise StreamError(f"{self.location}: another producer is writing this stream")
        self.layout = Layout(n, self.layout.dtype, int(doc["chunk_size"]), 0)
        self.doc = doc
        self.token = array_token(self.where, DATA)
        if doc["status"] != "complete":
            doc.update(status="running", message="", pid=os.getpid())
            self._publish()

    @property
    def shard(self) -> int:
        """Samples per shard (resumed stores keep theirs)."""
        return int(self.doc["shard"])

    @property
    def status(self) -> str:
        """The stream's status as last published."""
        return self.doc["status"]

    def committed(self) -> list[bool]:
        """Per chunk, whether it is committed."""
        with self._lock:
            return [c is not None for c in self.doc["chunks"]]

    def commit(self, chunk: int, checksum: int) -> None:
        """Mark ``chunk`` committed: its shard must already be written."""
        with self._lock:
            self.doc["chunks"][chunk] = checksum
        self._dirty.set()

    def write_labels_meta(self, **fields: Any) -> None:
        """Record the labels array's name and count in the sidecar."""
        with self._lock:
            self.doc.update(fields)

    def labels(self, total: int, resume: bool) -> ZarrLabels:
        """The labels array (``total`` indices), created or, resuming, checked."""
        return ZarrLabels(self.where, total, resume)

    def _publish(self) -> None:
        with self._lock:
            self.doc["heartbeat"] = time.time()
            doc = json.loads(json.dumps(self.doc))
        self.where.write_sidecar(doc)

    def _publisher(self) -> None:
        publish_loop(
            self._stop, self._dirty, self.heartbeat_interval, self.publish_interval, self._publish
        )

    def _shutdown(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Mark the stream complete (every chunk must be committed)."""
        self._shutdown()
        if any(c is None for c in self.doc["chunks"]):
            raise StreamError("internal error: finishing a stream with uncommitted chunks")
        self.doc.update(status="complete", message="")
        self._publish()

    def fail(self, message: str) -> None:
        """Mark the stream failed with ``message`` (resumable)."""
        self._shutdown()
        self.doc.update(status="failed", message=message)
        self._publish()

    def close(self) -> None:
        """Stop publishing (no status change)."""
        self._shutdown()


class ZarrLabels:
    """The store's ``labels`` array: sorted int64 indices at their final places."""

    def __init__(self, where: ZarrLocation, total: int, resume: bool) -> None:
        import zarr

        self.total = total
        self.path = f"{where.location}/{LABELS}"
        if resume:
            try:
                self.array = zarr.open_array(where.store(), path=LABELS, mode="r+", zarr_format=3)
            except FileNotFoundError:
                self.array = None
            if self.array is None or self.array.shape != (total,):
                raise FormatError(f"{self.path}: labels missing or inconsistent; cannot resume")
        else:
            self.array = zarr.create_array(
                where.store(),
                name=LABELS,
                shape=(total,),
                dtype="<i8",
                chunks=(LABELS_CHUNK,),
                fill_value=-1,
                overwrite=True,
            )

    def write_at(self, position: int, values: np.ndarray) -> None:
        """Write ``values`` from index ``position`` on."""
        if len(values):
            self.array[position : position + len(values)] = values

    def sync(self) -> None:
        """Writes are durable once they return (object stores, zarr's local store)."""

    def close(self) -> None:
        """Nothing to close."""


class ZarrStreamReader(StreamReader):
    """A ``StreamReader`` over a Zarr stream: the same ``poll``, ``read_into``, ``check_alive``.

    Parameters
    ----------
    location
        The store.
    storage_options
        fsspec options for URLs.
    layout
        The stream's layout when already known (a Dask task's reads): the sidecar is
        then not read.
    """

    def __init__(
        self,
        location: str,
        storage_options: dict[str, Any] | None = None,
        layout: Layout | None = None,
    ) -> None:
        import zarr

        self.where = ZarrLocation(location, storage_options)
        self.location = self.where.location
        self.path = Path(self.where.root) if self.where.local else Path(self.location)
        self.sidecar_path = self.where.sidecar
        if self.where.local and not Path(self.where.root).exists():
            raise UsageError(f"{self.location}: no such store")
        self.doc = None if layout is not None else self.where.read_sidecar()
        if layout is None:
            n = int(self.doc["num_samples"])
            dtype = np.dtype(SUPPORTED_DTYPES[self.doc["dtype"]])
            layout = Layout(n, dtype, int(self.doc["chunk_size"]), 0)
        self.layout = layout
        n, dtype = layout.num_samples, layout.dtype
        self._fd = -1
        self.array = zarr.open_array(
            self.where.store(read_only=True), path=DATA, mode="r", zarr_format=3
        )
        if self.array.shape != (n,) or self.array.dtype != dtype:
            raise FormatError(f"{self.location}: data array disagrees with its sidecar")

    def poll(self) -> StreamStatus:
        """Re-read the sidecar."""
        self.doc = self.where.read_sidecar()
        chunks = self.doc["chunks"]
        committed = np.fromiter((c is not None for c in chunks), bool, len(chunks))
        return StreamStatus(
            self.doc["status"],
            str(self.doc.get("message", "")),
            float(self.doc.get("heartbeat", 0.0)),
            committed,
            chunks,
        )

    def map_window(self, start: int, stop: int) -> None:
        """Never: a store's samples are not one file's pages (``read_into`` reads them)."""
        return None

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Read samples ``[start, stop)`` into the front of ``out``; returns that view."""
        view = out[: stop - start]
        view[:] = self.array[start:stop]
        return view

    def labels(self) -> np.ndarray:
        """The labelled indices stored beside the data (empty without anomalies)."""
        import zarr

        if "labels_file" not in (self.doc or {}):
            return np.empty(0, np.int64)
        return np.asarray(zarr.open_array(self.where.store(True), path=LABELS, mode="r")[:])
