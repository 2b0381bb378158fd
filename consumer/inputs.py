"""Tabular inputs: CSV, Parquet (a file or a dataset folder), Arrow IPC / Feather.

A table is read in record batches through pyarrow (memory stays bounded by a
batch and one chunk of the output, whatever the file's size) and written as a
float64 NPY *series* with a complete sidecar, which the consumer then processes
like any stream.  With a ``timestamp`` column the rows are placed on a regular
time grid:

* the *cadence* is the median step between consecutive timestamps of the first
  ``CADENCE_PROBE`` rows (of all rows, in files shorter than that);
* the grid starts at the first row's timestamp; each row goes to slot
  ``previous slot + step / cadence``, so a gap leaves missing samples (NaN)
  and the seasonality does not shift;
* a row is *irregular* when its timestamp is not after the previous one (out
  of order, or a duplicate), its step is not a multiple of the cadence
  (off the grid: it goes to the nearest slot), or it lands on a slot that
  already holds a row.  Several rows on one slot are averaged (missing values
  left out).  Up to ``max_irregular`` (a fraction of the rows, default 1%:
  clock glitches such as daylight-saving shifts in NAB's files) are repaired so
  and reported; more, or any at all with ``max_irregular=0``, is a one-line
  ``UsageError`` naming the first irregular row.  A row earlier than the first
  row's timestamp is always an error.

Rows are numbered from 1 in file order, not counting a CSV's header line.  The
grid's first timestamp and cadence are recorded in the sidecar (``"time"``),
so outputs can carry timestamps and a duration can be turned into samples.
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.checksum import crc32
from shared.errors import Interrupted, UsageError
from shared.stream import (
    DEFAULT_CHUNK_SIZE,
    FORMAT_NAME,
    FORMAT_VERSION,
    StreamReader,
    atomic_write_json,
    npy_header,
    sidecar_path,
)

FORMATS = ("csv", "parquet", "arrow", "npy")
SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".arrows": "arrow",
    ".npy": "npy",
}
CADENCE_PROBE = 1 << 20  # rows whose median step is the cadence
CSV_BLOCK = 16 << 20  # bytes per CSV block
BATCH_ROWS = 1 << 20  # rows per batch of a Parquet row group read in batches
ROW_GROUP_BYTES = 64 << 20  # a larger row group (uncompressed) is read alone, in batches
READ_AHEAD_BYTES = 24 << 20  # per reader: row groups (uncompressed) decoding or waiting
MAX_READERS = 8  # Parquet row groups decoded at once, at most (also <= the cores)
HEADER_LEN = 128  # fixed NPY header length: the length can be rewritten at the end
MAX_GAP = 10**8  # a single gap longer than this many samples (and 100x the rows) is refused


def input_format(path: str | os.PathLike[str], given: str | None = None) -> str:
    """The format of ``path``: ``given`` if set, else from its suffix (a folder is Parquet).

    Parameters
    ----------
    path
        The input file or folder.
    given
        An explicit ``--format`` (one of ``FORMATS``), or None.

    Returns
    -------
    str
        One of ``FORMATS``; ``npy`` also for unknown suffixes (raw files, streams).
    """
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {given!r}")
        return given
    p = Path(path)
    if p.is_dir():
        return "parquet"
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zst", ".lz4") and len(suffixes) > 1:
        suffixes = suffixes[:-1]  # data.csv.gz: pyarrow decompresses CSV by suffix
    return SUFFIXES.get(suffixes[-1] if suffixes else "", "npy")


@dataclass(frozen=True)
class TimeGrid:
    """The time of every sample: ``t0 + index * cadence``.

    Parameters
    ----------
    t0, cadence
        First timestamp and step, in ``unit``s.
    unit
        ``"ns"`` (timestamps, nanoseconds since the Unix epoch, UTC) or
        ``"ticks"`` (an integer column, unit unknown).
    """

    t0: int
    cadence: int
    unit: str = "ns"

    @property
    def cadence_seconds(self) -> float | None:
        """The cadence in seconds (None for integer ticks)."""
        return self.cadence / 1e9 if self.unit == "ns" else None

    def times(self, index: np.ndarray) -> np.ndarray:
        """int64 timestamps (in ``unit``) of sample ``index``."""
        return self.t0 + np.asarray(index, np.int64) * self.cadence

    def format(self, index: int) -> str | int:
        """Sample ``index``'s time: ISO 8601 for ``ns``, the integer for ticks."""
        t = int(self.t0 + index * self.cadence)
        if self.unit != "ns":
            return t
        return str(np.datetime_as_string(np.datetime64(t, "ns"), unit="auto"))

    def to_json(self) -> dict[str, Any]:
        """The sidecar's ``"time"`` object."""
        d: dict[str, Any] = {"t0": self.t0, "cadence": self.cadence, "unit": self.unit}
        if self.unit == "ns":
            d["start"] = self.format(0)
            d["cadence_seconds"] = self.cadence_seconds
        return d

    @classmethod
    def from_json(cls, doc: Any) -> TimeGrid | None:
        """The grid of a sidecar's ``"time"`` object (None if absent or malformed)."""
        if not isinstance(doc, dict):
            return None
        try:
            grid = cls(int(doc["t0"]), int(doc["cadence"]), str(doc.get("unit", "ns")))
        except (KeyError, TypeError, ValueError):
            return None
        return grid if grid.cadence > 0 else None


