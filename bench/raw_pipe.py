"""The physical limit: raw aiokafka consume -> produce with no processing at all.

    raw_pipe.py BROKER GROUP OUT_TOPIC READY_FILE GUARANTEE TOPIC [TOPIC ...]

Writes each record of TOPICs to OUT_TOPIC, up to 2,000 per poll like the worker.
at_least_once: send the batch, wait for the acks, commit. exactly_once: a transaction per
poll with one transactional producer (the worker has one per partition: the ratio includes
that choice). Touches READY_FILE once partitions are assigned; runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata

from siyu_stream.kafka.client import client_options
from siyu_stream.settings import KafkaConnection

MAX_RECORDS = 2_000  # the worker's batch size (siyu_stream.live.worker.MAX_RECORDS)


class Ready(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        self.path = path

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self.path.touch()


async def main(
    broker: str, group: str, out: str, ready: Path, guarantee: str, topics: list[str]
) -> None:
    eos = guarantee == "exactly_once"
    consumer = AIOKafkaConsumer(
        **client_options(KafkaConnection(broker)),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    tx = {"transactional_id": f"{group}-tx"} if eos else {}
    producer = AIOKafkaProducer(
        **client_options(KafkaConnection(broker)), acks="all", enable_idempotence=True, **tx
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await producer.start()
    await consumer.start()
    consumer.subscribe(topics, listener=Ready(ready))
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            if not batch:
                continue
            offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batch.items() if msgs}
            records = [m for msgs in batch.values() for m in msgs]
            if eos:
                async with producer.transaction():
                    for m in records:
                        await producer.send(out, m.value, key=m.key)
                    committed = {tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()}
                    await producer.send_offsets_to_transaction(committed, group)
            else:
                await asyncio.gather(
                    *[await producer.send(out, m.value, key=m.key) for m in records]
                )
                await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    b, g, o, r, guar, *t = sys.argv[1:]
    asyncio.run(main(b, g, o, Path(r), guar, t))
