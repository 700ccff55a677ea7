"""One owned partition of an action topic: which offsets are finished, which are held, and
how far its offset may be committed. Pure bookkeeping (no Kafka, no clock).

Holding is durable because it is only *not committing*: the committed offset never
passes an action that is not finished (delivered, receipted expired / dead / failed, or
dead-lettered), so after a crash or a rebalance the next owner reads every held action
again, and holds it again until its `not_before`. Actions after a held one that were
delivered are not sent twice: their receipts are read back first (`ledger`).

A partition's unfinished actions (held ones and those in delivery) are bounded by the
loop: past `max_pending_per_partition` it pauses the partition, so memory stays bounded
however many reminders quiet hours hold; the partition resumes at half the bound.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, NamedTuple

from siyu_stream.core.clock import Millis


class Held(NamedTuple):
    until: Millis
    seq: int
    """Ties in `until` keep arrival order (and the heap never compares payloads)."""
    offset: int
    since: Millis
    payload: Any


class PartitionBook:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.outstanding: dict[int, int] = {}
        """Offset -> deliveries (one per sink) not yet finished."""
        self._order: list[int] = []
        """Min-heap of outstanding offsets; finished ones are dropped lazily."""
        self.next_offset: int | None = None
        self.committed: int | None = None
        self.held: list[Held] = []
        self._seq = itertools.count()
        self.revoked = False
        self.tasks: set[Any] = set()
        """The deliveries in flight: cancelled when the partition is revoked."""

    def take(self, offset: int, deliveries: int) -> None:
        """Offset `offset` was read and needs `deliveries` finished (0: nothing to do)."""
        self.next_offset = offset + 1
        if deliveries > 0:
            self.outstanding[offset] = deliveries
            heapq.heappush(self._order, offset)

    def finish(self, offset: int) -> None:
        left = self.outstanding.get(offset)
        if left is None:
            return
        if left <= 1:
            del self.outstanding[offset]
        else:
            self.outstanding[offset] = left - 1

    def position(self) -> int | None:
        """The offset to commit: the first not finished, else one past the last read."""
        while self._order and self._order[0] not in self.outstanding:
            heapq.heappop(self._order)
        return self._order[0] if self._order else self.next_offset

    @property
    def pending(self) -> int:
        return len(self.outstanding)

    def hold(self, until: Millis, offset: int, since: Millis, payload: Any) -> None:
        heapq.heappush(self.held, Held(until, next(self._seq), offset, since, payload))

    def due(self, now: Millis) -> list[Held]:
        """The held entries whose time has come, in time order."""
        out = []
        while self.held and self.held[0].until <= now:
            out.append(heapq.heappop(self.held))
        return out

    def oldest_held_since(self) -> Millis | None:
        return min((h.since for h in self.held), default=None)
