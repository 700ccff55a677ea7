"""The streaming runtime on a real broker: end to end, restart, crash, two workers, bad input.

Workers run as child processes (`siyu-stream worker`), so that SIGTERM and SIGKILL act
on a real process. Everything is judged by action ids on the output topics, read with
read_committed, against the replay engine run over exactly the bytes that were sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from pathlib import Path
from typing import Any

import live
import orjson
import pytest
from live import (
    Traffic,
    WorkerProcess,
    actions_until,
    difference,
    quiesce,
    read_topics,
    replay_ids,
    share,
)

from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.settings import Guarantee, Settings

pytestmark = pytest.mark.integration
ALL = {0, 1, 2, 3}


def settings_for(broker: KafkaCluster, guarantee: Guarantee = "exactly_once") -> Settings:
    return live.settings_for(broker.bootstrap, guarantee)


def scenario(n: int) -> list[list[dict[str, Any] | None]]:
    """Per-customer histories exercising every rule that can fire within seconds.

    One list per customer; `None` is a round in which that customer is idle. The referred
    newcomer starts after its referrer's history, so that the credit reaches the referrer
    after the referrer's own events in replay and live alike.
    """
    c = f"cust{n}"

    def ev(tag: str, who: str = c, **fields: Any) -> dict[str, Any]:
        return {"event_id": f"{who}-{tag}", "customer_id": who, **fields}

    def order(tag: str, amount: str, who: str = c, **kw: Any) -> dict[str, Any]:
        return ev(
            tag,
            who,
            type="order",
            order_id=f"{who}-{tag}",
            status="paid",
            amount=amount,
            channel="tmall",
            **kw,
        )

    main = [
        ev(
            "j",
            type="join",
            action="join",
            carrier="wecom",
            source="package_card",
            staff_id="s1",
            ago_minutes=50,
        ),
        ev("c1", type="chat", direction="inbound", channel="wecom", ago_minutes=45),
        order("o1", "4800.00", ago_minutes=10),
        order("o2", "6000", ago_minutes=5),  # crosses 5,000 and 10,000 at once
        order("o2", "6000", ago_minutes=5),  # a producer retry
        order("o3", "10"),  # third order
        order("o4", "1000", kind="membership"),
        ev(
            "r", type="order", order_id=f"{c}-o2", status="refunded", amount="3000", channel="tmall"
        ),
    ]
    kid = f"{c}-kid"
    newcomer = [None] * len(main) + [
        ev("j", kid, type="join", action="join", carrier="wechat", referrer_id=c),
        order("o", "99", kid, ago_minutes=0),
    ]
    quiet = [
        ev(
            f"out{i}",
            f"{c}-quiet",
            type="chat",
            direction="outbound",
            channel="wecom",
            staff_id="s2",
        )
        for i in range(5)
    ]
    gone = f"{c}-gone"
    leaver = [
        order("o", "1500", gone),  # bought outside the pool: invited
        ev("j", gone, type="join", action="join", carrier="group"),
        ev("l", gone, type="join", action="leave", carrier="group"),
    ]
    return [main, newcomer, quiet, leaver]


def rounds(histories: list[list[dict[str, Any] | None]]) -> list[list[dict[str, Any]]]:
    """Round k holds the k-th event of every history."""
    depth = max(len(h) for h in histories)
    return [[h[k] for h in histories if k < len(h) and h[k] is not None] for k in range(depth)]


async def send_in_rounds(traffic: Traffic, customers: range) -> None:
    """Each round only after the worker consumed the previous one: Kafka orders records per
    topic partition, not across topics, so a customer's join and order would otherwise race."""
    histories = [h for n in customers for h in scenario(n)]
    for batch in rounds(histories):
        await traffic.send(batch)
        await quiesce(traffic.settings)


def order_stream(customers: int, events: int, seed: int) -> list[dict[str, Any]]:
    """Orders, refunds and memberships only (one topic, so per-customer order is total)."""
    rng = random.Random(seed)
    paid: dict[str, list[str]] = {}
    out = []
    for n in range(events):
        who = f"buyer{rng.randrange(customers)}"
        mine = paid.setdefault(who, [])
        roll = rng.random()
        if roll < 0.08 and mine:
            out.append(
                {
                    "event_id": f"r{n}",
                    "type": "order",
                    "customer_id": who,
                    "order_id": rng.choice(mine),
                    "status": "refunded",
                    "amount": f"{rng.randrange(1, 3000)}.00",
                    "channel": "tmall",
                }
            )
            continue
        kind = "membership" if roll < 0.11 else "purchase"
        amount = (
            "1000.00"
            if kind == "membership"
            else f"{rng.randrange(30, 9000)}.{rng.randrange(100):02d}"
        )
        mine.append(f"o{n}")
        out.append(
            {
                "event_id": f"e{n}",
                "type": "order",
                "customer_id": who,
                "order_id": f"o{n}",
                "status": "paid",
                "amount": amount,
                "channel": rng.choice(["tmall", "jd", "miniprogram"]),
                "kind": kind,
            }
        )
        if rng.random() < 0.01:
            out.append(dict(out[-1]))  # a producer retry
    return out


