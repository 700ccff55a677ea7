"""Recovery benchmark on the local broker (noida-db via siyu_stream.kafka.embedded.LocalBroker).

    recovery_bench.py --states FILE --sizes 0,100000,... [--store rocksdb] [--shift] [--warm]
        write N customer states straight into a new app's changelog (on the partition the
        worker would use), start one worker and time its restore from its log ("partition N
        assigned: K changelog records restored") and start -> ready; --warm restarts it on
        its data dir (RocksDB keeps what it applied); --shift moves the states' times to an
        hour ago, so that their timers are not months overdue.

Every broker and worker started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from common import CACHE, emit, log, rel, rss_bytes
from procs import (
    PARTITIONS,
    STOP_GRACE,
    WorkerProc,
    local_broker,
    produce_all,
    settings,
    wait_ready,
)

from siyu_stream.core import state as state_format
from siyu_stream.core.state import CustomerState
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology


def read_states(path: Path) -> list[tuple[str, bytes]]:
    with path.open("rb") as handle:
        return [
            (key.decode(), value.rstrip(b"\n"))
            for key, _, value in (line.partition(b"\t") for line in handle)
        ]


async def write_changelog(s: Settings, states: list[tuple[str, bytes]], n: int) -> None:
    """N changelog records; beyond len(states), copies of the real states under new ids."""
    topic = Topology(s).changelog

    def records() -> Iterator[tuple[str, bytes, bytes, int | None]]:
        for i in range(n):
            customer, value = states[i % len(states)]
            if i >= len(states):
                customer = f"{customer}-x{i // len(states)}"
            key = customer.encode()
            yield topic, key, value, partition_for(key, PARTITIONS)

    await produce_all(s.kafka, records(), 512 * 1024)


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_time(line: str) -> float | None:
    m = _LOG_TIME.match(line)
    if m is None:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007


def restore_spans(log_path: Path, changelog: str) -> tuple[int, list[float]]:
    """(records restored, seconds per partition) from a worker's log.

    Partitions are restored one after the other; each restore starts when its changelog
    consumer is assigned the partition (aiokafka logs "Updating subscribed topics to:
    frozenset({'<changelog>'})") and ends with the worker's "partition N assigned: K
    changelog records restored" line, after the states are read and decoded.
    """
    restored, spans = 0, []
    began: float | None = None
    for line in log_path.read_text(errors="replace").splitlines():
        at = log_time(line)
        if "Updating subscribed topics to" in line and repr(changelog) in line:
            began = at
        elif m := re.search(r"partition (\d+) assigned: (\d+) changelog records", line):
            restored += int(m.group(2))
            if began is not None and at is not None:
                spans.append(at - began)
            began = None
    return restored, spans


def shift_states(states: list[tuple[str, bytes]], latest: int) -> list[tuple[str, bytes]]:
    """The same states with every time moved so that the latest `*_at` time is `latest`.

    The states come from a replay of simulated January 2026 traffic: on the wall clock
    every timer in them is months overdue and a worker would fire them all in its first
    sweep. Shifted, they look like customers last seen an hour ago. Fields are found by
    their annotations (`Millis`, lists and dicts of it, timers), so this follows the format.
    """
    fields = dataclasses.fields(CustomerState)
    decoded = [(k, state_format.loads(v)) for k, v in states]
    newest = max(
        getattr(st, f.name) or 0
        for _, st in decoded
        for f in fields
        if f.name.endswith("_at") and "Millis" in str(f.type)
    )
    delta = latest - newest
    out = []
    for key, st in decoded:
        for f in fields:
            value, kind = getattr(st, f.name), str(f.type)
            if value is None or ("Millis" not in kind and "Timer" not in kind):
                continue
            if "Timer" in kind:
                value = {n: t._replace(due=t.due + delta) for n, t in value.items()}
            elif kind.startswith("list"):
                value = [v + delta for v in value]
            elif kind.startswith("dict"):
                value = {n: v + delta for n, v in value.items()}
            else:
                value = value + delta
            setattr(st, f.name, value)
        out.append((key, state_format.dumps(st)))
    return out


async def start_worker(
    s: Settings, name: str, data_dir: Path, ready_timeout: float
) -> dict[str, Any]:
    """Start one worker on `s`, wait until ready, stop it; its restore figures.

    A worker that is not ready within `ready_timeout` is a result too (with its log), not a
    crash of the benchmark: the other figures still get written.
    """
    worker = WorkerProc(s, name, data_dir)
    result: dict[str, Any] = {"log": rel(worker.log_path)}
    try:
        try:
            ready = await asyncio.wait_for(wait_ready([worker]), ready_timeout)
            result["start_to_ready_seconds"] = ready - worker.started
            result["worker_rss_bytes"] = rss_bytes(worker.proc.pid)
            result["worker_cpu_seconds"] = worker.cpu()
        except (TimeoutError, RuntimeError) as exc:
            result["error"] = f"not ready {ready_timeout:.0f} s after start ({exc or 'timeout'})"
    finally:
        stopping = time.monotonic()
        worker.stop(grace=STOP_GRACE)
        result["stop_seconds"] = time.monotonic() - stopping
        result["stop_grace_seconds"] = STOP_GRACE
        result["stop_exit_code"] = worker.proc.returncode
    restored, spans = restore_spans(worker.log_path, Topology(s).changelog)
    text = worker.log_path.read_text(errors="replace")
    result.update(
        records_restored=restored,
        restore_seconds=sum(spans),
        restore_seconds_per_partition=spans,
        heartbeat_failures=text.count("Heartbeat failed"),
    )
    return result


async def recovery(args: argparse.Namespace) -> dict[str, Any]:
    states = read_states(Path(args.states))
    if args.shift:
        states = shift_states(states, wall_clock() - 3_600_000)
    sizes = [int(x) for x in args.sizes.split(",")]
    store = args.store
    results = []
    with local_broker(f"recovery-{store}") as broker:
        for n in sizes:
            app = f"rec-{store}-{n}"
            s = dataclasses.replace(settings(broker, app), store=f"{store}://")
            data_dir = CACHE / f"worker-data-{app}"
            shutil.rmtree(data_dir, ignore_errors=True)
            await ensure_topics(broker.connection, Topology(s).specs())
            t = time.monotonic()
            await write_changelog(s, states, n)
            log(f"changelog of {n:,} customers written in {time.monotonic() - t:.1f} s")
            try:
                cold = await start_worker(s, f"{app}-cold", data_dir, args.ready_timeout)
                result = {"customers": n, **cold}
                log(
                    f"recovery ({store}) of {n:,}: {result['records_restored']:,} records in "
                    f"{result['restore_seconds']:.1f} s; "
                    + result.get("error", f"ready {result.get('start_to_ready_seconds', 0):.1f} s")
                )
                if args.warm:
                    if cold["stop_exit_code"] == -9:
                        # a killed member never leaves the group, and noida-db then holds the
                        # next rebalance for it (docs/design.md §8: restart the broker after a kill)
                        broker.restart()
                        result["broker_restarted_before_warm"] = True
                    # the same worker again on its data dir: RocksDB remembers what it applied
                    result["warm"] = await start_worker(
                        s, f"{app}-warm", data_dir, args.ready_timeout
                    )
                    log(
                        f"warm restart ({store}) of {n:,}: {result['warm']['records_restored']:,} "
                        f"records in {result['warm']['restore_seconds']:.1f} s"
                    )
            finally:
                shutil.rmtree(data_dir, ignore_errors=True)
            results.append(result)
    base = next((r for r in results if r["customers"] == 0 and "worker_rss_bytes" in r), None)
    for r in results:
        if base is not None and r["customers"] and "worker_rss_bytes" in r:
            r["rss_per_customer_bytes"] = (r["worker_rss_bytes"] - base["worker_rss_bytes"]) / r[
                "customers"
            ]
    return {
        "store": store,
        "shifted_to_now": args.shift,
        "source_states": rel(args.states),
        "distinct_source_states": len(states),
        "runs": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--states", required=True)
    parser.add_argument("--sizes", default="0,100000")
    parser.add_argument("--store", choices=["memory", "rocksdb"], default="memory")
    parser.add_argument(
        "--shift", action="store_true", help="move the states' times to an hour ago"
    )
    parser.add_argument("--warm", action="store_true", help="then restart the worker on its data")
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    emit(asyncio.run(recovery(args)))


if __name__ == "__main__":
    main()
