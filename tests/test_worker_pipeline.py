"""The worker's batches in flight (`commit.InFlight`): each is made durable after the one
before it, and a failure fails every batch after it. The broker side of the same
guarantees runs in tests/integration (test_faults.py: a leader killed and the cluster
restarted while a worker catches up, with batches in flight; nothing lost or doubled)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import KafkaConnectionError

from siyu_stream.live.commit import InFlight
from siyu_stream.live.worker import IN_FLIGHT


def batch(
    name: str, seconds: float, made: list[str], fails: bool = False
) -> Callable[[], Awaitable[None]]:
    """A batch that takes `seconds` to be made durable, and is listed in `made` once it is."""

    async def durable() -> None:
        await asyncio.sleep(seconds)
        if fails:
            raise KafkaConnectionError
        made.append(name)

    return durable


async def test_batches_in_flight_are_made_durable_in_order() -> None:
    made: list[str] = []
    inflight = InFlight()
    # the first is the slowest: the others must still wait for it
    for name, seconds in (("first", 0.05), ("second", 0.0), ("third", 0.0)):
        await inflight.settle(keep=IN_FLIGHT - 1)  # as the worker adds one
        assert len(inflight) < IN_FLIGHT
        inflight.add(batch(name, seconds, made))
    await inflight.settle()
    assert made == ["first", "second", "third"] and len(inflight) == 0


async def test_a_failed_batch_fails_those_after_it_and_is_raised_once() -> None:
    made: list[str] = []
    inflight = InFlight()
    inflight.add(batch("first", 0.05, made, fails=True))
    inflight.add(batch("second", 0.0, made))
    with pytest.raises(KafkaConnectionError):
        await inflight.settle()
    assert made == []  # the second waited for the first, and failed with it
    assert len(inflight) == 0  # nothing left to fail again at the next settle
    await inflight.settle()
