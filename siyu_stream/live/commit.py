"""The two commit protocols: how one processed batch becomes durable.

- `exactly_once` (`transact`): per partition, its outputs, commands, changelog records
  and consumed offsets in one transaction of the partition's own producer. Every record
  is acknowledged before the offsets join the transaction.
- `at_least_once` (`flush`): every partition's outputs acknowledged, then their
  changelog records, then one offset commit for the poll. A crash between the steps
  re-processes the batch; state de-duplicates by event id and a record sent twice
  carries the same `action_id`.

Either way, a partition's state changes reach its store (`settled`) only once the batch
is durable; a failure is raised to the worker's loop, which discards and rewinds. From a
backlog several batches are made durable at once (`InFlight`), each after the one before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from siyu_stream.live.processor import PartitionTask
from siyu_stream.live.produce import Sent, produce, wait_all
from siyu_stream.live.records import Out
from siyu_stream.live.stores import Store


@dataclass
class Owned:
    """A partition this worker owns: its task, its store and, under exactly_once, its
    transactional producer; `committed` is where each source resumes after a crash."""

    task: PartitionTask
    store: Store
    producer: Any | None
    committed: dict[TopicPartition, int] = field(default_factory=dict)


@dataclass(slots=True)
class Work:
    """One partition's share of a processed batch, to be made durable."""

    owned: Owned
    outs: list[Out]
    changelog: list[Out]
    offsets: dict[TopicPartition, int]
    """Where each source resumes after the batch."""


async def transact(w: Work, group_id: str) -> None:
    """exactly_once: one partition's outputs, state and offsets in one transaction."""
    owned = w.owned
    if not w.outs and not w.changelog and not w.offsets:
        owned.task.committed()  # nothing to make durable: settled as it is
        return
    producer = owned.producer
    assert producer is not None  # every owned partition has one under exactly_once
    async with producer.transaction():
        sent = await produce(producer, w.outs)
        written = await produce(producer, w.changelog)
        # every record acknowledged before the offsets join the transaction: a send
        # that failed must fail the transaction, never let its offsets commit
        # (seen on the local broker after a restart: sends refused, commit accepted)
        await wait_all(sent + written)
        if w.offsets:
            committed = {tp: OffsetAndMetadata(o, "") for tp, o in w.offsets.items()}
            await producer.send_offsets_to_transaction(committed, group_id)
    # (a failure is raised to the loop, which discards every task's changes: this one
    # runs beside the next batch's processing and must not pull state from under it)
    await settled(owned, w.offsets, written)


async def flush(work: list[Work], producer: Any, consumer: Any) -> None:
    """at_least_once: every partition's outputs acknowledged, then their changelog
    records, then one offset commit for the poll."""
    await wait_all(await produce(producer, [o for w in work for o in w.outs]))
    written = [await produce(producer, w.changelog) for w in work]
    await wait_all([sent for batches in written for sent in batches])
    every = {tp: o for w in work for tp, o in w.offsets.items()}
    if every:
        await consumer.commit(every)
    for w, sent in zip(work, written, strict=True):
        await settled(w.owned, w.offsets, sent)


async def settled(owned: Owned, offsets: dict[TopicPartition, int], written: list[Sent]) -> None:
    """The partition's batch is durable: its state changes become the store's."""
    owned.task.committed()
    if written:
        last = written[-1]  # the changelog is one topic partition: its last record is last
        owned.store.save_checkpoint((await last.future).offset + last.count - 1)
    owned.committed.update(offsets)


class InFlight:
    """Processed batches being made durable, oldest first, while the next is processed.

    Each becomes durable only after the one before it, so every partition commits in
    order; one that fails fails those after it, and `settle` raises its failure once."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, durable: Callable[[], Awaitable[None]]) -> None:
        """Make a batch durable, by `durable()`, after the batches already in flight."""
        before = self._tasks[-1] if self._tasks else None
        self._tasks.append(asyncio.create_task(_after(before, durable)))

    async def settle(self, keep: int = 0) -> None:
        """Wait until all but the newest `keep` batches are durable; the first failure is
        raised here."""
        while len(self._tasks) > keep:
            try:
                await self._tasks.pop(0)
            except BaseException:
                # the batches after it wait for it (`_after`): they fail with it
                rest, self._tasks = self._tasks, []
                await asyncio.gather(*rest, return_exceptions=True)
                raise


async def _after(before: asyncio.Task[None] | None, durable: Callable[[], Awaitable[None]]) -> None:
    if before is not None:
        await before  # in order: a batch that failed fails those after it
    await durable()