@dataclass(frozen=True)
class TableOptions:
    """How to read a table.

    Parameters
    ----------
    column
        The value column (numeric).
    timestamp
        The timestamp column, or None: each row is one sample.
    format
        One of ``FORMATS`` (None: from the suffix).
    max_irregular
        Fraction of rows that may be irregular and repaired (see the module).
    """

    column: str
    timestamp: str | None = None
    format: str | None = None
    max_irregular: float = 0.01

    def to_json(self) -> dict[str, Any]:
        """For sidecars and checkpoints."""
        return {
            "column": self.column,
            "timestamp": self.timestamp,
            "max_irregular": self.max_irregular,
        }


# --------------------------------------------------------------------------- batches


@dataclass
class _Batch:
    """Rows ``[first, first + len)`` (0-based) of the table: times (or None) and values.

    ``unit``: the timestamps' kind (``"ns"`` or ``"ticks"``; None without them).
    """

    first: int
    times: np.ndarray | None
    values: np.ndarray
    unit: str | None = None


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _time_unit(path: Path, name: str, typ: Any) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return "ns"
    if pa.types.is_integer(typ):
        return "ticks"
    raise UsageError(
        f"{path}: column '{name}' holds {typ}, not timestamps (date-times or integers)"
    )


def _array(col: Any) -> Any:
    """One ``pyarrow.Array`` of a column (a ChunkedArray's chunks joined, when several)."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        return pa.concat_arrays(col.chunks) if col.num_chunks else pa.array([], col.type)
    return col


def _numpy(arr: Any, dtype: str) -> np.ndarray:
    """A fixed-width Arrow array's values as numpy, missing ones NaN (float) -- zero-copy
    without nulls.  Read from its buffers: pyarrow's own ``to_numpy`` imports pandas on
    first use, which cost 0.4-0.8 s of a run here."""
    n, off = len(arr), arr.offset
    if n == 0:
        return np.empty(0, dtype)
    out = np.frombuffer(arr.buffers()[1], dtype, count=off + n)[off:]
    return np.where(_valid(arr), out, np.nan) if arr.null_count else out


def _valid(arr: Any) -> np.ndarray:
    """Per row of an Arrow array with nulls: whether it holds a value (its validity bits)."""
    bits = np.frombuffer(arr.buffers()[0], np.uint8)
    return np.unpackbits(bits, count=arr.offset + len(arr), bitorder="little")[arr.offset :].view(
        bool
    )


def _background(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items``, produced by a thread up to ``depth`` ahead of the caller.

    pyarrow's readers and conversions release the GIL, so the next block is read
    while the caller places the last one.  An error in the thread is raised here,
    in order; closing this generator stops the thread.
    """
    q: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    done = threading.Event()
    end = object()

    def put(item: tuple[bool, Any]) -> bool:
        while not done.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, end))
        except BaseException as e:  # handed to the caller, who raises it
            put((False, e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="table-read", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is end:
                return
            yield item
    finally:
        done.set()
        thread.join()


def _ns(typ: Any) -> Any:
    """Timestamps of any unit as nanoseconds (a later block may hold finer times)."""
    import pyarrow as pa

    return pa.timestamp("ns", typ.tz) if pa.types.is_timestamp(typ) else typ


def _first_line(f: Any) -> tuple[bytes, bytes]:
    """A stream's first line (with its line end) and what was read after it."""
    buf = b""
    while True:
        data = f.read(1 << 16)
        buf += data
        end = buf.find(b"\n") + 1
        if end or not data:
            end = end or len(buf)
            return buf[:end], buf[end:]


@dataclass(frozen=True)
class _RowGroup:
    """One Parquet row group to read: its file, index, first row (0-based) and size."""

    path: Path
    index: int
    first: int
    rows: int
    bytes: int
    metadata: Any


class _Table:
    """Opens one input and yields its rows in record batches (column-projected)."""

    def __init__(self, path: Path, fmt: str, options: TableOptions) -> None:
        self.path, self.fmt, self.options = path, fmt, options
        self.columns = [options.column] + ([options.timestamp] if options.timestamp else [])
        if options.timestamp == options.column:
            raise UsageError("--timestamp and --column name the same column")
        if not path.exists():
            raise UsageError(f"{path}: no such file")
        if fmt != "parquet" and path.is_dir():
            raise UsageError(f"{path}: is a directory (a Parquet dataset needs --format parquet)")

    # -- per format --------------------------------------------------------------------

    def _csv_batches(self) -> Iterator[_Batch]:
        """The CSV in blocks of about ``CSV_BLOCK`` bytes cut at line ends, each parsed on
        all cores by ``pyarrow.csv.read_csv`` with the first block's column types.

        pyarrow's own streaming reader (``open_csv``) reads the file ahead of its
        consumer without bound (its allocations grew to about the file's size here),
        so the blocks are cut here, one at a time.  Like pyarrow's readers by default,
        this assumes no line breaks inside values.
        """
        import pyarrow as pa

        parse, convert = self._csv_options({})
        rows, types = 0, None
        for block in self._csv_blocks():
            try:
                table = self._csv_read(block, parse, convert)
            except pa.ArrowInvalid as e:
                self._csv_failed(block, rows, types, e)
            if types is None:  # later blocks keep the first one's types (as open_csv does)
                types = {f.name: _ns(f.type) for f in table.schema}
                parse, convert = self._csv_options(types)
            for batch in table.to_batches():
                yield self._to_batch(batch, rows)
                rows += batch.num_rows

    def _csv_options(self, types: dict[str, Any]) -> tuple[Any, Any]:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        types = {**types, self.options.column: pa.float64()}
        convert = pacsv.ConvertOptions(include_columns=self.columns, column_types=types)
        tsv = ".tsv" in [x.lower() for x in self.path.suffixes]
        parse = pacsv.ParseOptions(delimiter="\t" if tsv else ",")
        return parse, convert

    def _csv_read(self, block: bytes, parse: Any, convert: Any) -> Any:
        import pyarrow as pa
        import pyarrow.csv as pacsv

        try:
            return pacsv.read_csv(pa.py_buffer(block), parse_options=parse, convert_options=convert)
        except KeyError:  # ArrowKeyError: a missing column
            names = pacsv.read_csv(pa.py_buffer(block), parse_options=parse).schema.names
            self._check_schema(self.path, pa.schema([(n, pa.null()) for n in names]))
            raise

    def _csv_blocks(self) -> Iterator[Any]:
        """The header line followed by whole lines, about ``CSV_BLOCK`` bytes of them."""
        import pyarrow as pa

        with pa.input_stream(str(self.path)) as f:  # .gz, .bz2, ...: decompressed
            head, carry = _first_line(f)
            sent = False
            while True:
                data = f.read(CSV_BLOCK)
                block = bytearray(head)
                block += carry
                block += data
                cut = block.rfind(b"\n", len(head)) + 1 if data else len(block)
                if cut > len(head):
                    yield memoryview(block)[:cut]
                    sent = True
                elif not data and not sent:
                    yield head.rstrip(b"\r\n") + b"\n"  # no rows: read_csv checks the columns
                if not data:
                    return
                carry = bytes(block[max(cut, len(head)) :])

    def _csv_failed(
        self, block: bytes, rows_before: int, types: dict[str, Any] | None, e: BaseException
    ) -> None:
        """Find the block's first row that does not convert (parsed as text) and name it."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        parse, _ = self._csv_options({})
        text = {c: pa.string() for c in self.columns}
        convert = pacsv.ConvertOptions(include_columns=self.columns, column_types=text)
        try:
            table = pacsv.read_csv(
                pa.py_buffer(block), parse_options=parse, convert_options=convert
            )
        except pa.ArrowInvalid as e2:
            raise UsageError(f"{self.path}: not a readable CSV ({_one_line(e2)})") from None
        kind = None
        if types is not None and self.options.timestamp:
            kind = "ticks" if pa.types.is_integer(types[self.options.timestamp]) else "ns"
        self._check_text(table, rows_before, kind)
        raise UsageError(f"{self.path}: not a readable CSV ({_one_line(e)})")

    def _check_text(self, batch: Any, first: int, kind: str | None = None) -> None:
        """Raise naming the first row of ``batch`` (text columns) that does not convert
        (``kind``: the timestamps' kind in the rows before, if known)."""
        values = batch.column(self.options.column).to_pylist()
        for i, v in enumerate(values):
            if v is None or v.strip() in _NULLS:
                continue
            try:
                float(v)
            except ValueError:
                raise UsageError(
                    f"{self.path}: row {first + i + 1}: value {v!r} in column "
                    f"'{self.options.column}' is not a number"
                ) from None
        if self.options.timestamp:
            self._check_text_times(batch.column(self.options.timestamp).to_pylist(), first, kind)

    def _check_text_times(self, texts: list[Any], first: int, kind: str | None = None) -> None:
        kinds = {kind} if kind else set()
        for i, t in enumerate(texts):
            kind = _time_kind(t)
            if kind is None:
                raise UsageError(
                    f"{self.path}: row {first + i + 1}: timestamp {t!r} in column "
                    f"'{self.options.timestamp}' is not a date-time or an integer"
                )
            kinds.add(kind)
            if len(kinds) > 1:
                raise UsageError(
                    f"{self.path}: row {first + i + 1}: timestamp {t!r} mixes date-times "
                    "and integers"
                )

    def _row_groups(self) -> Iterator[_RowGroup]:
        """Every row group of the file (or of the folder's files, in sorted path order)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.path.is_dir():
            files = sorted(
                p for p in self.path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
            )
            if not files:
                raise UsageError(f"{self.path}: a folder without Parquet files")
        else:
            files = [self.path]
        first = 0
        for f in files:
            try:
                pf = pq.ParquetFile(f)
            except (pa.ArrowInvalid, OSError) as e:
                raise UsageError(f"{f}: not a Parquet file ({_one_line(e)})") from None
            self._check_schema(f, pf.schema_arrow)
            meta = pf.metadata
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                yield _RowGroup(f, g, first, rg.num_rows, rg.total_byte_size, meta)
                first += rg.num_rows

    def _parquet_batches(self) -> Iterator[_Batch]:
        """Row groups decoded by a pool of threads (each its own reader), in file order.

        pyarrow decodes one row group's columns on one thread each, so with two
        columns of unequal cost its own threads leave cores idle; whole row groups
        in parallel keep every core busy.  At most ``READ_AHEAD_BYTES`` per reader
        of row groups (by their uncompressed size) are in flight; a row group larger than
        ``ROW_GROUP_BYTES`` is read alone, in batches, without pre-buffering, so
        memory stays bounded whatever the writer's row group size.
        """
        workers = max(1, min(os.cpu_count() or 1, MAX_READERS))
        local = threading.local()
        pending: deque[tuple[Future[_Batch], int]] = deque()
        in_flight = 0
        pool = ThreadPoolExecutor(workers, thread_name_prefix="parquet-read")
        try:
            for rg in self._row_groups():
                if rg.bytes > ROW_GROUP_BYTES:
                    while pending:
                        yield pending.popleft()[0].result()
                    in_flight = 0
                    yield from self._big_row_group(rg)
                    continue
                while pending and in_flight + rg.bytes > READ_AHEAD_BYTES * workers:
                    fut, size = pending.popleft()
                    in_flight -= size
                    yield fut.result()
                pending.append((pool.submit(self._read_row_group, local, rg), rg.bytes))
                in_flight += rg.bytes
            while pending:
                yield pending.popleft()[0].result()
        finally:
            for fut, _ in pending:
                fut.cancel()
            pool.shutdown(wait=True)

    def _read_row_group(self, local: threading.local, rg: _RowGroup) -> _Batch:
        import pyarrow.parquet as pq

        if getattr(local, "path", None) != rg.path:  # one open file per reader thread
            local.path, local.file = rg.path, pq.ParquetFile(rg.path, metadata=rg.metadata)
        table = local.file.read_row_group(rg.index, columns=self.columns, use_threads=False)
        return self._to_batch(table, rg.first)

    def _big_row_group(self, rg: _RowGroup) -> Iterator[_Batch]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(rg.path, metadata=rg.metadata, pre_buffer=False)
        first = rg.first
        for batch in pf.iter_batches(
            batch_size=BATCH_ROWS, row_groups=[rg.index], columns=self.columns
        ):
            yield self._to_batch(batch, first)
            first += batch.num_rows

    def _arrow_batches(self) -> Iterator[_Batch]:
        """An Arrow IPC file (Feather v2) or stream, batch by batch from the file (no map:
        pages of a mapped file would count towards the process's RSS as they are read)."""
        import pyarrow as pa

        first = 0
        try:
            reader = pa.ipc.open_file(pa.OSFile(str(self.path)))
        except pa.ArrowInvalid:
            reader = None
        if reader is not None:
            self._check_schema(self.path, reader.schema)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                yield self._to_batch(batch, first)
                first += batch.num_rows
            return
        try:
            stream = pa.ipc.open_stream(pa.OSFile(str(self.path)))
        except pa.ArrowInvalid as e:
            raise UsageError(
                f"{self.path}: not an Arrow IPC or Feather (v2) file ({_one_line(e)})"
            ) from None
        self._check_schema(self.path, stream.schema)
        for batch in stream:
            yield self._to_batch(batch, first)
            first += batch.num_rows

    def _check_schema(self, path: Path, schema: Any) -> None:
        for c in self.columns:
            if schema.get_field_index(c) < 0:
                names = ", ".join(schema.names)
                raise UsageError(f"{path}: no column '{c}' (columns: {names})")

    # -- the rows ----------------------------------------------------------------------

    def batches(self) -> Iterator[_Batch]:
        """Every row, in file order, as numpy times (int64) and values (float64)."""
        if self.fmt == "parquet":
            raw = self._parquet_batches()
        else:
            reader = self._csv_batches() if self.fmt == "csv" else self._arrow_batches()
            raw = _background(reader)
        rows = 0
        unit: str | None = None
        for b in raw:
            if not len(b.values):
                continue
            if unit is None:
                unit = b.unit
            elif b.unit != unit:
                raise UsageError(
                    f"{self.path}: row {b.first + 1}: timestamps change from {unit} to {b.unit}"
                )
            rows += len(b.values)
            yield b
        if rows == 0:
            raise UsageError(f"{self.path}: no rows")

    def _to_batch(self, batch: Any, first: int) -> _Batch:
        """A record batch (or table) as numpy arrays; raises naming its first bad row."""
        values = self._values(_array(batch.column(self.options.column)), first)
        if not self.options.timestamp:
            return _Batch(first, None, values)
        times, unit = self._times(_array(batch.column(self.options.timestamp)), first)
        return _Batch(first, times, values, unit)

    def _values(self, col: Any, first: int) -> np.ndarray:
        import pyarrow as pa

        typ = col.type
        if pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_decimal(typ):
            if typ != pa.float64():
                col = col.cast(pa.float64())
            return _numpy(col, "<f8")
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            try:
                return _numpy(col.cast(pa.float64()), "<f8")
            except pa.ArrowInvalid:
                texts = col.to_pylist()
                for i, v in enumerate(texts):
                    if v is not None:
                        try:
                            float(v)
                        except ValueError:
                            raise UsageError(
                                f"{self.path}: row {first + i + 1}: value {v!r} in column "
                                f"'{self.options.column}' is not a number"
                            ) from None
                raise
        raise UsageError(
            f"{self.path}: column '{self.options.column}' holds {typ}, not numbers "
            f"(first value at row {first + 1}: {col[0].as_py()!r})"
        )

    def _times(self, col: Any, first: int) -> tuple[np.ndarray, str]:
        import pyarrow as pa

        if col.null_count:
            i = int(np.argmin(_valid(col)))
            raise UsageError(
                f"{self.path}: row {first + i + 1}: no timestamp in column "
                f"'{self.options.timestamp}'"
            )
        typ = col.type
        if pa.types.is_string(typ) or pa.types.is_large_string(typ):
            texts = col.to_pylist()
            self._check_text_times(texts, first)
            kind = _time_kind(texts[0])
            col = col.cast(pa.int64() if kind == "ticks" else pa.timestamp("ns"))
            typ = col.type
        unit = _time_unit(self.path, self.options.timestamp or "", typ)
        if unit == "ns":
            if pa.types.is_timestamp(typ) and typ.unit != "ns" or pa.types.is_date(typ):
                col = col.cast(pa.timestamp("ns"))
            col = col.view(pa.int64())  # the same 8 bytes: no conversion pass
        elif typ != pa.int64():
            col = col.cast(pa.int64())
        return _numpy(col, "<i8"), unit


_NULLS = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"}
_NULLS |= {"1.#QNAN", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"}


def _time_kind(text: Any) -> str | None:
    """``"ticks"`` for an integer, ``"ns"`` for an ISO date-time, None otherwise."""
    if text is None:
        return None
    t = str(text).strip()
    try:
        int(t)
        return "ticks"
    except ValueError:
        pass
    try:
        np.datetime64(t.replace(" ", "T").rstrip("Z"), "ns")
        return "ns"
    except ValueError:
        return None


# --------------------------------------------------------------------------- whole tables


@dataclass
class Rows:
    """Every row of a table in file order (or every sample of an ``.npy`` series).

    Parameters
    ----------
    values
        float64; missing values are NaN.
    times
        int64 timestamps (nanoseconds since the epoch for ``unit="ns"``, integer
        ticks for ``"ticks"``), one per row; None without a timestamp column (or,
        for an ``.npy``, without a time grid in its sidecar).
    unit
        ``"ns"``, ``"ticks"`` or None.
    """

    values: np.ndarray
    times: np.ndarray | None
    unit: str | None


def read_rows(source: str | os.PathLike[str], options: TableOptions) -> Rows:
    """Read a whole table's value (and timestamp) column into memory, rows in file order.

    For whole-file consumers such as NAB's scoring (``consumer.evaluate``): the rows
    are those of the file (no grid, no repairs), read by the same readers and with the
    same one-line errors as :func:`convert`.  An ``.npy`` series (a producer stream,
    a series written by the consumer, or a plain file) gives its samples, with the
    times of its sidecar's grid if it has one (``options.column`` is not used).

    Parameters
    ----------
    source
        CSV, Parquet file or folder, Arrow IPC / Feather file, or ``.npy``.
    options
        The columns and the format (``max_irregular`` is not used).

    Returns
    -------
    Rows
        The values and times.

    Raises
    ------
    UsageError
        A missing column, a non-numeric value, a missing timestamp, an unfinished stream.
    """
    src = Path(source)
    fmt = input_format(src, options.format)
    if fmt == "npy":
        return _npy_rows(src)
    batches = list(_Table(src, fmt, options).batches())
    values = np.concatenate([b.values for b in batches])
    if not options.timestamp:
        return Rows(values, None, None)
    times = np.concatenate([b.times for b in batches])  # type: ignore[misc]
    return Rows(values, times, batches[0].unit)


def _npy_rows(path: Path) -> Rows:
    with StreamReader(path) as reader:
        if reader.is_stream and reader.poll().status != "complete":
            raise UsageError(f"{path}: the stream is not complete")
        values = reader.read(0, reader.num_samples).astype(np.float64, copy=False)
        grid = TimeGrid.from_json((reader.doc or {}).get("time"))
    if grid is None:
        return Rows(values, None, None)
    return Rows(values, grid.times(np.arange(len(values))), grid.unit)


# --------------------------------------------------------------------------- the grid


def _place_kernel():
    from consumer.kernels.grid import place_rows

    return place_rows


def _load_place_kernel() -> None:
    """Load the placement kernel (numba's cache) for writable columns (pyarrow's buffers
    are mutable, so :func:`_numpy` gives those); run on a thread while the first row
    groups are decoded."""
    _place_kernel()(np.zeros(1, np.int64), np.zeros(1), 0, 0, -1, -1, 1, 0, np.zeros(1))


@dataclass
class Irregular:
    """Counts of repaired rows by kind, and the first one's description."""

    out_of_order: int = 0
    duplicate: int = 0
    off_grid: int = 0
    first: str | None = None

    @property
    def total(self) -> int:
        """Irregular rows of every kind."""
        return self.out_of_order + self.duplicate + self.off_grid

    def to_json(self) -> dict[str, Any]:
        """For the summary."""
        return {
            "out_of_order": self.out_of_order,
            "duplicate": self.duplicate,
            "off_grid": self.off_grid,
            "first": self.first,
        }


@dataclass
class Conversion:
    """What :func:`convert` wrote: samples, rows, missing samples, the grid, repairs."""

    path: Path
    format: str
    rows: int
    samples: int
    missing: int
    grid: TimeGrid | None
    irregular: Irregular = field(default_factory=Irregular)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The summary's ``"input"`` object."""
        d: dict[str, Any] = {
            "format": self.format,
            "rows": self.rows,
            "samples": self.samples,
            "missing_samples": self.missing,
            "irregular_rows": self.irregular.to_json(),
            "series": str(self.path),
            "read_seconds": round(self.seconds, 4),
        }
        if self.grid is not None:
            d["time"] = self.grid.to_json()
        return d


class _GridWriter:
    """Writes a float64 NPY series chunk by chunk; rows may revisit written slots (rarely).

    Each chunk's CRC-32 and count of missing samples are taken as it is written,
    from the buffer in memory, so the series is never read back; a chunk changed
    after it was written (a row placed back in time) is checksummed again at the end.
    """

    def __init__(self, path: Path, chunk: int) -> None:
        self.path = path
        self.chunk = chunk
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.base = 0  # first slot of the buffer
        self.buf = np.full(chunk, np.nan)
        self.high = -1  # highest slot written so far
        self.sums: dict[int, tuple[float, int]] = {}  # slots holding several rows
        self.crcs: list[int] = []  # per chunk written: CRC-32 of its bytes
        self.nans: list[int] = []  # per chunk written: its missing samples
        self.dirty: set[int] = set()  # chunks changed after they were written
        self._gap: tuple[np.ndarray, int] | None = None  # an all-NaN chunk and its CRC-32

    def _pwrite(self, slot: int, data: np.ndarray) -> None:
        view = memoryview(np.ascontiguousarray(data, "<f8")).cast("B")
        off = HEADER_LEN + 8 * slot
        done = 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], off + done)

    def _write_chunk(self, data: np.ndarray, crc: int | None = None, nans: int | None = None):
        """Write the next chunk (``data``: its samples), noting its CRC-32 and missing samples."""
        k = len(self.crcs)
        self.crcs.append(crc32(data) if crc is None else crc)
        self.nans.append(len(data) - int(np.count_nonzero(data == data)) if nans is None else nans)
        self._pwrite(k * self.chunk, data)

    def advance_to(self, slot: int) -> None:
        """Make ``slot`` fall in the buffer: write the buffer and any gap chunks (NaN)."""
        if slot < self.base + self.chunk:
            return
        new_base = slot // self.chunk * self.chunk
        self._write_chunk(self.buf)  # NaN beyond the highest slot: a gap
        for _ in range(self.base + self.chunk, new_base, self.chunk):
            if self._gap is None:
                nan = np.full(self.chunk, np.nan)
                self._gap = (nan, crc32(nan))
            self._write_chunk(self._gap[0], self._gap[1], self.chunk)
        self.base = new_base
        self.buf.fill(np.nan)

    def get(self, slot: int) -> float:
        """The value now at ``slot``."""
        if slot > self.high:
            return math.nan
        if slot >= self.base:
            return float(self.buf[slot - self.base])
        got = os.pread(self.fd, 8, HEADER_LEN + 8 * slot)
        return float(np.frombuffer(got, "<f8")[0])

    def put(self, slot: int, value: float) -> None:
        """Store ``value`` at ``slot``, averaging with rows already there."""
        old = self.get(slot) if slot <= self.high else math.nan
        if slot in self.sums:
            s, c = self.sums[slot]
        else:
            s, c = (old, 1) if not math.isnan(old) else (0.0, 0)
        if not math.isnan(value):
            s, c = s + value, c + 1
            self.sums[slot] = (s, c)
        new = s / c if c else math.nan
        if slot >= self.base:
            self.buf[slot - self.base] = new
        else:
            self._pwrite(slot, np.array([new]))
            self.dirty.add(slot // self.chunk)
        self.high = max(self.high, slot)

    def finish(self) -> int:
        """Write what is left and the header; returns the number of samples."""
        n = self.high + 1
        self._write_chunk(self.buf[: n - self.base])
        for k in sorted(self.dirty):  # rows placed back in time changed these
            data = np.frombuffer(os.pread(self.fd, 8 * self.chunk, HEADER_LEN + 8 * k * self.chunk))
            self.crcs[k] = crc32(data)
            self.nans[k] = len(data) - int(np.count_nonzero(data == data))
        header = npy_header("<f8", n)
        assert len(header) == HEADER_LEN
        os.pwrite(self.fd, header, 0)
        os.ftruncate(self.fd, HEADER_LEN + 8 * n)
        return n

    @property
    def missing(self) -> int:
        """Missing samples (NaN) in the chunks written."""
        return sum(self.nans)

    def close(self) -> None:
        """Close the file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _describe(kind: str, row: int, t: int, prev: int, grid: TimeGrid) -> str:
    def show(v: int) -> str:
        return str(np.datetime64(v, "ns")) if grid.unit == "ns" else str(v)

    if kind == "out_of_order":
        return f"row {row}: timestamp {show(t)} is earlier than the previous row's {show(prev)}"
    if kind == "duplicate":
        return f"row {row}: timestamp {show(t)} repeats a sample already given"
    step = t - prev
    unit = f"{step / 1e9:g} s" if grid.unit == "ns" else str(step)
    cad = f"{grid.cadence / 1e9:g} s" if grid.unit == "ns" else str(grid.cadence)
    return f"row {row}: step {unit} is not a multiple of the cadence ({cad})"


def convert(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    options: TableOptions,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stop: Any = None,
    log: Callable[[str], None] | None = None,
) -> Conversion:
    """Read a table and write its value column as a float64 NPY series with a sidecar.

    One pass: record batches are decoded by pyarrow on worker threads while this
    thread places the rows on the grid and writes each finished chunk (its
    CRC-32 and missing samples counted from memory).  The series is written to a
    hidden temporary file beside ``dest`` and renamed over ``dest`` (and its
    sidecar published) only when the whole input was read without error, so a
    bad input, or a stop, leaves every existing file as it was.

    Parameters
    ----------
    source
        CSV, Parquet file or folder, Arrow IPC / Feather file.
    dest
        The series ``.npy`` to write (sidecar ``<stem>.stream.json``).
    options
        Columns, format and the irregular-row budget.
    chunk_size
        The series' chunk size (its sidecar's).
    stop
        A ``shared.errors.StopRequest`` (or ``threading.Event``); when set, reading
        stops with ``Interrupted`` and nothing is written.
    log
        Where repairs are reported.

    Returns
    -------
    Conversion
        What was written.

    Raises
    ------
    UsageError
        A missing column, a non-numeric value, bad or too many irregular timestamps.
    Interrupted
        ``stop`` was set.
    """
    t_start = time.perf_counter()
    src, dest = Path(source), Path(dest)
    fmt = input_format(src, options.format)
    if fmt == "npy":
        raise UsageError(f"{src}: not a CSV, Parquet or Arrow file")
    table = _Table(src, fmt, options)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    writer = _GridWriter(tmp, chunk_size)
    try:
        grid, rows, irregular = _fill(table, writer, options, _stopper(stop), src)
        n = writer.finish()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    conv = Conversion(dest, fmt, rows, n, writer.missing, grid, irregular)
    if irregular.total and log:
        log(
            f"{src}: repaired {irregular.total} irregular rows ({irregular.out_of_order} out of "
            f"order, {irregular.duplicate} duplicate, {irregular.off_grid} off the grid); "
            f"first: {irregular.first}"
        )
    os.replace(tmp, dest)
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "data_file": dest.name,
        "dtype": "float64",
        "num_samples": n,
        "header_len": HEADER_LEN,
        "chunk_size": chunk_size,
        "checksum": "crc32",
        "generation": {},
        "source": {"path": str(src.resolve()), "format": fmt, **source_signature(src)},
        "table": options.to_json(),
        "rows": rows,
        "missing_samples": conv.missing,
        "irregular_rows": irregular.to_json(),
        "status": "complete",
        "message": "",
        "pid": os.getpid(),
        "created": time.time(),
        "heartbeat": time.time(),
        "chunks": writer.crcs,
    }
    if grid is not None:
        doc["time"] = grid.to_json()
    atomic_write_json(sidecar_path(dest), doc, fsync=False)
    conv.seconds = time.perf_counter() - t_start
    return conv


def source_signature(path: Path) -> dict[str, Any]:
    """Size and modification time of a file (or of every file in a folder)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return {
        "size": sum(s.st_size for s in stats),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
    }


def _stopper(stop: Any) -> Callable[[], None]:
    """A check that raises ``Interrupted`` once ``stop`` is set (a no-op without one)."""

    def check() -> None:
        if stop is not None and stop.is_set():
            if hasattr(stop, "interrupted"):
                raise stop.interrupted()
            raise Interrupted(signal.SIGTERM, "interrupted while reading the input")

    return check


def _fill(
    table: _Table,
    writer: _GridWriter,
    options: TableOptions,
    check_stop: Callable[[], None],
    src: Path,
) -> tuple[TimeGrid | None, int, Irregular]:
    """Place every row of ``table`` on the grid; returns (grid, rows, irregular)."""
    batches = table.batches()
    if options.timestamp is None:
        rows = 0
        for b in batches:
            check_stop()
            v, pos = b.values, 0
            while pos < len(v):
                slot = rows + pos
                writer.advance_to(slot)
                k = min(len(v) - pos, writer.base + writer.chunk - slot)
                writer.buf[slot - writer.base : slot - writer.base + k] = v[pos : pos + k]
                writer.high = slot + k - 1
                pos += k
            rows += len(v)
        return None, rows, Irregular()
    loading = threading.Thread(target=_load_place_kernel, name="grid-kernel", daemon=True)
    loading.start()
    # Hold back the first rows until the cadence is known.
    held: list[_Batch] = []
    count = 0
    for b in batches:
        held.append(b)
        count += len(b.values)
        if count >= CADENCE_PROBE:
            break
    probe = np.concatenate([b.times for b in held])[:CADENCE_PROBE]  # type: ignore[misc]
    steps = np.diff(probe)
    positive = steps[steps > 0]
    if len(probe) < 2 or not len(positive):
        raise UsageError(
            f"{src}: cannot infer the cadence: fewer than two distinct timestamps in "
            f"'{options.timestamp}'"
        )
    cadence = int(np.median(steps))
    if cadence <= 0:
        cadence = int(np.median(positive))
    grid = TimeGrid(int(probe[0]), cadence, held[0].unit or "ns")
    loading.join()
    state = _Placer(writer, grid, options, src)
    for b in itertools.chain(held, batches):
        check_stop()
        state.add(b)
    state.check_budget(final=True)
    return grid, state.rows, state.irregular


class _Placer:
    """Row placement: the numba fast path for regular rows, Python for irregular ones."""

    def __init__(self, writer: _GridWriter, grid: TimeGrid, options: TableOptions, src: Path):
        self.w, self.grid, self.options, self.src = writer, grid, options, src
        self.prev_t = grid.t0 - grid.cadence  # the first row is a regular step onto slot 0
        self.prev_slot = -1
        self.rows = 0
        self.irregular = Irregular()
        self.place = _place_kernel()

    def add(self, b: _Batch) -> None:
        times, values = b.times, b.values
        assert times is not None
        w, cad = self.w, self.grid.cadence
        i, n = 0, len(times)
        while i < n:
            j, self.prev_slot = self.place(
                times, values, i, self.prev_t, self.prev_slot, w.high, cad, w.base, w.buf
            )
            if j > i:
                w.high = self.prev_slot
                self.prev_t = int(times[j - 1])
                i = j
                if i == n:
                    break
            t = int(times[i])
            step = t - self.prev_t
            if step > 0 and step % cad == 0:
                slot = self.prev_slot + step // cad
                if slot > w.high:  # only beyond the buffer: a regular row after a gap
                    self._gap_check(slot, b.first + i + 1)
                    w.advance_to(slot)
                    continue
                kind = "duplicate"
            else:
                slot = self.prev_slot + _round_div(step, cad)
                kind = "out_of_order" if step < 0 else "duplicate" if step == 0 else "off_grid"
                if kind == "off_grid" and slot <= w.high:
                    kind = "duplicate"
            row = b.first + i + 1
            if slot < 0:
                raise UsageError(
                    f"{self.src}: row {row}: timestamp "
                    f"{self._show(t)} is earlier than the first row's ({self._show(self.grid.t0)})"
                )
            self._irregular(kind, row, t)
            if slot > w.high:
                self._gap_check(slot, row)
                w.advance_to(slot)
            w.put(slot, float(values[i]))
            self.prev_t, self.prev_slot = t, slot
            i += 1
        self.rows += n
        self.check_budget(final=False)

    def _show(self, t: int) -> str:
        return str(np.datetime64(t, "ns")) if self.grid.unit == "ns" else str(t)

    def _gap_check(self, slot: int, row: int) -> None:
        gap = slot - self.w.high
        if gap > MAX_GAP and gap > 100 * (self.rows + 1):
            raise UsageError(
                f"{self.src}: row {row}: timestamp "
                f"{self._show(self.grid.t0 + slot * self.grid.cadence)} leaves a gap of "
                f"{gap} samples after {self.rows} rows; is it a typo?"
            )

    def _irregular(self, kind: str, row: int, t: int) -> None:
        irr = self.irregular
        setattr(irr, kind, getattr(irr, kind) + 1)
        if irr.first is None:
            irr.first = _describe(kind, row, t, self.prev_t, self.grid)
        if self.options.max_irregular == 0:
            raise UsageError(
                f"{self.src}: {_describe(kind, row, t, self.prev_t, self.grid)} "
                "(--max-irregular 0: no repairs)"
            )

    def check_budget(self, final: bool) -> None:
        """Too many irregular rows: an error naming the first (checked per batch and at the end)."""
        irr = self.irregular
        if not irr.total:
            return
        allowed = self.options.max_irregular * self.rows
        if irr.total > allowed and (final or irr.total > 10_000):
            raise UsageError(
                f"{self.src}: {irr.total} of {self.rows} rows are irregular (more than "
                f"--max-irregular {self.options.max_irregular:g}); first: {irr.first}"
            )


def _round_div(a: int, b: int) -> int:
    """``a / b`` rounded to the nearest integer (halves away from zero)."""
    q, r = divmod(abs(a), b)
    q += 2 * r >= b
    return q if a >= 0 else -q
