"""Replay benchmarks: core throughput, state size and memory.

replay_bench.py run INPUT [--until-days D] [--jobs N] [--partitions P] [--dump-states FILE]
    a raw JSON pipe over INPUT (orjson.loads, orjson.dumps per line: the floor of any
    JSONL-in, JSONL-out tool), then one replay of INPUT: events/s and CPU per event of both,
    actions and timers fired; with --dump-states also customers, RSS and state sizes.
    --until-days: as `replay --now END --until END+D days` (END: the last event time);
    --partitions, --jobs: as `replay`'s; --dump-states: `customer<TAB>state` lines (the
    changelog records a worker would write) for the recovery benchmark.
replay_bench.py backtest INPUT [--until-days D] [--jobs N]
    `siyu-stream backtest` of INPUT (both engines: the built-in rules and BACKTEST_RULES),
    in this process: events/s and CPU per event.
replay_bench.py cli replay|backtest INPUT [--until-days D] [--at COMMIT]
    the command `siyu-stream replay` or `backtest` of INPUT in a process of its own (its
    start-up and imports counted), one partition: the installed build's, or with --at the
    package as it was at COMMIT (`git archive` into bench/.cache/source-COMMIT, run on this
    environment's libraries). Events/s and CPU per event; replay also its action lines.
replay_bench.py processor [--events N]
    the live worker's per-partition code (PartitionTask) over N simulator events in
    batches of 2,000, no Kafka client.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from common import (
    CACHE,
    PYTHON,
    ROOT,
    SIM_CUSTOMERS,
    SIM_RATE,
    log,
    percentile,
    rel,
    rss_bytes,
    script_main,
)

from siyu_stream.bootstrap.build import build
from siyu_stream.build import build as running_build
from siyu_stream.cli import main as cli
from siyu_stream.cli import tune_gc
from siyu_stream.cli.history import OUT_BUFFER
from siyu_stream.core import stored
from siyu_stream.core.clock import DAY, format_rfc3339, parse_rfc3339
from siyu_stream.core.ruleset import Rules
from siyu_stream.replay.run import replay


def json_pipe(path: Path) -> dict[str, float]:
    """Each line read, parsed and written back with orjson, nothing else."""
    lines = 0
    # written through the buffer replay's --out gets, as replay's output below
    with path.open("rb") as src, (CACHE / "pipe-out.jsonl").open("wb", buffering=OUT_BUFFER) as out:
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


BACKTEST_RULES = "[silence]\nstreak = 3\n[dormant]\ndays = 60\n"
"""The rule change the backtest benchmark tries: both change actions over a year."""


def backtest_rules() -> Path:
    """BACKTEST_RULES as the file `backtest --rules` reads."""
    path = CACHE / "backtest-rules.toml"
    path.write_text(BACKTEST_RULES)
    return path


def cpu_now() -> float:
    """This process's CPU and its reaped children's (the --jobs processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + usage.ru_utime + usage.ru_stime


def bounds_of(last: int, until_days: float | None) -> dict[str, int]:
    """`now` and `until` of `--until-days`: the last event time, and that many days on."""
    return {"now": last, "until": last + round(until_days * DAY)} if until_days else {}


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    path, jobs, partitions = Path(args.input), int(args.jobs), int(args.partitions)
    first, last = first_and_last_time(path)
    until_days = float(args.until_days) if args.until_days else None
    bounds = bounds_of(last, until_days)
    # the states first, in a fresh heap: after a replay, freed memory would be reused
    dumped = states(path, last, Path(args.dump_states)) if args.dump_states else {}
    pipe = json_pipe(path)  # it also brings the file into the page cache for replay
    with (
        (CACHE / "replay-actions.jsonl").open("wb", buffering=OUT_BUFFER) as out,
        (CACHE / "replay-deadletters.jsonl").open("wb", buffering=OUT_BUFFER) as dead,
    ):
        started, cpu = time.perf_counter(), cpu_now()
        counts = replay(
            [path], out, Rules(), deadletters=dead, jobs=jobs, partitions=partitions, **bounds
        )
        out.flush()
        seconds, cpu = time.perf_counter() - started, cpu_now() - cpu
    events = sum(counts.events.values())
    result: dict[str, Any] = {
        **{"input": rel(path), "jobs": jobs, "partitions": partitions, "events": events},
        "build": running_build(),
        **{"event_time_span_s": (last - first) / 1000, "until_days_after_end": until_days},
        **{"seconds": seconds, "cpu_seconds": cpu, "events_per_s": events / seconds},
        **{"cpu_us_per_event": 1e6 * cpu / events, "pipe": pipe},
        "pipe_ratio": events / seconds / pipe["events_per_s"],
        "actions_per_event": sum(counts.by_kind().values()) / events,
        "timers_per_event": counts.timers_fired / events,
    }
    log(f"replay {rel(path)} --jobs {jobs}: {events:,} events in {seconds:.1f} s, CPU {cpu:.1f} s")
    return result | dumped


def states(path: Path, now: int, dump: Path) -> dict[str, Any]:
    """The states of a second pass over `path` (`bootstrap`'s, which keeps them in memory:
    replay's engine lives inside it, and compiled it cannot be spied on): customers, RSS and
    state sizes, and `customer<TAB>state` lines in `dump`."""
    gc.collect()
    rss_before = rss_bytes()
    with tempfile.TemporaryDirectory(dir=CACHE) as spill:
        built = build([path], Rules(), partitions=1, now=now, spill_dir=Path(spill))
        gc.collect()
        rss_after = rss_bytes()
    store = built.store.data
    sizes = sorted(len(stored.dumps(s)) for s in store.values())
    with dump.open("wb") as handle:
        for customer_id, state in store.items():
            handle.write(customer_id.encode() + b"\t" + stored.dumps(state) + b"\n")
    return {
        **{"customers": len(store), "rss_grew_bytes": rss_after - rss_before},
        "rss_per_customer_bytes": (rss_after - rss_before) / len(store),
        "state_bytes": {"mean": sum(sizes) / len(sizes), "p99": percentile(sizes, 99)},
    }


def cmd_backtest(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.input)
    until_days = float(args.until_days) if args.until_days else None
    bounds = bounds_of(first_and_last_time(path)[1], until_days)
    rules, out = backtest_rules(), CACHE / "backtest-out"
    argv = ["backtest", str(path), "--rules", str(rules), "--out", str(out)]
    argv += [x for k, v in bounds.items() for x in (f"--{k}", format_rfc3339(v))]
    argv += ["--jobs", str(args.jobs)]
    started, cpu = time.perf_counter(), cpu_now()
    with contextlib.redirect_stdout(sys.stderr):  # its report: stdout is this script's JSON
        code = cli(argv)
    seconds, cpu = time.perf_counter() - started, cpu_now() - cpu
    if code != 0:
        msg = f"siyu-stream {' '.join(argv)} exited with {code}"
        raise RuntimeError(msg)
    counts = orjson.loads((out / "summary.json").read_bytes())["events"]["new"]
    events = sum(counts.values())
    what = f"backtest {rel(path)} --jobs {args.jobs}: {events:,} events"
    log(f"{what} in {seconds:.1f} s, CPU {cpu:.1f} s")
    return {
        **{"input": rel(path), "events": events, "build": running_build(), "seconds": seconds},
        "jobs": int(args.jobs),
        **{"events_per_s": events / seconds, "cpu_us_per_event": 1e6 * cpu / events},
        "until_days_after_end": until_days,
    }


def source_at(commit: str) -> Path:
    """The package (and the schemas it reads) as it was at `commit`, exported once."""
    where = CACHE / f"source-{commit}"
    if not (where / "siyu_stream").is_dir():
        git = ["git", "-C", str(ROOT), "archive", commit, "siyu_stream", "topics"]
        tar = subprocess.run(git, stdout=subprocess.PIPE, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(where.with_suffix(".partial"), filter="data")
        where.with_suffix(".partial").rename(where)
    return where


def cmd_cli(args: argparse.Namespace) -> dict[str, Any]:
    path, what = Path(args.input).resolve(), args.command
    bounds = bounds_of(first_and_last_time(path)[1], float(args.until_days or 0) or None)
    with path.open("rb") as handle:
        events = sum(1 for line in handle if line.strip())
    out = CACHE / f"cli-{what}-{args.at or 'installed'}"
    argv = [PYTHON, "-m", "siyu_stream.cli", what, str(path), "--partitions", "1"]
    argv += [x for k, v in bounds.items() for x in (f"--{k}", format_rfc3339(v))]
    if what == "replay":
        argv += ["--out", str(out.with_suffix(".jsonl")), "--deadletter", os.devnull]
    else:
        argv += ["--rules", str(backtest_rules()), "--out", str(out)]
    # PYTHONSAFEPATH: `python -m` would import a `siyu_stream` in its working directory first
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    if args.at:
        env["PYTHONPATH"] = str(source_at(args.at))
    started, cpu = time.perf_counter(), cpu_now()
    done = subprocess.run(
        argv, cwd=CACHE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    seconds, cpu = time.perf_counter() - started, cpu_now() - cpu
    if done.returncode != 0:
        msg = f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.decode()[-2000:]}"
        raise RuntimeError(msg)
    result: dict[str, Any] = {
        **{"command_run": what, "input": rel(path), "at": args.at, "events": events},
        **{"seconds": seconds, "events_per_s": events / seconds},
        "cpu_us_per_event": 1e6 * cpu / events,
    }
    if what == "replay":
        summary = done.stderr.decode().splitlines()[-2]  # the counts, then how to reproduce
        result["build"] = (
            summary.rsplit(", ", 1)[-1].removesuffix(" build")
            if "build" in summary
            else "interpreted"
        )
        with out.with_suffix(".jsonl").open("rb") as actions:
            result["actions"] = sum(1 for _ in actions)
    log(f"{what} {rel(path)} at {args.at or 'this install'}: {seconds:.1f} s, CPU {cpu:.1f} s")
    return result


def cmd_processor(args: argparse.Namespace) -> dict[str, Any]:
    from siyu_stream.live.processor import PartitionTask  # noqa: PLC0415
    from siyu_stream.live.records import Record  # noqa: PLC0415
    from siyu_stream.observe.observer import Observer, Stats  # noqa: PLC0415
    from siyu_stream.observe.wall import wall_clock  # noqa: PLC0415
    from siyu_stream.settings import Settings  # noqa: PLC0415
    from siyu_stream.simulate import SimConfig, generate  # noqa: PLC0415
    from siyu_stream.topology import Topology  # noqa: PLC0415
    from siyu_stream.traffic import restamp  # noqa: PLC0415

    # one partition: every record is local (no re-keying), like one worker owning them all
    settings = Settings(partitions=1, api_auth=False, web_port=0)
    now = wall_clock()
    simulated = generate(SimConfig(customers=SIM_CUSTOMERS, rate=SIM_RATE), args.events)
    records = [
        Record(settings.topic(r.topic), 0, i, r.key.encode(), restamp(r, now), now)
        for i, r in enumerate(simulated)
    ]

    task = PartitionTask(Rules(), Topology(settings), 0, {}, Observer(Stats(), Rules()))
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(records), 2_000):  # the worker's batch: handle, sweep, changelog
        clock = wall_clock()
        for record in records[i : i + 2_000]:
            task.enqueue(record, clock)
        task.sweep(clock)
        task.changelog()
        task.committed()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    n = len(records)
    log(f"PartitionTask: {n:,} events in {seconds:.1f} s = {n / seconds:,.0f}/s")
    return {"events": n, "events_per_s": n / seconds, "cpu_us_per_event": 1e6 * cpu / n}


def main() -> None:
    tune_gc()  # as `siyu-stream` does for every command
    run = {"input": None, "--until-days": None, "--jobs": 1, "--partitions": 1}
    script_main(
        __doc__,
        {
            "run": (cmd_run, run | {"--dump-states": None}),
            "backtest": (cmd_backtest, {"input": None, "--until-days": None, "--jobs": 1}),
            "cli": (cmd_cli, {"command": None, "input": None, "--until-days": None, "--at": None}),
            "processor": (cmd_processor, {"--events": 100_000}),
        },
    )


if __name__ == "__main__":
    main()
