"""The processes the live benchmarks time (workers, the raw pipe, the Faust peer), the input
they read, and one timed run of a consumer group over it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
from brokers import GIVE_UP, PARTITIONS, Broker, app, produce_all, wait_consumed
from common import BENCH, CACHE, PYTHON, SIM_CUSTOMERS, SIM_RATE, cpu_seconds, log, median, rel

from siyu_stream.core.clock import format_rfc3339
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.embedded import free_port
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import KafkaConnection, Settings
from siyu_stream.simulate import SimConfig, generate
from siyu_stream.topology import INPUT_TYPES, TopicSpec
from siyu_stream.traffic import restamp

STOP_GRACE = 20.0
"""Seconds a worker being restarted gets to stop after SIGTERM before it is killed."""


class Child:
    """A timed child process, its output in `log_path`; ready once `_ready` says so."""

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
        """SIGTERM, then SIGKILL after `grace` seconds; always reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


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
        super().__init__(
            f"worker-{name}", [PYTHON, *profiler, "-m", "siyu_stream.cli", "worker"], env
        )

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False


class FileReady(Child):
    """A child that touches CACHE/NAME.ready once it has partitions (the raw pipe, the Faust
    peer): `ready_file(NAME)` goes in its command line or environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.ready_file = ready_file(name)
        self.ready_file.unlink(missing_ok=True)
        super().__init__(name, argv, env)

    def _ready(self) -> bool:
        return self.ready_file.exists()

    def stop(self, grace: float = 15.0) -> None:
        super().stop(grace)
        self.ready_file.unlink(missing_ok=True)


def ready_file(name: str) -> Path:
    return CACHE / f"{name}.ready"


def raw_pipe(broker: Broker, name: str, group: str, out: str, g: str, topics: list[str]) -> Child:
    """bench/raw_pipe.py: raw aiokafka consume -> produce, nothing in between."""
    pipe = [
        str(BENCH / "raw_pipe.py"),
        broker.bootstrap,
        group,
        out,
        str(ready_file(f"raw-{name}")),
    ]
    return FileReady(f"raw-{name}", [PYTHON, *pipe, g, *topics])


def faust_peer(broker: Broker, name: str, group: str, prefix: str, out: str) -> Child:
    """bench/faust_peer.py as a `faust worker` in consumer group `group`."""
    env = {**os.environ, "FAUST_PEER_BROKER": broker.bootstrap, "FAUST_PEER_APP_ID": group}
    env |= {"FAUST_PEER_PREFIX": prefix, "FAUST_PEER_OUT": out}
    env["FAUST_PEER_READY"] = str(ready_file(f"faust-{name}"))
    argv = [PYTHON, str(BENCH / "faust_peer.py"), "worker", "--without-web", "-l", "info"]
    return FileReady(f"faust-{name}", argv, env)


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


def first_purchase(n: int, tag: str) -> dict[str, Any]:
    """A paid purchase by a customer never seen before: at least a layer change follows."""
    return {
        "event_id": f"{tag}-{n}",
        "type": "order",
        "customer_id": f"{tag}-c{n}",
        "occurred_at": format_rfc3339(wall_clock()),
        "order_id": f"{tag}-o{n}",
        "status": "paid",
        "amount": "199.00",
        "channel": "tmall",
    }


def workload(name: str, n: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(short topic, key, value) of `n` records: the simulator's mix or first purchases."""
    if name == "sim":
        for record in generate(SimConfig(customers=SIM_CUSTOMERS, rate=SIM_RATE), n):
            yield record.topic, record.key.encode(), restamp(record, wall_clock())
    else:
        for i in range(n):
            event = first_purchase(i, "fp")
            yield "orders", event["customer_id"].encode(), orjson.dumps(event)


