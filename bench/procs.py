"""The local broker and the processes the live benchmarks time: workers, the raw pipe."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from common import (
    CACHE,
    PYTHON,
    cpu_seconds,
    log,
    rel,
    stop_process,
)

from siyu_stream.broker import LocalBroker, free_port
from siyu_stream.settings import Settings

PARTITIONS = 4
GIVE_UP = 600.0  # a broken run fails instead of hanging; not a timing claim
BENCH_DIR = Path(__file__).resolve().parent
STOP_GRACE = 20.0
"""Seconds a recovery worker gets to stop after SIGTERM before it is killed."""


# ------------------------------------------------------------------ broker and workers


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


class WorkerProc:
    """`python -m siyu_stream.cli worker` as a child process with its own HTTP port."""

    def __init__(
        self, s: Settings, name: str, data_dir: Path | None = None, profile: Path | None = None
    ) -> None:
        self.settings = s
        self.port = free_port()
        self.log_path = CACHE / f"worker-{name}.log"
        self.log_path.unlink(missing_ok=True)
        env = {
            **os.environ,
            "SIYU_BROKER": s.broker,
            "SIYU_APP_ID": s.app_id,
            "SIYU_TOPIC_PREFIX": s.topic_prefix,
            "SIYU_PARTITIONS": str(s.partitions),
            "SIYU_GUARANTEE": s.guarantee,
            "SIYU_API_AUTH": "false",
            "SIYU_WEB_PORT": str(self.port),
            "SIYU_DATA_DIR": str(data_dir or CACHE / f"worker-data-{name}"),
            "SIYU_STORE": s.store,
            "SIYU_LOG_LEVEL": "info",
        }
        with self.log_path.open("wb") as handle:
            self.started = time.monotonic()
            profiler = ["-m", "cProfile", "-o", str(profile)] if profile else []
            self.proc = subprocess.Popen(
                [PYTHON, *profiler, "-m", "siyu_stream.cli", "worker"],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            msg = f"worker exited with {self.proc.returncode}; see {self.log_path}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self, grace: float = 15.0) -> None:
        stop_process(self.proc, grace)


class RawProc:
    def __init__(
        self, broker: LocalBroker, group: str, out: str, guarantee: str, topics: list[str]
    ) -> None:
        self.ready_file = CACHE / f"raw-{group}.ready"
        self.ready_file.unlink(missing_ok=True)
        self.log_path = CACHE / f"raw-{group}.log"
        with self.log_path.open("wb") as handle:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                [
                    PYTHON,
                    str(BENCH_DIR / "raw_pipe.py"),
                    broker.bootstrap,
                    group,
                    out,
                    str(self.ready_file),
                    guarantee,
                    *topics,
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            msg = f"raw pipe exited with {self.proc.returncode}; see {self.log_path}"
            raise RuntimeError(msg)
        return self.ready_file.exists()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)
        self.ready_file.unlink(missing_ok=True)


async def wait_ready(procs: list[Any]) -> float:
    """Monotonic time at which the first of `procs` became ready."""
    deadline = time.monotonic() + GIVE_UP
    while time.monotonic() < deadline:
        if any(p.ready() for p in procs):
            return time.monotonic()
        await asyncio.sleep(0.02)
    msg = "not ready in time"
    raise RuntimeError(msg)


async def wait_consumed(broker: str, group: str, topics: list[str]) -> tuple[float, int]:
    """Poll the group's committed offsets until they reach the current ends of `topics`.

    Two requests per poll (the group's offsets, the end offsets), every 50 ms: light enough
    not to load the broker the consumers under test share the CPU with.
    """
    tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + GIVE_UP
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(tps)
            offsets = await admin.list_consumer_group_offsets(group)
            committed = {tp: offsets[tp].offset if tp in offsets else 0 for tp in tps}
            if all(committed[tp] >= ends[tp] for tp in tps):
                return time.monotonic(), sum(ends.values())
            await asyncio.sleep(0.05)
        msg = f"group {group} did not consume {topics} in {GIVE_UP} s"
        raise RuntimeError(msg)
    finally:
        await consumer.stop()
        await admin.close()


# ------------------------------------------------------------------ throughput


def rss(pid: int) -> int:
    from common import rss_bytes  # noqa: PLC0415

    try:
        return rss_bytes(pid)
    except FileNotFoundError:
        return 0


async def produce_all(
    bootstrap: str, records: Iterable[tuple[str, bytes, bytes, int | None]], batch_bytes: int
) -> None:
    """Send (topic, key, value, partition) records as fast as the broker takes them, with
    at most IN_FLIGHT unacknowledged: benchmark set-up, not a measured figure."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=batch_bytes, acks="all"
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


IN_FLIGHT = 10_000
