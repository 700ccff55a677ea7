"""The local broker tooling against a real noida-db: topics, round trips, restarts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from siyu_stream.core.errors import BrokerError, TopicError
from siyu_stream.kafka.admin import describe_topics, ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.embedded import LocalBroker
from siyu_stream.settings import KafkaConnection
from siyu_stream.topology import TopicSpec

pytestmark = pytest.mark.integration

# A bound so that a broken broker fails the test instead of hanging it; not a timing claim.
GIVE_UP_AFTER = 60.0

Record = tuple[int, str, str]  # partition, key, value


async def produce(connection: KafkaConnection, topic: str, pairs: list[tuple[str, str]]) -> None:
    producer = AIOKafkaProducer(**client_options(connection), acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k.encode(), value=v.encode()) for k, v in pairs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume(
    connection: KafkaConnection, topic: str, group: str, expected: int
) -> list[Record]:
    """Read with a group consumer until `expected` records arrived and one more poll is empty.

    The extra poll is what lets the caller see duplicates beyond `expected`.
    enable_auto_commit=False: with auto-commit the group never settles on noida-db 0.2.3.
    """
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(connection),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[Record] = []
    deadline = time.monotonic() + GIVE_UP_AFTER
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got = [
                (tp.partition, m.key.decode(), m.value.decode())
                for tp, msgs in batch.items()
                for m in msgs
            ]
            records += got
            if len(records) >= expected and not got:
                break
        await consumer.commit()
    finally:
        await consumer.stop()
    return records


def keyed_pairs(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [(f"customer-{i % 23}", f"event-{i}") for i in range(start, start + n)]


def assert_exactly_once(records: list[Record], pairs: list[tuple[str, str]]) -> None:
    counts = Counter((k, v) for _, k, v in records)
    duplicates = {kv: c for kv, c in counts.items() if c > 1}
    assert not duplicates
    assert set(counts) == set(pairs), f"missing: {sorted(set(pairs) - set(counts))[:10]}"


async def test_keyed_round_trip_on_four_partitions(embedded_broker: LocalBroker) -> None:
    await ensure_topics(embedded_broker.connection, [TopicSpec("rt", partitions=4)])
    pairs = keyed_pairs(200)
    await produce(embedded_broker.connection, "rt", pairs)

    records = await consume(embedded_broker.connection, "rt", "g-rt", expected=len(pairs))

    assert_exactly_once(records, pairs)
    partitions_of_key: dict[str, set[int]] = {}
    for partition, key, _ in records:
        partitions_of_key.setdefault(key, set()).add(partition)
    assert all(len(ps) == 1 for ps in partitions_of_key.values()), "a key spans partitions"
    assert {p for p, _, _ in records} == {0, 1, 2, 3}


async def test_records_and_offsets_survive_restart(embedded_broker: LocalBroker) -> None:
    await ensure_topics(embedded_broker.connection, [TopicSpec("durable", partitions=4)])
    before = keyed_pairs(100)
    await produce(embedded_broker.connection, "durable", before)

    # Blocking (subprocess + sleeps): keep it off the event loop.
    await asyncio.to_thread(embedded_broker.restart)

    # Offsets must continue after the restart, not start over and shadow the old records.
    after = keyed_pairs(50, start=100)
    await produce(embedded_broker.connection, "durable", after)
    records = await consume(embedded_broker.connection, "durable", "g-durable", expected=150)
    assert_exactly_once(records, before + after)
    [info] = await describe_topics(embedded_broker.connection, ["durable"])
    assert (info.partitions, info.end_offsets) == (4, 150)


async def test_committed_offsets_survive_restart(embedded_broker: LocalBroker) -> None:
    """A group resumes where it committed: what a restarted worker relies on."""
    await ensure_topics(embedded_broker.connection, [TopicSpec("commits", partitions=2)])
    first = keyed_pairs(40)
    await produce(embedded_broker.connection, "commits", first)
    assert_exactly_once(
        await consume(embedded_broker.connection, "commits", "g", expected=40), first
    )

    await asyncio.to_thread(embedded_broker.restart)

    second = keyed_pairs(10, start=40)
    await produce(embedded_broker.connection, "commits", second)
    assert_exactly_once(
        await consume(embedded_broker.connection, "commits", "g", expected=10), second
    )


async def test_describe_topics_reports_partitions_and_end_offsets(
    embedded_broker: LocalBroker,
) -> None:
    specs = [TopicSpec("four", 4), TopicSpec("two", 2, config={"cleanup.policy": "compact"})]
    await ensure_topics(embedded_broker.connection, specs)
    await produce(embedded_broker.connection, "four", keyed_pairs(10))

    infos = await describe_topics(embedded_broker.connection, ["four", "two", "absent"])

    assert [tuple(i) for i in infos] == [("four", 4, 10), ("two", 2, 0), ("absent", 0, 0)]
    # Describing must not auto-create (a metadata request naming a topic does on noida-db).
    [absent] = await describe_topics(embedded_broker.connection, ["absent"])
    assert absent.partitions == 0


async def test_ensure_topics_is_idempotent_and_checks_partitions(
    embedded_broker: LocalBroker,
) -> None:
    spec = TopicSpec("orders", 4)
    assert await ensure_topics(embedded_broker.connection, [spec]) == ["orders"]
    assert await ensure_topics(embedded_broker.connection, [spec]) == []

    # A producer writing first auto-creates the topic with 1 partition: that must be refused.
    await produce(embedded_broker.connection, "early", [("k", "v")])
    with pytest.raises(TopicError, match="early has 1 partitions, expected 4"):
        await ensure_topics(embedded_broker.connection, [TopicSpec("early", 4)])


def test_restart_keeps_port_and_data_dir(embedded_broker: LocalBroker) -> None:
    bootstrap, old_pid = embedded_broker.bootstrap, embedded_broker.pid
    embedded_broker.restart()
    assert embedded_broker.running
    assert embedded_broker.bootstrap == bootstrap
    assert embedded_broker.pid != old_pid
    # Both runs log to the same file, the second after the first. Ready is its answer to a
    # Metadata request, which can come before its banner reaches the file (seen in a run).
    banner = f"kafka          {bootstrap}"
    deadline = time.monotonic() + GIVE_UP_AFTER
    while embedded_broker.log_path.read_text().count(banner) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert embedded_broker.log_path.read_text().count(banner) == 2


def test_kill_then_start(embedded_broker: LocalBroker) -> None:
    """After SIGKILL the control file names a dead PID; starting again must still work."""
    embedded_broker.kill()
    assert not embedded_broker.running
    embedded_broker.start()
    assert embedded_broker.running


def test_second_broker_on_same_data_dir_is_refused(embedded_broker: LocalBroker) -> None:
    other = LocalBroker(embedded_broker.data_dir)
    with pytest.raises(BrokerError, match="already running"):
        other.start()
    assert not other.running
