"""The worker's batches in flight (`IN_FLIGHT`): each is made durable after the one before
it, and a failure fails every batch after it. The broker side of the same guarantees runs
in tests/integration (test_faults.py: a leader killed and the cluster restarted while a
worker catches up, with batches in flight; nothing lost or doubled)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from siyu_stream.core.ruleset import Rules
from siyu_stream.live.commit import Work
from siyu_stream.live.worker import IN_FLIGHT, Worker
from siyu_stream.settings import Settings


def worker_with(durable: dict[int, float], made: list[int], failing: int | None = None) -> Worker:
    """A worker whose batches (told apart by their list's id) take `durable[id]` seconds to
    be made durable, are listed in `made` when they are, and fail if `failing`."""
    worker = Worker(Settings(api_auth=False, web_port=0), Rules())

    async def fake(work: list[Work]) -> None:
        await asyncio.sleep(durable[id(work)])
        if id(work) == failing:
            raise KafkaConnectionError
        made.append(id(work))

    worker._durable = fake  # type: ignore[method-assign]  # the broker's part, faked here
    return worker


async def test_batches_in_flight_are_made_durable_in_order() -> None:
    first, second, third = [], [], []  # type: list[Work], list[Work], list[Work]
    made: list[int] = []
    # the first is the slowest: the others must still wait for it
    worker = worker_with({id(first): 0.05, id(second): 0.0, id(third): 0.0}, made)
    for work in (first, second, third):
        await worker._settle(keep=IN_FLIGHT - 1)
        assert len(worker._inflight) < IN_FLIGHT
        before = worker._inflight[-1] if worker._inflight else None
        worker._inflight.append(asyncio.create_task(worker._complete(work, [], before)))
    await worker._settle()
    assert made == [id(first), id(second), id(third)] and worker._inflight == []


async def test_a_failed_batch_fails_those_after_it_and_is_raised_once() -> None:
    first, second = [], []  # type: list[Work], list[Work]
    made: list[int] = []
    worker = worker_with({id(first): 0.05, id(second): 0.0}, made, failing=id(first))
    a = asyncio.create_task(worker._complete(first, [], None))
    b = asyncio.create_task(worker._complete(second, [], a))
    worker._inflight = [a, b]
    with pytest.raises(KafkaConnectionError):
        await worker._settle()
    assert made == []  # the second waited for the first, and failed with it
    assert b.done() and isinstance(b.exception(), KafkaConnectionError)
    assert worker._inflight == []
