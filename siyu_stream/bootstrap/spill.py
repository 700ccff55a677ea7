"""What the bootstrap run emits, spilled to disk per partition until it is written.

A history's outputs do not fit in memory (a year of purchases: about two actions per
event, most of them withheld as `suppressed`), and they are written only after the run,
partition by partition, in the order the engine emitted them. Each partition's records go
to a file of its own, length-prefixed (a key is a customer id, which may hold any
character); the memory held is one write buffer per partition (`BUFFER`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO

BUFFER = 1 << 16
"""Bytes each partition's spill file buffers before writing."""
_HEAD = struct.Struct(">BII")  # destination code, key length, value length
_NO_KEY = 0xFFFF_FFFF


class Spill:
    """Per-partition files of (destination code, key, value) records, read back in order.

    The code is the caller's (an index into its list of destinations): the spill knows
    nothing of topics."""

    def __init__(self, directory: Path, partitions: int) -> None:
        self.paths = [directory / f"outputs-{p}.bin" for p in range(partitions)]
        self._files: list[IO[bytes]] | None = [
            path.open("wb", buffering=BUFFER) for path in self.paths
        ]
        self.records = [0] * partitions
        self.bytes = [0] * partitions
        """Key and value bytes per partition (what the records weigh in Kafka, roughly)."""

    def add(self, partition: int, code: int, key: bytes | None, value: bytes) -> None:
        assert self._files is not None, "spill closed"
        size = _NO_KEY if key is None else len(key)
        out = self._files[partition]
        out.write(_HEAD.pack(code, size, len(value)))
        if key is not None:
            out.write(key)
        out.write(value)
        self.records[partition] += 1
        self.bytes[partition] += len(value) + (0 if key is None else len(key))

    def close(self) -> None:
        if self._files is not None:
            for handle in self._files:
                handle.close()
            self._files = None

    def read(self, partition: int) -> Iterator[tuple[int, bytes | None, bytes]]:
        """The partition's records in the order they were added (after `close`)."""
        assert self._files is None, "read a spill after closing it"
        with self.paths[partition].open("rb", buffering=BUFFER) as handle:
            while head := handle.read(_HEAD.size):
                code, size, length = _HEAD.unpack(head)
                key = None if size == _NO_KEY else handle.read(size)
                yield code, key, handle.read(length)
