"""The delivered-ids record: receipts written to `<prefix>.actions.deliveries` and read
back when a partition is taken over, so that a restart or a rebalance does not send an
action to a sink again (except requests in flight at a crash: at-least-once, with the
action id as the idempotency key).

A receipt goes to the deliveries partition with the number of the action's own partition
(both topics have SIYU_PARTITIONS partitions), so taking over partition p means reading
deliveries partition p. Only receipts newer than the longest staleness limit are read:
an older action is expired, never sent, whatever its receipt says. What is remembered is
bounded per partition (`max_delivered_ids`, oldest forgotten first) and pruned to the
same horizon as time passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from siyu_stream.core.clock import Millis
from siyu_stream.kafka.client import client_options
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

log = logging.getLogger("siyu_stream.notify.ledger")

READ_GIVE_UP_SECONDS = 120.0
"""Reading receipts back that takes longer than this is a broker problem: raise."""
WRITE_RETRY_MAX = 10.0


class Ledger:
    def __init__(self, settings: Settings, horizon_ms: Millis, max_ids: int) -> None:
        self.settings = settings
        self.topology = Topology(settings)
        self.horizon_ms = horizon_ms
        self.max_ids = max_ids
        self.seen: dict[int, OrderedDict[str, Millis]] = {}
        """Deliveries partition -> receipt key -> when (epoch ms), oldest first."""
        self.producer: Any = None

    async def start(self) -> None:
        self.producer = AIOKafkaProducer(
            **client_options(self.settings.kafka), acks="all", enable_idempotence=True
        )
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def done(self, partition: int, key: str) -> bool:
        return key in self.seen.get(partition, {})

    def remember(self, partition: int, key: str, at: Millis) -> None:
        ids = self.seen.setdefault(partition, OrderedDict())
        ids[key] = at
        ids.move_to_end(key)
        while len(ids) > self.max_ids:
            ids.popitem(last=False)

    def forget(self, partition: int) -> None:
        self.seen.pop(partition, None)

    def prune(self, now: Millis) -> None:
        for ids in self.seen.values():
            while ids and next(iter(ids.values())) < now - self.horizon_ms:
                ids.popitem(last=False)

    async def load(self, partitions: list[int], now: Millis) -> int:
        """Read back the receipts of `partitions` newer than the horizon; returns how many."""
        topic = self.topology.deliveries
        tps = [TopicPartition(topic, p) for p in partitions if p not in self.seen]
        if not tps:
            return 0
        consumer = AIOKafkaConsumer(**client_options(self.settings.kafka), enable_auto_commit=False)
        await consumer.start()
        count = 0
        try:
            consumer.assign(tps)
            since = now - self.horizon_ms
            try:
                starts = await consumer.offsets_for_times({tp: since for tp in tps})
            except (KafkaError, ValueError) as exc:  # a broker without timestamp lookups
                log.warning("offsets_for_times failed (%r): reading receipts from the start", exc)
                starts = {}
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                self.seen.setdefault(tp.partition, OrderedDict())
                found = starts.get(tp)
                if found is not None:
                    consumer.seek(tp, found.offset)
                elif tp in starts:  # no receipt that new: nothing to read
                    consumer.seek(tp, ends[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            deadline = time.monotonic() + READ_GIVE_UP_SECONDS
            while any([await consumer.position(tp) < ends[tp] for tp in tps]):
                if time.monotonic() > deadline:
                    msg = f"reading {topic} back took over {READ_GIVE_UP_SECONDS:.0f} s"
                    raise KafkaError(msg)
                batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
                for tp, records in batch.items():
                    for r in records:
                        if r.key is None or r.timestamp < since:
                            continue  # compaction keeps old keys too: only new ones matter
                        self.remember(tp.partition, r.key.decode(errors="replace"), r.timestamp)
                        count += 1
        finally:
            await consumer.stop()
        return count

    async def write(
        self, topic: str, partition: int, key: str | None, value: dict[str, Any], alive: Any
    ) -> None:
        """Send one record and wait for its acknowledgement, retrying while `alive()`: a
        partition's offset is committed past an action only after this returns."""
        data = orjson.dumps(value)
        wait = 0.2
        while True:
            try:
                await self.producer.send_and_wait(
                    topic, data, key=key.encode() if key else None, partition=partition
                )
                return
            except KafkaError as exc:
                if not alive():
                    raise
                log.warning("writing to %s[%d] failed (%r); retrying", topic, partition, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, WRITE_RETRY_MAX)
