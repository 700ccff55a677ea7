"""The records the live side passes around: consumed (`Record`), queued for its turn
(`Pending`) and to be produced (`Out`). Plain data, shared by the processor, the decoding
on arrival and the commit protocols."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from siyu_stream.core.actions import ReferralCredit
from siyu_stream.core.clock import Millis
from siyu_stream.core.events import Event

CLOCK_KEY: Final = ""
"""The changelog key of the partition clock: no customer id is empty. Its value is
{"clock": ms}; the worker writes it with its batches, a bootstrap once per partition."""


# Constructors written out (init=False): compiled, a dataclass's generated __init__ runs as
# interpreted code, and the adapter builds one Record and Pending per consumed record and
# an Out per action and changed state.


@dataclass(slots=True, init=False)
class Out:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None

    def __init__(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.partition = partition


@dataclass(slots=True, init=False)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    """None: a record with a null value (a tombstone)."""
    timestamp: Millis
    """Kafka record timestamp (producer create time): the start of processing latency."""

    def __init__(  # noqa: PLR0917 - a record's fields, by position as a tuple's
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: Millis = 0,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp = timestamp


@dataclass(slots=True, init=False)
class Pending:
    """A queued record and what it will do when its turn comes."""

    offset: int
    """Its offset in the queue's own topic partition (what to commit while it waits)."""
    record: Record
    """What a dead letter names (for a re-keyed event: the original input record)."""
    kind: str
    event: Event | None
    credit: ReferralCredit | None
    reason: str | None
    """Dead-letter it with this reason."""
    forward: bool
    """Re-key it to its owner's partition."""
    arrived: Millis
    """Wall-clock time it was queued (`PartitionTask.reorder_ms`)."""

    def __init__(
        self,
        offset: int,
        record: Record,
        kind: str,
        event: Event | None = None,
        *,
        credit: ReferralCredit | None = None,
        reason: str | None = None,
        forward: bool = False,
        arrived: Millis = 0,
    ) -> None:
        self.offset = offset
        self.record = record
        self.kind = kind
        self.event = event
        self.credit = credit
        self.reason = reason
        self.forward = forward
        self.arrived = arrived
