"""`siyu-stream demo`: local broker + topics + worker + simulator, with a live summary.

Everything runs in one process except the broker (noida-db, a child process); Ctrl-C
stops the simulator, lets the worker finish its batch and leave the group, then stops
the broker with SIGTERM so it saves its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from siyu_stream.admin import ensure_topics
from siyu_stream.broker import LocalBroker
from siyu_stream.ruleset import Rules
from siyu_stream.settings import Settings
from siyu_stream.simulate import SimConfig, generate
from siyu_stream.topology import Topology
from siyu_stream.traffic import produce
from siyu_stream.view import WorkerView
from siyu_stream.worker import Worker


def summary_line(worker: WorkerView, elapsed: float, last: tuple[float, int]) -> tuple[str, int]:
    stats = worker.stats
    seen = sum(stats.events.values())
    rate = (seen - last[1]) / max(elapsed - last[0], 1e-9)
    outcomes: Counter[str] = Counter()
    for (_, outcome), n in stats.events.items():
        outcomes[outcome] += n
    kinds: Counter[str] = Counter()
    for (kind, _), n in stats.actions.items():
        kinds[kind] += n
    population = worker.population()
    layers = " ".join(
        f"{la} {population[('layer', la)]:,}" for la in ("A1", "A2", "A3", "A4", "A5")
    )
    line = (
        f"[{elapsed:5.0f}s] {seen:,} events ({rate:,.0f}/s; ok {outcomes['ok']:,}, "
        f"dup {outcomes['duplicate']:,}, rejected {outcomes['rejected']:,}) | actions: "
        + ", ".join(f"{k} {kinds[k]:,}" for k in ("gift", "reminder", "change", "suppressed"))
        + f" | layers {layers}"
    )
    return line, seen


async def run_demo(
    workdir: Path,
    *,
    customers: int,
    rate: float,
    duration: float | None,
    every: float,
    out: TextIO,
) -> Worker:
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh broker every run: no stale topics
    broker = LocalBroker(workdir / "broker")
    broker.start()
    print(f"broker: noida-db at {broker.bootstrap} (log {broker.log_path})", file=out)
    settings = Settings.from_env(
        None, broker=broker.bootstrap, api_auth=False, data_dir=workdir / "worker"
    )
    worker = Worker(settings, Rules())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await ensure_topics(settings.broker, Topology(settings).specs())
        worker_task = asyncio.create_task(worker.run())
        records = generate(SimConfig(customers=customers, rate=rate))
        traffic = asyncio.create_task(produce(records, settings, rate, stop))
        print(f"simulator: {customers:,} customers, {rate:g} events/s; Ctrl-C stops", file=out)
        print(
            f"http: {worker.url}/metrics and {worker.url}/customers/<id> (no token: demo)", file=out
        )
        started = time.monotonic()
        last = (0.0, 0)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            elapsed = time.monotonic() - started
            line, seen = summary_line(worker, elapsed, last)
            last = (elapsed, seen)
            print(line, file=out, flush=True)
            if worker_task.done():
                break  # the worker failed: its exception surfaces below
            if duration is not None and elapsed >= duration:
                stop.set()
        await traffic
        worker.stop()
        await worker_task
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        broker.stop()
        print("demo stopped: broker saved and stopped", file=out)
    return worker
