"""Replay benchmarks: core throughput, state size and memory, and a profile.

replay_bench.py run INPUT [--until-days D] [--jobs N] [--partitions P] [--sizes]
        [--dump-states FILE]
    a raw JSON pipe over INPUT (each line read, orjson.loads, orjson.dumps, written: the
    floor of any JSONL-in, JSONL-out tool), then one replay of INPUT through
    siyu_stream.replay.run.replay, actions to a file; events/s and CPU per event of both,
    actions and timers fired, RSS before/after, customers. --until-days: replay as
    `siyu-stream replay --now END --until END+D days` (END: the last event time), so
    every timer due within D days of the end fires. --partitions: as `replay
    --partitions` (default 1); --jobs: `replay --jobs N` (N processes; the CPU counts
    theirs; no customer, heap or memory figures). --sizes adds the serialized state
    size per customer (state.dumps), --dump-states writes `customer<TAB>state` lines
    (the changelog records a worker would write) for the recovery benchmark.
replay_bench.py profile INPUT [--events N] [--until-days D]
    pyinstrument over a replay of the first N events (--until-days as for `run`): the
    share of time per area of the replay path, and the top functions by self time.
replay_bench.py processor [--events N] [--profile]
    the live worker's per-partition code (PartitionTask: decode, rules, output records,
    changelog records, store) over N simulator events in batches of 2,000, no Kafka client.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import itertools
import resource
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from common import CACHE, SIM_CUSTOMERS, SIM_RATE, log, percentile, rel, rss_bytes, script_main

from siyu_stream.cli import tune_gc
from siyu_stream.core import state as state_format
from siyu_stream.core.clock import DAY, parse_rfc3339
from siyu_stream.core.ruleset import Rules
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.run import replay


def json_pipe(path: Path) -> dict[str, float]:
    """Each line read, parsed and written back with orjson, nothing else."""
    lines = 0
    with path.open("rb") as src, (CACHE / "pipe-out.jsonl").open("wb") as out:
        started, cpu = time.perf_counter(), time.process_time()
        for line in src:
            try:
                out.write(orjson.dumps(orjson.loads(line)) + b"\n")
            except orjson.JSONDecodeError:
                out.write(line)  # replay dead-letters these; the pipe passes them on
            lines += 1
        out.flush()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": seconds,
        "events_per_s": lines / seconds,
        "cpu_us_per_event": 1e6 * cpu / lines,
    }


def first_and_last_time(path: Path) -> tuple[int, int]:
    """Event times (ms) at the file's two ends: the simulator writes in time order, up to
    seconds of jitter, so 64 KiB at each end hold the first and the last."""
    with path.open("rb") as handle:
        head = handle.read(65536).splitlines()[:-1]
        handle.seek(max(0, handle.seek(0, 2) - 65536))
        tail = handle.read().splitlines()[1:]

    def times(lines: list[bytes]) -> list[int]:
        found = []
        for line in lines:  # bad lines (no time, an impossible one) are skipped
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                at = parse_rfc3339(orjson.loads(line)["occurred_at"])
                if at > 946_684_800_000:  # the simulator's bad 1999 stamps
                    found.append(at)
        return found

    return min(times(head)), max(times(tail))


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.input)
    first, last = first_and_last_time(path)
    until_days = float(args.until_days) if args.until_days else None
    now = until = None
    if until_days:
        now, until = last, last + round(until_days * DAY)
    pipe = json_pipe(path)  # first: it also brings the file into the page cache for replay
    out_path = CACHE / "replay-actions.jsonl"
    dead_path = CACHE / "replay-deadletters.jsonl"
    rules = Rules()
    # Keep a handle on the engine the replay builds, to look at its store afterwards.
    engines: list[Engine] = []
    original_init = Engine.__init__

    def spy(self: Engine, *a: Any, **k: Any) -> None:
        original_init(self, *a, **k)
        engines.append(self)

    Engine.__init__ = spy  # type: ignore[method-assign]
    gc.collect()
    rss_before = rss_bytes()
    jobs, partitions = int(args.jobs), int(args.partitions)
    with out_path.open("wb") as out, dead_path.open("wb") as dead:
        started = time.perf_counter()
        cpu_started = time.process_time() + _children_cpu()
        counts = replay(
            [path], out, rules, until=until, now=now, deadletters=dead, jobs=jobs,
            partitions=partitions,
        )  # fmt: skip
        out.flush()
        seconds = time.perf_counter() - started
        cpu = time.process_time() + _children_cpu() - cpu_started
    gc.collect()
    rss_after = rss_bytes()
    events = sum(counts.events.values())
    result = _throughput(path, counts, seconds, cpu, pipe, last - first, until_days)
    result |= {"jobs": jobs, "partitions": partitions}
    if jobs > 1:  # the engines lived in the job processes
        log(
            f"replay --jobs {jobs} {rel(path)}: {events:,} events in {seconds:.1f} s = "
            f"{events / seconds:,.0f}/s, CPU {cpu:.1f} s"
        )
        return result
    engine = engines[0]
    store = engine.store
    assert isinstance(store, MemoryStore)
    customers = len(store.data)
    result |= {
        "customers": customers,
        "timer_heap_entries": sum(len(p.timers) for p in engine.partitions),
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_per_customer_bytes": (rss_after - rss_before) / customers,
    }
    log(
        f"replay {rel(path)}: {events:,} events in {seconds:.1f} s = {events / seconds:,.0f}/s "
        f"(raw JSON pipe {pipe['events_per_s']:,.0f}/s); {result['actions_per_event']:.2f} "
        f"actions, {result['timers_per_event']:.2f} timers per event; {customers:,} customers, "
        f"RSS +{(rss_after - rss_before) / 2**20:,.0f} MiB"
    )
    if args.sizes:
        sizes = sorted(len(state_format.dumps(s)) for s in store.data.values())
        result["state_bytes"] = {
            "mean": sum(sizes) / len(sizes),
            "p50": percentile(sizes, 50),
            "p99": percentile(sizes, 99),
            "max": sizes[-1],
            "total": sum(sizes),
        }
    if args.dump_states:
        with Path(args.dump_states).open("wb") as handle:
            for customer_id, state in store.data.items():
                handle.write(customer_id.encode() + b"\t" + state_format.dumps(state) + b"\n")
        result["dumped_states"] = rel(args.dump_states)
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _throughput(
    path: Path,
    counts: Any,
    seconds: float,
    cpu: float,
    pipe: dict[str, float],
    span_ms: int,
    until_days: float | None,
) -> dict[str, Any]:
    """The figures of a replay run, one process or several."""
    events = sum(counts.events.values())
    return {
        "input": rel(path),
        "events": events,
        "event_time_span_s": span_ms / 1000,
        "until_days_after_end": until_days,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "events_per_s": events / seconds,
        "cpu_us_per_event": 1e6 * cpu / events,
        "pipe": pipe,
        "pipe_ratio": events / seconds / pipe["events_per_s"],
        "actions_per_event": sum(counts.by_kind().values()) / events,
        "timers_per_event": counts.timers_fired / events,
        "output_bytes": (CACHE / "replay-actions.jsonl").stat().st_size,
        "counts": {
            "events": dict(counts.by_outcome()),
            "actions": dict(counts.by_kind()),
            "timers_fired": counts.timers_fired,
        },
    }


# ------------------------------------------------------------------ profile


def first_lines(path: Path, n: int) -> Path:
    target = CACHE / f"{path.stem}.first-{n}.jsonl"
    if not target.exists():
        with path.open("rb") as src, target.open("wb") as dst:
            dst.writelines(itertools.islice(src, n))
    return target


def profiled(
    fn: Callable[[], Any], interval: float, name: str, top: int, *, html: bool = False
) -> dict[str, Any]:
    """`fn` under pyinstrument: its top functions; the call tree in bench/.cache/NAME.txt
    (and NAME.html)."""
    from pyinstrument import Profiler  # noqa: PLC0415 - installed by bench/run.py

    profiler = Profiler(interval=interval)
    profiler.start()
    fn()
    profiler.stop()
    assert profiler.last_session is not None
    root = profiler.last_session.root_frame()
    assert root is not None
    text_report = CACHE / f"{name}.txt"
    text_report.write_text(profiler.output_text(unicode=True, color=False, show_all=False))
    top_self, project = _aggregate(root, top)
    result = {
        "profiled_seconds": root.time,
        "percent_by_area": _areas(root),
        "top_self": top_self,
        "top_inclusive_project": project,
        "text_report": rel(text_report),
    }
    if html:
        (CACHE / f"{name}.html").write_text(profiler.output_html())
        result["html_report"] = rel(CACHE / f"{name}.html")
    return result


def cmd_profile(args: argparse.Namespace) -> dict[str, Any]:
    path = first_lines(Path(args.input), args.events)
    rules = Rules()
    run: dict[str, Any] = {}
    bounds: dict[str, Any] = {}
    if args.until_days is not None:  # as `run --until-days`: the history's timers fire
        end = first_and_last_time(path)[1]
        bounds = {"now": end, "until": end + int(float(args.until_days) * DAY)}

    def go() -> None:
        with (CACHE / "profile-actions.jsonl").open("wb") as out, io.BytesIO() as dead:
            started = time.perf_counter()
            run["counts"] = replay([path], out, rules, deadletters=dead, **bounds)
            run["seconds"] = time.perf_counter() - started

    result = profiled(go, 0.0005, f"profile-replay-{path.stem}", args.top, html=True)
    events = sum(run["counts"].events.values())
    return {
        "input": rel(path),
        "events": events,
        "timers_per_event": run["counts"].timers_fired / events,
        "seconds": run["seconds"],
        "profiler": "pyinstrument (interval 0.5 ms, wall clock, one process)",
        **result,
    }


# ------------------------------------------------------------------ live adapter, no Kafka


def cmd_processor(args: argparse.Namespace) -> dict[str, Any]:
    """The worker's per-partition code (PartitionTask) without any Kafka client: where the
    live worker's CPU goes before a single byte reaches the broker."""
    from siyu_stream.live.processor import PartitionTask, Record  # noqa: PLC0415
    from siyu_stream.observe.observer import Observer, Stats  # noqa: PLC0415
    from siyu_stream.observe.wall import wall_clock  # noqa: PLC0415
    from siyu_stream.settings import Settings  # noqa: PLC0415
    from siyu_stream.simulate import SimConfig, generate  # noqa: PLC0415
    from siyu_stream.topology import Topology  # noqa: PLC0415
    from siyu_stream.traffic import restamp  # noqa: PLC0415

    # one partition: every record is local (no re-keying), like one worker owning them all
    settings = Settings(partitions=1, api_auth=False, web_port=0)
    topology = Topology(settings)
    now = wall_clock()
    records = [
        Record(settings.topic(r.topic), 0, i, r.key.encode(), restamp(r, now), now)
        for i, r in enumerate(
            generate(SimConfig(customers=SIM_CUSTOMERS, rate=SIM_RATE), args.events)
        )
    ]

    def run() -> tuple[float, float, int]:
        store: dict[str, bytes] = {}
        task = PartitionTask(Rules(), topology, 0, store, Observer(Stats(), Rules()))
        outs = 0
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(records), 2_000):  # the worker's batch: handle, sweep, changelog
            clock = wall_clock()
            for record in records[i : i + 2_000]:
                task.enqueue(record, clock)
            outs += len(task.sweep(clock)) + len(task.changelog())
            task.committed()
        return time.perf_counter() - started, time.process_time() - cpu, outs

    seconds, cpu, outs = run()
    result: dict[str, Any] = {
        "events": len(records),
        "seconds": seconds,
        "events_per_s": len(records) / seconds,
        "cpu_us_per_event": 1e6 * cpu / len(records),
        "records_out": outs,
    }
    log(
        f"PartitionTask: {len(records):,} events in {seconds:.1f} s = "
        f"{len(records) / seconds:,.0f}/s"
    )
    if args.profile:
        result.update(profiled(run, 0.001, "profile-processor", args.top))
    return result


