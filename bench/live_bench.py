"""Live benchmarks on a local broker (bench/brokers.py; noida-db unless --broker).

    live_bench.py throughput [--events N] [--repeat R] [--workload sim|first-purchase]
        pre-produce N events (re-stamped to now), then, per repetition, time raw aiokafka
        consume->produce, one worker and two workers, under both guarantees, each in a new
        consumer group over the same input: from ready until the group's committed offsets
        reach the ends of the input (and command) topics.
    live_bench.py latency --guarantee G --rates R1,R2,... [--seconds S]
        one worker; first paid purchases of new customers at fixed rates, each stamped with
        its send time; latency = arrival of its first action (read_committed, matched by
        cause_event_id) minus the send time.
    live_bench.py profile [--events N]
        one worker under cProfile over N pre-produced simulator events: its CPU by function
        and by area (siyu_stream, aiokafka, asyncio, ...).
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
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from brokers import app, broker, consumer, partitions, wait_consumed
from common import CACHE, cpu_seconds, log, percentile, rel, script_main
from procs import WorkerProc, first_purchase, preproduce, running, summarize, time_consumer

from siyu_stream.kafka.client import client_options
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

MODES = [
    (kind, guarantee, workers)
    for kind, workers in (("raw", 1), ("worker", 1), ("worker", 2))
    for guarantee in ("at_least_once", "exactly_once")
]
"""(consumer, guarantee, processes) timed by `throughput`, in this order."""


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    modes = [m for m in MODES if f"{m[0]}{m[2]}" in args.modes.split(",")]
    prefix = "siyu" if args.workload == "sim" else args.workload.replace("-", "")
    with broker(f"throughput-{args.workload}", args.broker) as b:
        per_topic = await preproduce(b, args.workload, prefix, args.events)
        events = sum(per_topic.values())
        for rep in range(args.repeat):
            for kind, guarantee, workers in modes:
                if workers > 1 and rep >= args.repeat_scaling:
                    continue
                group = f"{prefix}-{kind}{workers}-{guarantee.split('_')[0]}-{rep}"
                mode = (kind, guarantee, workers)
                runs.append(await time_consumer(b, mode, group, events, prefix))
    summary = summarize(runs)
    return {"workload": args.workload, "events": events, "summary": summary, "runs": runs}


async def profile(args: argparse.Namespace) -> dict[str, Any]:
    """One worker under cProfile over pre-produced simulator events: where live CPU goes."""
    out = CACHE / "profile-worker.prof"
    out.unlink(missing_ok=True)
    with broker("profile-worker", args.broker) as b:
        events = sum((await preproduce(b, "sim", "siyu", args.events)).values())
        s, topology = await app(b, "profiled", args.guarantee)
        async with running([WorkerProc(s, "profiled", profile=out)]):
            topics = [*topology.inputs, topology.commands]
            await wait_consumed(b.bootstrap, s.app_id, topics, [], None)
    stats = pstats.Stats(str(out))
    total = stats.total_tt  # type: ignore[attr-defined]  # set by Stats, not in the stubs
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    for (file, _, name), (_, _, tottime, _, _) in rows:
        by_area[_area(file, name)] = by_area.get(_area(file, name), 0.0) + tottime
    log(f"worker profile over {events:,} events: {total:.1f} s profiled")
    return {
        "events": events,
        "profiler": "cProfile (deterministic; slows the worker, so no rate is reported)",
        "profiled_seconds": total,
        "top_self": [
            {"function": name, "where": f"{rel(file)}:{line}", "percent": 100 * tottime / total}
            for (file, line, name), (_, _, tottime, _, _) in rows[: args.top]
        ],
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


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    results = []
    with broker(f"latency-{args.guarantee}", args.broker) as b:
        s, topology = await app(b, f"lat-{args.guarantee.split('_')[0]}", args.guarantee)
        async with running([WorkerProc(s, f"latency-{args.guarantee}")]):
            for i, rate in enumerate(float(r) for r in args.rates.split(",")):
                results.append(await latency_at(s, topology, rate, args, f"r{i}"))
    return {"guarantee": args.guarantee, "levels": results}


FETCH_PAUSE = 0.005


async def latency_at(
    s: Settings, topology: Topology, rate: float, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    outputs = partitions(topology.outputs)
    cpu_started, wall_started = time.process_time(), time.monotonic()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    measured_from = time.monotonic() + args.warmup
    stop_sending = asyncio.Event()

    async def consume(c: Any) -> None:
        # noida-db answers fetches at once, so an always-fetching consumer spins on a core
        # that the worker and the broker need (measured: 0.7 cores in this generator).
        # Fetch in short windows with a pause between: a measured latency can only grow,
        # by at most FETCH_PAUSE.
        while True:
            batch = await c.getmany(timeout_ms=5, max_records=10_000)
            c.pause(*outputs)
            now = time.monotonic()
            for m in (m for msgs in batch.values() for m in msgs):
                t0 = sent.pop(orjson.loads(m.value).get("cause_event_id"), None)
                if t0 is not None and t0 >= measured_from:
                    latencies.append(1000 * (now - t0))
            if stop_sending.is_set() and not sent:
                return
            await asyncio.sleep(FETCH_PAUSE)
            c.resume(*outputs)

    async def send(producer: AIOKafkaProducer) -> tuple[int, float]:
        """(events sent, seconds they took)"""
        n, started = 0, time.monotonic()
        while (now := time.monotonic()) < started + args.warmup + args.seconds:
            for _ in range(max(int((now - started) * rate) - n, 0)):
                n += 1
                event = first_purchase(n, f"lat-{tag}")
                sent[event["event_id"]] = time.monotonic()
                key = event["customer_id"].encode()
                await producer.send(s.topic("orders"), orjson.dumps(event), key=key)
            await asyncio.sleep(0.002)
        return n, time.monotonic() - started

    read = {"isolation_level": "read_committed", "fetch_max_wait_ms": 10}
    producer = AIOKafkaProducer(**client_options(s.kafka), acks="all")
    async with consumer(s.broker, **read) as c:
        c.assign(outputs)
        await c.seek_to_end(*outputs)
        for tp in outputs:
            await c.position(tp)  # resolve "end" now, before anything is sent
        await producer.start()
        reader = asyncio.create_task(consume(c))
        try:
            total, sending = await send(producer)
            await producer.flush()
            stop_sending.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), timeout=30)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await producer.stop()
    lat = sorted(latencies)
    result = {
        "target_rate": rate,
        "achieved_send_rate": total / sending,
        "sent": total,
        "measured": len(lat),
        "unmatched_after_30s": len(sent),
        **{f"p{q}_ms": percentile(lat, q) for q in (50, 95, 99)},
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


async def idle(args: argparse.Namespace) -> dict[str, Any]:
    """CPU used by consumers with nothing to read: a plain aiokafka consumer, and a worker."""
    out: dict[str, Any] = {"seconds": args.seconds}

    async def cores(who: str, cpu: Callable[[], float], pid: int | None, wait: Any) -> None:
        """`who`'s CPU and the broker's while `wait` runs, in cores."""
        t0, c0, b0 = time.monotonic(), cpu(), cpu_seconds(pid)
        await wait
        elapsed = time.monotonic() - t0
        out[f"{who}_cores"] = (cpu() - c0) / elapsed
        out[f"broker_cores_for_{who}"] = (cpu_seconds(pid) - b0) / elapsed

    async def poll(c: Any) -> None:
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            await c.getmany(timeout_ms=1000)

    with broker("idle", args.broker) as b:
        s, topology = await app(b, "idle")
        tps = partitions(topology.inputs)
        # default fetch_max_wait_ms=500: the broker should hold an empty fetch that long
        async with consumer(s.broker, isolation_level="read_committed") as c:
            c.assign(tps)
            await c.seek_to_end(*tps)
            await c.getmany(timeout_ms=500)
            await cores("plain_consumer", time.process_time, b.pid, poll(c))
        worker = WorkerProc(s, "idle")
        async with running([worker]):
            await asyncio.sleep(1.0)
            await cores("idle_worker", worker.cpu, b.pid, asyncio.sleep(args.seconds))
    plain, busy = out["plain_consumer_cores"], out["idle_worker_cores"]
    log(f"idle: plain consumer {plain:.2f} cores, idle worker {busy:.2f} cores")
    return out


def main() -> None:
    on = {"--broker": "noida-db"}
    script_main(
        __doc__,
        {
            "throughput": (
                throughput,
                # --modes: of raw1, worker1, worker2; --repeat-scaling: of the 2-worker runs
                {"--events": 200_000, "--repeat": 3, "--repeat-scaling": 1, "--workload": "sim"}
                | {"--modes": "raw1,worker1,worker2", **on},
            ),
            "profile": (
                profile,
                {"--events": 100_000, "--guarantee": "at_least_once", "--top": 5, **on},
            ),
            "latency": (
                latency,
                {"--guarantee": "at_least_once", "--rates": "1000", "--seconds": 15.0}
                | {"--warmup": 2.0, **on},
            ),
            "idle": (idle, {"--seconds": 5.0, **on}),
        },
    )


if __name__ == "__main__":
    main()