def big_orders(prefix: str, customers: int) -> list[dict[str, Any]]:
    """One 45,000 yuan order per scenario customer: crosses 50,000 only on top of earlier spend."""
    return [
        {
            "event_id": f"{prefix}-{n}",
            "type": "order",
            "customer_id": f"cust{n}",
            "order_id": f"{prefix}-{n}",
            "status": "paid",
            "amount": "45000",
            "channel": "jd",
        }
        for n in range(customers)
    ]


async def outputs_equal_replay(
    settings: Settings, traffic: Traffic, worker: WorkerProcess
) -> dict[str, dict[str, Any]]:
    """Stop `worker` once the outputs hold every replay action; each exactly once."""
    expected = replay_ids(traffic.sent)
    records = await actions_until(settings, set(expected))
    worker.terminate()
    got = Counter(r["action_id"] for r in records)
    assert set(got) == set(expected), difference({r["action_id"]: r for r in records}, expected)
    assert max(got.values()) == 1
    return expected


def gift_ids(actions: dict[str, dict[str, Any]]) -> set[str]:
    return {i for i, a in actions.items() if a["kind"] == "gift"}


async def test_end_to_end_matches_replay(broker: KafkaCluster, tmp_path: Path) -> None:
    settings = settings_for(broker)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    async with Traffic(settings) as traffic:
        await send_in_rounds(traffic, range(12))
    expected = replay_ids(traffic.sent)
    records = await actions_until(settings, set(expected))
    worker.terminate()
    got = Counter(r["action_id"] for r in records)
    live = {r["action_id"]: r for r in records}
    assert set(got) == set(expected), difference(live, expected)
    assert max(got.values()) == 1  # exactly once: no record twice
    by_rule = Counter(a["rule"] for a in expected.values())
    assert {
        "welcome",
        "reply_sla",
        "spend_tier",
        "membership",
        "third_order",
        "referral",
        "invite_to_join",
        "silence",
        "leave",
    } <= set(by_rule)
    assert all(live[i] == expected[i] for i in expected)  # same bytes, not only ids


async def test_restart_continues_as_if_never_stopped(broker: KafkaCluster, tmp_path: Path) -> None:
    settings = settings_for(broker)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    async with Traffic(settings) as traffic:
        await send_in_rounds(traffic, range(6))
        assert worker.terminate() == 0
        # retries of everything while no worker runs: the restarted one must know them all
        await traffic.send([e for n in range(6) for h in scenario(n) for e in h if e])
        worker.start()
        worker.wait_owns(ALL)
        await quiesce(settings)
        # these cross 50,000 only because the earlier spend survived the restart
        await traffic.send(big_orders("more", 6))
    expected = await outputs_equal_replay(settings, traffic, worker)
    assert sum(1 for a in expected.values() if a["detail"].get("code") == "tier_50000") == 6


