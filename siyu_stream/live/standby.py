"""Standby replicas: warm copies of the partitions this worker does not own.

With `SIYU_STANDBY_REPLICAS` >= 1 every worker follows the changelog of each partition
it does not own into a local store, remembering the offset it applied. When such a
partition is assigned to it (another worker stopped or died), the worker takes the warm
store and reads only the few changelog records it has not seen yet, instead of the
whole partition. A partition this worker gives up becomes a standby in turn.

Every worker keeps a copy of every partition it does not own: right for the small
clusters this runs on (2-4 workers); a value above 1 is treated as 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from siyu_stream.kafka.client import client_options
from siyu_stream.live import changelog
from siyu_stream.live.polling import poll
from siyu_stream.live.stores import Store, open_store
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

log = logging.getLogger("siyu_stream.live.standby")


class Standby:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.changelog = Topology(settings).changelog
        self.stores: dict[int, Store] = {}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.standby_replicas > 0

    async def start(self) -> None:
        if not self.enabled:
            return
        self._consumer = AIOKafkaConsumer(
            **client_options(self.settings.kafka),
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        for store in self.stores.values():
            store.close()
        self.stores.clear()

    def take(self, partition: int) -> Store | None:
        """The warm store of a partition this worker now owns (None without standby)."""
        store = self.stores.pop(partition, None)
        self._reassign()
        return store

    def follow(self, owned: set[int]) -> None:
        """Keep warm copies of every partition not in `owned`."""
        if not self.enabled:
            return
        for p in range(self.settings.partitions):
            if p not in owned and p not in self.stores:
                self.stores[p] = open_store(self.settings, p)
        self._reassign()

    def give(self, partition: int, store: Store) -> None:
        """A partition this worker gave up: its up-to-date store becomes a standby."""
        if not self.enabled:
            store.close()
            return
        self.stores[partition] = store
        self._reassign()

    def _reassign(self) -> None:
        if self._consumer is None:
            return
        tps = [TopicPartition(self.changelog, p) for p in sorted(self.stores)]
        self._consumer.assign(tps)
        for tp in tps:
            checkpoint = self.stores[tp.partition].checkpoint
            if checkpoint is not None:
                self._consumer.seek(tp, checkpoint + 1)
            # else: a partition assigned without a position starts at the beginning
            # (auto_offset_reset="earliest"); aiokafka's seek_to_beginning is a coroutine,
            # and this method runs inside the rebalance callback's synchronous part

    async def _follow(self) -> None:
        while True:
            if not self.stores:
                await asyncio.sleep(0.5)
                continue
            batch = await poll(self._consumer, 0.5, 10_000, pause=0.5)
            for tp, messages in batch.items():
                store = self.stores.get(tp.partition)
                if store is None or not messages:
                    continue  # taken over while this batch was in flight
                last = changelog.apply(store, messages)
                assert last is not None  # messages is not empty
                store.save_checkpoint(last)
