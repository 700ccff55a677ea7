"""The bootstrap's Kafka side: the refusal beside a running worker, the start offsets, the
history already in the input topics, and each partition's transactions.

Each partition is written by a transactional producer with the worker's own id for it
(`<app>-p<n>`): starting it fences a zombie worker of that partition and aborts what it
left open, and a worker that takes the partition over during the bootstrap fences the
bootstrap out (which then stops with an error) instead of both writing its changelog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from siyu_stream.bootstrap.plan import CHUNK_BYTES, Start, Where, chunks, size, start_offsets
from siyu_stream.core.errors import BootstrapError, TopicError
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.history import snapshot
from siyu_stream.live.produce import BATCH_BYTES, produce, wait_all
from siyu_stream.live.records import Out
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

IDLE_STATES = ("Empty", "Dead", "")
COORDINATOR_WAIT = 30.0
"""Seconds a group's coordinator may take to appear on a cluster that never had one."""
"""Group states without members: no worker of the app is running."""
TRANSACTION_TIMEOUT_MS = 120_000
"""A chunk (plan.CHUNK_BYTES) must commit within this; the broker's default cap is 15 min."""


def refusal(group: str, described: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a bootstrap must not run beside the group as described, or None."""
    for entry in described:
        if entry.get("group") != group:
            continue
        members = entry.get("members") or []
        state = str(entry.get("state") or "")
        if members or state not in IDLE_STATES:
            return (
                f"consumer group {group!r} has {len(members)} member(s) (state {state}): "
                f"a worker of the app is running; stop every worker with SIYU_APP_ID={group} "
                "before a bootstrap (it rewrites their changelog and offsets)"
            )
    return None


async def _describe_group(admin: Any, group: str) -> Any:
    """describe_consumer_groups, retried while the group's coordinator is not there yet: a
    cluster that has never had a group creates its offsets topic on this first request
    and answers "coordinator not available" until it is ready."""
    deadline = time.monotonic() + COORDINATOR_WAIT
    while True:
        try:
            return await admin.describe_consumer_groups([group])
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def ensure_idle(settings: Settings) -> None:
    """Raise BootstrapError, naming the group, while the app's consumer group has members."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    try:
        await admin.start()
        responses = await _describe_group(admin, settings.app_id)
    except KafkaError as exc:
        msg = f"cannot describe consumer group {settings.app_id!r} at {settings.broker}: {exc!r}"
        raise BootstrapError(msg) from exc
    finally:
        await admin.close()
    described = [g for r in responses for g in r.to_object()["groups"]]
    reason = refusal(settings.app_id, described)
    if reason is not None:
        raise BootstrapError(reason)


async def find_offsets(settings: Settings, start: Start, go_live_at: int) -> dict[Where, int]:
    """The offsets to commit for the app's group: each input partition's start (`start`)
    and each command partition's end (credits are applied in process: none is pending)."""
    topology = Topology(settings)
    count = settings.partitions
    inputs = [TopicPartition(t, p) for t in topology.inputs for p in range(count)]
    commands = [TopicPartition(topology.commands, p) for p in range(count)]
    # read_committed: an end offset is the last stable one (open transactions are not history)
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), isolation_level="read_committed", enable_auto_commit=False
    )
    try:
        await consumer.start()
        ends = await consumer.end_offsets([*inputs, *commands])
        times: dict[Any, Any] = {}
        if start == "go-live":
            times = await consumer.offsets_for_times(dict.fromkeys(inputs, go_live_at))
    except KafkaError as exc:
        msg = f"cannot read the offsets of the input topics at {settings.broker}: {exc!r}"
        raise BootstrapError(msg) from exc
    finally:
        await consumer.stop()
    found = {
        Where(tp.topic, tp.partition): (None if t is None else int(t.offset))
        for tp, t in times.items()
    }
    offsets = start_offsets(
        start, {Where(tp.topic, tp.partition): ends[tp] for tp in inputs}, found
    )
    offsets.update({Where(tp.topic, tp.partition): ends[tp] for tp in commands})
    return offsets


async def read_history(
    settings: Settings, offsets: Mapping[Where, int], directory: Path, progress: IO[str] | None
) -> list[Path]:
    """The input topics' committed history up to exactly `offsets` (what the worker will
    not read), copied to files under `directory`."""
    topics = Topology(settings).inputs
    until = {(w.topic, w.partition): o for w, o in offsets.items() if w.topic in topics}
    try:
        return await snapshot(settings.kafka, topics, directory, progress, until=until)
    except TopicError as exc:
        raise BootstrapError(str(exc)) from exc


async def write_partition(
    settings: Settings,
    partition: int,
    records: Iterable[Out],
    offsets: Mapping[Where, int],
    limit: int = CHUNK_BYTES,
) -> tuple[int, int]:
    """Write one partition's records in transactions of at most `limit` bytes, the group's
    `offsets` for the partition with the last; returns (transactions, bytes)."""
    transactional_id = f"{settings.app_id}-p{partition}"
    producer = AIOKafkaProducer(
        **client_options(settings.kafka),
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        acks="all",
        enable_idempotence=True,
        max_batch_size=BATCH_BYTES,
    )
    committed = {
        TopicPartition(w.topic, w.partition): OffsetAndMetadata(o, "") for w, o in offsets.items()
    }
    transactions = written = 0
    try:
        await producer.start()
        pieces = chunks(records, limit)
        chunk = next(pieces)
        # one chunk ahead: the last one is known only when the next is missing
        for following in pieces:
            await _transact(producer, chunk, None, settings.app_id)
            transactions += 1
            written += sum(map(size, chunk))
            chunk = following
        await _transact(producer, chunk, committed, settings.app_id)
        transactions += 1
        written += sum(map(size, chunk))
    except ProducerFenced as exc:
        msg = (
            f"partition {partition}: another producer with transactional id "
            f"{transactional_id!r} started (a worker of group {settings.app_id!r}?); "
            "stop every worker and run the bootstrap again"
        )
        raise BootstrapError(msg) from exc
    except KafkaError as exc:
        msg = f"partition {partition}: writing to {settings.broker} failed: {exc!r}"
        raise BootstrapError(msg) from exc
    finally:
        await producer.stop()
    return transactions, written


async def _transact(
    producer: Any, records: list[Out], offsets: dict[Any, Any] | None, group: str
) -> None:
    async with producer.transaction():
        # every record acknowledged before the offsets join the transaction, as the
        # worker does (live/commit.py): a refused send must fail the transaction
        await wait_all(await produce(producer, records))
        if offsets:
            await producer.send_offsets_to_transaction(offsets, group)