async def test_rocksdb_restart_is_warm(broker: KafkaCluster, tmp_path: Path) -> None:
    settings = dataclasses.replace(
        settings_for(broker), store="rocksdb://", data_dir=tmp_path / "data"
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    async with Traffic(settings) as traffic:
        await send_in_rounds(traffic, range(4))
        assert worker.terminate() == 0
        cold = worker.restored()
        worker.start()
        worker.wait_owns(ALL)
        warm = worker.restored()[len(cold) :]
        # everything was already in RocksDB: the restart read no changelog record again
        assert len(warm) == 4 and sum(warm) == 0
        await traffic.send(big_orders("big", 4))
    expected = replay_ids(traffic.sent)
    records = await actions_until(settings, set(expected))
    worker.terminate()
    got = Counter(r["action_id"] for r in records)
    assert set(got) == set(expected), difference({r["action_id"]: r for r in records}, expected)
    assert sum(1 for a in expected.values() if a["detail"].get("code") == "tier_50000") == 4


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_sigkill_mid_stream_loses_no_gift(
    broker: KafkaCluster, tmp_path: Path, guarantee: str
) -> None:
    settings = settings_for(broker, guarantee)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    stream = order_stream(customers=300, events=3_000, seed=11)
    async with Traffic(settings) as traffic:
        for chunk in range(3):
            part = stream[chunk * 1_000 : (chunk + 1) * 1_000]
            sender = asyncio.create_task(traffic.send(part, rate=1_000))
            await asyncio.sleep(0.3 + 0.2 * chunk)  # kill at different points of the stream
            worker.kill()  # the group evicts it after its session timeout
            await sender
            worker.start()
            worker.wait_owns(ALL)
    expected = replay_ids(traffic.sent)
    out = await actions_until(settings, set(expected))
    worker.terminate()
    got = Counter(r["action_id"] for r in out)
    assert gift_ids(expected) <= set(got), "a gift was lost"
    assert set(got) == set(expected), difference({r["action_id"]: r for r in out}, expected)
    by_id = {r["action_id"]: r for r in out}
    assert all(by_id[i] == expected[i] for i in expected)
    if guarantee == "exactly_once":
        assert max(got.values()) == 1, "a record was committed twice"
    assert worker.alive() is False


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_the_worker_rides_out_a_broker_restart(
    broker: KafkaCluster, tmp_path: Path, guarantee: str
) -> None:
    """The broker goes away mid-stream and comes back: the worker does not exit, retries the
    batch it had in flight from the changelog and the committed offsets, and goes on;
    nothing is lost or (exactly_once) doubled. (On the embedded broker this could only run
    between batches: noida-db loses records it acknowledged as it stops.)"""
    settings = settings_for(broker, guarantee)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    stream = order_stream(customers=200, events=2_000, seed=3)
    async with Traffic(settings) as traffic:
        await traffic.send(stream[:1_000], rate=2_000)
        await asyncio.to_thread(broker.restart)  # the worker is still on the first half
        await traffic.send(stream[1_000:], rate=2_000)
    expected = replay_ids(traffic.sent)
    out = await actions_until(settings, set(expected))
    assert worker.alive(), "the worker exited when the broker went away"
    worker.terminate()
    got = Counter(r["action_id"] for r in out)
    assert set(got) == set(expected), difference({r["action_id"]: r for r in out}, expected)
    if guarantee == "exactly_once":
        assert max(got.values()) == 1, "a record was committed twice"


@pytest.mark.parametrize("standby", [0, 1])
async def test_two_workers_share_and_take_over(
    broker: KafkaCluster, tmp_path: Path, standby: int
) -> None:
    settings = dataclasses.replace(settings_for(broker), standby_replicas=standby)
    first = WorkerProcess(settings, tmp_path / "a.log")
    second = WorkerProcess(settings, tmp_path / "b.log")
    first.start()
    first.wait_owns(ALL)
    second.start()
    await share(first, second)
    assert not first.owned() & second.owned()
    async with Traffic(settings) as traffic:
        await send_in_rounds(traffic, range(8))
        assert first.terminate() == 0
        before = len(second.restored())
        second.wait_owns(ALL)
        takeover = second.restored()[before:]
        if standby:
            # the second worker followed the first one's changelog partitions all along:
            # taking them over reads at most the last few records, not every customer
            assert sum(takeover) < 8
        # state moved with the partitions: these orders finish tiers begun on the first worker
        await traffic.send(big_orders("late", 8))
    expected = await outputs_equal_replay(settings, traffic, second)
    assert sum(1 for a in expected.values() if a["detail"].get("code") == "tier_50000") == 8


async def test_bad_input_is_dead_lettered_and_the_stream_goes_on(
    broker: KafkaCluster, tmp_path: Path
) -> None:
    settings = settings_for(broker)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    good = {
        "event_id": "ok-1",
        "type": "order",
        "customer_id": "zoe",
        "order_id": "z1",
        "status": "paid",
        "amount": "5000",
        "channel": "tmall",
    }
    async with Traffic(settings) as traffic:
        await traffic.raw("orders", b"zoe", b"{not json")
        await traffic.raw("orders", b"zoe", b"x" * 70_000)
        await traffic.raw(
            "chats",
            b"zoe",
            orjson.dumps({**good, "event_id": "bad-2", "occurred_at": "2026-11-25T00:00:00Z"}),
        )
        await traffic.raw("orders", b"zoe", b"\xff\xfe\x00")
        await traffic.send([{**good, "amount": "-5", "event_id": "bad-1"}, good])
    # only the last message is valid on its topic (the order sent to the chats topic is not)
    [gift] = [a for a in replay_ids(traffic.sent[-1:]).values() if a["kind"] == "gift"]
    await actions_until(settings, {gift["action_id"]})
    dead = await read_topics(settings, [settings.topic("deadletter")])
    worker.terminate()
    reasons = sorted(d["reason"] for d in dead)
    assert len(dead) == 5, reasons
    assert any("invalid JSON" in r for r in reasons)
    assert any("exceeds 65536" in r for r in reasons)
    assert any(f"on topic {settings.topic('chats')}" in r for r in reasons)
    assert any(r.startswith("amount:") for r in reasons)
    assert {d["topic"] for d in dead} == {settings.topic("orders"), settings.topic("chats")}
    assert all(d["offset"] is not None and d["partition"] is not None for d in dead)
    assert any(d["encoding"] == "base64" for d in dead)
