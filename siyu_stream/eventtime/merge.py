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
    def __init__(self, sources: Iterable[str]) -> None:
        self._queues: dict[str, deque[tuple[SortKey, T]]] = {s: deque() for s in sources}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, source: str, key: SortKey, item: T) -> None:
        self._queues[source].append((key, item))
        self._size += 1

    def head(self) -> tuple[str, SortKey, T] | None:
        """The source, key and item of the next record in merge order (not taken)."""
        best: tuple[str, SortKey, T] | None = None
        for source, queue in self._queues.items():
            if queue and (best is None or queue[0][0] < best[1]):
                best = (source, *queue[0])
        return best

    def pop(self, source: str) -> T:
        self._size -= 1
        return self._queues[source].popleft()[1]

    def empty(self) -> list[str]:
        """Sources with nothing queued."""
        return [s for s, queue in self._queues.items() if not queue]

    def queued(self, source: str) -> int:
        return len(self._queues[source])

    def first(self, source: str) -> T | None:
        queue = self._queues[source]
        return queue[0][1] if queue else None

    def clear(self) -> None:
        for queue in self._queues.values():
            queue.clear()
        self._size = 0
