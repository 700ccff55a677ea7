"""Taking partitions over when the broker refuses, or when a rebalance step fails: on the
real broker, with a worker in this process so that the failure can be injected at the
seam where it happens (`Restorer.take_over`, the standby a rebalance hands stores to).

aiokafka runs the rebalance callbacks and only logs what they raise. A worker that took
its partitions over inside the callback and failed there stayed paused for good: alive,
heartbeating, processing nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import live
import pytest
from aiokafka.errors import KafkaConnectionError
from live import ALL, Traffic, assert_live_equals_replay, live_actions, replayed, simulated

from siyu_stream.core.ruleset import Rules
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.live.commit import Owned
from siyu_stream.live.worker import Worker
from siyu_stream.topology import Topology

pytestmark = pytest.mark.integration


async def test_a_refused_take_over_is_retried_and_loses_nothing(
    kafka: KafkaCluster, tmp_path: Path
) -> None:
    settings = live.settings_for(kafka.bootstrap, "exactly_once", web_port=0)
    await ensure_topics(settings.kafka, Topology(settings).specs())
    async with Traffic(settings) as traffic:
        await traffic.paced(simulated(1_500, hours=2, seed=41))
    worker = Worker(settings, Rules())
    take_over = worker.restorer.take_over
    attempts: Counter[int] = Counter()

    async def refused_twice(p: int) -> Owned:
        attempts[p] += 1
        if attempts[p] <= 2:
            raise KafkaConnectionError(f"injected: partition {p} refused")
        return await take_over(p)

    worker.restorer.take_over = refused_twice  # type: ignore[method-assign]  # the seam
    running = asyncio.create_task(worker.run())
    try:
        expected = replayed(traffic.sent, tmp_path)
        records = await live_actions(settings, expected)
        assert_live_equals_replay(records, expected, once=True)
        assert set(worker.partitions()) == ALL
        assert worker.is_ready
        assert attempts == Counter(dict.fromkeys(ALL, 3))  # two refusals, then taken
    finally:
        worker.stop()
        await running


async def test_a_failing_rebalance_step_stops_the_worker_instead_of_stalling_it(
    kafka: KafkaCluster,
) -> None:
    settings = live.settings_for(kafka.bootstrap, "at_least_once", web_port=0)
    worker = Worker(settings, Rules())

    def broken(owned: set[int]) -> None:
        raise RuntimeError("injected: a bug in a rebalance step")

    worker.standby.follow = broken  # type: ignore[method-assign]  # the seam
    with pytest.raises(RuntimeError, match="injected"):
        await asyncio.wait_for(worker.run(), live.GIVE_UP_AFTER)
