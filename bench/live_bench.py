"""Live benchmarks on a local broker (bench/brokers.py: --broker kafka or noida-db).

live_bench.py throughput [--events N] [--repeat R] [--workload sim|first-purchase]
        [--modes raw1,worker1,worker2,faust1,kstreams1] [--guarantees G1,G2]
    pre-produce N events (stamped now), warm the broker with an untimed pass of the raw
    pipe per guarantee, then, per repetition, time each mode under each
    guarantee (the Faust peer: at_least_once only; the Kafka Streams peer of bench/kstreams:
    exactly_once is its exactly_once_v2), each in a new consumer group over the same
    input: from ready until its committed offsets reach the input's ends.
live_bench.py latency --guarantee G --rates R1,R2,... [--seconds S]
    one worker; first purchases of new customers at fixed rates; latency = arrival of
    the first action (read_committed, matched by cause_event_id) minus the send time.
live_bench.py restart [--events N] [--repeat R] [--stop-at F]
    per app (Faust peer, worker; at_least_once): a clean run, then R runs stopped with
    SIGTERM once F of the clean run's actions are out, restarted in the same group and
    left to finish: events lost (applied by the clean run, in no final state of this
    one) and action ids written twice.
live_bench.py idle [--seconds S]
    CPU used by an idle aiokafka consumer and by an idle worker, and the broker's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

import orjson
import procs
from aiokafka import AIOKafkaProducer
from brokers import app, broker, consumer, ends, partitions, read, wait_consumed
from common import log, percentile, script_main
from procs import WorkerProc, first_purchase, prepare, preproduce, running, wait_ready

from siyu_stream.core import stored
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import digest
from siyu_stream.kafka.client import client_options
from siyu_stream.topology import INPUT_TYPES


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    prefix = "siyu" if args.workload == "sim" else args.workload.replace("-", "")
    modes = [
        (m[:-1], g, int(m[-1])) for g in args.guarantees.split(",") for m in args.modes.split(",")
    ]
    with broker(f"throughput-{args.workload}", args.broker) as b:
        events = await preproduce(b, args.workload, prefix, args.events)
        # The broker's own warm-up (the JVM compiling its fetch, produce and transaction
        # paths) is no run's: a first repetition ran on a cold broker, the raw pipe first
        # of all, and its rate was half the second's. One untimed pass of the raw pipe
        # per guarantee first.
        for g in dict.fromkeys(g for _, g, _ in modes):
            await procs.time_consumer(b, ("raw", g, 1), f"{prefix}-warm-{g}", events, prefix)
        for rep in range(args.repeat):
            for kind, g, n in modes:
                if kind == "faust" and g != "at_least_once":
                    continue  # Faust's exactly_once does not cover its sends
                group = f"{prefix}-{kind}{n}-{g.split('_')[0]}-{rep}"
                stall = args.stall if kind == "faust" else None
                runs.append(
                    await procs.time_consumer(b, (kind, g, n), group, events, prefix, stall)
                )
    summary = procs.summarize(runs)
    return {"workload": args.workload, "events": events, "summary": summary, "runs": runs}


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    levels = []
    with broker(f"latency-{args.guarantee}", args.broker) as b:
        s, topology = await app(b, f"lat-{args.guarantee.split('_')[0]}", args.guarantee)
        async with running([WorkerProc(s, f"latency-{args.guarantee}")]):
            for i, rate in enumerate(float(r) for r in args.rates.split(",")):
                levels.append(await latency_at(s, topology.outputs, rate, args, f"r{i}"))
    return {"guarantee": args.guarantee, "levels": levels}


async def latency_at(
    s: Any, topics: list[str], rate: float, args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    outputs = partitions(topics)
    cpu_started, wall_started = time.process_time(), time.monotonic()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    measured_from = time.monotonic() + args.warmup
    done = asyncio.Event()

    async def consume(c: Any) -> None:
        # fetch in short windows with 5 ms pauses: a consumer that always fetches spins on a
        # core the worker and broker need (noida-db answers fetches at once); a latency can
        # only grow by the pause
        while True:
            batch = await c.getmany(timeout_ms=5, max_records=10_000)
            c.pause(*outputs)
            now = time.monotonic()
            for m in (m for msgs in batch.values() for m in msgs):
                t0 = sent.pop(orjson.loads(m.value).get("cause_event_id"), None)
                if t0 is not None and t0 >= measured_from:
                    latencies.append(1000 * (now - t0))
            if done.is_set() and not sent:
                return
            await asyncio.sleep(0.005)
            c.resume(*outputs)

    async def send(producer: AIOKafkaProducer) -> tuple[int, float]:
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

    producer = AIOKafkaProducer(**client_options(s.kafka), acks="all")
    async with consumer(s.broker, isolation_level="read_committed", fetch_max_wait_ms=10) as c:
        c.assign(outputs)
        await c.seek_to_end(*outputs)
        for tp in outputs:
            await c.position(tp)  # resolve "end" now, before anything is sent
        await producer.start()
        reader = asyncio.create_task(consume(c))
        try:
            total, sending = await send(producer)
            await producer.flush()
            done.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), timeout=30)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await producer.stop()
    lat = sorted(latencies)
    result = {
        **{"target_rate": rate, "achieved_send_rate": total / sending, "sent": total},
        **{"measured": len(lat), "unmatched_after_30s": len(sent)},
        **{f"p{q}_ms": percentile(lat, q) for q in (50, 95, 99)},
        "max_ms": lat[-1] if lat else float("nan"),
        # the load generator's share of a core: it competes with the worker and the broker
        "generator_cores": (time.process_time() - cpu_started) / (time.monotonic() - wall_started),
    }
    log(
        f"latency {s.guarantee} @ {rate:,.0f}/s: p50 {result['p50_ms']:.0f} p99 "
        f"{result['p99_ms']:.0f} ms; {len(sent)} unmatched"
    )
    return result


async def restart(args: argparse.Namespace) -> dict[str, Any]:
    apps: dict[str, Any] = {}
    with broker("restart", args.broker) as b:
        events = await preproduce(b, "sim", "siyu", args.events)
        inputs: dict[str, tuple[bytes, bytes]] = {}  # event id -> (key, digest of the id)
        for m in await read(b.bootstrap, [f"siyu.{name}" for name in INPUT_TYPES]):
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                if isinstance(event_id := orjson.loads(m.value).get("event_id"), str):
                    inputs[event_id] = (m.key or b"", digest(event_id))
        # a final state has seen every event it applied while the customer has no more
        # events than the de-duplication window
        assert max(Counter(k for k, _ in inputs.values()).values()) <= Rules().engine.dedup_window
        for kind in args.apps.split(","):
            clean = await one_run(b, kind, f"siyu-rs-{kind}-clean", None, inputs, args)
            applied, runs = clean.pop("applied"), []
            for rep in range(args.repeat):
                stop_after = max(1, int(clean["actions"] * args.stop_at))
                run = await one_run(b, kind, f"siyu-rs-{kind}-{rep}", stop_after, inputs, args)
                lost = sorted(applied - run.pop("applied"))
                runs.append(run | {"events_lost": len(lost), "events_lost_sample": lost[:5]})
                log(f"{kind} restart {rep}: {len(lost)} lost, {run['doubled']} doubled")
            apps[kind] = {"clean_applied": len(applied), **clean, "runs": runs}
    return {"events": events, "stop_at": args.stop_at, "apps": apps}


async def one_run(
    b: Any, kind: str, group: str, stop_after: int | None, inputs: Any, args: argparse.Namespace
) -> dict[str, Any]:
    """The app in a new group until it has consumed everything, stopped with SIGTERM once
    `stop_after` actions are out and started again; what it applied and wrote."""
    launch, topics, outputs = await prepare(b, (kind, "at_least_once", 1), group, "siyu")
    start = await ends(b.bootstrap, outputs)
    [proc], how = launch(f"{group}-1"), {}

    async def written() -> int:
        return sum(n - start[tp] for tp, n in (await ends(b.bootstrap, outputs)).items())

    try:
        await wait_ready([proc])
        while stop_after and await written() < stop_after:
            await asyncio.sleep(0.05)
        if stop_after:
            proc.stop()
            [proc] = launch(f"{group}-2")  # the same group: it resumes from its commits
            await wait_ready([proc])
        how = (await wait_consumed(b.bootstrap, group, topics, outputs, args.stall))[1]
    except RuntimeError as exc:
        if stop_after is None:
            raise
        how = {"ended": f"failed: {exc}"}
    finally:
        proc.stop()
    actions = Counter(
        orjson.loads(m.value)["action_id"] for m in await read(b.bootstrap, outputs, start)
    )
    changelog = {m.key: m.value for m in await read(b.bootstrap, [f"{group}-customers-changelog"])}
    states = {k: stored.loads(v) for k, v in changelog.items() if k and v}
    return {
        "applied": {e for e, (k, d) in inputs.items() if k in states and states[k].has_seen(d)},
        **{"actions": len(actions), "doubled": sum(c > 1 for c in actions.values()), **how},
    }


if __name__ == "__main__":
    on = {"--broker": "kafka", "--stall": 30.0}
    script_main(
        __doc__,
        {
            "throughput": (
                throughput,
                {"--events": 40_000, "--repeat": 2, "--workload": "sim", **on}
                | {"--modes": "raw1,worker1,worker2", "--guarantees": "at_least_once,exactly_once"},
            ),
            "latency": (
                latency,
                {"--guarantee": "at_least_once", "--rates": "1000", "--seconds": 12.0}
                | {"--warmup": 2.0, **on},
            ),
            "restart": (
                restart,
                {"--events": 10_000, "--repeat": 3, "--apps": "faust,worker", "--stop-at": 0.4}
                | on,
            ),
        },
    )
