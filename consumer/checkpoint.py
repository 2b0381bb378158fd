"""The consumer's checkpoint: which run it is and how far its outputs are durable.

One JSON file (``<stem>.consumer.json``), replaced atomically.  It holds the
run's *identity* (input, length, chunk size, detector, dense-scores path,
format version) and its *progress* (chunks done, samples, indices, Parquet rows
and Parquet part files written, and whether the run finished).  ``--resume`` continues only a
checkpoint whose identity equals the new run's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared.errors import FormatError, UsageError
from shared.stream import atomic_write_json

VERSION = 2  # 2: the Parquet rows are a directory of parts (``parts``)


@dataclass(frozen=True)
class Progress:
    """How far the published outputs go."""

    next_chunk: int = 0
    samples: int = 0
    indices: int = 0
    rows: int = 0
    final: bool = False
    parts: int = 0  # Parquet part files published (part 0 holds only the schema)


class Checkpoint:
    """Reads, validates and writes one checkpoint file.

    Parameters
    ----------
    path
        The checkpoint file.
    identity
        What a checkpoint must match to be resumed (``checkpoint_version`` is added).
    """

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        self.identity = {"checkpoint_version": VERSION, **identity}

    def save(self, progress: Progress) -> None:
        """Replace the file atomically (and durably) with the identity and ``progress``."""
        atomic_write_json(self.path, {**self.identity, **asdict(progress)})

    def load(self) -> Progress:
        """The saved progress of this same run; a one-line error if it is another's or corrupt."""
        if not self.path.exists():
            raise UsageError(f"{self.path}: no checkpoint to resume from")
        try:
            state = json.loads(self.path.read_text())
        except ValueError:
            raise FormatError(f"{self.path}: corrupt checkpoint") from None
        if not isinstance(state, dict):
            raise FormatError(f"{self.path}: corrupt checkpoint")
        for key, value in self.identity.items():
            if state.get(key) != value:
                raise UsageError(
                    f"cannot resume: '{key}' differs from the checkpoint "
                    f"({state.get(key)!r} != {value!r})"
                )
        for key in ("next_chunk", "samples", "indices", "rows", "parts"):
            if not isinstance(state.get(key), int):
                raise FormatError(f"{self.path}: corrupt checkpoint (no {key})")
        return Progress(
            state["next_chunk"],
            state["samples"],
            state["indices"],
            state["rows"],
            bool(state.get("final", False)),
            state["parts"],
        )
