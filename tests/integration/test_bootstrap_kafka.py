"""`siyu-stream bootstrap` on a real broker: a worker started after it goes on where the
history ends (live = replay --go-live over the whole history, by action id and bytes); a
bootstrap run twice writes the same changelog; one beside a running worker is refused.

The live = replay comparison is the one of test_live_event_time (the same partitions, the
same allowed difference: a referrer's layer route when a credit arrives late)."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import live
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from live import Traffic, WorkerProcess, quiesce, read_topics
from test_live_event_time import ALL, assert_live_equals_replay, live_actions

from siyu_stream.bootstrap.runner import run
from siyu_stream.cli import main
from siyu_stream.core import stored
from siyu_stream.core.clock import HOUR, MINUTE, format_rfc3339, parse_rfc3339, to_datetime
from siyu_stream.core.golive import GoLive
from siyu_stream.core.ruleset import Rules
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.kafka.client import client_options
from siyu_stream.observe.wall import wall_clock
from siyu_stream.replay.run import replay
from siyu_stream.settings import Settings
from siyu_stream.simulate import SimConfig, SimRecord, generate
from siyu_stream.topology import Topology

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"
LIFECYCLE_ARGS = ["--go-live", "2026-04-01T00:00:00Z", "--now", "2026-06-01T00:00:00Z"]
TOPIC_OF_TYPE = {"order": "orders", "chat": "chats", "join": "joins"}


def _at(record: SimRecord) -> int | None:
    try:
        return parse_rfc3339(orjson.loads(record.value)["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # a deliberately bad record: it goes with the live part


async def changelog(settings: Settings) -> dict[tuple[int, bytes], bytes]:
    """The app's changelog by (partition, key), the last committed value of each (the
    clock's key is the same empty key on every partition)."""
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        topic = Topology(settings).changelog
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        latest: dict[tuple[int, bytes], bytes] = {}
        idle = 0
        while any([await consumer.position(tp) < ends[tp] for tp in tps]) and idle < 20:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for tp, messages in batch.items():
                for m in messages:
                    assert m.key is not None and m.partition == tp.partition
                    latest[(m.partition, m.key)] = m.value
            idle = 0 if batch else idle + 1
        return latest
    finally:
        await consumer.stop()


async def committed(settings: Settings) -> dict[str, int | None]:
    """The app group's committed offsets on its input and command partitions."""
    topology = Topology(settings)
    tps = [
        TopicPartition(t, p)
        for t in (*topology.inputs, topology.commands)
        for p in range(settings.partitions)
    ]
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), group_id=settings.app_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        return {f"{tp.topic}-{tp.partition}": await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


async def test_a_worker_after_a_bootstrap_emits_what_replay_emits_over_the_whole_history(
    broker: KafkaCluster, tmp_path: Path
) -> None:
    """Three hours of traffic ending an hour ago: the first two hours are the history (a
    file, bootstrapped), the last hour is produced to the input topics afterwards and taken
    by a worker with SIYU_GO_LIVE. Go-live is half an hour into the live part, with no
    grant window: the bootstrap and the worker both withhold what falls due before it."""
    end = wall_clock() - HOUR
    span = 3 * HOUR
    split = end - HOUR
    go_live = split + 30 * MINUTE
    settings = live.settings_for(
        broker.bootstrap,
        max_task_idle_ms=60_000,  # the exact merge (see test_live_event_time)
        go_live=format_rfc3339(go_live),
        grant_since_days=0,
    )
    rules = Rules().going_live(GoLive(go_live, 0))
    config = SimConfig(customers=200, rate=3_000 / (span / 1000), start=to_datetime(end - span))
    records = list(generate(config, 3_000))
    before = [r for r in records if (at := _at(r)) is not None and at < split]
    after = [r for r in records if r not in before]
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"".join(r.value + b"\n" for r in before))

    progress = io.StringIO()
    built, written = await asyncio.to_thread(
        run, settings, rules, [history], from_kafka=False, start="end", now=wall_clock(),
        progress=progress,
    )  # fmt: skip
    assert "bootstrap: 4 partitions" in progress.getvalue()
    assert built.outputs.suppressed["before_go_live"] > 0  # the history's gifts and reminders
    assert written.states == len(built.store.data) > 100

    async with Traffic(settings) as traffic:
        futures = [await traffic.raw(r.topic, r.key.encode(), r.value) for r in after]
        await asyncio.gather(*futures)
    # what the system saw, in the order it saw it: the history, then the topics
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(b"".join(r.value + b"\n" for r in before + after))
    out, now = io.BytesIO(), wall_clock()
    replay([whole], out, rules, until=now, now=now, partitions=4, deadletters=io.BytesIO())
    expected = {a["action_id"]: a for a in map(orjson.loads, out.getvalue().splitlines())}
    live_kinds = {a["kind"] for a in expected.values() if a["occurred_at"] >= format_rfc3339(split)}
    assert {"gift", "reminder", "change", "suppressed"} <= live_kinds  # all in the live hour

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    await quiesce(settings)
    got = await live_actions(settings, expected)
    worker.terminate()
    assert sum(worker.restored()) >= written.states  # it started from the bootstrap's state
    assert_live_equals_replay(got, expected, once=True)


async def produce_lifecycle(settings: Settings) -> int:
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        lines = (DATA / "lifecycle.jsonl").read_bytes().splitlines()
        for raw in lines:
            event: dict[str, Any] = orjson.loads(raw)
            topic = settings.topic(TOPIC_OF_TYPE[event["type"]])
            await producer.send_and_wait(topic, raw, key=event["customer_id"].encode())
        return len(lines)
    finally:
        await producer.stop()


