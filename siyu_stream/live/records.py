"""The records the live side passes around: consumed (`Record`), queued for its turn
(`Pending`) and to be produced (`Out`). Plain data, shared by the processor, the decoding
on arrival and the commit protocols."""

from __future__ import annotations

from dataclasses import dataclass

from siyu_stream.core.actions import ReferralCredit
from siyu_stream.core.clock import Millis
from siyu_stream.core.events import Event

CLOCK_KEY = ""
"""The changelog key of the partition clock: no customer id is empty. Its value is
{"clock": ms}; the worker writes it with its batches, a bootstrap once per partition."""


@dataclass(slots=True)
class Out:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass(slots=True)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    """None: a record with a null value (a tombstone)."""
    timestamp: Millis = 0
    """Kafka record timestamp (producer create time): the start of processing latency."""


@dataclass(slots=True)
class Pending:
    """A queued record and what it will do when its turn comes."""

    offset: int
    """Its offset in the queue's own topic partition (what to commit while it waits)."""
    record: Record
    """What a dead letter names (for a re-keyed event: the original input record)."""
    kind: str
    event: Event | None = None
    credit: ReferralCredit | None = None
    reason: str | None = None
    """Dead-letter it with this reason."""
    forward: bool = False
    """Re-key it to its owner's partition."""
    arrived: Millis = 0
    """Wall-clock time it was queued (`PartitionTask.reorder_ms`)."""
