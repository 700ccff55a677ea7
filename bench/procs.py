"""The processes the live benchmarks time (workers, the raw pipe, the Faust and Kafka Streams
peers), the input they read, and one timed run of a consumer group over it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from brokers import GIVE_UP, PARTITIONS, Broker, app, ends, produce_all, read, wait_consumed
from common import (
    BENCH,
    CACHE,
    PYTHON,
    SIM_CUSTOMERS,
    SIM_RATE,
    cpu_seconds,
    log,
    median,
    peak_rss_bytes,
    rel,
)

from siyu_stream.build import build
from siyu_stream.core.clock import format_rfc3339
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.embedded import free_port
from siyu_stream.kafka.jvm import find_java
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import KafkaConnection, Settings
from siyu_stream.simulate import SimConfig, generate
from siyu_stream.topology import INPUT_TYPES, TopicSpec
from siyu_stream.traffic import restamp

STOP_GRACE = 20.0  # seconds a process gets to stop after SIGTERM before it is killed
# bench/kstreams: `mvn -q -B -f bench/kstreams/pom.xml package` (the Makefile's bench bootstrap)
KSTREAMS_JAR = BENCH / "kstreams" / "target" / "kstreams-peer.jar"


class Child:
    """A timed child process, its output in `log_path`; ready once `ready_file` exists (the
    raw pipe and the Faust peer touch it once they have partitions, the Kafka Streams peer
    once it is RUNNING)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name, self.log_path = name, CACHE / f"{name}.log"
        self.ready_file = CACHE / f"{name}.ready"
        self.ready_file.unlink(missing_ok=True)
        with self.log_path.open("wb") as handle:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            msg = f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
            raise RuntimeError(msg)
        return self._ready()

    def _ready(self) -> bool:
        return self.ready_file.exists()

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; always reaped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self.ready_file.unlink(missing_ok=True)


class WorkerProc(Child):
    """`python -m siyu_stream.cli worker`, configured by environment, ready by /readyz."""

    def __init__(self, s: Settings, name: str, data_dir: Path | None = None) -> None:
        self.port = free_port()
        data_dir = data_dir or CACHE / f"worker-data-{name}"
        s = dataclasses.replace(s, web_port=self.port, data_dir=data_dir, log_level="info")
        values = {f.metadata["env"]: getattr(s, f.name) for f in dataclasses.fields(s)}
        env = {**os.environ, **{k: str(v) for k, v in values.items() if v is not None}}
        # the console script, not `python -m` from the checkout, whose source would come
        # first on the path: the worker runs the build this script runs (PYTHONPATH)
        script = str(Path(PYTHON).parent / "siyu-stream")
        super().__init__(f"worker-{name}", [script, "worker"], env)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                if r.status != 200:
                    return False
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                ran = orjson.loads(r.read())["build"]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        if ran != build():  # a figure of the other build would be misread
            msg = f"{self.name} runs the {ran} build, the bench the {build()} one"
            raise RuntimeError(msg)
        return True


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
    ids = {"event_id": f"{tag}-{n}", "customer_id": f"{tag}-c{n}", "order_id": f"{tag}-o{n}"}
    at = {"type": "order", "occurred_at": format_rfc3339(wall_clock()), "status": "paid"}
    return ids | at | {"amount": "199.00", "channel": "tmall"}


def workload(name: str, n: int) -> Iterator[tuple[str, bytes, bytes]]:
    """(short topic, key, value) of `n` records: the simulator's mix or first purchases."""
    if name == "sim":
        for record in generate(SimConfig(customers=SIM_CUSTOMERS, rate=SIM_RATE), n):
            yield record.topic, record.key.encode(), restamp(record, wall_clock())
    else:
        for i in range(n):
            event = first_purchase(i, "fp")
            yield "orders", event["customer_id"].encode(), orjson.dumps(event)


