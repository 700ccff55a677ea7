"""Sending a batch's records: the worker's producers, and records packed into as few
record batches as fit, each acknowledged through one future.

The commit protocols (`commit`) decide what is sent when; this module only sends.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from siyu_stream.eventtime.keys import partition_for
from siyu_stream.kafka.client import client_options
from siyu_stream.live.records import Out
from siyu_stream.settings import Settings

log = logging.getLogger("siyu_stream.live.produce")

BATCH_BYTES = 512 * 1024
"""Largest record batch per topic partition (aiokafka's default: 16 KiB). A poll's records
for one topic partition then go in one produce request: with 16 KiB, 100 KiB of changelog
took 7 requests in a row, each waiting for the one before it to be taken."""
TRANSACTION_TIMEOUT_MS = 30_000
"""The worker's own bound on a commit (`worker.COMMIT_TIMEOUT`), given to the broker too."""
_DEFAULT_PARTITIONER = DefaultPartitioner()


def _partitioner(key: bytes | None, every: list[int], available: list[int]) -> int:
    """aiokafka's default partitioner with the murmur2 of each key cached (see partition_for)."""
    if key is None:
        return int(_DEFAULT_PARTITIONER(key, every, available))
    return every[partition_for(key, len(every))]


async def plain_producer(settings: Settings) -> Any:
    """at_least_once: one idempotent producer for every partition's records."""
    producer = AIOKafkaProducer(
        **client_options(settings.kafka),
        acks="all",
        enable_idempotence=True,
        partitioner=_partitioner,
        max_batch_size=BATCH_BYTES,
    )
    await producer.start()
    return producer


async def transactional_producer(settings: Settings, partition: int) -> Any:
    """exactly_once: partition `partition`'s producer. Its id is stable (`<app>-p<n>`):
    starting it fences the previous owner and aborts what that one left open."""
    producer = AIOKafkaProducer(
        **client_options(settings.kafka),
        transactional_id=f"{settings.app_id}-p{partition}",
        # the broker aborts a transaction left open this long: a crashed or paused owner
        # blocks the partition's next owner for at most this (aiokafka's default: 60 s;
        # found by the zombie fault test), and no healthy batch takes so long to commit
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        acks="all",
        enable_idempotence=True,
        partitioner=_partitioner,
        max_batch_size=BATCH_BYTES,
    )
    try:
        # aiokafka retries the producer id forever while the coordinator answers with a
        # retriable error: a take-over must fail and be retried instead (`Worker._take_over`)
        await asyncio.wait_for(producer.start(), TRANSACTION_TIMEOUT_MS / 1000)
    except BaseException:
        await stop_failed(producer)
        raise
    return producer


async def stop_failed(producer: Any) -> None:
    """Stop a producer whose batch failed; its own failure to stop is only logged."""
    try:
        await producer.stop()
    except KafkaError as exc:  # it failed already; its successor replaces or fences it
        log.warning("stopping a failed producer: %r", exc)


@dataclass(frozen=True, slots=True)
class Sent:
    """A record batch handed to the producer: acknowledged with its first record's offset."""

    future: asyncio.Future[Any]
    count: int


async def produce(producer: Any, outs: list[Out]) -> list[Sent]:
    """Send `outs` in as few record batches as fit, per topic partition in their order.

    `producer.send` per record cost more CPU than the rules that made the record (a
    future, a metadata check and a partitioner call each); a batch built here costs an
    append per record and one future. Keyed records go where `_partitioner` would put
    them; the few without a key (dead letters of keyless input) go through `send`.
    """
    by_tp: dict[tuple[str, int], list[Out]] = {}
    counts: dict[str, int] = {}
    sent: list[Sent] = []
    for o in outs:
        partition = o.partition
        if partition is None:
            if o.key is None:
                future = await producer.send(o.topic, o.value)
                sent.append(Sent(future, 1))
                continue
            count = counts.get(o.topic)
            if count is None:
                count = counts[o.topic] = len(await producer.partitions_for(o.topic))
            partition = partition_for(o.key, count)
        batch = by_tp.get((o.topic, partition))
        if batch is None:
            by_tp[(o.topic, partition)] = [o]
        else:
            batch.append(o)
    for (topic, partition), records in by_tp.items():
        builder = producer.create_batch()
        count = 0
        for o in records:
            if builder.append(key=o.key, value=o.value, timestamp=None) is None:
                # full: send it and start the next, which takes any record as its first
                # (one larger than a request was refused before: MAX_RECORD_BYTES)
                future = await producer.send_batch(builder, topic, partition=partition)
                sent.append(Sent(future, count))
                builder, count = producer.create_batch(), 0
                builder.append(key=o.key, value=o.value, timestamp=None)
            count += 1
        sent.append(Sent(await producer.send_batch(builder, topic, partition=partition), count))
    return sent


async def wait_all(sent: list[Sent]) -> None:
    """Every batch acknowledged; the first failure is raised."""
    if sent:
        await asyncio.gather(*(s.future for s in sent))
