"""Helpers for runtime tests on a real broker: worker processes, traffic, output readers."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from scenario import ListSink

from siyu_stream.core.clock import HOUR, MINUTE, format_rfc3339, to_datetime
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import from_dict
from siyu_stream.core.ruleset import Rules
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.embedded import free_port
from siyu_stream.observe.wall import wall_clock
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.run import replay
from siyu_stream.settings import Guarantee, Settings
from siyu_stream.simulate import SimConfig, generate
from siyu_stream.topology import Topology

_app_ids = itertools.count()

# Bounds so that a broken run fails instead of hanging; they are not timing claims.
GIVE_UP_AFTER = 90.0
TYPE_TOPIC = {"order": "orders", "chat": "chats", "join": "joins"}


def settings_for(broker: str, guarantee: Guarantee = "exactly_once", **overrides: Any) -> Settings:
    """Settings of a test's worker group: its own app id and topics on `broker`."""
    n = next(_app_ids)
    values: dict[str, Any] = {
        "app_id": f"siyu-test-{n}",
        # the session's broker is shared: every test has topics of its own
        "topic_prefix": f"t{n}",
        "partitions": 4,
        "guarantee": guarantee,
        "api_auth": False,
        # a crashed worker's partitions move after 3 s (the test broker allows it)
        "session_timeout_ms": 3_000,
    }
    return Settings(broker=broker, **(values | overrides))