async def preproduce(broker: Broker, name: str, prefix: str, n: int) -> int:
    """N records of workload `name`, stamped with the time they are sent, onto the inputs."""
    s, _ = await app(broker, "bench-setup", prefix=prefix)
    records = ((s.topic(t), k, v, None) for t, k, v in workload(name, n))
    started = time.monotonic()
    await produce_all(broker.bootstrap, records, 256 * 1024)
    log(f"pre-produced {n:,} {name} records in {time.monotonic() - started:.1f} s")
    return n


Mode = tuple[str, str, int]
"""(consumer: raw, worker, faust or kstreams; guarantee; processes)"""


async def prepare(
    b: Broker, mode: Mode, group: str, prefix: str
) -> tuple[Callable[[str], list[Child]], list[str], list[str]]:
    """(`launch(name)`, which starts the processes of `mode` in consumer group `group`, again
    after a stop on the same data; the topics they consume; the topics they write)."""
    kind, guarantee, n = mode
    if kind == "worker":
        s, topology = await app(b, group, guarantee, prefix)

        def workers(name: str) -> list[Child]:
            return [
                WorkerProc(s, f"{name}-{i}", CACHE / f"worker-data-{group}-{i}") for i in range(n)
            ]

        return workers, [*topology.inputs, topology.commands], topology.outputs
    inputs, out = [f"{prefix}.{t}" for t in INPUT_TYPES], f"{prefix}.{kind}-out"
    await ensure_topics(KafkaConnection(b.bootstrap), [TopicSpec(out, PARTITIONS)])
    state_dir = CACHE / f"kstreams-state-{group}"
    if kind == "kstreams":  # a previous bench's stores, from another broker
        shutil.rmtree(state_dir, ignore_errors=True)

    def launch(name: str) -> list[Child]:
        ready = CACHE / f"{kind}-{name}.ready"
        if kind == "raw":  # raw aiokafka consume -> produce, nothing in between
            argv = [BENCH / "raw_pipe.py", b.bootstrap, group, out, ready, guarantee, *inputs]
            return [Child(f"raw-{name}", [PYTHON, *map(str, argv)])]
        if kind == "kstreams":  # bench/kstreams: the spend-tier rule in Kafka Streams
            env = {"KSTREAMS_PEER_BROKER": b.bootstrap, "KSTREAMS_PEER_APP_ID": group}
            env |= {"KSTREAMS_PEER_INPUTS": ",".join(inputs), "KSTREAMS_PEER_OUT": out}
            env |= {"KSTREAMS_PEER_READY": str(ready), "KSTREAMS_PEER_GUARANTEE": guarantee}
            env |= {"KSTREAMS_PEER_STATE_DIR": str(state_dir)}
            return [Child(f"kstreams-{name}", kstreams_argv(), {**os.environ, **env})]
        env = {"FAUST_PEER_BROKER": b.bootstrap, "FAUST_PEER_APP_ID": group, "FAUST_PEER_OUT": out}
        env |= {"FAUST_PEER_PREFIX": prefix, "FAUST_PEER_READY": str(ready)}
        argv = [PYTHON, str(BENCH / "faust_peer.py"), "worker", "--without-web", "-l", "info"]
        return [Child(f"faust-{name}", argv, {**os.environ, **env})]

    return launch, inputs, [out]


def kstreams_argv() -> list[str]:
    java = find_java()
    if java is None or not KSTREAMS_JAR.exists():
        msg = f"the Kafka Streams peer needs Java >= 17 and {rel(KSTREAMS_JAR)}: run `make bench`"
        raise RuntimeError(msg)
    # a fixed heap: the JVM would otherwise size it from the machine's RAM, not its share;
    # log times, to see where a run's seconds went
    heap, times = ["-Xms256m", "-Xmx512m"], "-Dorg.slf4j.simpleLogger.showDateTime=true"
    return [str(java[0]), *heap, times, "-jar", str(KSTREAMS_JAR)]


