"""Taking a partition over: its producer first, then its state from the changelog, then a
new task with its timers and gauges indexed.

The producer comes first under exactly_once: starting it fences the previous owner, so
nothing that owner still writes can land after the state is read.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from siyu_stream.core.ruleset import Rules
from siyu_stream.live import changelog
from siyu_stream.live.commit import Owned
from siyu_stream.live.processor import PartitionTask
from siyu_stream.live.produce import stop_failed, transactional_producer
from siyu_stream.live.standby import Standby
from siyu_stream.live.stores import Store, open_store
from siyu_stream.observe.observer import Observer, Stats
from siyu_stream.topology import Topology

log = logging.getLogger("siyu_stream.live.restore")


class Restorer:
    """Brings partitions up for one worker; `stop` cuts a restore short (SIGTERM)."""

    def __init__(
        self, rules: Rules, topology: Topology, stats: Stats, standby: Standby, stop: asyncio.Event
    ) -> None:
        self.rules = rules
        self.topology = topology
        self.settings = topology.settings
        self.stats = stats
        self.standby = standby
        self.stop = stop

    async def take_over(self, p: int) -> Owned:
        """Partition `p`, newly assigned: a warm standby store if there is one."""
        producer = None
        if self.settings.guarantee == "exactly_once":
            producer = await transactional_producer(self.settings, p)  # before we read state
        store = self.standby.take(p)
        if store is None:
            store = open_store(self.settings, p)
        try:
            return await self.resume(p, store, producer)
        except BaseException:
            # the worker retries the take-over later: the store goes back to the standby
            # (a RocksDB store left open would lock the next attempt out), what it applied
            # is applied again from its checkpoint, and the producer is started anew
            self.standby.give(p, store)
            if producer is not None:
                await stop_failed(producer)
            raise

    async def resume(self, p: int, store: Store, producer: Any) -> Owned:
        """Partition `p` from its changelog: the store brought up to date, a new task."""
        restored = await changelog.restore(
            self.settings.kafka, self.topology.changelog, p, store, self.stop
        )
        task = PartitionTask(
            self.rules,
            self.topology,
            p,
            store,
            Observer(self.stats, self.rules),
            idle_ms=self.settings.max_task_idle_ms,
            grace_ms=self.settings.timer_grace_ms,
            reorder_ms=self.settings.reorder_ms,
        )
        for _ in task.index():
            if self.stop.is_set():
                break
            await asyncio.sleep(0)  # heartbeats and SIGTERM go on while a big store is indexed
        log.info("partition %d assigned: %d changelog records restored", p, restored)
        return Owned(task, store, producer)
