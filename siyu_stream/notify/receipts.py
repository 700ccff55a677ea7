"""What a sink's answer means, and the records the notifier writes about it. Pure.

An answer is `ok`, `retry` (429, 5xx, timeouts, connection errors, WeCom errcode 45009:
later, with backoff) or `reject` (any other 4xx, any other WeCom errcode, garbage: the
sink will never take it). Every action a sink was due to get ends in one receipt on
`<prefix>.actions.deliveries`, keyed `<action_id>/<sink>`:

- `delivered`: the sink took it; `latency_ms` from when it could first be delivered
  (`not_before`, else `occurred_at`);
- `expired`: older than its staleness limit when it could be delivered: not sent;
- `dead`: the sink rejected it, or the record was not an action: dead-lettered too;
- `failed`: still failing after the sink's `max_attempts`: dead-lettered too.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import orjson

from siyu_stream.core import deadletter
from siyu_stream.core.clock import Millis, format_rfc3339
from siyu_stream.notify.schedule import Parsed

RESPONSE_PREFIX_BYTES = 512
"""How much of a sink's answer a dead letter keeps."""
WECOM_RATE_LIMITED = 45009

Outcome = Literal["delivered", "expired", "dead", "failed"]


class Answer(NamedTuple):
    verdict: Literal["ok", "retry", "reject"]
    reason: str
    """Bounded label for metrics: `2xx`, `429`, `5xx`, `4xx`, `timeout`, `network`,
    `errcode_45009`, `errcode`, `garbage`."""
    status: int | None = None
    body: bytes = b""
    retry_after_ms: Millis | None = None


def classify_http(status: int, body: bytes, retry_after_ms: Millis | None) -> Answer:
    """A webhook's answer."""
    if 200 <= status < 300:
        return Answer("ok", "2xx", status, body)
    if status == 429:
        return Answer("retry", "429", status, body, retry_after_ms)
    if status >= 500:
        return Answer("retry", "5xx", status, body, retry_after_ms)
    return Answer("reject", "4xx" if status >= 400 else "garbage", status, body)


def classify_wecom(status: int, body: bytes) -> Answer:
    """A WeCom robot's answer: HTTP 200 with `{"errcode": 0}` is success; 45009 is its
    rate limit; any other errcode, or a body that is no such object, is a rejection."""
    if status != 200:
        return (
            classify_http(status, body, None)
            if status >= 300
            else Answer("reject", "garbage", status, body)
        )
    try:
        answer = orjson.loads(body)
        code = answer["errcode"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return Answer("reject", "garbage", status, body)
    if code == 0:
        return Answer("ok", "2xx", status, body)
    if code == WECOM_RATE_LIMITED:
        return Answer("retry", "errcode_45009", status, body)
    return Answer("reject", "errcode", status, body)


def receipt(
    action: Parsed,
    sink: str,
    outcome: Outcome,
    *,
    attempts: int,
    now: Millis,
    answer: Answer | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action_id": action.action_id,
        "sink": sink,
        "outcome": outcome,
        "kind": action.kind,
        "template": action.template,
        "customer_id": action.customer_id,
        "attempts": attempts,
        "ready_at": format_rfc3339(action.ready_at),
        "at": format_rfc3339(now),
        "latency_ms": max(0, now - action.ready_at) if outcome == "delivered" else None,
    }
    if answer is not None and outcome != "delivered":
        out["reason"] = answer.reason
        out["status"] = answer.status
    return out


def receipt_key(action_id: str, sink: str) -> str:
    """Per sink: compaction keeps the latest record per key, and an action that goes to two
    sinks must keep both receipts."""
    return f"{action_id}/{sink}"


def dead_letter(
    where: dict[str, Any],
    value: bytes | None,
    reason: str,
    *,
    now: Millis,
    sink: str | None = None,
    answer: Answer | None = None,
) -> dict[str, Any]:
    """A notify dead letter: the core's record (source, reason, size, digest, a bounded
    prefix of the value) plus the sink and a bounded prefix of its answer."""
    out = deadletter.record(where, value, reason)
    out["rejected_at"] = format_rfc3339(now)
    out["sink"] = sink
    if answer is not None:
        prefix = answer.body[:RESPONSE_PREFIX_BYTES]
        out["response"] = {
            "status": answer.status,
            "body": prefix.decode("utf-8", "replace"),
            "truncated": len(answer.body) > RESPONSE_PREFIX_BYTES,
        }
    return out
