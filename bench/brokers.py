"""The broker the live benchmarks run on (BROKERS: `kafka`, a 1-node Apache Kafka cluster,
or `noida-db`; every script's --broker), and what they ask of it through a Kafka client."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from common import CACHE, log, rel

from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.embedded import LocalBroker
from siyu_stream.settings import KafkaConnection, Settings
from siyu_stream.topology import Topology

PARTITIONS = 4
GIVE_UP = 600.0  # a broken run fails instead of hanging; not a timing claim


class Broker(Protocol):
    @property
    def bootstrap(self) -> str: ...

    @property
    def pid(self) -> int | None: ...  # the process whose CPU the benches report

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Kafka(KafkaCluster):
    @property
    def pid(self) -> int | None:
        return self.node_pids[0]  # the JVM


BROKERS: dict[str, Callable[[Path], Broker]] = {"kafka": Kafka, "noida-db": LocalBroker}


@contextlib.contextmanager
def broker(name: str, kind: str) -> Iterator[Broker]:
    data = CACHE / f"broker-{name}"
    shutil.rmtree(data, ignore_errors=True)
    b = BROKERS[kind](data)
    b.start()
    log(f"{kind} pid {b.pid} on {b.bootstrap} ({rel(data)})")
    try:
        yield b
    finally:
        b.stop()
        shutil.rmtree(data, ignore_errors=True)


async def app(
    broker: Broker, app_id: str, guarantee: str = "at_least_once", prefix: str = "siyu"
) -> tuple[Settings, Topology]:
    """An app's settings and topology on `broker`, its topics created."""
    s = Settings(
        broker=broker.bootstrap,
        app_id=app_id,
        topic_prefix=prefix,
        partitions=PARTITIONS,
        guarantee=guarantee,
        api_auth=False,
        web_port=0,
    )
    await ensure_topics(s.kafka, Topology(s).specs())
    return s, Topology(s)


def partitions(topics: Iterable[str]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]


@contextlib.asynccontextmanager
async def consumer(bootstrap: str, **config: Any) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer outside any group."""
    c = AIOKafkaConsumer(**client_options(KafkaConnection(bootstrap)), **config)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


async def produce_all(
    bootstrap: str, records: Iterable[tuple[str, bytes, bytes, int | None]], batch_bytes: int
) -> None:
    """Send (topic, key, value, partition) records as fast as the broker takes them, at most
    10,000 unacknowledged: set-up, not a measured figure."""
    producer = AIOKafkaProducer(
        **client_options(KafkaConnection(bootstrap)),
        linger_ms=20,
        max_batch_size=batch_bytes,
        acks="all",
    )
    await producer.start()
    try:
        pending = []
        for topic, key, value, partition in records:
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def ends(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    async with consumer(bootstrap) as c:
        return dict(await c.end_offsets(partitions(topics)))


async def wait_consumed(
    bootstrap: str,
    group: str,
    topics: list[str],
    outputs: list[str],
    stall: float | None,
    inputs: list[str] | None = None,
) -> tuple[float, dict[str, Any]]:
    """(monotonic time the run ended, how): the group's committed offsets reached the ends of
    `topics` ("consumed"), or, with `stall`, neither they nor the ends of `outputs` moved for
    that many seconds ("stalled", with the lag: Faust stops committing after a gap).

    With `inputs` (pre-produced topics among `topics`), how also has `steady_seconds`: from
    10 % to 90 % of their records committed, what a run takes without its start and its
    last records (a worker holds the last for `SIYU_REORDER_MS` once caught up)."""
    tps, out_tps = partitions(topics), partitions(outputs)
    input_tps = partitions(inputs or [])
    marks: dict[float, float] = {}  # share of the inputs committed -> when first seen
    admin = AIOKafkaAdminClient(**client_options(KafkaConnection(bootstrap)))
    await admin.start()
    try:
        async with consumer(bootstrap) as c:
            deadline, seen, moved = time.monotonic() + GIVE_UP, None, time.monotonic()
            while (now := time.monotonic()) < deadline:
                end = await c.end_offsets(tps)
                offsets = await admin.list_consumer_group_offsets(group)
                committed = {tp: max(offsets[tp].offset, 0) if tp in offsets else 0 for tp in tps}
                if input_tps:
                    done = sum(committed[tp] for tp in input_tps) / sum(end[tp] for tp in input_tps)
                    for share in (0.1, 0.9):
                        if done >= share:
                            marks.setdefault(share, now)
                if (lag := sum(max(end[tp] - committed[tp], 0) for tp in tps)) == 0:
                    how: dict[str, Any] = {"ended": "consumed", "lag": 0}
                    if len(marks) == 2 and marks[0.9] > marks[0.1]:
                        how["steady_seconds"] = marks[0.9] - marks[0.1]
                    return now, how
                if stall is not None:
                    written = sum((await c.end_offsets(out_tps)).values())
                    if (progress := (sum(committed.values()), written)) != seen:
                        seen, moved = progress, now
                    elif now - moved >= stall:
                        log(f"group {group}: no progress for {stall:.0f} s, {lag:,} behind")
                        return moved, {"ended": "stalled", "lag": lag}
                await asyncio.sleep(0.02 if stall is None else 0.1)
    finally:
        await admin.close()
    msg = f"group {group} did not consume {topics} in {GIVE_UP} s"
    raise RuntimeError(msg)


async def read(
    bootstrap: str, topics: list[str], start: dict[TopicPartition, int] | None = None
) -> list[Any]:
    """Every committed record of `topics` from `start` (default: their beginnings) to their
    current ends."""
    tps = partitions(topics)
    async with consumer(bootstrap, isolation_level="read_committed") as c:
        end = await c.end_offsets(tps)
        start = start or await c.beginning_offsets(tps)
        c.assign(tps)
        for tp in tps:
            c.seek(tp, start[tp])
        records: list[Any] = []
        left = {tp for tp in tps if end[tp] > start[tp]}
        while left:
            for msgs in (await c.getmany(*left, timeout_ms=1000)).values():
                records += msgs
            left = {tp for tp in left if await c.position(tp) < end[tp]}  # past tx markers
        return records
