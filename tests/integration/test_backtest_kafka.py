"""`siyu-stream backtest --from-kafka` on a real broker: the input topics' committed history
gives the same report as the file it was produced from; an aborted transaction's records
are not part of it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from siyu_stream.cli import main
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.kafka.client import client_options
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"
TOPIC_OF_TYPE = {"order": "orders", "chat": "chats", "join": "joins"}
ARGS = ["--rules", "lifecycle.backtest.toml", "--now", "2026-06-01T00:00:00Z"]
ARGS += ["--partitions", "4", "--until", "2026-12-31T00:00:00Z"]
GHOST = {
    "event_id": "ghost-1",
    "type": "order",
    "customer_id": "ghost",
    "occurred_at": "2026-03-05T10:00:00+08:00",
    "order_id": "G-1",
    "status": "paid",
    "amount": "90000.00",
    "channel": "tmall",
}
"""An order that would earn tier gifts and an invite, were it read."""


async def produce(settings: Settings, lines: list[bytes]) -> None:
    await ensure_topics(settings.kafka, Topology(settings).specs())
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        for raw in lines:
            event: dict[str, Any] = orjson.loads(raw)
            topic = settings.topic(TOPIC_OF_TYPE[event["type"]])
            await producer.send_and_wait(topic, raw, key=event["customer_id"].encode())
    finally:
        await producer.stop()
    aborted = AIOKafkaProducer(**client_options(settings.kafka), transactional_id="bt-abort")
    await aborted.start()
    try:
        await aborted.begin_transaction()
        await aborted.send_and_wait(settings.topic("orders"), orjson.dumps(GHOST), key=b"ghost")
        await aborted.abort_transaction()
    finally:
        await aborted.stop()


def test_from_kafka_equals_the_file(
    broker: KafkaCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(broker=broker.bootstrap, partitions=4, api_auth=False)
    lines = (DATA / "lifecycle.jsonl").read_bytes().splitlines()
    asyncio.run(produce(settings, lines))
    monkeypatch.chdir(DATA)  # the rules file by its relative name, as in the golden summary
    for name, value in {"SIYU_BROKER": broker.bootstrap, "SIYU_PARTITIONS": "4"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SIYU_TOPIC_PREFIX", raising=False)
    out = tmp_path / "out"
    assert main(["backtest", "--from-kafka", *ARGS, "--out", str(out)]) == 0
    golden = orjson.loads((DATA / "lifecycle.backtest.summary.json").read_bytes())
    summary = orjson.loads((out / "summary.json").read_bytes())
    inputs = summary["run"].pop("inputs")
    assert inputs == [f"kafka {broker.bootstrap}: siyu.{t}" for t in ("orders", "chats", "joins")]
    golden["run"].pop("inputs")
    assert summary == golden  # no ghost: the aborted order is not in the history
    assert (out / "diff.jsonl").read_bytes() == (
        DATA / "lifecycle.backtest.diff.jsonl"
    ).read_bytes()
