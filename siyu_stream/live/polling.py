"""Polling that does not spin when a broker answers empty fetches at once.

A Kafka broker holds an empty fetch for `fetch.max.wait.ms`; noida-db (the local and
CI broker) answers at once, so an idle aiokafka consumer re-fetches in a tight loop and
burns a whole core (measured: 0.85 CPU-seconds per second, idle). `poll` keeps the
fetcher busy only for a short window and pauses the partitions in between: an idle
consumer then costs a few percent of a core, and a record waits at most `IDLE_PAUSE`
longer than it would have. A caller that wants a record soon after a quiet spell (the
worker: latency) passes a short `first` pause, doubled after each empty window up to
`pause`: a record arriving after a short gap waits a few milliseconds, not 100, while a
consumer idle for longer still fetches only every `pause`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

FETCH_WINDOW_MS = 10
IDLE_PAUSE = 0.1


async def poll(
    consumer: Any,
    timeout: float,
    max_records: int,
    *partitions: Any,
    pause: float = IDLE_PAUSE,
    first: float | None = None,
) -> Any:
    """Like `getmany`, for at most `timeout` seconds, without spinning while idle."""
    deadline = time.monotonic() + timeout
    wait = pause if first is None else min(first, pause)
    while True:
        batch = await consumer.getmany(
            *partitions, timeout_ms=FETCH_WINDOW_MS, max_records=max_records
        )
        if batch or time.monotonic() >= deadline:
            return batch
        # pause what is being fetched; what the caller paused stays paused
        held = consumer.paused()
        paused = [tp for tp in (list(partitions) or consumer.assignment()) if tp not in held]
        consumer.pause(*paused)
        try:
            await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(2 * wait, pause)
        finally:
            # a rebalance during the pause may have taken some of them away
            assigned = consumer.assignment()
            consumer.resume(*[tp for tp in paused if tp in assigned])


async def poll_fair(
    consumer: Any, timeout: float, max_records: int, *, first: float | None = None
) -> dict[Any, list[Any]]:
    """`poll` for up to `max_records` records, taken from every assigned topic partition
    with records fetched, in rounds of an equal share each.

    `getmany` fills its `max_records` from one topic partition before the next: from a
    backlog, a poll then held the records of one or two of a task's queues, and the
    merge, which waits for every queue not caught up, processed nothing for several polls
    (measured: the first 10,000 records of a 20,000-record backlog).
    """
    assigned = consumer.assignment()
    share = max(max_records // max(len(assigned), 1), 1)
    batch: dict[Any, list[Any]] = await poll(consumer, timeout, share, first=first)
    if not batch:
        return batch
    taken = sum(len(records) for records in batch.values())
    if taken < share:
        return batch  # getmany stops only at its limit: nothing else was fetched
    held = consumer.paused()
    sources = [tp for tp in assigned if tp not in held]
    while taken < max_records:
        before = taken
        for tp in sources:
            budget = min(share, max_records - taken)
            if budget <= 0:
                break
            more = (await consumer.getmany(tp, timeout_ms=0, max_records=budget)).get(tp)
            if more:
                batch.setdefault(tp, []).extend(more)
                taken += len(more)
        if taken == before:
            break
    return batch
