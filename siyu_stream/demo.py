"""`siyu-stream demo`: local broker + topics + worker + simulator, with a live summary.

Everything runs in one process except the broker (Apache Kafka where a Java 17 is found,
else the embedded noida-db; a child process); Ctrl-C stops the simulator, lets the worker
finish its batch and leave the group, then stops the broker with SIGTERM so it saves its
data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from siyu_stream.core.ruleset import Rules
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.serve import local_broker
from siyu_stream.live.worker import Worker
from siyu_stream.notify.config import NotifyConfig, Sink
from siyu_stream.notify.loop import Notifier
from siyu_stream.observe.view import WorkerView
from siyu_stream.settings import Settings
from siyu_stream.simulate import SimConfig, SimRecord, generate
from siyu_stream.topology import Topology
from siyu_stream.traffic import produce

PLAINTEXT: dict[str, object] = {
    "security_protocol": "PLAINTEXT",
    "sasl_username": None,
    "sasl_password": None,
    "ssl_cafile": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
    "ssl_key_password": None,
}
"""The demo's own broker is a local plaintext one: SIYU_* Kafka security does not apply."""


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


def api_lines(settings: Settings, url: str, customer_id: str) -> list[str]:
    """How to read a customer from the demo's API, with the token when auth is on."""
    lookup = f"{url}/customers/{quote(customer_id, safe='')}"
    if not settings.api_auth:
        return [f"http: {url}/metrics and {url}/customers/<id> (no token: SIYU_API_AUTH=false)"]
    return [
        f"http: {url}/metrics; the customer API needs the token {settings.api_token}",
        f'  curl -H "Authorization: Bearer {settings.api_token}" {lookup}',
    ]


def _first_customer(records: Iterator[SimRecord]) -> tuple[str, Iterator[SimRecord]]:
    """The customer of the first good record (an id the API will know), and the records,
    all still to send."""
    peeked: list[SimRecord] = []
    for record in records:
        peeked.append(record)
        if not record.bad:
            break
    customer_id = peeked[-1].key if peeked else "<id>"
    return customer_id, itertools.chain(peeked, records)


async def run_demo(
    workdir: Path,
    *,
    customers: int,
    rate: float,
    duration: float | None,
    every: float,
    out: TextIO,
) -> Worker:
    # Customer data stays behind a token even locally: SIYU_API_TOKEN when set, else a
    # fresh one; only an explicit SIYU_API_AUTH=false turns the check off. Read before the
    # broker starts, so that a bad SIYU_* variable leaves nothing running.
    generated = {"api_token": secrets.token_urlsafe(24)}
    settings = Settings.from_env(None, generated, data_dir=workdir / "worker", **PLAINTEXT)
    shutil.rmtree(workdir, ignore_errors=True)  # a fresh broker every run: no stale topics
    name, broker = local_broker(workdir)
    started = time.monotonic()
    broker.start()
    took = time.monotonic() - started
    print(f"broker: {name} at {broker.bootstrap}, started in {took:.1f} s", file=out)
    settings = dataclasses.replace(settings, broker=broker.bootstrap)
    worker = Worker(settings, Rules())
    # the notifier beside the worker, delivering to a file: on the terminal, a hundred
    # actions a second would bury the summary
    sink = Sink("stdout", "stdout", ("gift", "reminder"))
    delivered = (workdir / "notify.out").open("w", encoding="utf-8")
    notifier = Notifier(settings, NotifyConfig((sink,), metrics_port=0), out=delivered)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await ensure_topics(settings.kafka, Topology(settings).specs())
        worker_task = asyncio.create_task(worker.run())
        notifier_task = asyncio.create_task(notifier.run())
        print(f"notifier: gifts and reminders to {delivered.name} (docs/notify.md)", file=out)
        example, records = _first_customer(generate(SimConfig(customers=customers, rate=rate)))
        traffic = asyncio.create_task(produce(records, settings, rate, stop))
        print(f"simulator: {customers:,} customers, {rate:g} events/s; Ctrl-C stops", file=out)
        for line in api_lines(settings, worker.url, example):
            print(line, file=out, flush=True)
        started = time.monotonic()
        last = (0.0, 0)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            elapsed = time.monotonic() - started
            line, seen = summary_line(worker, elapsed, last)
            last = (elapsed, seen)
            sent, held = notifier.outcomes, notifier.held
            line += f" | notify: sent {sent['delivered']:,}, held {held:,}"
            line += f", expired {sent['expired']:,}"
            print(line, file=out, flush=True)
            if worker_task.done() or notifier_task.done():
                break  # the worker or the notifier failed: its exception surfaces below
            if duration is not None and elapsed >= duration:
                stop.set()
        await traffic
        worker.stop()
        notifier.stop()
        await worker_task
        await notifier_task
    finally:
        delivered.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        broker.stop()
        print("demo stopped: broker saved and stopped", file=out)
    return worker