class WorkerProcess:
    """`siyu-stream worker` as a real child process, so that SIGKILL really kills it."""

    started: ClassVar[list[WorkerProcess]] = []
    """Every worker started, for the fixture that kills leftovers after each test."""

    def __init__(self, settings: Settings, log: Path, token: str | None = None) -> None:
        self.settings = settings
        self.log = log
        self.token = token
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "SIYU_BROKER": s.broker,
            "SIYU_SECURITY_PROTOCOL": s.security_protocol,
            "SIYU_SASL_MECHANISM": s.sasl_mechanism,
            "SIYU_SASL_USERNAME": s.sasl_username or "",
            "SIYU_SASL_PASSWORD": s.sasl_password or "",
            "SIYU_SSL_CAFILE": str(s.ssl_cafile or ""),
            "SIYU_SSL_CERTFILE": str(s.ssl_certfile or ""),
            "SIYU_SSL_KEYFILE": str(s.ssl_keyfile or ""),
            "SIYU_SSL_KEY_PASSWORD": s.ssl_key_password or "",
            "SIYU_APP_ID": s.app_id,
            "SIYU_TOPIC_PREFIX": s.topic_prefix,
            "SIYU_REPLICATION": str(s.replication),
            "SIYU_PARTITIONS": str(s.partitions),
            "SIYU_GUARANTEE": s.guarantee,
            "SIYU_STORE": s.store,
            "SIYU_STANDBY_REPLICAS": str(s.standby_replicas),
            "SIYU_DATA_DIR": str(s.data_dir),
            "SIYU_API_AUTH": "false" if self.token is None else "true",
            "SIYU_API_TOKEN": self.token or "",
            "SIYU_WEB_PORT": str(self.port),
            "SIYU_TIMER_INTERVAL": "0.2",
            "SIYU_TIMER_GRACE_MS": str(s.timer_grace_ms),
            "SIYU_MAX_TASK_IDLE_MS": str(s.max_task_idle_ms),
            "SIYU_REORDER_MS": str(s.reorder_ms),
            "SIYU_SESSION_TIMEOUT_MS": str(s.session_timeout_ms),
            "SIYU_LOG_LEVEL": "info",
            # after a bootstrap: go live as it did (unset otherwise, as in production)
            **({"SIYU_GO_LIVE": s.go_live} if s.go_live is not None else {}),
            "SIYU_GRANT_SINCE_DAYS": str(s.grant_since_days),
        }

    def start(self) -> None:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "siyu_stream.cli", "worker"],
            env=self.env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        WorkerProcess.started.append(self)

    def owned(self) -> set[int]:
        """Partitions this worker owns now, from its log (assigned minus revoked)."""
        owned: set[int] = set()
        for line in self.log.read_text(errors="replace").splitlines():
            if m := re.search(r"partition (\d+) assigned", line):
                owned.add(int(m.group(1)))
            elif m := re.search(r"partition (\d+) revoked", line):
                owned.discard(int(m.group(1)))
            elif "worker stopped" in line:
                owned.clear()
        return owned

    def restored(self) -> list[int]:
        """Changelog records read per partition assignment, in log order."""
        text = self.log.read_text(errors="replace")
        return [int(n) for n in re.findall(r"assigned: (\d+) changelog records restored", text)]

    def wait_owns(self, partitions: set[int]) -> None:
        deadline = time.monotonic() + GIVE_UP_AFTER
        while self.owned() != partitions:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"worker owns {self.owned()}, not {partitions}"
            time.sleep(0.1)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=GIVE_UP_AFTER)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no chance to finish a batch or leave the group
        self.proc.wait(timeout=GIVE_UP_AFTER)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP: a zombie that holds its partitions and its open transactions."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class Traffic:
    """Events stamped with the wall clock when sent, and remembered exactly as sent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent: list[bytes] = []
        self.producer: Any = None

    async def __aenter__(self) -> Traffic:
        self.producer = AIOKafkaProducer(**client_options(self.settings.kafka), acks="all")
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, events: Iterable[dict[str, Any]], *, rate: float | None = None) -> None:
        started = time.monotonic()
        futures = []
        for n, event in enumerate(events):
            if rate is not None:
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            futures.append(await self.raw(event_topic(event), key_of(event), stamp(event)))
        await asyncio.gather(*futures)

    async def paced(
        self,
        records: Iterable[tuple[str, bytes, bytes]],
        rate: float | None = None,
        *,
        now: bool = False,
    ) -> None:
        """Produce `records` (topic name, key, value), at `rate` a second if given, and wait
        until every one is acknowledged. With `now`, each event's occurred_at becomes the
        moment it is sent: live traffic, which a caught-up worker never sees as late
        (an old event sent to a caught-up worker is late: the wall clock moved its
        partition past it, which replay cannot reproduce)."""
        started = time.monotonic()
        futures = []
        for n, (topic, key, value) in enumerate(records):
            if rate is not None:
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            futures.append(await self.raw(topic, key, restamped(value) if now else value))
        await asyncio.gather(*futures)

    async def raw(self, short: str, key: bytes | None, value: bytes) -> Any:
        self.sent.append(value)
        return await self.producer.send(self.settings.topic(short), value, key=key)


def restamped(value: bytes) -> bytes:
    """An event's bytes with occurred_at = now; anything else (the simulator's deliberately
    bad records) as it is."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    if not isinstance(event, dict) or not isinstance(event.get("occurred_at"), str):
        return value
    event["occurred_at"] = format_rfc3339(wall_clock())
    return orjson.dumps(event)


def stamp(event: dict[str, Any]) -> bytes:
    """occurred_at = now minus the event's `ago_minutes` (default 0)."""
    event = dict(event)
    ago = event.pop("ago_minutes", 0)
    event.setdefault("occurred_at", format_rfc3339(wall_clock() - int(ago * MINUTE)))
    return orjson.dumps(event)


def event_topic(event: dict[str, Any]) -> str:
    return TYPE_TOPIC.get(str(event.get("type")), "orders")


def key_of(event: dict[str, Any]) -> bytes | None:
    customer = event.get("customer_id")
    return customer.encode() if isinstance(customer, str) else None


