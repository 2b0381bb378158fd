"""Seeded, multithreaded writer of reproducible synthetic time-series streams."""

from producer.generate import BLOCK_SIZE, generate, generate_with_labels
from producer.write import WriteResult, write_stream

__all__ = ["BLOCK_SIZE", "WriteResult", "generate", "generate_with_labels", "write_stream"]