async def written(b: Broker, outputs: list[str], start: dict[Any, int]) -> dict[str, int]:
    """What a run wrote to `outputs` after `start` (committed records): all of it, and its
    spend-tier gifts (the one rule both the worker and the Kafka Streams peer apply)."""
    records = await read(b.bootstrap, outputs, start)
    gifts = 0
    for m in records:
        with contextlib.suppress(orjson.JSONDecodeError):
            action = orjson.loads(m.value or b"")
            if isinstance(action, dict) and action.get("kind") == "gift":
                gifts += action.get("rule") == "spend_tier"
    return {"outputs_written": len(records), "spend_tier_gifts": gifts}


async def time_consumer(
    b: Broker, mode: Mode, group: str, events: int, prefix: str, stall: float | None = None
) -> dict[str, Any]:
    """One new consumer group over the pre-produced input, timed from ready until its
    committed offsets reach the ends of what it consumes (or it stalls: no rate then)."""
    launch, topics, outputs = await prepare(b, mode, group, prefix)
    start = await ends(b.bootstrap, outputs)
    broker_cpu = cpu_seconds(b.pid)
    procs = launch(group)
    async with running(procs) as ready:
        # the CPU of starting up (imports, joining the group, restoring) is no event's
        at_ready = sum(p.cpu() for p in procs)
        inputs = [f"{prefix}.{t}" for t in INPUT_TYPES]  # what was pre-produced
        end, how = await wait_consumed(b.bootstrap, group, topics, outputs, stall, inputs)
        cpu = sum(p.cpu() for p in procs)
        # the largest process's: a bound that does not hold shows here first
        peak_rss = max(peak_rss_bytes(p.proc.pid) for p in procs)
    seconds, startup = end - ready, ready - procs[0].started
    broker_cpu = cpu_seconds(b.pid) - broker_cpu
    out = await written(b, outputs, start)  # after the timed part, the processes stopped
    kind, guarantee, workers = mode
    log(
        f"{kind} x{workers} {guarantee}: {events:,} in {seconds:.1f} s = {events / seconds:,.0f}/s"
        f" ({how['ended']}; ready after {startup:.1f} s; cpu {cpu:.1f} s, {cpu - at_ready:.1f} s"
        f" after ready, broker {broker_cpu:.1f};"
        f" wrote {out['outputs_written']:,}, {out['spend_tier_gifts']:,} spend-tier gifts)"
    )
    return {
        **{"kind": kind, "guarantee": guarantee, "workers": workers, "events": events},
        **{"startup_seconds": startup, "seconds": seconds, **how, "log": rel(procs[0].log_path)},
        **out,
        "events_per_s": events / seconds if how["ended"] == "consumed" else None,
        # the middle 80 % of the input: no start, no hold-back of the last records
        "steady_events_per_s": 0.8 * events / how["steady_seconds"]
        if "steady_seconds" in how
        else None,
        **{"process_cpu_seconds": cpu, "broker_cpu_seconds": broker_cpu},
        "process_after_ready_cpu_seconds": cpu - at_ready,
        "peak_rss_bytes": peak_rss,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode, keyed `kind-processes-guarantee`, in the order the modes ran."""
    modes: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        modes.setdefault(f"{r['kind']}-{r['workers']}-{r['guarantee']}", []).append(r)
    summary = {}
    for key, mine in modes.items():
        done = [r["events_per_s"] for r in mine if r["events_per_s"] is not None]
        steady = [r["steady_events_per_s"] for r in mine if r.get("steady_events_per_s")]
        summary[key] = {
            "events_per_s_median": median(done) if done else None,
            "events_per_s_runs": [r["events_per_s"] for r in mine],
            "steady_events_per_s_median": median(steady) if steady else None,
            "steady_events_per_s_runs": [r.get("steady_events_per_s") for r in mine],
            "startup_seconds_median": median([r["startup_seconds"] for r in mine]),
            "spend_tier_gifts_runs": [r["spend_tier_gifts"] for r in mine],
            "peak_rss_mib_max": max(r.get("peak_rss_bytes", 0) for r in mine) / 2**20,
            **{
                f"{who}_cpu_us_per_event_median": median(
                    [1e6 * r[f"{who}_cpu_seconds"] / r["events"] for r in mine]
                )
                for who in ("process", "broker", "process_after_ready")
            },
        }
    return summary
