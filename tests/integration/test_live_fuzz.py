"""Hostile input on the real broker: no record stops a partition or the worker.

Thirty-odd kinds of bad records (a tombstone, 900 KB of binary, oversized JSON, wrong
types, impossible times, a customer joining 20,000 carriers, ...) interleaved with valid
events, then a restart: the worker never exits, each bad record is dead-lettered exactly
once with a reason, and the valid events' actions are replay's, by id and bytes.
"""

from __future__ import annotations

import io
import random
from collections import Counter
from pathlib import Path
from typing import Any

import live
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from live import WorkerProcess, actions_until, difference, quiesce, read_topics

from siyu_stream.core.clock import DAY, format_rfc3339
from siyu_stream.core.ruleset import Rules
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.kafka.client import client_options
from siyu_stream.observe.wall import wall_clock
from siyu_stream.replay.run import replay
from siyu_stream.topology import Topology

pytestmark = pytest.mark.integration
ALL = {0, 1, 2, 3}
CARRIERS = 20_000


def valid_events(now: int) -> list[dict[str, Any]]:
    """A few customers joining, writing, buying and refunding (all at `now`)."""
    at = format_rfc3339(now)
    events: list[dict[str, Any]] = []
    for n in range(30):
        who = f"guest{n}"
        base = {"customer_id": who, "occurred_at": at}
        events += [
            {
                **base,
                "event_id": f"{who}-j",
                "type": "join",
                "action": "join",
                "carrier": "wecom",
                "staff_id": "s1",
            },
            {
                **base,
                "event_id": f"{who}-c",
                "type": "chat",
                "direction": "inbound",
                "channel": "wecom",
            },
            {
                **base,
                "event_id": f"{who}-o",
                "type": "order",
                "order_id": f"{who}-o",
                "status": "paid",
                "amount": "6000",
                "channel": "tmall",
            },
        ]
    return events