async def preproduce(broker: Broker, name: str, prefix: str, n: int) -> dict[str, int]:
    """N records of workload `name`, stamped with the time they are sent, onto the inputs."""
    s, _ = await app(broker, "bench-setup", prefix=prefix)
    per_topic: dict[str, int] = {}

    def records() -> Iterator[tuple[str, bytes, bytes, int | None]]:
        for short, key, value in workload(name, n):
            per_topic[s.topic(short)] = per_topic.get(s.topic(short), 0) + 1
            yield s.topic(short), key, value, None

    started = time.monotonic()
    await produce_all(broker.bootstrap, records(), 256 * 1024)
    log(f"pre-produced {n:,} records in {time.monotonic() - started:.1f} s: {per_topic}")
    return per_topic


Mode = tuple[str, str, int]
"""(consumer kind: raw, worker or faust; guarantee; processes)"""


async def prepare(broker: Broker, mode: Mode, group: str, prefix: str) -> Any:
    """The topics of `mode` in consumer group `group`: (`launch(name)`, which starts its
    processes, again after a stop, a worker on the same data dir; the topics they consume;
    the topics they write)."""
    kind, guarantee, n = mode
    if kind == "worker":
        s, topology = await app(broker, group, guarantee, prefix)

        def workers(name: str) -> list[Child]:
            data = [CACHE / f"worker-data-{group}-{i}" for i in range(n)]
            return [WorkerProc(s, f"{name}-{i}", data[i]) for i in range(n)]

        return workers, [*topology.inputs, topology.commands], topology.outputs
    inputs, out = [f"{prefix}.{t}" for t in INPUT_TYPES], f"{prefix}.{kind}-out"
    await ensure_topics(KafkaConnection(broker.bootstrap), [TopicSpec(out, PARTITIONS)])

    def launch(name: str) -> list[Child]:
        if kind == "raw":
            return [raw_pipe(broker, name, group, out, guarantee, inputs)]
        return [faust_peer(broker, name, group, prefix, out)]

    return launch, inputs, [out]


async def time_consumer(
    broker: Broker, mode: Mode, group: str, events: int, prefix: str, stall: float | None = None
) -> dict[str, Any]:
    """One new consumer group over the pre-produced input, timed from ready until its
    committed offsets reach the ends of what it consumes (or it stalls: no rate then)."""
    broker_cpu = cpu_seconds(broker.pid)
    launch, topics, outputs = await prepare(broker, mode, group, prefix)
    procs = launch(group)
    async with running(procs) as ready:
        end, how = await wait_consumed(broker.bootstrap, group, topics, outputs, stall)
        cpu = sum(p.cpu() for p in procs)
    seconds, startup = end - ready, ready - procs[0].started
    broker_cpu = cpu_seconds(broker.pid) - broker_cpu
    kind, guarantee, workers = mode
    log(
        f"{kind} x{workers} {guarantee}: {events:,} in {seconds:.1f} s = {events / seconds:,.0f}/s"
        f" ({how['ended']}; ready after {startup:.1f} s; cpu {cpu:.1f} s, broker {broker_cpu:.1f})"
    )
    consumed = how["ended"] == "consumed"
    return {
        **{"kind": kind, "guarantee": guarantee, "workers": workers},
        **{"group": group, "events": events, "startup_seconds": startup, "seconds": seconds},
        "events_per_s": events / seconds if consumed else None,
        **{"process_cpu_seconds": cpu, "broker_cpu_seconds": broker_cpu, **how},
        "log": rel(procs[0].log_path),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode, keyed `kind-processes-guarantee`, in the order the modes ran."""
    modes: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        modes.setdefault(f"{r['kind']}-{r['workers']}-{r['guarantee']}", []).append(r)
    summary = {}
    for key, mine in modes.items():
        rates = [r["events_per_s"] for r in mine]
        done = [x for x in rates if x is not None]
        summary[key] = {
            "events_per_s_median": median(done) if done else None,
            "events_per_s_runs": rates,
            "startup_seconds_median": median([r["startup_seconds"] for r in mine]),
            **{
                f"{who}_cpu_us_per_event_median": median(
                    [1e6 * r[f"{who}_cpu_seconds"] / r["events"] for r in mine]
                )
                for who in ("process", "broker")
            },
        }
    return summary
