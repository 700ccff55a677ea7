"""The local broker and the processes the live benchmarks time: workers, the raw pipe."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from common import BENCH, CACHE, PYTHON, cpu_seconds, log, rel, stop_process

from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.embedded import LocalBroker, free_port
from siyu_stream.settings import KafkaConnection, Settings
from siyu_stream.topology import Topology

PARTITIONS = 4
GIVE_UP = 600.0  # a broken run fails instead of hanging; not a timing claim
STOP_GRACE = 20.0
"""Seconds a recovery worker gets to stop after SIGTERM before it is killed."""
IN_FLIGHT = 10_000


@contextlib.contextmanager
def local_broker(name: str) -> Iterator[LocalBroker]:
    data = CACHE / f"broker-{name}"
    shutil.rmtree(data, ignore_errors=True)
    broker = LocalBroker(data)
    broker.start()
    log(f"noida-db pid {broker.pid} on {broker.bootstrap} ({rel(data)})")
    try:
        yield broker
    finally:
        broker.stop()
        shutil.rmtree(data, ignore_errors=True)


def settings(
    broker: LocalBroker, app_id: str, guarantee: str = "at_least_once", prefix: str = "siyu"
) -> Settings:
    return Settings(
        broker=broker.bootstrap,
        app_id=app_id,
        topic_prefix=prefix,
        partitions=PARTITIONS,
        guarantee=guarantee,
        api_auth=False,
        web_port=0,
    )


async def app(
    broker: LocalBroker, app_id: str, guarantee: str = "at_least_once", prefix: str = "siyu"
) -> tuple[Settings, Topology]:
    """An app's settings and topology, its topics created."""
    s = settings(broker, app_id, guarantee, prefix)
    await ensure_topics(broker.connection, Topology(s).specs())
    return s, Topology(s)


class Child:
    """A timed child process, its output in `log_path`."""

    what = "child"

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.log_path = CACHE / f"{name}.log"
        self.log_path.unlink(missing_ok=True)
        with self.log_path.open("wb") as handle:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            msg = f"{self.what} exited with {self.proc.returncode}; see {self.log_path}"
            raise RuntimeError(msg)
        return self._ready()

    def _ready(self) -> bool:
        raise NotImplementedError

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self, grace: float = 15.0) -> None:
        stop_process(self.proc, grace)


class WorkerProc(Child):
    """`python -m siyu_stream.cli worker` as a child process with its own HTTP port."""

    what = "worker"

    def __init__(
        self, s: Settings, name: str, data_dir: Path | None = None, profile: Path | None = None
    ) -> None:
        self.port = free_port()
        data_dir = data_dir or CACHE / f"worker-data-{name}"
        s = dataclasses.replace(s, web_port=self.port, data_dir=data_dir, log_level="info")
        values = {f.metadata["env"]: getattr(s, f.name) for f in dataclasses.fields(s)}
        env = {**os.environ, **{k: str(v) for k, v in values.items() if v is not None}}
        profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
        argv = [PYTHON, *profiler, "-m", "siyu_stream.cli", "worker"]
        super().__init__(f"worker-{name}", argv, env)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


class RawProc(Child):
    """bench/raw_pipe.py: raw aiokafka consume -> produce, ready once it has partitions."""

    what = "raw pipe"

    def __init__(
        self, broker: LocalBroker, group: str, out: str, guarantee: str, topics: list[str]
    ) -> None:
        self.ready_file = CACHE / f"raw-{group}.ready"
        self.ready_file.unlink(missing_ok=True)
        pipe = [str(BENCH / "raw_pipe.py"), broker.bootstrap, group, out, str(self.ready_file)]
        super().__init__(f"raw-{group}", [PYTHON, *pipe, guarantee, *topics])

    def _ready(self) -> bool:
        return self.ready_file.exists()

    def stop(self, grace: float = 15.0) -> None:
        super().stop(grace)
        self.ready_file.unlink(missing_ok=True)


@contextlib.asynccontextmanager
async def running(procs: list[Child]) -> AsyncIterator[float]:
    """The time the first of `procs` became ready; all stopped on the way out."""
    try:
        yield await wait_ready(procs)
    finally:
        for p in procs:
            p.stop()


async def wait_ready(procs: list[Child]) -> float:
    """Monotonic time at which the first of `procs` became ready."""
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        if any(p.ready() for p in procs):
            return time.monotonic()
        await asyncio.sleep(0.02)
    msg = "not ready in time"
    raise RuntimeError(msg)


async def wait_consumed(connection: KafkaConnection, group: str, topics: list[str]) -> float:
    """Poll the group's committed offsets until they reach the current ends of `topics`;
    the monotonic time they did.

    Two requests per poll (the group's offsets, the end offsets), every 50 ms: light enough
    not to load the broker the consumers under test share the CPU with.
    """
    tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    admin = AIOKafkaAdminClient(**client_options(connection))
    consumer = AIOKafkaConsumer(**client_options(connection), enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + GIVE_UP
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(tps)
            offsets = await admin.list_consumer_group_offsets(group)
            if all(offsets[tp].offset >= ends[tp] if tp in offsets else not ends[tp] for tp in tps):
                return time.monotonic()
            await asyncio.sleep(0.05)
        msg = f"group {group} did not consume {topics} in {GIVE_UP} s"
        raise RuntimeError(msg)
    finally:
        await consumer.stop()
        await admin.close()


async def produce_all(
    connection: KafkaConnection,
    records: Iterable[tuple[str, bytes, bytes, int | None]],
    batch_bytes: int,
) -> None:
    """Send (topic, key, value, partition) records as fast as the broker takes them, with
    at most IN_FLIGHT unacknowledged: benchmark set-up, not a measured figure."""
    producer = AIOKafkaProducer(
        **client_options(connection), linger_ms=20, max_batch_size=batch_bytes, acks="all"
    )
    await producer.start()
    try:
        pending = []
        for topic, key, value, partition in records:
            pending.append(await producer.send(topic, value, key=key, partition=partition))
            if len(pending) >= IN_FLIGHT:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
