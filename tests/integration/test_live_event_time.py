"""Live = replay on the real broker, whatever the lag: a backlog, crashes during the
catch-up, same-second events across topics, and an idle partition's timers.

The worker's output (read_committed) is compared with `replay` over exactly the bytes
produced, in production order, with the same partitions: by action id and by bytes.
One difference is named by the design (docs/design.md §5) and allowed here, nothing
else: a referral credit that reaches the referrer's partition after that partition's
clock passed the order's time is applied late, so the referrer's `layer` changes may
take another route (A2→A4→A5 instead of A2→A5) to the same final layer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import live
import orjson
import pytest
from live import (
    ALL,
    Traffic,
    WorkerProcess,
    assert_live_equals_replay,
    backlog,
    live_actions,
    quiesce,
    read_topics,
    replayed,
    run_to_the_end,
)

from siyu_stream.core.clock import HOUR, to_datetime
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Guarantee, Settings
from siyu_stream.topology import Topology

pytestmark = pytest.mark.integration


def settings_for(broker: KafkaCluster, guarantee: Guarantee = "exactly_once") -> Settings:
    # the exact merge needs every lagging input read before going on; production keeps
    # a short bound so that one stuck topic cannot hold a partition back for long
    return live.settings_for(broker.bootstrap, guarantee, max_task_idle_ms=60_000)


async def committed_actions(settings: Settings) -> list[dict[str, Any]]:
    return await read_topics(settings, Topology(settings).outputs)


async def test_a_backlog_is_processed_as_replay_processes_it(
    broker: KafkaCluster, tmp_path: Path
) -> None:
    settings = settings_for(broker)
    traffic = await backlog(settings, events=3_000, hours=3)
    expected = replayed(traffic.sent, tmp_path)
    rules = Counter(a["rule"] for a in expected.values())
    assert rules["reply_sla"] and rules["referral"] and rules["welcome"]  # timers and credits
    records = await run_to_the_end(settings, expected, tmp_path / "worker.log")
    assert_live_equals_replay(records, expected, once=True)


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
async def test_crashes_during_the_catch_up_lose_and_double_nothing(
    broker: KafkaCluster, tmp_path: Path, guarantee: str
) -> None:
    settings = settings_for(broker, guarantee)
    traffic = await backlog(settings, events=6_000, hours=4)
    expected = replayed(traffic.sent, tmp_path)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    for pause in (1.0, 2.5):
        worker.start()
        worker.wait_owns(ALL)
        await asyncio.sleep(pause)  # part of the backlog is committed, part is not
        worker.kill()  # the group evicts it after its session timeout
    worker.start()
    worker.wait_owns(ALL)
    await quiesce(settings)
    records = await live_actions(settings, expected)
    worker.terminate()
    assert_live_equals_replay(records, expected, once=guarantee == "exactly_once")


async def test_same_second_events_across_topics_are_taken_in_one_order(
    broker: KafkaCluster, tmp_path: Path
) -> None:
    """Each referred customer's order, chat and join share one second and are produced in
    the reverse of the merge order; the worker must still take the join first (the
    customer was referred), as replay does."""
    settings = settings_for(broker)
    await ensure_topics(settings.kafka, Topology(settings).specs())
    when = to_datetime(wall_clock() - 2 * HOUR).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with Traffic(settings) as traffic:
        for n in range(40):
            who, referrer = f"kid{n}", f"ref{n}"
            base = {"customer_id": who, "occurred_at": when}
            for event in (
                {
                    **base,
                    "event_id": f"o{n}",
                    "type": "order",
                    "order_id": f"o{n}",
                    "status": "paid",
                    "amount": "100",
                    "channel": "tmall",
                },
                {
                    **base,
                    "event_id": f"c{n}",
                    "type": "chat",
                    "direction": "inbound",
                    "channel": "wecom",
                },
                {
                    **base,
                    "event_id": f"j{n}",
                    "type": "join",
                    "action": "join",
                    "carrier": "wecom",
                    "referrer_id": referrer,
                },
            ):
                await traffic.send([event])
    expected = replayed(traffic.sent, tmp_path)
    assert sum(a["rule"] == "referral" for a in expected.values() if a["kind"] == "gift") == 40
    records = await run_to_the_end(settings, expected, tmp_path / "worker.log")
    assert_live_equals_replay(records, expected, once=True)


async def test_an_idle_partition_fires_its_timer_on_the_wall_clock(
    broker: KafkaCluster, tmp_path: Path
) -> None:
    """Nothing else arrives after an inbound chat: the reply SLA still fires, from the wall
    clock, once the partition is caught up (the test waits; it does not time it)."""
    settings = dataclasses.replace(settings_for(broker), timer_grace_ms=500)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    inbound = {
        "event_id": "idle-in",
        "type": "chat",
        "customer_id": "idle",
        "direction": "inbound",
        "channel": "wecom",
        "ago_minutes": 29.8,  # due in about 12 seconds
    }
    async with Traffic(settings) as traffic:
        await traffic.send([inbound])
    deadline = wall_clock() + 80_000
    overdue: list[dict[str, Any]] = []
    while not overdue and wall_clock() < deadline:
        await asyncio.sleep(1)
        overdue = [
            r
            for r in await committed_actions(settings)
            if r["detail"].get("template") == "reply_overdue"
        ]
    worker.terminate()
    assert [r["customer_id"] for r in overdue] == ["idle"]
    sent_at = orjson.loads(traffic.sent[0])["occurred_at"]
    assert overdue[0]["occurred_at"] > sent_at  # fired at its due time, 30 min after