def replay_ids(sent: list[bytes], rules: Rules | None = None) -> dict[str, dict[str, Any]]:
    """What the replay engine emits for exactly these messages: action id -> action."""
    rules = rules or Rules()
    sink = ListSink()
    engine = Engine(rules, MemoryStore(), sink)
    for raw in sent:
        try:
            engine.handle(from_dict(orjson.loads(raw), rules.input))
        except (InvalidEvent, orjson.JSONDecodeError):
            continue
    if engine.clock is not None:
        engine.advance(wall_clock())  # the live worker's clock is at least this far
    return {a.action_id: a.to_dict() for a in sink.actions}


async def read_topics(settings: Settings, topics: list[str]) -> list[dict[str, Any]]:
    """Every committed record of `topics`, from the beginning to the current end."""
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka),
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + GIVE_UP_AFTER
        idle = 0

        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind() and idle < 20:
            assert time.monotonic() < deadline
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            got = [orjson.loads(m.value) for msgs in batch.values() for m in msgs]
            records.extend(got)
            idle = 0 if got else idle + 1
        return records
    finally:
        await consumer.stop()


async def quiesce(settings: Settings) -> None:
    """Wait until the worker group has consumed every input and command record."""
    topology = Topology(settings)
    topics = [*topology.inputs, topology.commands]
    tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka),
        group_id=settings.app_id,  # only reads the group's offsets; never joins
        isolation_level="read_committed",
        enable_auto_commit=False,
        # end_offsets learns the topics' leaders one topic per retry: 4 x 100 ms (the
        # default backoff) before the first answer, on every call
        retry_backoff_ms=10,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + GIVE_UP_AFTER
        settled = 0
        while True:
            assert time.monotonic() < deadline, "the worker did not catch up"
            ends = await consumer.end_offsets(tps)
            done = [((await consumer.committed(tp)) or 0) >= ends[tp] for tp in tps]
            settled = settled + 1 if all(done) else 0
            if settled == 2:  # caught up, and still so 0.2 s later
                return
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def actions_until(settings: Settings, expected: set[str]) -> list[dict[str, Any]]:
    """Read the action topics until every expected id arrived, then once more after the
    group has consumed every input and command record (`quiesce`): whatever the inputs
    still cause, a late duplicate included, is written by then (at_least_once sends a
    batch's outputs before it commits its offsets; exactly_once commits both at once)."""
    topics = Topology(settings).outputs
    deadline = time.monotonic() + GIVE_UP_AFTER
    while True:
        records = await read_topics(settings, topics)
        if expected <= {r["action_id"] for r in records}:
            await quiesce(settings)
            return await read_topics(settings, topics)
        if time.monotonic() > deadline:
            return records  # the caller's assertion shows what is missing
        await asyncio.sleep(0.5)


