"""A partition's input queues, merged by sort key (as a Kafka Streams task merges its
input partitions): replay and the live worker take records in the same order.

One FIFO queue per source (an input topic, the command topic), each in its own
arrival order; the next record is the head with the smallest key. The caller decides
whether an empty queue may be passed over (it is caught up, or waited for long enough).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from siyu_stream.eventtime.partition import SortKey

T = TypeVar("T")

FIRST: SortKey = (-(2**62), -1, "")
"""The key of a record that changes no state (a rejected input, a record forwarded to
its owner's partition): it goes as soon as it reaches the head of its queue."""


class Queues(Generic[T]):
    """The queues by position, named through `_index`: the merge visits every queue per
    record taken (backtest has 16), and a list is what compiled code walks fastest."""

    def __init__(self, sources: Iterable[str]) -> None:
        self._sources = list(sources)
        self._index = {s: i for i, s in enumerate(self._sources)}
        self._queues: list[deque[tuple[SortKey, T]]] = [deque() for _ in self._sources]
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, source: str, key: SortKey, item: T) -> None:
        self._queues[self._index[source]].append((key, item))
        self._size += 1

    def head(self) -> tuple[str, SortKey, T] | None:
        """The source, key and item of the next record in merge order (not taken)."""
        best, low = -1, FIRST
        for i, queue in enumerate(self._queues):
            if queue:
                key = queue[0][0]
                if best < 0 or key < low:
                    best, low = i, key
        if best < 0:
            return None
        return self._sources[best], low, self._queues[best][0][1]

    def pop(self, source: str) -> T:
        self._size -= 1
        return self._queues[self._index[source]].popleft()[1]

    def empty(self) -> list[str]:
        """Sources with nothing queued."""
        return [self._sources[i] for i, queue in enumerate(self._queues) if not queue]

    def starved(self, sources: frozenset[str]) -> bool:
        """Whether one of `sources` has nothing queued."""
        for i, queue in enumerate(self._queues):
            if not queue and self._sources[i] in sources:
                return True
        return False

    def queued(self, source: str) -> int:
        return len(self._queues[self._index[source]])

    def first(self, source: str) -> T | None:
        queue = self._queues[self._index[source]]
        return queue[0][1] if queue else None

    def clear(self) -> None:
        for queue in self._queues:
            queue.clear()
        self._size = 0