def test_a_bootstrap_run_twice_writes_the_same_changelog(
    broker: KafkaCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The history in the topics (--from-kafka); the second run also reads it from a file:
    every event twice, each taken once. The changelog is the same by key; the outputs
    are sent again with the same ids and bytes; the group starts after the history."""
    settings = live.settings_for(broker.bootstrap)
    for name, value in {
        "SIYU_BROKER": broker.bootstrap,
        "SIYU_APP_ID": settings.app_id,
        "SIYU_TOPIC_PREFIX": settings.topic_prefix,
        "SIYU_PARTITIONS": "4",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["topics", "create"]) == 0
    produced = asyncio.run(produce_lifecycle(settings))

    assert main(["bootstrap", "--from-kafka", *LIFECYCLE_ARGS]) == 0
    first_log = capsys.readouterr().err
    first = asyncio.run(changelog(settings))
    outputs = asyncio.run(read_topics(settings, Topology(settings).outputs))
    assert main(["bootstrap", str(DATA / "lifecycle.jsonl"), "--from-kafka", *LIFECYCLE_ARGS]) == 0
    second_log = capsys.readouterr().err
    second = asyncio.run(changelog(settings))

    # the file repeats one event itself; the second run reads every event twice
    assert f"bootstrap: {produced} events (34 ok, 1 duplicates, 0 rejected)" in first_log
    assert f"bootstrap: {2 * produced} events (34 ok, 36 duplicates, 0 rejected)" in second_log
    clocks = {p for p, key in first if key == b""}
    assert len(first) - len(clocks) == 6 and len(clocks) == 3  # 6 customers on 3 partitions
    assert second == first
    again = asyncio.run(read_topics(settings, Topology(settings).outputs))
    assert sorted(map(orjson.dumps, again)) == sorted(map(orjson.dumps, outputs * 2))
    offsets = asyncio.run(committed(settings))
    assert None not in offsets.values()  # every partition, the empty ones too
    assert sum(o for name, o in offsets.items() if o and "-commands-" not in name) == produced


def test_a_bootstrap_beside_a_running_worker_is_refused(
    broker: KafkaCluster, tmp_path: Path
) -> None:
    settings = live.settings_for(broker.bootstrap)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    env = {**os.environ, "SIYU_BROKER": broker.bootstrap, "SIYU_APP_ID": settings.app_id}
    env["SIYU_TOPIC_PREFIX"] = settings.topic_prefix
    result = subprocess.run(
        [
            *(sys.executable, "-m", "siyu_stream.cli", "bootstrap"),
            *(str(DATA / "lifecycle.jsonl"), *LIFECYCLE_ARGS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.alive()
    worker.terminate()
    assert result.returncode != 0
    assert f"consumer group '{settings.app_id}'" in result.stderr
    assert "worker" in result.stderr
    assert asyncio.run(changelog(settings)) == {}  # nothing written


async def produce_stamped(settings: Settings, lines: list[bytes], stamps: list[int]) -> None:
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        for raw, stamp in zip(lines, stamps, strict=True):
            event: dict[str, Any] = orjson.loads(raw)
            topic = settings.topic(TOPIC_OF_TYPE[event["type"]])
            key = event["customer_id"].encode()
            await producer.send_and_wait(topic, raw, key=key, timestamp_ms=stamp)
    finally:
        await producer.stop()


def test_start_at_go_live_reads_the_topics_up_to_it_in_several_transactions(
    broker: KafkaCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upstream has published since go-live: `--start go-live --from-kafka` takes the
    records stamped before it as the history and leaves the rest to the workers. With
    transactions of a few KiB, each partition takes several."""
    from siyu_stream.bootstrap import plan
    from siyu_stream.bootstrap.build import build

    settings = live.settings_for(broker.bootstrap)
    at = parse_rfc3339("2026-04-01T00:00:00Z")
    lines = (DATA / "lifecycle.jsonl").read_bytes().splitlines()
    history, rest = lines[:20], lines[20:]
    asyncio.run(run_topics(settings))
    asyncio.run(
        produce_stamped(settings, lines, [at - 60_000] * len(history) + [at + 60_000] * len(rest))
    )
    monkeypatch.setattr(plan, "CHUNK_BYTES", 2_000)
    rules = Rules().going_live(GoLive(at))
    now = parse_rfc3339("2026-06-01T00:00:00Z")
    built, written = run(
        settings, rules, [], from_kafka=True, start="go-live", now=now, progress=io.StringIO()
    )
    assert built.lines == len(history)
    assert written.transactions > 2 * settings.partitions  # chunked
    offsets = asyncio.run(committed(settings))
    assert sum(o or 0 for name, o in offsets.items() if "-commands-" not in name) == len(history)
    # the changelog holds the states of exactly the history before go-live
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"".join(raw + b"\n" for raw in history))
    (tmp_path / "spill").mkdir()
    alone = build([path], rules, partitions=4, now=now, spill_dir=tmp_path / "spill")
    states = {
        (p, key): value
        for (p, key), value in asyncio.run(changelog(settings)).items()
        if key != b""
    }
    assert {key.decode(): value for (_, key), value in states.items()} == {
        cid: stored.dumps(s) for cid, s in alone.store.items()
    }


async def run_topics(settings: Settings) -> None:
    from siyu_stream.kafka.admin import ensure_topics

    await ensure_topics(settings.kafka, Topology(settings).specs())