AREAS = {
    "decode": ("core/events.py", "core/schemas.py", "core/clock.py", "<string>"),
    "merge and input": (
        *("replay/run.py", "replay/lines.py", "replay/jobloop.py", "replay/jobs.py"),
        *("eventtime/merge.py", "eventtime/keys.py"),
    ),
    "rules and state copies": (
        *("core/rules.py", "core/step.py", "core/policy.py", "core/timers.py", "core/state.py"),
    ),
    "clock, timer index, stats": (
        *("eventtime/partition.py", "replay/engine.py", "observe/observer.py"),
    ),
    "actions out": ("core/actions.py",),
}
"""Where CPU goes, by the file whose code runs (its path under siyu_stream/; a C builtin
counts for its caller's file: heappop for the timer index, orjson.dumps for the actions,
msgspec for decoding)."""


def _areas(root: Any) -> dict[str, float]:
    """Share of the profiled time per area of the replay path (see AREAS)."""
    seconds: dict[str, float] = defaultdict(float)

    def area_of(path: str, inherited: str) -> str:
        name = path.rpartition("siyu_stream/")[2]
        for area, files in AREAS.items():
            if name in files and (name != "<string>" or inherited == "decode"):
                return area
        return inherited if "siyu_stream" not in path else "other"

    def walk(frame: Any, inherited: str) -> None:
        if frame.is_synthetic:
            return
        area = area_of(frame.file_path or "", inherited)
        children = [c for c in frame.children if not c.is_synthetic]
        seconds[area] += frame.time - sum(c.time for c in children)
        for child in children:
            walk(child, area)

    walk(root, "other")
    return {area: 100 * t / root.time for area, t in sorted(seconds.items(), key=lambda kv: -kv[1])}


