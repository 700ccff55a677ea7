"""The compacted changelog into a store: restoring a partition, and the one way a
changelog record is applied (restore and standby replicas both use it).

Each record's key is a customer id (the empty key: the partition clock) and its value
the serialized state; the latest record per key is the truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from siyu_stream.kafka.client import client_options
from siyu_stream.live.polling import poll
from siyu_stream.live.stores import Store
from siyu_stream.settings import KafkaConnection

IDLE_POLLS = 10
"""Empty polls before a restore stops short of the end offset (only transaction markers
are left before it)."""


def apply(store: Store, records: Iterable[Any]) -> int | None:
    """Write changelog records into `store`; returns the offset of the last one."""
    last = None
    for m in records:
        store[m.key.decode()] = m.value
        last = m.offset
    return last


async def restore(
    connection: KafkaConnection, topic: str, partition: int, store: Store, stop: asyncio.Event
) -> int:
    """Bring `store` up to the end of its changelog partition (read_committed); returns
    the records read. A store that remembers the offset it applied (RocksDB) reads only
    what came after it; any other store is filled from the beginning. A `stop` cuts the
    restore short without saving a checkpoint, so the next start reads from the last one.
    """
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **client_options(connection), isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        start = (await consumer.beginning_offsets([tp]))[tp]
        if store.checkpoint is not None and start <= store.checkpoint < end:
            consumer.seek(tp, store.checkpoint + 1)
        else:
            store.clear()  # no usable checkpoint: rebuild from the whole changelog
            consumer.seek(tp, start)
        restored = idle = 0
        last = None
        while await consumer.position(tp) < end:
            if stop.is_set():
                return restored
            batch = await poll(consumer, 0.5, 10_000, tp)
            records = batch.get(tp, [])
            applied = apply(store, records)
            last = applied if applied is not None else last
            restored += len(records)
            idle = 0 if records else idle + 1
            if idle > IDLE_POLLS:
                break
        if last is not None:
            store.save_checkpoint(last)
        return restored
    finally:
        await consumer.stop()
