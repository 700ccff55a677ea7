"""Decoding on arrival, and the command topic's records.

Every consumed record is decoded and checked once, when it arrives, into a `Pending`
that says what it will do at its turn: be taken (an event, a referral credit), be
re-keyed to its customer's partition, or be dead-lettered with a reason. Nothing a
record holds can raise past this module: input is data, and bad input is a reason.

The command topic carries what partitions send each other: referral credits keyed by
the referrer, and input events re-keyed by customer id. Its encoding and decoding are
both here, so that the two sides cannot drift apart.

A caught-up partition waits `SIYU_REORDER_MS` after a record arrived for stragglers of
other topics, and the window runs once per record:

- a record arrives when it is first known to be in Kafka (`Sightings`: the first fetch
  whose end offset had passed it), which for a backlog is long before it is read, so
  the last records of a catch-up are not held again;
- a command says how long the record it came from had already waited when it was taken
  (`waited`, ms) and arrives that much earlier, so a referral credit does not wait a
  second window on the referrer's partition. Only durations cross the topic, never one
  worker's clock read by another.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Final

import orjson

from siyu_stream.core import deadletter, jsonout
from siyu_stream.core.actions import ReferralCredit
from siyu_stream.core.clock import Millis, format_rfc3339
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import KIND, decode
from siyu_stream.core.ruleset import Rules
from siyu_stream.eventtime.keys import customer_partition
from siyu_stream.eventtime.merge import FIRST
from siyu_stream.eventtime.partition import SortKey, check_time, credit_key, sort_key
from siyu_stream.live.records import Pending, Record
from siyu_stream.settings import MAX_REORDER_MS


def decode_input(
    record: Record,
    offset: int,
    kind: str,
    rules: Rules,
    now: Millis,
    *,
    partitions: int,
    here: int,
    forwarded: bool,
) -> tuple[SortKey, Pending]:
    """An input record of type `kind`, arriving at wall-clock `now` on partition `here`:
    its sort key and what it will do. `offset` is where its queue resumes while it waits
    (for a re-keyed event: the command's offset, not the original's)."""
    reason = None
    event = None
    if record.value is None:
        reason = "null value (a tombstone): an input record must carry an event"
    else:
        try:
            event = decode(record.value, rules.input)
            actual = KIND[type(event)]
            if actual != kind:
                msg = f"a {actual} event on topic {record.topic} (expects {kind})"
                raise InvalidEvent(msg, "type")
            check_time(event.at, now, "the wall clock", rules)
        except InvalidEvent as exc:
            event, reason = None, exc.full_reason
    if event is None:
        return FIRST, Pending(offset, record, kind, reason=reason)
    owner = customer_partition(event.customer_id, partitions)
    if not forwarded and owner != here:
        return FIRST, Pending(offset, record, kind, event, forward=True)
    return sort_key(event), Pending(offset, record, kind, event)


SIGHTINGS: Final = 64
"""End offsets a source remembers (`Sightings`). The oldest go first: an offset below
them then counts as seen at the oldest kept, later than it was, which only makes it wait
longer. A worker notes each source's end once a batch, and a catch-up of 64 batches has
long left the window behind."""


class Sightings:
    """When each offset of one source (a topic partition) was first known to be in Kafka:
    the wall-clock times its fetched end offset (the last stable offset) was seen to
    grow."""

    def __init__(self, limit: int = SIGHTINGS) -> None:
        self.limit = limit
        self.ends: list[int] = []  # ascending, with `times`
        self.times: list[Millis] = []

    def note(self, end: int, now: Millis) -> None:
        """The source's end offset was `end` at wall-clock `now` (times never go back)."""
        if self.ends and end <= self.ends[-1]:
            if end == self.ends[-1]:
                return
            # the end went back: the log was truncated (an unclean leader election, the
            # topic made anew), and the offsets above it will name other records
            self.ends.clear()
            self.times.clear()
        self.ends.append(end)
        self.times.append(now)
        if len(self.ends) > self.limit:
            del self.ends[0], self.times[0]

    def since(self, offset: int) -> Millis | None:
        """When `offset` was first below a noted end, if it was."""
        ends = self.ends
        # the two common cases first, without a call: live traffic (above every end
        # seen) and a catch-up (below the first); compiled, bisect is a generic call
        if not ends or offset >= ends[-1]:
            return None
        if offset < ends[0]:
            return self.times[0]
        return self.times[bisect_right(ends, offset)]


MAX_WAITED: Final = MAX_REORDER_MS
"""A command's `waited` is read up to this (the largest `SIYU_REORDER_MS`): beyond it a
record is ready at once whatever the window, and a larger number cannot move an arrival
further into the past."""


@dataclass(frozen=True, slots=True)
class Rekeyed:
    """A re-keyed event read from the command topic: the original input record, to be
    decoded as input where its customer's state lives, and when it counts as arrived."""

    record: Record
    arrived: Millis


def decode_command(record: Record, arrived: Millis) -> tuple[SortKey, Pending] | Rekeyed:
    """A command record that arrived at wall-clock `arrived`: a referral credit (its key
    and pending), a malformed command (dead-lettered first), or a re-keyed event; either
    counts as arrived as early as the record it came from."""
    try:
        command = orjson.loads(record.value or b"null")
        # absent in commands written before it was added: they wait the whole window
        waited = min(max(int(command.get("waited", 0)), 0), MAX_WAITED)
        if command["cmd"] == "credit":
            credit = ReferralCredit(
                str(command["referrer"]),
                str(command["referred"]),
                int(command["at"]),
                str(command["cause"]),
            )
            pending = Pending(
                record.offset, record, "credit", credit=credit, arrived=arrived - waited
            )
            return credit_key(credit), pending
        original = Record(
            str(command["topic"]),
            int(command["partition"]),
            int(command["offset"]),
            record.key,
            str(command["value"]).encode(),
            record.timestamp,
        )
        return Rekeyed(original, arrived - waited)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        # only siyu-stream writes this topic, but a bad record must not stop the stream
        reason = f"malformed command: {exc!r}"
        return FIRST, Pending(record.offset, record, "command", reason=reason, arrived=arrived)


def event_command(record: Record, waited: Millis) -> bytes:
    """The command that re-keys input `record` (which carries a value) to its owner; the
    record had waited `waited` ms when it was taken."""
    assert record.value is not None
    command = {
        "cmd": "event",
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "value": record.value.decode(),
        "waited": waited,
    }
    return jsonout.dumps(command)


def credit_command(credit: ReferralCredit, waited: Millis) -> bytes:
    """The command that carries `credit` to the referrer's partition; the record that
    earned it had waited `waited` ms when it was taken."""
    command: dict[str, Any] = {
        "cmd": "credit",
        "referrer": credit.referrer_id,
        "referred": credit.referred_id,
        "at": credit.at,
        "cause": credit.cause_event_id,
        "waited": waited,
    }
    return jsonout.dumps(command)


def dead_letter(record: Record, reason: str, now: Millis) -> bytes:
    """The dead-letter record of consumed `record`, rejected at wall-clock `now`."""
    where = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "key": deadletter.encode_bytes(record.key),
    }
    dead = {**deadletter.record(where, record.value, reason), "rejected_at": format_rfc3339(now)}
    return jsonout.dumps(dead)
