"""Backtest input from Kafka: the input topics' committed history, copied to local files.

`snapshot` reads every partition of the input topics from the earliest offset to the end
offset it finds when it starts, with `read_committed` (the end is then the last stable
offset: records of open or aborted transactions are not history), and writes each
partition's record values, one a line, to a file of its own in offset order. Backtest
then reads those files as replay reads files (each in order, merged by event time, one
queue per partition and type), so the engines see the records in the order the worker
takes them. One fetch at a time is in memory; the copy is on disk, removed afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from siyu_stream.core.errors import TopicError
from siyu_stream.kafka.admin import describe_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.settings import KafkaConnection

STALL_SECONDS = 60.0
"""Give up when no record arrives for this long while partitions are still behind."""


def _line(value: bytes | None) -> bytes:
    # A JSON text has no raw line break but as whitespace (one inside a string is
    # escaped), so a pretty-printed value reads the same on one line. A tombstone becomes
    # `null`, which decoding rejects, as the worker dead-letters a tombstone.
    if value is None:
        return b"null\n"
    return value.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n"


async def snapshot(
    connection: KafkaConnection,
    topics: Sequence[str],
    directory: Path,
    progress: IO[str] | None = None,
    *,
    until: Mapping[tuple[str, int], int] | None = None,
) -> list[Path]:
    """Copy the committed history of `topics` to `directory`; returns the files, one per
    topic partition, in topic then partition order. `until` ((topic, partition) -> offset)
    stops each partition it names before that offset instead of at its end (bootstrap: the
    history is what the worker will not read); it must not lie beyond the end."""
    infos = await describe_topics(connection, topics)
    broker = connection.bootstrap
    missing = [info.name for info in infos if not info.partitions]
    if missing:
        msg = f"no such topic on {broker}: {', '.join(missing)}"
        raise TopicError(msg)
    tps = [TopicPartition(i.name, p) for i in infos for p in range(i.partitions)]
    paths = {tp: directory / f"{tp.topic}-{tp.partition}.jsonl" for tp in tps}
    consumer = AIOKafkaConsumer(
        **client_options(connection), isolation_level="read_committed", enable_auto_commit=False
    )
    try:
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[Any, int] = await consumer.end_offsets(tps)
        if until is not None:
            ends = {
                tp: min(end, until.get((tp.topic, tp.partition), end)) for tp, end in ends.items()
            }
        copied = await _copy(consumer, ends, paths)
    except KafkaError as exc:
        msg = f"cannot read the input topics from {broker}: {exc}"
        raise TopicError(msg) from exc
    finally:
        await consumer.stop()
    if progress is not None:
        progress.write(f"history: {copied:,} records from {', '.join(topics)} at {broker}\n")
    return list(paths.values())


async def _copy(consumer: Any, ends: dict[Any, int], paths: dict[Any, Path]) -> int:
    handles = {tp: path.open("wb") for tp, path in paths.items()}
    copied = 0
    try:
        pending = [tp for tp in paths if await consumer.position(tp) < ends[tp]]
        heard = time.monotonic()
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                # records written after the start are not part of the history
                lines = [_line(r.value) for r in records if r.offset < ends[tp]]
                handles[tp].writelines(lines)
                copied += len(lines)
            if batch:
                heard = time.monotonic()
            elif time.monotonic() - heard > STALL_SECONDS:
                msg = f"no records for {STALL_SECONDS:.0f} s while reading the input history"
                raise TopicError(msg)
            done = [tp for tp in pending if await consumer.position(tp) >= ends[tp]]
            consumer.pause(*done)
            pending = [tp for tp in pending if tp not in done]
    finally:
        for handle in handles.values():
            handle.close()
    return copied
