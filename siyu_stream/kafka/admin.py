"""Topic administration: create topics with explicit partition counts, describe them.

Topics must exist with their intended partition counts *before* anything produces to them:
a Kafka broker with topic auto-creation (noida-db always) creates a topic on first write,
or on a metadata request naming it, with its default of 1 partition. So every metadata read
here asks for *all* topics and filters, never for named ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from siyu_stream.core.errors import TopicError
from siyu_stream.kafka.client import client_options, preflight
from siyu_stream.settings import KafkaConnection
from siyu_stream.topology import TopicSpec

_TOPIC_ALREADY_EXISTS = 36


class TopicInfo(NamedTuple):
    name: str
    partitions: int  # 0: the topic does not exist (a real topic has at least 1)
    end_offsets: int  # sum over partitions of the next offset to be written


@asynccontextmanager
async def _admin(connection: KafkaConnection) -> AsyncIterator[Any]:
    """An admin client; first the preflight, the first contact of every command and of
    the worker with Kafka, so that a refused login fails them at once and says why."""
    await preflight(connection)
    client = AIOKafkaAdminClient(**client_options(connection))
    try:
        await client.start()
    except KafkaError as exc:
        await client.close()
        msg = f"cannot reach Kafka at {connection}: {exc}"
        raise TopicError(msg) from exc
    try:
        yield client
    finally:
        await client.close()


async def _partition_counts(client: Any) -> dict[str, int]:
    """Partition count of every topic the broker reports without error (all topics)."""
    topics: list[dict[str, Any]] = await client.describe_topics()
    return {t["topic"]: len(t["partitions"]) for t in topics if t["error_code"] == 0}


async def ensure_topics(
    connection: KafkaConnection, specs: Sequence[TopicSpec], timeout: float = 30.0
) -> list[str]:
    """Create the topics of `specs` that do not exist yet; return the names created.

    Existing topics are fine if their partition count matches the spec; a mismatch raises
    TopicError (typically the topic was auto-created by a producer with 1 partition, and
    keys would land on other partitions than the state that belongs to them).
    """
    async with _admin(connection) as client:
        existing = await _partition_counts(client)
        missing = [s for s in specs if s.name not in existing]
        created: list[str] = []
        if missing:
            new = [
                NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config))
                for s in missing
            ]
            response = await client.create_topics(new)
            failures = []
            for err in response.to_object()["topic_errors"]:
                if err["error_code"] == 0:
                    created.append(err["topic"])
                elif err["error_code"] != _TOPIC_ALREADY_EXISTS:  # a concurrent creator won
                    failures.append(f"{err['topic']}: {err['error_message']}")
            if failures:
                msg = "could not create topics: " + "; ".join(failures)
                raise TopicError(msg)
        # Creation is asynchronous on a real cluster: wait until metadata shows every topic.
        deadline = time.monotonic() + timeout
        while True:
            counts = await _partition_counts(client)
            absent = [s.name for s in specs if s.name not in counts]
            if not absent:
                break
            if time.monotonic() > deadline:
                msg = f"topics created but not visible after {timeout} s: {', '.join(absent)}"
                raise TopicError(msg)
            await asyncio.sleep(0.2)
    wrong = [
        f"{s.name} has {counts[s.name]} partitions, expected {s.partitions}"
        for s in specs
        if counts[s.name] != s.partitions
    ]
    if wrong:
        msg = "topics exist with the wrong partition count: " + "; ".join(wrong)
        raise TopicError(msg)
    return created


async def describe_topics(connection: KafkaConnection, names: Sequence[str]) -> list[TopicInfo]:
    """Partition count and total end offset of each named topic, in the order given."""
    async with _admin(connection) as client:
        counts = await _partition_counts(client)
    partitions = [TopicPartition(n, p) for n in names if n in counts for p in range(counts[n])]
    ends: dict[Any, int] = {}
    if partitions:
        # No group_id: only offsets are read, nothing joins or commits.
        consumer = AIOKafkaConsumer(**client_options(connection))
        try:
            await consumer.start()
            ends = await consumer.end_offsets(partitions)
        except KafkaError as exc:
            msg = f"cannot read end offsets from {connection}: {exc}"
            raise TopicError(msg) from exc
        finally:
            await consumer.stop()
    return [
        TopicInfo(n, counts.get(n, 0), sum(v for tp, v in ends.items() if tp.topic == n))
        for n in names
    ]
