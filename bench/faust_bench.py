"""The peer in the same run: a faust-streaming app (bench/faust_peer.py) running the same rule
core, beside one siyu-stream worker and the raw aiokafka pipe, on the same local broker.

    faust_bench.py throughput [--events N] [--repeat R]
        pre-produce N simulator events (as `live_bench.py throughput`), then, per
        repetition, time the raw aiokafka pipe, one worker and the Faust peer, all
        at_least_once, each in a new consumer group over the same input: from ready until
        the group's committed offsets reach the ends of its input topics.
    faust_bench.py restart [--events N] [--repeat R] [--stop-at F] [--controls C]
        pre-produce N simulator events; per app, one clean run (the expectation), C more
        (judged like the rest: the noise floor of the counts that depend on order), then R
        runs stopped with SIGTERM once F of the clean run's output has appeared (F = 0:
        none stopped), restarted in the same group and left to finish. Per run (see
        `judge`): events lost (applied by the clean run, seen by no final state of this
        one) and how many of them never had their actions sent; action ids written more
        than once; action ids missing from or new to the clean run. at_least_once only:
        Faust's exactly_once processes nothing on noida-db.

A run is over when the group's committed offsets reach the ends of its inputs, or when
neither those offsets nor the output has moved for --stall seconds (Faust stops advancing
its commits after a gap in the offsets it processed): such a run is reported as stalled,
with its lag, and counted as it stands. A restart run whose app exits, is not ready within
--ready-timeout seconds or never finishes is reported the same way (`ended`: failed).
Every broker and app started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from importlib.metadata import version
from typing import Any

import orjson
from brokers import GIVE_UP, Broker, broker, ends, read, wait_consumed
from common import log, rel, script_main
from procs import STOP_GRACE, prepare, preproduce, summarize, time_consumer, wait_ready

from siyu_stream.core import state as state_format
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import digest
from siyu_stream.topology import INPUT_TYPES

PREFIX = "siyu"
GUARANTEE = "at_least_once"


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with broker("faust-throughput", args.broker) as b:
        events = sum((await preproduce(b, "sim", PREFIX, args.events)).values())
        for rep in range(args.repeat):
            for kind, group in (("raw", "peer-raw1-at"), ("worker", "peer-worker1-at")):
                mode = (kind, GUARANTEE, 1)
                runs.append(await time_consumer(b, mode, f"{PREFIX}-{group}-{rep}", events, PREFIX))
            group = f"{PREFIX}-peer-faust-{rep}"
            faust = ("faust", GUARANTEE, 1)
            runs.append(await time_consumer(b, faust, group, events, PREFIX, args.stall))
    summary = summarize(runs)
    return {
        "faust_streaming": version("faust-streaming"),
        "events": events,
        "summary": summary,
        "runs": runs,
    }


async def one_run(
    b: Broker, kind: str, group: str, stop_after: int | None, args: argparse.Namespace
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run the app (stopping it with SIGTERM after `stop_after` output records, then starting
    it again in the same group) until done; (figures, the actions it wrote). A restarted run
    that fails (an app that exits, is not ready within --ready-timeout s, or never finishes)
    is a figure: `ended` says how, and what it wrote is counted as it stands."""
    launch, topics, outputs = await prepare(b, (kind, GUARANTEE, 1), group, PREFIX)
    start = await ends(b.bootstrap, outputs)
    began, figures = time.monotonic(), dict[str, Any]()
    [proc] = launch(f"{group}-1")
    try:
        await asyncio.wait_for(wait_ready([proc]), args.ready_timeout)
        if stop_after is not None:
            await asyncio.wait_for(watch(b.bootstrap, outputs, start, stop_after), GIVE_UP)
            stopping = time.monotonic()
            proc.stop(STOP_GRACE)
            written = await ends(b.bootstrap, outputs)
            figures |= {
                "outputs_at_sigterm": stop_after,
                "outputs_at_exit": sum(written[tp] - start[tp] for tp in start),
                "stop_seconds": time.monotonic() - stopping,
                "exit_code": proc.proc.returncode,
                "log_before": rel(proc.log_path),
            }
            [proc] = launch(f"{group}-2")  # the same group: it resumes from the commits
            await asyncio.wait_for(wait_ready([proc]), args.ready_timeout)
        end, how = await wait_consumed(b.bootstrap, group, topics, outputs, args.stall)
        figures |= {"seconds": end - began, **how}
    except (RuntimeError, TimeoutError) as exc:
        if stop_after is None:
            raise  # a clean run that fails leaves nothing to compare with
        log(f"{group}: {type(exc).__name__}: {exc}")
        figures |= {"seconds": time.monotonic() - began, "ended": f"failed: {exc!r}", "lag": None}
    finally:
        proc.stop(STOP_GRACE)
    actions = [orjson.loads(m.value) for m in await read(b.bootstrap, outputs, start)]
    return figures | {"log": rel(proc.log_path)}, [
        (a["action_id"], a["cause_event_id"]) for a in actions
    ]


async def watch(bootstrap: str, outputs: list[str], start: dict[Any, int], target: int) -> None:
    """Return once `target` records have been written to `outputs` after `start`."""
    while sum(n - start[tp] for tp, n in (await ends(bootstrap, outputs)).items()) < target:
        await asyncio.sleep(0.05)


Inputs = dict[str, tuple[bytes, bytes]]
"""Input event id -> (customer key, digest of the event id), of every decodable input."""