def _aggregate(root: Any, top: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(top functions by self time, project functions by inclusive time) of a pyinstrument tree."""
    total = root.time
    self_time: dict[tuple[str, str, int], float] = defaultdict(float)
    inclusive: dict[tuple[str, str, int], float] = defaultdict(float)

    def key(frame: Any) -> tuple[str, str, int]:
        return (frame.function, frame.file_path_short or "", frame.line_no or 0)

    def walk(frame: Any, on_stack: frozenset[tuple[str, str, int]]) -> None:
        k = key(frame)
        if frame.is_synthetic:
            return
        children = [c for c in frame.children if not c.is_synthetic]
        self_time[k] += frame.time - sum(c.time for c in children)
        if k not in on_stack:  # recursion: count a function's inclusive time once per stack
            inclusive[k] += frame.time
        for child in children:
            walk(child, on_stack | {k})

    walk(root, frozenset())

    def row(k: tuple[str, str, int]) -> dict[str, Any]:
        return {
            "function": k[0],
            "where": f"{k[1]}:{k[2]}",
            "seconds": self_time[k],
            "percent": 100 * self_time[k] / total,
            "inclusive_percent": 100 * inclusive[k] / total,
        }

    by_self = [row(k) for k, _ in sorted(self_time.items(), key=lambda kv: -kv[1])[:top]]
    by_inclusive = [
        row(k)
        for k, _ in sorted(inclusive.items(), key=lambda kv: -kv[1])
        if "siyu_stream" in k[1] and k[0] not in ("replay", "<module>", "run")
    ][:15]
    return by_self, by_inclusive


def main() -> None:
    tune_gc()  # as `siyu-stream` does for every command
    script_main(
        __doc__,
        {
            "run": (
                cmd_run,
                {
                    "input": None,
                    "--until-days": None,
                    "--jobs": 1,
                    "--partitions": 1,
                    "--sizes": False,
                    "--dump-states": None,
                },
            ),
            "profile": (
                cmd_profile,
                {"input": None, "--events": 200_000, "--top": 10, "--until-days": None},
            ),
            "processor": (cmd_processor, {"--events": 100_000, "--profile": False, "--top": 10}),
        },
    )


if __name__ == "__main__":
    main()
