"""Bounded memory for what a replay holds before it can use it: a partition's lines read
ahead (`Backlog`) and the dead letters of lines rejected before the first step (`Runs`).

Both grow with the input, not with anything the merge decides: a partition whose
customers stop appearing early makes every later fill read to the end of the file for
it, and a file of garbage is rejected line by line before any step. Past their bound,
both go on in a temporary file, so a replay of any file holds a bounded number of lines;
what they hold, and in which order they give it back, does not change.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any

from siyu_stream.replay.lines import Line

CHUNK = 4096
"""Records written to, and read back from, a temporary file at a time."""


def _put(handle: IO[bytes], at: int, chunk: list[Any]) -> int:
    """Pickle `chunk` into `handle` at offset `at`; the offset after it."""
    handle.seek(at)
    pickle.dump(chunk, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return handle.tell()


def _get(handle: IO[bytes], at: int) -> tuple[list[Any], int]:
    """The chunk pickled into `handle` at offset `at`, and the offset after it (readers
    of one file each keep their own offset)."""
    handle.seek(at)
    chunk: list[Any] = pickle.load(handle)
    return chunk, handle.tell()


class Backlog:
    """A FIFO of (ordinal, line): in memory until told to spill, then in a temporary file
    (lines kept as their path, number and bytes, decoded again by `revive` when read
    back: what a decoded line holds is not picklable, and it is the same line again)."""

    def __init__(self, revive: Callable[[str, int, bytes], Line]) -> None:
        self.revive = revive
        self.head: deque[tuple[int, Line]] = deque()
        # bound once: compiled, a deque's method called by name is looked up every call,
        # and every line of a replay passes through here
        self._push = self.head.append
        self._pop = self.head.popleft
        self.tail: list[tuple[int, str, int, bytes]] = []  # after the file's chunks
        self.file: IO[bytes] | None = None
        self.read_at = 0
        self.write_at = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def append(self, ordinal: int, line: Line, *, spill: bool) -> None:
        """Add a line at the end; `spill`: the job holds too many lines in memory."""
        self.size += 1
        if not spill and not self.tail and self.read_at == self.write_at:
            self._push((ordinal, line))
            return
        self.tail.append((ordinal, line.path, line.number, line.raw))
        if len(self.tail) >= CHUNK:
            self._write()

    def popleft(self) -> tuple[int, Line]:
        if not self.head:
            self._load()
        self.size -= 1
        return self._pop()

    def _write(self) -> None:
        if self.file is None:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the backlog
        self.write_at = _put(self.file, self.write_at, self.tail)
        self.tail = []

    def _load(self) -> None:
        """The next chunk into `head`: from the file, else the tail."""
        records: list[tuple[int, str, int, bytes]]
        if self.file is not None and self.read_at < self.write_at:
            records, self.read_at = _get(self.file, self.read_at)
            if self.read_at == self.write_at:  # drained: the file starts over
                self.read_at = self.write_at = 0
                self.file.truncate(0)
        else:
            records, self.tail = self.tail, []
        revive = self.revive
        self.head.extend((o, revive(path, number, raw)) for o, path, number, raw in records)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class Runs:
    """Items gathered in any order, given back sorted: up to `limit` in memory, each
    `limit` more sorted into a run in a temporary file, the runs merged when read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: list[Any] = []
        self.file: IO[bytes] | None = None
        self.runs: list[tuple[int, int]] = []  # (start, end) offsets in `file`

    def add(self, item: Any) -> None:
        self.items.append(item)
        if len(self.items) >= self.limit:
            if self.file is None:
                self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in `sorted`
            start = end = self.file.seek(0, 2)
            items = sorted(self.items)
            for i in range(0, len(items), CHUNK):
                end = _put(self.file, end, items[i : i + CHUNK])
            self.runs.append((start, end))
            self.items = []

    def sorted(self) -> Iterator[Any]:
        """Every item in order, once (the runs are read a chunk at a time)."""
        items, self.items = sorted(self.items), []
        if self.file is None:
            yield from items
            return
        handle = self.file
        runs = [self._run(handle, start, end) for start, end in self.runs]
        yield from heapq.merge(items, *runs)
        handle.close()
        self.file, self.runs = None, []

    @staticmethod
    def _run(handle: IO[bytes], start: int, end: int) -> Iterator[Any]:
        # the runs share one file: each chunk is read at its own offset
        while start < end:
            chunk, start = _get(handle, start)
            yield from chunk
