"""Decoding on arrival, and the command topic's records.

Every consumed record is decoded and checked once, when it arrives, into a `Pending`
that says what it will do at its turn: be taken (an event, a referral credit), be
re-keyed to its customer's partition, or be dead-lettered with a reason. Nothing a
record holds can raise past this module: input is data, and bad input is a reason.

The command topic carries what partitions send each other: referral credits keyed by
the referrer, and input events re-keyed by customer id. Its encoding and decoding are
both here, so that the two sides cannot drift apart.
"""

from __future__ import annotations

from typing import Any

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


def decode_command(record: Record) -> tuple[SortKey, Pending] | Record:
    """A command record: a referral credit (its key and pending), a malformed command
    (dead-lettered first), or a re-keyed event (the original input record, to be
    decoded as input where its customer's state lives)."""
    try:
        command = orjson.loads(record.value or b"null")
        if command["cmd"] == "credit":
            credit = ReferralCredit(
                str(command["referrer"]),
                str(command["referred"]),
                int(command["at"]),
                str(command["cause"]),
            )
            return credit_key(credit), Pending(record.offset, record, "credit", credit=credit)
        return Record(
            str(command["topic"]),
            int(command["partition"]),
            int(command["offset"]),
            record.key,
            str(command["value"]).encode(),
            record.timestamp,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        # only siyu-stream writes this topic, but a bad record must not stop the stream
        reason = f"malformed command: {exc!r}"
        return FIRST, Pending(record.offset, record, "command", reason=reason)


def event_command(record: Record) -> bytes:
    """The command that re-keys input `record` (which carries a value) to its owner."""
    assert record.value is not None
    command = {
        "cmd": "event",
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "value": record.value.decode(),
    }
    return jsonout.dumps(command)


def credit_command(credit: ReferralCredit) -> bytes:
    """The command that carries `credit` to the referrer's partition."""
    command: dict[str, Any] = {
        "cmd": "credit",
        "referrer": credit.referrer_id,
        "referred": credit.referred_id,
        "at": credit.at,
        "cause": credit.cause_event_id,
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