def difference(got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> str:
    """A readable account of how live output and replay differ (for assertion messages)."""

    def show(a: dict[str, Any]) -> str:
        d = a["detail"]
        what = (
            d.get("code") or d.get("template") or f"{d.get('field')} {d.get('from')}->{d.get('to')}"
        )
        return f"{a['customer_id']} {a['kind']} {a['rule']} {what} @{a['occurred_at']}"

    extra = [show(got[i]) for i in sorted(set(got) - set(expected))]
    missing = [show(expected[i]) for i in sorted(set(expected) - set(got))]
    return f"live only: {extra[:10]}; replay only: {missing[:10]}"


async def share(first: WorkerProcess, second: WorkerProcess, partitions: int = 4) -> None:
    """Wait until two workers split all partitions between them."""
    every = set(range(partitions))
    deadline = time.monotonic() + GIVE_UP_AFTER
    while not (first.owned() and second.owned() and first.owned() | second.owned() == every):
        assert first.alive() and second.alive(), "a worker died"
        assert time.monotonic() < deadline, (first.owned(), second.owned())
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- live = replay

ALL = {0, 1, 2, 3}
"""Every partition of a test's topics (settings_for: 4 partitions)."""


def simulated(events: int, hours: float, seed: int = 5) -> list[tuple[str, bytes, bytes]]:
    """`events` simulated records (topic name, key, value) whose event times span `hours`
    and end an hour ago. No timer is due between then and the next week (the reply SLA is
    30 minutes, repurchase cycles at least 7 days), so the comparison time does not matter."""
    end = wall_clock() - HOUR
    span = int(hours * HOUR)
    config = SimConfig(
        customers=max(20, events // 15),
        rate=events / (span / 1000),
        start=to_datetime(end - span),
        seed=seed,
    )
    return [(r.topic, r.key.encode(), r.value) for r in generate(config, events)]


async def backlog(settings: Settings, events: int, hours: float) -> Traffic:
    """`simulated` records, produced while no worker runs."""
    await ensure_topics(settings.kafka, Topology(settings).specs())
    traffic = Traffic(settings)
    async with traffic:
        await traffic.paced(simulated(events, hours))
    return traffic


def replayed(sent: list[bytes], tmp: Path) -> dict[str, dict[str, Any]]:
    path = tmp / "sent.jsonl"
    path.write_bytes(b"".join(v + b"\n" for v in sent))
    out = io.BytesIO()
    now = wall_clock()
    replay([path], out, Rules(), until=now, now=now, partitions=4, deadletters=io.BytesIO())
    actions = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return {a["action_id"]: a for a in actions}


def layer_route(expected: dict[str, dict[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    """Whether an action is a referrer's layer change: the one difference the design
    allows (which credit raises the referrer to A5 first, and from where, may differ)."""
    credited = {a["customer_id"] for a in expected.values() if a["rule"] == "referral"}

    def route(a: dict[str, Any]) -> bool:
        return (
            a["kind"] == "change"
            and a["detail"]["field"] == "layer"
            and a["customer_id"] in credited
        )

    return route


async def live_actions(
    settings: Settings, expected: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The committed outputs once every action replay has (bar the allowed route) is there."""
    route = layer_route(expected)
    return await actions_until(settings, {i for i, a in expected.items() if not route(a)})


def assert_live_equals_replay(
    records: list[dict[str, Any]], expected: dict[str, dict[str, Any]], *, once: bool
) -> None:
    counts = Counter(r["action_id"] for r in records)
    assert counts, "no action was committed"
    if once:
        assert max(counts.values()) == 1, "a record was committed twice"
    live = {r["action_id"]: r for r in records}
    gifts = {i for i, a in expected.items() if a["kind"] == "gift"}
    assert gifts <= set(live), "a gift was lost"
    assert {i for i, a in live.items() if a["kind"] == "gift"} <= gifts, "a gift was invented"
    credited = {a["customer_id"] for a in expected.values() if a["rule"] == "referral"}

    def route(a: dict[str, Any]) -> bool:
        """A referrer's layer change: the one difference the design allows."""
        return (
            a["kind"] == "change"
            and a["detail"]["field"] == "layer"
            and (a["customer_id"] in credited)
        )

    strict_live = {i: a for i, a in live.items() if not route(a)}
    strict_expected = {i: a for i, a in expected.items() if not route(a)}
    assert strict_live.keys() == strict_expected.keys(), difference(live, expected)
    assert strict_live == strict_expected  # the same bytes, not only the same ids

    def final_layers(actions: list[dict[str, Any]]) -> dict[str, str]:
        return {a["customer_id"]: a["detail"]["to"] for a in actions if route(a)}

    assert final_layers(records) == final_layers(list(expected.values()))


async def run_to_the_end(
    settings: Settings, expected: dict[str, dict[str, Any]], log: Path
) -> list[dict[str, Any]]:
    """Start a worker over what is already produced and stop it once it has caught up."""
    worker = WorkerProcess(settings, log)
    worker.start()
    worker.wait_owns(ALL)
    await quiesce(settings)
    records = await live_actions(settings, expected)
    worker.terminate()
    return records
