"""When to send and how long to wait: the notifier's pure decisions.

No I/O and no clock here: every function takes `now` (epoch ms), in the spirit of the
core's `(state, event, clock) -> (state, actions)`; the consumer loop (`loop.py`) does
what they say. What each decides:

- `decide`: send now, hold until `not_before` (a customer-facing reminder moved out of
  quiet hours never reaches the customer early), or expire (older than its template's
  staleness limit when it could first be delivered: not sent, receipted `expired`);
- `retry_delay`: exponential backoff with jitter, never shorter than the sink's
  `Retry-After`;
- `parse_action`: the bytes of an action topic's record as the notifier reads them, or
  `InvalidAction` (dead-lettered).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import orjson

from siyu_stream.core.clock import SECOND, Millis, parse_rfc3339
from siyu_stream.core.errors import InvalidAction
from siyu_stream.core.schemas import validator

MAX_ACTION_BYTES = 65_536
"""Larger records are dead-lettered (the worker's actions are a few hundred bytes)."""
MAX_RETRY_AFTER_MS = 3_600 * SECOND
"""A Retry-After further out than this is read as this: a sink's typo must not park an
action for days."""
SCHEMA_OF_KIND = {"gift": "siyu.actions.gifts", "reminder": "siyu.actions.reminders"}


class Parsed(NamedTuple):
    """An action record, read: what routing, scheduling and rendering need."""

    action_id: str
    kind: str
    template: str | None
    """The reminder's template; None for a gift."""
    customer_id: str
    occurred_at: Millis
    not_before: Millis | None
    deadline: Millis | None
    data: dict[str, Any]
    raw: bytes
    """The record's value, exactly: webhooks POST these bytes."""

    @property
    def ready_at(self) -> Millis:
        """When it may first be delivered: latency and staleness count from here."""
        return self.occurred_at if self.not_before is None else self.not_before


def parse_action(raw: bytes | None, kind: str) -> Parsed:
    """Decode and check a record of the `kind` (gift, reminder) topic."""
    if raw is None:
        msg = "null value (tombstone)"
        raise InvalidAction(msg)
    if len(raw) > MAX_ACTION_BYTES:
        msg = f"{len(raw):,} bytes, more than {MAX_ACTION_BYTES:,}"
        raise InvalidAction(msg)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = f"not JSON: {exc}"
        raise InvalidAction(msg) from exc
    try:
        validator(SCHEMA_OF_KIND[kind])(data)
    except Exception as exc:  # fastjsonschema's JsonSchemaValueException, untyped
        msg = f"not a {kind} action ({SCHEMA_OF_KIND[kind]}): {exc}"
        raise InvalidAction(msg) from exc
    detail = data["detail"]
    try:
        occurred = parse_rfc3339(data["occurred_at"])
        not_before = _time(detail.get("not_before"))
        deadline = _time(detail.get("deadline"))
    except ValueError as exc:  # the pattern passed, the calendar did not (2026-02-30)
        msg = f"impossible time: {exc}"
        raise InvalidAction(msg) from exc
    return Parsed(
        action_id=data["action_id"],
        kind=kind,
        template=detail.get("template") if kind == "reminder" else None,
        customer_id=data["customer_id"],
        occurred_at=occurred,
        not_before=not_before,
        deadline=deadline,
        data=data,
        raw=raw,
    )


def _time(text: str | None) -> Millis | None:
    return None if text is None else parse_rfc3339(text)


class Send(NamedTuple):
    pass


class Hold(NamedTuple):
    until: Millis


class Expire(NamedTuple):
    age_ms: Millis


Decision = Send | Hold | Expire


def decide(action: Parsed, now: Millis, staleness_ms: Millis) -> Decision:
    """Send, hold or expire `action` at `now`. Called when it arrives, when its hold ends
    and before every retry: an action that waited too long is never sent late."""
    if action.not_before is not None and now < action.not_before:
        return Hold(action.not_before)
    age = now - action.ready_at
    if age > staleness_ms:
        return Expire(age)
    return Send()


def retry_delay(
    attempt: int, retry_after_ms: Millis | None, base_ms: Millis, cap_ms: Millis, jitter: float
) -> Millis:
    """Wait before attempt `attempt + 1` (after `attempt` failures, >= 1).

    "Equal jitter": half of min(cap, base * 2^(attempt-1)) plus a random part of the other
    half (`jitter` in [0, 1)), so that retries of many actions spread out yet still grow;
    never less than the sink's Retry-After, itself bounded by MAX_RETRY_AFTER_MS.
    """
    ceiling = min(cap_ms, base_ms << min(attempt - 1, 40))
    delay = ceiling // 2 + int(jitter * (ceiling - ceiling // 2))
    if retry_after_ms is not None:
        delay = max(delay, min(retry_after_ms, MAX_RETRY_AFTER_MS))
    return delay


def parse_retry_after(value: str | None, now: Millis) -> Millis | None:
    """An HTTP Retry-After header (seconds, or an HTTP date) as milliseconds from `now`;
    None when absent or unreadable (the backoff alone then decides)."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(int(text), MAX_RETRY_AFTER_MS // SECOND) * SECOND
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT by definition
        return None
    wait: Millis = max(0, int(when.timestamp() * 1000) - now)
    return min(wait, MAX_RETRY_AFTER_MS)
