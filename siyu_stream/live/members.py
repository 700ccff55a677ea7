"""Which worker owns which partition, for the HTTP API: announced on `<app>-members`.

Every worker announces its partitions (its URL, the partition numbers, a wall-clock
stamp) after each rebalance and when it stops, and follows the topic from its
beginning: any worker can then proxy `/customers/{id}` to the owner.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from siyu_stream.kafka.client import client_options
from siyu_stream.live.polling import poll
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import KafkaConnection


class Members:
    def __init__(self, connection: KafkaConnection, topic: str, url: str) -> None:
        self.connection = connection
        self.topic = topic
        self.url = url
        self.directory: dict[int, str] = {}
        """Partition -> URL of the worker that owns it, as last announced."""
        self._latest: dict[int, tuple[int, str]] = {}
        self._producer: Any = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**client_options(self.connection), acks="all")
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def announce(self, partitions: list[int]) -> None:
        record = {"url": self.url, "partitions": partitions, "at": wall_clock()}
        await self._producer.send_and_wait(self.topic, orjson.dumps(record), key=self.url.encode())

    async def follow(self) -> None:
        """Follow the members topic (one partition) from its beginning; runs until cancelled."""
        consumer = AIOKafkaConsumer(
            **client_options(self.connection),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        consumer.assign([TopicPartition(self.topic, 0)])
        try:
            while True:
                batch = await poll(consumer, 1.0, 1_000, pause=1.0)
                for message in [m for messages in batch.values() for m in messages]:
                    self.heard(orjson.loads(message.value))
        finally:
            await consumer.stop()

    def heard(self, record: dict[str, Any]) -> None:
        """The latest announcement per partition wins."""
        latest = self._latest
        for p in record["partitions"]:
            if p not in latest or latest[p][0] <= record["at"]:
                latest[p] = (record["at"], record["url"])
        # a worker that announced fewer partitions gave the others up
        for p, (_, url) in list(latest.items()):
            if url == record["url"] and p not in record["partitions"]:
                del latest[p]
        self.directory = {p: url for p, (_, url) in latest.items()}
