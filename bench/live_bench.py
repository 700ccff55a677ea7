"""Live benchmarks on the local broker (noida-db via siyu_stream.kafka.embedded.LocalBroker).

    live_bench.py throughput [--events N] [--repeat R]
        pre-produce N simulator events (re-stamped to now) into the input topics, then, per
        repetition, time each of: raw aiokafka consume->produce (at_least_once, exactly_once),
        one worker (both guarantees), two workers (both guarantees) -- each in a new consumer
        group over the same input, from ready until the group's committed offsets reach the
        ends of the input (and command) topics.
    live_bench.py latency --guarantee G --rates R1,R2,... [--seconds S]
        one worker; first paid purchases of fresh customers at a fixed rate, each stamped with
        its send time; latency = arrival of its first action on an output topic (a
        read_committed consumer, matched by cause_event_id) minus the send time.
    live_bench.py profile [--events N] [--guarantee G]
        one worker under cProfile over N pre-produced simulator events: the functions and
        areas (siyu_stream, aiokafka, asyncio, ...) that take the live worker's CPU.
    live_bench.py idle [--seconds S]
        CPU used by an idle aiokafka consumer and by an idle worker (nothing to read).

Every broker and worker started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pstats
import time
from collections.abc import Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from common import (
    CACHE,
    SIM_CUSTOMERS,
    SIM_RATE,
    cpu_seconds,
    log,
    median,
    percentile,
    rel,
    script_main,
)
from procs import (
    PARTITIONS,
    Child,
    RawProc,
    WorkerProc,
    app,
    local_broker,
    produce_all,
    running,
    settings,
    wait_consumed,
)

from siyu_stream.core.clock import format_rfc3339
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.embedded import LocalBroker
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.simulate import SimConfig, generate
from siyu_stream.topology import TopicSpec, Topology
from siyu_stream.traffic import restamp


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


async def preproduce(broker: LocalBroker, name: str, prefix: str, n: int) -> dict[str, int]:
    """N records of workload `name`, stamped with the time they are sent, onto the inputs."""
    s, _ = await app(broker, "bench-setup", prefix=prefix)
    per_topic: dict[str, int] = {}

    def records() -> Iterator[tuple[str, bytes, bytes, int | None]]:
        for short, key, value in workload(name, n):
            topic = s.topic(short)
            per_topic[topic] = per_topic.get(topic, 0) + 1
            yield topic, key, value, None

    started = time.monotonic()
    await produce_all(broker.connection, records(), 256 * 1024)
    log(f"pre-produced {n:,} records in {time.monotonic() - started:.1f} s: {per_topic}")
    return per_topic


MODES = [
    (kind, guarantee, workers)
    for kind, workers in (("raw", 1), ("worker", 1), ("worker", 2))
    for guarantee in ("at_least_once", "exactly_once")
]
"""(consumer, guarantee, processes) timed by `throughput`, in this order."""


async def time_consumer(
    broker: LocalBroker, mode: tuple[str, str, int], group: str, events: int, prefix: str
) -> dict[str, Any]:
    kind, guarantee, workers = mode
    broker_cpu = cpu_seconds(broker.pid or 0)
    if kind == "raw":
        topics = list(Topology(settings(broker, group, guarantee, prefix)).inputs)
        out = f"{prefix}.raw-out"
        await ensure_topics(broker.connection, [TopicSpec(out, PARTITIONS)])
        procs: list[Child] = [RawProc(broker, group, out, guarantee, topics)]
    else:
        s, topology = await app(broker, group, guarantee, prefix)
        topics = [*topology.inputs, topology.commands]
        procs = [WorkerProc(s, f"{group}-{i}") for i in range(workers)]
    async with running(procs) as ready:
        seconds = await wait_consumed(broker.connection, group, topics) - ready
        cpu = sum(p.cpu() for p in procs)
    broker_cpu = cpu_seconds(broker.pid or 0) - broker_cpu
    startup = ready - procs[0].started
    log(
        f"{kind} x{workers} {guarantee}: {events:,} in {seconds:.1f} s = {events / seconds:,.0f}/s "
        f"(ready after {startup:.1f} s; cpu {cpu:.1f} s, broker cpu {broker_cpu:.1f} s)"
    )
    return {
        "kind": kind,
        "guarantee": guarantee,
        "workers": workers,
        "group": group,
        "events": events,
        "startup_seconds": startup,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "process_cpu_seconds": cpu,
        "broker_cpu_seconds": broker_cpu,
    }


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    modes = [m for m in MODES if f"{m[0]}{m[2]}" in args.modes.split(",")]
    prefix = "siyu" if args.workload == "sim" else args.workload.replace("-", "")
    with local_broker(f"throughput-{args.workload}") as broker:
        per_topic = await preproduce(broker, args.workload, prefix, args.events)
        events = sum(per_topic.values())
        for rep in range(args.repeat):
            for kind, guarantee, workers in modes:
                if workers > 1 and rep >= args.repeat_scaling:
                    continue
                group = f"{prefix}-{kind}{workers}-{guarantee.split('_')[0]}-{rep}"
                mode = (kind, guarantee, workers)
                runs.append(await time_consumer(broker, mode, group, events, prefix))
    summary = {}
    for mode in modes:
        mine = [r for r in runs if (r["kind"], r["guarantee"], r["workers"]) == mode]
        rates = [r["events_per_s"] for r in mine]
        summary[f"{mode[0]}-{mode[2]}-{mode[1]}"] = {
            "events_per_s_median": median(rates),
            "events_per_s_runs": rates,
            "startup_seconds_median": median([r["startup_seconds"] for r in mine]),
            **{
                f"{who}_cpu_us_per_event_median": median(
                    [1e6 * r[f"{who}_cpu_seconds"] / r["events"] for r in mine]
                )
                for who in ("process", "broker")
            },
        }
    return {
        "workload": args.workload,
        "events": events,
        "per_topic": per_topic,
        "summary": summary,
        "runs": runs,
    }


async def profile(args: argparse.Namespace) -> dict[str, Any]:
    """One worker under cProfile over pre-produced simulator events: where live CPU goes."""
    out = CACHE / "profile-worker.prof"
    out.unlink(missing_ok=True)
    with local_broker("profile-worker") as broker:
        events = sum((await preproduce(broker, "sim", "siyu", args.events)).values())
        s, topology = await app(broker, "profiled", args.guarantee)
        async with running([WorkerProc(s, "profiled", profile=out)]):
            await wait_consumed(broker.connection, s.app_id, [*topology.inputs, topology.commands])
    stats = pstats.Stats(str(out))
    total = stats.total_tt  # type: ignore[attr-defined]  # set by Stats, not in the stubs
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    top = [
        {
            "function": name,
            "where": f"{rel(file)}:{line}" if file.startswith("/") else file,
            "calls": calls,
            "self_seconds": tottime,
            "percent": 100 * tottime / total,
        }
        for (file, line, name), (_, calls, tottime, _, _) in rows[: args.top]
    ]
    by_area: dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, _) in rows:
        area = _area(file, name)
        by_area[area] = by_area.get(area, 0.0) + tottime
    log(f"worker profile over {events:,} events: {total:.1f} s profiled")
    return {
        "events": events,
        "guarantee": args.guarantee,
        "profiler": "cProfile (deterministic; slows the worker, so no rate is reported)",
        "profiled_seconds": total,
        "top_self": top,
        "by_area_percent": {k: 100 * v / total for k, v in sorted(by_area.items())},
        "profile_file": rel(out),
    }


def _area(file: str, name: str) -> str:
    """Where a profiled function belongs; C functions have no file, only a name."""
    if "epoll" in name:
        return "waiting for the broker (epoll)"
    if file == "<string>" and name.startswith("validate_"):
        return "fastjsonschema (generated validators)"
    if "orjson" in name:
        return "orjson"
    areas = ("siyu_stream", "aiokafka", "asyncio", "prometheus_client")
    return next((a for a in areas if a in file), "other (stdlib, builtins, C)")


# ------------------------------------------------------------------ latency


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    with local_broker(f"latency-{args.guarantee}") as broker:
        s, topology = await app(broker, f"lat-{args.guarantee.split('_')[0]}", args.guarantee)
        worker = WorkerProc(s, f"latency-{args.guarantee}")
        async with running([worker]):
            for i, rate in enumerate(float(r) for r in args.rates.split(",")):
                result = await latency_at(s, topology, rate, args.seconds, args.warmup, f"r{i}")
                result["worker_cpu_seconds_total"] = worker.cpu()
                results.append(result)
    return {"guarantee": args.guarantee, "levels": results}


FETCH_PAUSE = 0.005


async def latency_at(
    s: Settings, topology: Topology, rate: float, seconds: float, warmup: float, tag: str
) -> dict[str, Any]:
    outputs = [TopicPartition(t, p) for t in topology.outputs for p in range(PARTITIONS)]
    cpu_started, wall_started = time.process_time(), time.monotonic()
    consumer = AIOKafkaConsumer(
        **client_options(s.kafka),
        isolation_level="read_committed",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    producer = AIOKafkaProducer(**client_options(s.kafka), acks="all")
    await consumer.start()
    await producer.start()
    consumer.assign(outputs)
    await consumer.seek_to_end(*outputs)
    for tp in outputs:
        await consumer.position(tp)  # resolve "end" now, before anything is sent
    sent: dict[str, float] = {}
    latencies: list[float] = []
    measured_from = time.monotonic() + warmup
    stop_sending = asyncio.Event()

    async def consume() -> None:
        # noida-db answers fetches at once, so an always-fetching consumer spins on a core
        # that the worker and the broker need (measured: 0.7 cores in this generator).
        # Fetch in short windows with a pause between: a measured latency can only grow,
        # by at most FETCH_PAUSE.
        while True:
            batch = await consumer.getmany(timeout_ms=5, max_records=10_000)
            consumer.pause(*outputs)
            now = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    cause = orjson.loads(m.value).get("cause_event_id")
                    t0 = sent.pop(cause, None)
                    if t0 is not None and t0 >= measured_from:
                        latencies.append(1000 * (now - t0))
            if stop_sending.is_set() and not sent:
                return
            await asyncio.sleep(FETCH_PAUSE)
            consumer.resume(*outputs)

    async def send() -> tuple[int, float]:
        """(events sent, seconds they took)"""
        n = 0
        started = time.monotonic()
        end = started + warmup + seconds
        while (now := time.monotonic()) < end:
            for _ in range(max(int((now - started) * rate) - n, 0)):
                n += 1
                event = first_purchase(n, f"lat-{tag}")
                sent[event["event_id"]] = time.monotonic()
                key = event["customer_id"].encode()
                await producer.send(s.topic("orders"), orjson.dumps(event), key=key)
            await asyncio.sleep(0.002)
        return n, time.monotonic() - started

    reader = asyncio.create_task(consume())
    try:
        total, sending = await send()
        await producer.flush()
        stop_sending.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), timeout=30)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await producer.stop()
        await consumer.stop()
    lat = sorted(latencies)
    result = {
        "target_rate": rate,
        "achieved_send_rate": total / sending,
        "sent": total,
        "measured": len(lat),
        "unmatched_after_30s": len(sent),
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "max_ms": lat[-1] if lat else float("nan"),
        # the load generator's own share of a core: it competes with the worker and broker
        "generator_cores": (time.process_time() - cpu_started) / (time.monotonic() - wall_started),
    }
    log(
        f"latency {s.guarantee} @ {rate:,.0f}/s (sent {total / sending:,.0f}/s): p50 "
        f"{result['p50_ms']:.0f} p95 {result['p95_ms']:.0f} p99 {result['p99_ms']:.0f} ms; "
        f"{len(sent)} unmatched"
    )
    return result


# ------------------------------------------------------------------ idle consumers


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    """CPU used by consumers with nothing to read: a plain aiokafka consumer, and a worker."""
    out: dict[str, Any] = {"seconds": args.seconds}
    with local_broker("idle") as broker:
        s, topology = await app(broker, "idle")
        tps = [TopicPartition(t, p) for t in topology.inputs for p in range(PARTITIONS)]
        # default fetch_max_wait_ms=500: the broker should hold an empty fetch that long
        consumer = AIOKafkaConsumer(**client_options(s.kafka), isolation_level="read_committed")
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        await consumer.getmany(timeout_ms=500)
        t0, cpu0, b0 = time.monotonic(), time.process_time(), cpu_seconds(broker.pid or 0)
        while time.monotonic() < t0 + args.seconds:
            await consumer.getmany(timeout_ms=1000)
        elapsed = time.monotonic() - t0
        out["plain_consumer_cores"] = (time.process_time() - cpu0) / elapsed
        out["broker_cores_for_plain_consumer"] = (cpu_seconds(broker.pid or 0) - b0) / elapsed
        await consumer.stop()
        worker = WorkerProc(s, "idle")
        async with running([worker]):
            await asyncio.sleep(1.0)
            t0, w0, b0 = time.monotonic(), worker.cpu(), cpu_seconds(broker.pid or 0)
            await asyncio.sleep(args.seconds)
            elapsed = time.monotonic() - t0
            out["idle_worker_cores"] = (worker.cpu() - w0) / elapsed
            out["broker_cores_for_idle_worker"] = (cpu_seconds(broker.pid or 0) - b0) / elapsed
    log(
        f"idle: plain consumer {out['plain_consumer_cores']:.2f} cores, idle worker "
        f"{out['idle_worker_cores']:.2f} cores"
    )
    return out


def main() -> None:
    guarantee = {"--guarantee": "at_least_once"}
    script_main(
        __doc__,
        {
            "throughput": (
                throughput,
                # --modes: of raw1, worker1, worker2; --repeat-scaling: of the 2-worker runs
                {"--events": 200_000, "--repeat": 3, "--repeat-scaling": 1, "--workload": "sim"}
                | {"--modes": "raw1,worker1,worker2"},
            ),
            "profile": (profile, {"--events": 100_000, **guarantee, "--top": 15}),
            "latency": (
                latency,
                {**guarantee, "--rates": "1000", "--seconds": 15.0, "--warmup": 2.0},
            ),
            "idle": (idle, {"--seconds": 5.0}),
        },
    )


if __name__ == "__main__":
    main()