async def read_inputs(bootstrap: str) -> Inputs:
    out: Inputs = {}
    for m in await read(bootstrap, [f"{PREFIX}.{name}" for name in INPUT_TYPES]):
        try:
            event_id = orjson.loads(m.value).get("event_id")
        except orjson.JSONDecodeError:
            continue  # a deliberately broken record: dead-lettered by both apps
        if isinstance(event_id, str):
            out[event_id] = (m.key or b"", digest(event_id))
    return out


async def applied(bootstrap: str, group: str, events: Inputs) -> set[str]:
    """The input events the final customer states (the changelog's last record per
    customer) have seen: applied, and durably so. Exact while no customer has more events
    than the de-duplication window (`restart` checks it). The worker's changelog and the
    Faust peer's table's have the same name."""
    latest = {m.key: m.value for m in await read(bootstrap, [f"{group}-customers-changelog"])}
    states = {k: state_format.loads(v) for k, v in latest.items() if k and v}
    return {e for e, (key, d) in events.items() if key in states and states[key].has_seen(d)}


def judge(
    clean_actions: dict[str, str],
    clean_applied: set[str],
    got: list[tuple[str, str]],
    run_applied: set[str],
) -> dict[str, Any]:
    """A run against the clean run of the same app on the same input.

    - events lost: applied by the clean run, in no final state of this run; of them, those
      whose actions (the clean run had some) never appeared at all;
    - actions doubled: action ids written more than once;
    - events silenced: applied here, with actions in the clean run, and not one action
      caused by them here (an event whose state survived but whose output did not);
    - actions missing / unexpected: ids of the clean run absent here, and the reverse.
      Not a loss count: rules depend on the order of a customer's events (a join before
      or after an order), the Faust peer applies records in the order they are fetched,
      and the worker's merge waits at most SIYU_MAX_TASK_IDLE_MS for a lagging topic, so
      on a loaded machine two clean runs differ too (measure it with `--stop-at 0`).
    """
    counts = Counter(a for a, _ in got)
    causes = {cause for _, cause in got}
    lost = clean_applied - run_applied
    clean_causes = set(clean_actions.values())
    return {
        "distinct_actions": len(counts),
        "events_applied": len(run_applied),
        "events_lost": len(lost),
        "events_lost_actions_never_sent": len((lost & clean_causes) - causes),
        "events_lost_sample": sorted(lost)[:10],
        "events_silenced": len((run_applied & clean_causes) - causes),
        "actions_doubled": sum(1 for c in counts.values() if c > 1),
        "actions_missing": sum(1 for a in clean_actions if a not in counts),
        "actions_unexpected": sum(1 for a in counts if a not in clean_actions),
    }


async def restart(args: argparse.Namespace) -> dict[str, Any]:
    apps: dict[str, Any] = {}
    with broker("faust-restart", args.broker) as b:
        total = sum((await preproduce(b, "sim", PREFIX, args.events)).values())
        events = await read_inputs(b.bootstrap)
        window = Rules().engine.dedup_window
        if max(Counter(key for key, _ in events.values()).values()) > window:
            msg = f"a customer has more than {window} events: their states forget the oldest"
            raise RuntimeError(msg)
        for kind in args.apps.split(","):
            group = f"{PREFIX}-rs-{kind}-clean"
            clean, got = await one_run(b, kind, group, None, args)
            clean_actions = dict(got)
            clean_applied = await applied(b.bootstrap, group, events)
            clean |= judge(clean_actions, clean_applied, got, clean_applied)
            applied_n = f"{len(clean_applied):,} of {len(events):,} events applied"
            log(f"{kind} clean: {applied_n}, {len(clean_actions):,} actions")
            runs, controls = [], []
            # a control: a second clean run judged like the others, the noise floor of the
            # counts that depend on order (silenced events, action ids missing or new)
            for rep in range(-args.controls, args.repeat):
                tag = f"control{-rep}" if rep < 0 else f"restart{rep}"
                stopped = rep >= 0 and args.stop_at > 0  # --stop-at 0: all controls
                stop_after = max(1, int(len(got) * args.stop_at)) if stopped else None
                group = f"{PREFIX}-rs-{kind}-{tag}"
                figures, actions = await one_run(b, kind, group, stop_after, args)
                figures |= judge(
                    clean_actions, clean_applied, actions, await applied(b.bootstrap, group, events)
                )
                log(
                    f"{kind} {tag}: lost {figures['events_lost']} events "
                    f"({figures['events_lost_actions_never_sent']} with actions never sent), "
                    f"{figures['events_silenced']} silenced, doubled {figures['actions_doubled']} "
                    f"actions; action ids {figures['actions_missing']} missing, "
                    f"{figures['actions_unexpected']} new; {figures['ended']}"
                )
                (runs if rep >= 0 else controls).append(figures)
            apps[kind] = {"clean": clean, "controls": controls, "runs": runs}
    return {
        "faust_streaming": version("faust-streaming"),
        "guarantee": GUARANTEE,
        "events": total,
        "input_event_ids": len(events),
        "stop_at": args.stop_at,
        "apps": apps,
    }


def main() -> None:
    on = {"--stall": 30.0, "--broker": "noida-db"}
    script_main(
        __doc__,
        {
            "throughput": (throughput, {"--events": 100_000, "--repeat": 3, **on}),
            "restart": (
                restart,
                {"--events": 20_000, "--repeat": 3, "--apps": "faust,worker", "--stop-at": 0.4}
                | {"--ready-timeout": 180.0, "--controls": 1, **on},
            ),
        },
    )


if __name__ == "__main__":
    main()
