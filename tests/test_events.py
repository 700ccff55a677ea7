"""Input validation: every rejection names the field and the problem."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import Chat, Join, Order, decode, parse_amount_fen
from siyu_stream.core.ruleset import Input

LIMITS = Input()


def order(**over: Any) -> bytes:
    base: dict[str, Any] = {
        "event_id": "e1",
        "type": "order",
        "customer_id": "c1",
        "occurred_at": "2026-03-01T10:00:00+08:00",
        "order_id": "o1",
        "status": "paid",
        "amount": "12.50",
        "channel": "tmall",
    }
    base.update(over)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize(
    ("value", "fen"),
    [("12.50", 1250), ("0", 0), (12.3, 1230), (7, 700), ("100000.01", 10_000_001), (0.1, 10)],
)
def test_amounts_become_integer_fen(value: object, fen: int) -> None:
    assert parse_amount_fen(value) == fen


def test_valid_order_keeps_only_what_rules_need() -> None:
    event = decode(order(items=[{"sku": "x", "qty": 1}], kind="membership"), LIMITS)
    assert isinstance(event, Order)
    assert (event.amount_fen, event.membership, event.at) == (1250, True, 1772330400000)


@pytest.mark.parametrize(
    ("message", "field", "words"),
    [
        (order(amount="-1"), "amount", ">= 0"),
        (order(amount=-1), "amount", ">= 0"),
        (order(amount=12.345), "amount", "2 decimals"),
        (order(amount="1e3"), "amount", "yuan"),
        (order(amount=True), "amount", "yuan"),
        (order(amount=10_000_001), "amount", "exceeds"),
        (order(status="pending"), "status", "must be one of"),
        (order(order_id=...), "order_id", "required field is missing"),
        (order(occurred_at="2026-03-01"), "occurred_at", "RFC 3339"),
        (order(occurred_at="2026-03-01T10:00:00"), "occurred_at", "RFC 3339"),
        (order(occurred_at="2026-02-30T10:00:00Z"), "occurred_at", "day is out of range"),
        (order(customer_id=""), "customer_id", "1"),
        (order(customer_id="x" * 129), "customer_id", "128"),
        (order(type="refund"), "type", "order, chat, join"),
        (order(event_id=5), "event_id", "string"),
    ],
)
def test_rejections_name_the_field(message: bytes, field: str | None, words: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode(message, LIMITS)
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("raw", "words"),
    [(b"{not json", "invalid JSON"), (b"[1, 2]", "JSON object"), (b"\xff\xfe", "invalid JSON")],
)
def test_malformed_messages(raw: bytes, words: str) -> None:
    with pytest.raises(InvalidEvent, match=words):
        decode(raw, LIMITS)


def test_oversized_message_rejected_before_parsing() -> None:
    big = order(items=[{"sku": "x" * 100}] * 1000)
    with pytest.raises(InvalidEvent, match="exceeds 65536"):
        decode(big, LIMITS)


def test_chat_and_join_decoding_and_self_referral_dropped() -> None:
    chat = decode(
        orjson.dumps(
            {
                "event_id": "e",
                "type": "chat",
                "customer_id": "c",
                "occurred_at": "2026-03-01T02:00:00Z",
                "direction": "outbound",
                "channel": "wecom",
                "staff_id": "s1",
                "text": "PII that must not be kept",
            }
        ),
        LIMITS,
    )
    assert chat == Chat("e", "c", 1772330400000, inbound=False, channel="wecom", staff_id="s1")
    join = decode(
        orjson.dumps(
            {
                "event_id": "j",
                "type": "join",
                "customer_id": "c",
                "occurred_at": "2026-03-01T02:00:00Z",
                "action": "join",
                "carrier": "wecom",
                "referrer_id": "c",
            }
        ),
        LIMITS,
    )
    assert isinstance(join, Join) and join.referrer_id is None
