"""Synthetic traffic onto Kafka: the simulator's records, paced in wall time.

Live workers judge event time against the wall clock, so each valid record is
re-stamped with the time it is sent; deliberately bad records go out untouched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import orjson
from aiokafka import AIOKafkaProducer

from siyu_stream.core import jsonout
from siyu_stream.core.clock import format_rfc3339
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.simulate import SimConfig, SimCounts, SimRecord, generate
from siyu_stream.topology import Topology

_BATCH_SECONDS = 0.05


def restamp(record: SimRecord, now_ms: int) -> bytes:
    if record.bad:
        return record.value
    message = orjson.loads(record.value)
    message["occurred_at"] = format_rfc3339(now_ms)
    return jsonout.dumps(message)


async def produce(
    records: Iterator[SimRecord],
    settings: Settings,
    rate: float,
    stop: asyncio.Event | None = None,
) -> SimCounts:
    """Send `records` at `rate` per second until they run out or `stop` is set."""
    counts = SimCounts()
    producer = AIOKafkaProducer(**client_options(settings.kafka), linger_ms=5)
    await producer.start()
    started = time.monotonic()
    try:
        while stop is None or not stop.is_set():
            due = int((time.monotonic() - started) * rate) - counts.total
            now = wall_clock()
            for _ in range(max(due, 0)):
                record = next(records, None)
                if record is None:
                    return counts
                topic = settings.topic(record.topic)
                await producer.send(topic, key=record.key.encode(), value=restamp(record, now))
                counts.add(record)
            await asyncio.sleep(_BATCH_SECONDS)
        return counts
    finally:
        await producer.stop()  # flushes what was sent


async def simulate(settings: Settings, cfg: SimConfig, limit: int | None) -> SimCounts:
    await ensure_topics(settings.kafka, Topology(settings).specs())
    return await produce(generate(cfg, limit), settings, cfg.rate)


def simulate_to_kafka(cfg: SimConfig, limit: int | None, broker: str | None) -> int:
    """`siyu-stream simulate` without --out."""
    overrides = {"broker": broker} if broker else {}
    settings = Settings.from_env(None, api_auth=False, **overrides)
    counts = asyncio.run(simulate(settings, cfg, limit))
    print(f"simulate: sent {counts.total:,} records to {settings.broker}: {counts}")
    return 0