def bad_records(now: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """(topic, key, value) of every kind of bad record, each one dead letter."""
    rng = random.Random(4)
    order = {
        "event_id": "bad",
        "type": "order",
        "customer_id": "guest1",
        "occurred_at": format_rfc3339(now),
        "order_id": "bad",
        "status": "paid",
        "amount": "10",
        "channel": "tmall",
    }

    def o(**changes: Any) -> bytes:
        return orjson.dumps({**order, **changes})

    def without(field: str) -> bytes:
        return orjson.dumps({k: v for k, v in order.items() if k != field})

    k = b"guest1"
    return [
        ("orders", k, None),  # a tombstone
        ("orders", k, bytes(rng.randrange(128, 256) for _ in range(900_000))),  # binary
        ("orders", k, o(items=[{"sku": "x" * 100}] * 700)),  # valid JSON, 70+ KB
        ("orders", k, b"{not json"),
        ("orders", k, b""),
        ("orders", k, b"[1, 2, 3]"),
        ("orders", k, b'"an order"'),
        ("orders", k, b"42"),
        ("orders", k, b"null"),
        ("orders", k, "\ufeff".encode() + o()),  # a byte-order mark
        ("orders", k, o().decode().encode("utf-16")),
        ("orders", k, b"[" * 5_000 + b"]" * 5_000),  # nested beyond any parser's depth
        ("orders", k, without("event_id")),
        ("orders", k, without("customer_id")),
        ("orders", k, without("occurred_at")),
        ("orders", k, o(customer_id="")),
        ("orders", k, o(customer_id="c" * 129)),
        ("orders", k, o(event_id=17)),
        ("orders", k, o(type="refund")),
        ("chats", k, o()),  # an order on the chats topic
        ("orders", k, o(occurred_at="yesterday")),
        ("orders", k, o(occurred_at="2026-11-29T10:00:00")),  # no offset
        ("orders", k, o(occurred_at="0001-01-01T00:00:00+01:00")),
        ("orders", k, o(occurred_at="9999-12-31T23:59:59-14:00")),
        ("orders", k, o(occurred_at="1999-12-31T23:59:59Z")),  # before the floor
        ("orders", k, o(occurred_at=format_rfc3339(now + 30 * DAY))),  # ahead of the wall clock
        ("orders", k, o(occurred_at=format_rfc3339(now - 400 * DAY))),  # behind the clock
        ("orders", k, o(amount="-5")),
        ("orders", k, o(amount="5.999")),
        ("orders", k, o(amount="99999999999")),
        ("orders", k, o(amount="NaN")),
        ("orders", k, o(amount=True)),
        ("orders", k, o(status="stolen")),
        (
            "chats",
            k,
            orjson.dumps({**order, "type": "chat", "direction": "sideways", "channel": "wecom"}),
        ),
        (
            "joins",
            k,
            orjson.dumps({**order, "type": "join", "action": "hover", "carrier": "wecom"}),
        ),
        (
            "joins",
            k,
            orjson.dumps({**order, "type": "join", "action": "join", "carrier": "x" * 65}),
        ),
    ]


def spam(now: int) -> list[bytes]:
    """One customer joining 20,000 distinct carriers: only max_carriers are held."""
    at = format_rfc3339(now)
    return [
        orjson.dumps(
            {
                "event_id": f"spam-{n}",
                "type": "join",
                "customer_id": "spammer",
                "occurred_at": at,
                "action": "join",
                "carrier": f"{n:064d}",
            }
        )
        for n in range(CARRIERS)
    ]


def replayed(values: list[bytes], tmp: Path, now: int) -> dict[str, bytes]:
    path = tmp / "valid.jsonl"
    path.write_bytes(b"".join(v + b"\n" for v in values))
    out = io.BytesIO()
    replay([path], out, Rules(), now=now, until=now, partitions=4, deadletters=io.BytesIO())
    return {orjson.loads(line)["action_id"]: line for line in out.getvalue().splitlines()}


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_hostile_records_never_stop_the_worker(
    broker: KafkaCluster, tmp_path: Path, guarantee: str
) -> None:
    # the exact merge: see test_live_event_time
    settings = live.settings_for(broker.bootstrap, guarantee, max_task_idle_ms=60_000)
    await ensure_topics(settings.kafka, Topology(settings).specs())
    now = wall_clock()
    valid = [orjson.dumps(e) for e in valid_events(now)]
    bad = bad_records(now)
    spammed = spam(now)
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        topics = {"order": "orders", "chat": "chats", "join": "joins"}
        futures = []
        for n, value in enumerate(valid):  # the bad records interleaved with the valid ones
            event = orjson.loads(value)
            futures.append(
                await producer.send(
                    settings.topic(topics[event["type"]]), value, key=event["customer_id"].encode()
                )
            )
            if n < len(bad):
                topic, key, raw = bad[n]
                futures.append(await producer.send(settings.topic(topic), raw, key=key))
        futures += [
            await producer.send(settings.topic("joins"), v, key=b"spammer") for v in spammed
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    assert len(bad) >= 30 and len(valid) >= len(bad)

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    await quiesce(settings)
    assert worker.terminate() == 0  # it never stopped on its own, and stops cleanly
    worker.start()  # no record it has seen can stop it either: no crash loop
    worker.wait_owns(ALL)
    await quiesce(settings)

    expected = replayed(valid + spammed, tmp_path, now)
    records = await actions_until(settings, set(expected))
    dead = await read_topics(settings, [settings.topic("deadletter")])
    assert worker.alive()
    assert worker.terminate() == 0

    got = {r["action_id"]: orjson.dumps(r) for r in records}
    assert Counter(r["action_id"] for r in records).most_common(1)[0][1] == 1
    assert got.keys() == expected.keys(), difference(
        {i: orjson.loads(v) for i, v in got.items()},
        {i: orjson.loads(v) for i, v in expected.items()},
    )
    assert all(orjson.loads(got[i]) == orjson.loads(expected[i]) for i in expected)

    where = Counter((d["topic"], d["partition"], d["offset"]) for d in dead)
    assert max(where.values()) == 1, "a record was dead-lettered twice"
    reasons = Counter(d["reason"].split(":")[0] for d in dead)
    rejected_spam = CARRIERS - Rules().engine.max_carriers
    assert sum(1 for d in dead if "state_too_large" in d["reason"]) == rejected_spam
    assert len(dead) == len(bad) + rejected_spam, reasons
    assert all(d["reason"] and d["size"] >= 0 for d in dead)
    big = [d for d in dead if d["size"] == 900_000]
    assert big and big[0]["truncated"] and big[0]["encoding"] == "base64"
    assert len(big[0]["value"]) < 8_000 and len(big[0]["sha256"]) == 64
    assert any(d["value"] is None and "tombstone" in d["reason"] for d in dead)
