"""Recovery benchmark on a local broker (bench/brokers.py: --broker kafka or noida-db).

recovery_bench.py restore --states FILE --sizes 0,100000 [--store rocksdb] [--shift] [--warm]
    write N customer states into a new app's changelog (on the partition the worker
    would use), start one worker, time its restore from its log and start -> ready;
    --warm starts it again on its data dir (RocksDB keeps what it applied); --shift
    moves the states' times to an hour ago, so that their timers are not months overdue.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from brokers import PARTITIONS, app, broker, produce_all
from common import CACHE, log, rel, rss_bytes, script_main
from procs import WorkerProc, wait_ready

from siyu_stream.core import stored
from siyu_stream.core.state import CustomerState, Timer
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology


def read_states(path: Path) -> list[tuple[str, bytes]]:
    with path.open("rb") as handle:
        return [(k.decode(), v.rstrip(b"\n")) for k, _, v in (x.partition(b"\t") for x in handle)]


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

    await produce_all(s.broker, records(), 512 * 1024)


def log_time(line: str) -> float | None:
    m = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if m else None  # noqa: DTZ007


def restore_spans(log_path: Path, changelog: str) -> tuple[int, list[float]]:
    """(records restored, seconds per partition) from a worker's log: each restore starts
    when aiokafka logs "Updating subscribed topics to: frozenset({'<changelog>'})" and ends
    with the worker's "partition N assigned: K changelog records restored"."""
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


TIMES = {
    "scalar": ("first_order_at", "last_order_at", "last_inbound_at", "last_outbound_at"),
    "more": ("pending_reply_since", "last_activity_at", "member_until", "last_invite_at"),
    "list": ("order_times", "touches"),
    "dict": ("carriers",),
}
"""The state's times by shape (`Millis` is `int` at run time, and compiled the fields'
annotations are not the source's, so they are named here; timers are moved too)."""


def shift_states(states: list[tuple[str, bytes]], latest: int) -> list[tuple[str, bytes]]:
    """The same states with every time moved so that the latest `*_at` time is `latest`:
    replayed from simulated January 2026 traffic, their timers are months overdue on the
    wall clock."""
    names = {f.name for f in dataclasses.fields(CustomerState)}
    named = {n for shape in TIMES.values() for n in shape}
    # a new time field of the format must be named above
    assert {n for n in names if n.endswith(("_at", "_since", "_until"))} <= named, names
    decoded = [(k, stored.loads(v)) for k, v in states]
    scalars = (*TIMES["scalar"], *TIMES["more"])
    stamps = [n for n in scalars if n.endswith("_at")]  # not member_until, a year ahead
    delta = latest - max((getattr(st, n) or 0 for _, st in decoded for n in stamps), default=0)
    out = []
    for key, st in decoded:
        for name in scalars:
            if (value := getattr(st, name)) is not None:
                setattr(st, name, value + delta)
        for name in TIMES["list"]:
            setattr(st, name, [v + delta for v in getattr(st, name)])
        for name in TIMES["dict"]:
            setattr(st, name, {n: v + delta for n, v in getattr(st, name).items()})
        st.timers = {n: Timer(t.due + delta, t.cause, t.note) for n, t in st.timers.items()}
        out.append((key, stored.dumps(st)))
    return out


async def start_worker(
    s: Settings, name: str, data_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Start one worker on `s`, wait until ready, stop it; its restore figures (a worker
    not ready within `timeout` is a figure too, with its log)."""
    worker = WorkerProc(s, name, data_dir)
    result: dict[str, Any] = {"log": rel(worker.log_path)}
    try:
        ready = await asyncio.wait_for(wait_ready([worker]), args.ready_timeout)
        result["start_to_ready_seconds"] = ready - worker.started
        result["worker_rss_bytes"] = rss_bytes(worker.proc.pid)
    except (TimeoutError, RuntimeError) as exc:
        result["error"] = f"not ready in {args.ready_timeout:.0f} s ({exc or 'timeout'})"
    finally:
        worker.stop()
        result["stop_exit_code"] = worker.proc.returncode
    restored, spans = restore_spans(worker.log_path, Topology(s).changelog)
    return result | {"records_restored": restored, "restore_seconds": sum(spans)}


async def recovery(args: argparse.Namespace) -> dict[str, Any]:
    states = read_states(Path(args.states))
    if args.shift:
        states = shift_states(states, wall_clock() - 3_600_000)
    results: list[dict[str, Any]] = []
    with broker(f"recovery-{args.store}", args.broker) as b:
        for n in (int(x) for x in args.sizes.split(",")):
            name = f"rec-{args.store}-{n}"
            s, _ = await app(b, name)
            s = dataclasses.replace(s, store=f"{args.store}://")
            data_dir = CACHE / f"worker-data-{name}"
            shutil.rmtree(data_dir, ignore_errors=True)
            await write_changelog(s, states, n)
            result = {"customers": n, **await start_worker(s, f"{name}-cold", data_dir, args)}
            if args.warm:  # the same worker again on its data dir
                result["warm"] = await start_worker(s, f"{name}-warm", data_dir, args)
            shutil.rmtree(data_dir, ignore_errors=True)
            log(f"restore ({args.store}) of {n:,}: {result['restore_seconds']:.1f} s")
            results.append(result)
    for r in results:
        if r["customers"] and "worker_rss_bytes" in r and "worker_rss_bytes" in results[0]:
            rss = r["worker_rss_bytes"] - results[0]["worker_rss_bytes"]
            r["rss_per_customer_bytes"] = rss / r["customers"]
    return {"store": args.store, "shifted_to_now": args.shift, "runs": results}


if __name__ == "__main__":
    options = {"--states": ..., "--sizes": "0,100000", "--store": "memory", "--shift": False}
    options |= {"--warm": False, "--ready-timeout": 90.0, "--broker": "kafka"}
    script_main(__doc__, {"restore": (recovery, options)})
