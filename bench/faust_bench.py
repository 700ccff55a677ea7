"""The peer in the same run: a faust-streaming app (bench/faust_peer.py) running the same rule
core, beside one siyu-stream worker and the raw aiokafka pipe, on the same local broker.

    faust_bench.py throughput [--events N] [--repeat R]
        pre-produce N simulator events (as `live_bench.py throughput`), then, per
        repetition, time the raw aiokafka pipe, one worker and the Faust peer, all
        at_least_once, each in a new consumer group over the same input: from ready until
        the group's committed offsets reach the ends of its input topics.
    faust_bench.py restart [--events N] [--repeat R] [--apps faust,worker] [--stop-at F]
                           [--controls C]
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
import os
import time
from collections import Counter
from importlib.metadata import version
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from common import BENCH, CACHE, PYTHON, cpu_seconds, log, median, rel, script_main
from live_bench import preproduce, time_consumer
from procs import (
    GIVE_UP,
    PARTITIONS,
    STOP_GRACE,
    Child,
    WorkerProc,
    app,
    local_broker,
    wait_ready,
)

from siyu_stream.core import state as state_format
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import digest
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.embedded import LocalBroker
from siyu_stream.settings import KafkaConnection
from siyu_stream.topology import INPUT_TYPES, TopicSpec

PREFIX = "siyu"
FAUST_OUT = f"{PREFIX}.faust-out"
GUARANTEE = "at_least_once"


class FaustProc(Child):
    """bench/faust_peer.py as a `faust worker`, ready once a rebalance gave it partitions."""

    what = "faust peer"

    def __init__(self, broker: LocalBroker, group: str, name: str) -> None:
        self.ready_file = CACHE / f"faust-{name}.ready"
        self.ready_file.unlink(missing_ok=True)
        env = {
            **os.environ,
            "FAUST_PEER_BROKER": broker.bootstrap,
            "FAUST_PEER_APP_ID": group,
            "FAUST_PEER_PREFIX": PREFIX,
            "FAUST_PEER_OUT": FAUST_OUT,
            "FAUST_PEER_READY": str(self.ready_file),
        }
        argv = [PYTHON, str(BENCH / "faust_peer.py"), "worker", "--without-web", "-l", "info"]
        super().__init__(f"faust-{name}", argv, env)

    def _ready(self) -> bool:
        return self.ready_file.exists()

    def stop(self, grace: float = 15.0) -> None:
        super().stop(grace)
        self.ready_file.unlink(missing_ok=True)


def inputs() -> list[str]:
    return [f"{PREFIX}.{name}" for name in INPUT_TYPES]


async def wait_done(
    connection: KafkaConnection, group: str, topics: list[str], outputs: list[str], stall: float
) -> tuple[float, dict[str, Any]]:
    """(monotonic time the run ended, how): the group's committed offsets reached the ends
    of `topics`, or neither they nor the ends of `outputs` moved for `stall` seconds."""
    tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
    out_tps = [TopicPartition(t, p) for t in outputs for p in range(PARTITIONS)]
    admin = AIOKafkaAdminClient(**client_options(connection))
    consumer = AIOKafkaConsumer(**client_options(connection), enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + GIVE_UP
        seen: tuple[int, int] | None = None
        moved = time.monotonic()
        while time.monotonic() < deadline:
            ends = await consumer.end_offsets(tps)
            offsets = await admin.list_consumer_group_offsets(group)
            committed = {tp: offsets[tp].offset if tp in offsets else 0 for tp in tps}
            lag = sum(max(ends[tp] - max(committed[tp], 0), 0) for tp in tps)
            now = time.monotonic()
            if lag == 0:
                return now, {"ended": "consumed", "lag": 0}
            progress = (
                sum(committed.values()),
                sum((await consumer.end_offsets(out_tps)).values()),
            )
            if progress != seen:
                seen, moved = progress, now
            elif now - moved >= stall:
                log(f"group {group}: no progress for {stall:.0f} s, {lag:,} records behind")
                return moved, {"ended": "stalled", "lag": lag}
            await asyncio.sleep(0.1)
        msg = f"group {group} did not finish {topics} in {GIVE_UP} s"
        raise RuntimeError(msg)
    finally:
        await consumer.stop()
        await admin.close()


# ------------------------------------------------------------------ throughput


async def time_faust(broker: LocalBroker, group: str, events: int, stall: float) -> dict[str, Any]:
    await ensure_topics(broker.connection, [TopicSpec(FAUST_OUT, PARTITIONS)])
    broker_cpu = cpu_seconds(broker.pid or 0)
    proc = FaustProc(broker, group, group)
    try:
        ready = await wait_ready([proc])
        end, how = await wait_done(broker.connection, group, inputs(), [FAUST_OUT], stall)
        cpu = proc.cpu()
    finally:
        proc.stop()
    seconds = end - ready
    broker_cpu = cpu_seconds(broker.pid or 0) - broker_cpu
    startup = ready - proc.started
    log(
        f"faust x1 {GUARANTEE}: {events:,} in {seconds:.1f} s = {events / seconds:,.0f}/s "
        f"({how['ended']}; ready after {startup:.1f} s; cpu {cpu:.1f} s, broker cpu "
        f"{broker_cpu:.1f} s)"
    )
    return {
        "kind": "faust",
        "guarantee": GUARANTEE,
        "workers": 1,
        "group": group,
        "events": events,
        "startup_seconds": startup,
        "seconds": seconds,
        # a stalled run has no rate: it did not finish
        "events_per_s": events / seconds if how["ended"] == "consumed" else None,
        "process_cpu_seconds": cpu,
        "broker_cpu_seconds": broker_cpu,
        **how,
        "log": rel(proc.log_path),
    }


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    with local_broker("faust-throughput") as broker:
        per_topic = await preproduce(broker, "sim", PREFIX, args.events)
        events = sum(per_topic.values())
        for rep in range(args.repeat):
            for kind in ("raw", "worker"):
                group = f"{PREFIX}-peer-{kind}1-at-{rep}"
                mode = (kind, GUARANTEE, 1)
                runs.append(await time_consumer(broker, mode, group, events, PREFIX))
            runs.append(await time_faust(broker, f"{PREFIX}-peer-faust-{rep}", events, args.stall))
    summary: dict[str, Any] = {}
    for kind in ("raw", "worker", "faust"):
        mine = [r for r in runs if r["kind"] == kind]
        rates = [r["events_per_s"] for r in mine]
        done = [x for x in rates if x is not None]
        summary[f"{kind}-1-{GUARANTEE}"] = {
            "events_per_s_median": median(done) if done else None,
            "events_per_s_runs": rates,
            "startup_seconds_median": median([r["startup_seconds"] for r in mine]),
            "process_cpu_us_per_event_median": median(
                [1e6 * r["process_cpu_seconds"] / r["events"] for r in mine]
            ),
            "broker_cpu_us_per_event_median": median(
                [1e6 * r["broker_cpu_seconds"] / r["events"] for r in mine]
            ),
        }
    rate = {k.split("-")[0]: v["events_per_s_median"] for k, v in summary.items()}
    ratios = {
        "worker_over_faust": _ratio(rate["worker"], rate["faust"]),
        "faust_over_raw": _ratio(rate["faust"], rate["raw"]),
        "worker_over_raw": _ratio(rate["worker"], rate["raw"]),
    }
    log(f"ratios: {ratios}")
    return {
        "faust_streaming": version("faust-streaming"),
        "workload": "sim",
        "events": events,
        "per_topic": per_topic,
        "summary": summary,
        "ratios": ratios,
        "runs": runs,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


# ------------------------------------------------------------------ restart


class Target:
    """One app under test: how to start it, what it reads and where its actions go."""

    def __init__(self, kind: str, broker: LocalBroker, group: str) -> None:
        self.kind, self.broker, self.group = kind, broker, group
        self.starts = 0
        self.changelog = f"{group}-customers-changelog"  # Faust's name for the table's, too

    async def prepare(self) -> None:
        if self.kind == "faust":
            await ensure_topics(self.broker.connection, [TopicSpec(FAUST_OUT, PARTITIONS)])
            self.topics, self.outputs = inputs(), [FAUST_OUT]
        else:
            self.settings, topology = await app(self.broker, self.group, GUARANTEE, PREFIX)
            self.topics = [*topology.inputs, topology.commands]
            self.outputs = topology.outputs

    def start(self) -> Child:
        self.starts += 1
        name = f"{self.group}-{self.starts}"
        if self.kind == "faust":
            return FaustProc(self.broker, self.group, name)
        # the same data dir on restart, as a restarted pod keeps its volume
        return WorkerProc(self.settings, name, data_dir=CACHE / f"worker-data-{self.group}")


async def output_ends(connection: KafkaConnection, outputs: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(connection), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in outputs for p in range(PARTITIONS)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def read_actions(
    connection: KafkaConnection, start: dict[TopicPartition, int]
) -> list[tuple[str, str]]:
    """(action id, cause event id) of every record written after `start`, in offset order."""
    consumer = AIOKafkaConsumer(
        **client_options(connection), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = list(start)
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        out: list[tuple[str, str]] = []
        left = {tp for tp in tps if ends[tp] > start[tp]}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
            for tp, msgs in batch.items():
                for m in msgs:
                    action = orjson.loads(m.value)
                    out.append((action["action_id"], action["cause_event_id"]))
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return out
    finally:
        await consumer.stop()


async def watch_outputs(
    connection: KafkaConnection, start: dict[TopicPartition, int], target: int
) -> None:
    """Return once `target` records have been written after `start`."""
    consumer = AIOKafkaConsumer(**client_options(connection), enable_auto_commit=False)
    await consumer.start()
    try:
        while True:
            ends = await consumer.end_offsets(list(start))
            if sum(ends[tp] - start[tp] for tp in start) >= target:
                return
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()


async def one_run(
    target: Target, stop_after: int | None, stall: float, ready_timeout: float
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run the app (stopping it with SIGTERM after `stop_after` output records, then starting
    it again) until done; (figures, the actions it wrote). A restarted run that fails (an
    app that exits, is not ready within `ready_timeout` s, or never finishes) is a figure:
    `ended` says how, and what it wrote is counted as it stands."""
    connection = target.broker.connection
    start = await output_ends(connection, target.outputs)
    began = time.monotonic()
    figures: dict[str, Any] = {}
    proc = target.start()
    try:
        await asyncio.wait_for(wait_ready([proc]), ready_timeout)
        if stop_after is not None:
            await asyncio.wait_for(watch_outputs(connection, start, stop_after), GIVE_UP)
            stopping = time.monotonic()
            proc.stop(STOP_GRACE)
            ends = await output_ends(connection, target.outputs)
            figures |= {
                "outputs_at_sigterm": stop_after,
                "outputs_at_exit": sum(ends[tp] - start[tp] for tp in start),
                "stop_seconds": time.monotonic() - stopping,
                "exit_code": proc.proc.returncode,
                "log_before": rel(proc.log_path),
            }
            proc = target.start()
            await asyncio.wait_for(wait_ready([proc]), ready_timeout)
        end, how = await wait_done(connection, target.group, target.topics, target.outputs, stall)
        figures |= {"seconds": end - began, **how}
    except (RuntimeError, TimeoutError) as exc:
        if stop_after is None:
            raise  # a clean run that fails leaves nothing to compare with
        log(f"{target.group}: {type(exc).__name__}: {exc}")
        figures |= {"seconds": time.monotonic() - began, "ended": f"failed: {exc!r}", "lag": None}
    finally:
        proc.stop(STOP_GRACE)
    figures["log"] = rel(proc.log_path)
    return figures, await read_actions(connection, start)


async def read_topics(connection: KafkaConnection, topics: list[str]) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of `topics`, in offset order per partition."""
    consumer = AIOKafkaConsumer(
        **client_options(connection), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[tuple[bytes, bytes]] = []
        left = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
            for tp, msgs in batch.items():
                records += [(m.key or b"", m.value or b"") for m in msgs]
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return records
    finally:
        await consumer.stop()


Inputs = dict[str, tuple[bytes, bytes]]
"""Input event id -> (customer key, digest of the event id), of every decodable input."""


async def read_inputs(connection: KafkaConnection) -> Inputs:
    out: Inputs = {}
    for key, value in await read_topics(connection, inputs()):
        try:
            event_id = orjson.loads(value).get("event_id")
        except orjson.JSONDecodeError:
            continue  # a deliberately broken record: dead-lettered by both apps
        if isinstance(event_id, str):
            out[event_id] = (key, digest(event_id))
    return out


async def applied(connection: KafkaConnection, changelog: str, events: Inputs) -> set[str]:
    """The input events the final customer states (the changelog's last record per
    customer) have seen: applied, and durably so. Exact while no customer has more events
    than the de-duplication window (`restart` checks it)."""
    latest = dict(await read_topics(connection, [changelog]))  # the last record per key
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
    - actions doubled: action ids written more than once (their extra copies);
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
    doubled = {a: c for a, c in counts.items() if c > 1}
    clean_causes = set(clean_actions.values())
    with_actions = lost & clean_causes
    return {
        "output_records": len(got),
        "distinct_actions": len(counts),
        "events_applied": len(run_applied),
        "events_lost": len(lost),
        "events_lost_with_actions": len(with_actions),
        "events_lost_actions_never_sent": len(with_actions - causes),
        "events_lost_sample": sorted(lost)[:10],
        "events_silenced": len((run_applied & clean_causes) - causes),
        "actions_doubled": len(doubled),
        "extra_copies": sum(c - 1 for c in doubled.values()),
        "events_doubled": len({cause for a, cause in got if a in doubled}),
        "actions_missing": sum(1 for a in clean_actions if a not in counts),
        "actions_unexpected": sum(1 for a in counts if a not in clean_actions),
    }


async def restart(args: argparse.Namespace) -> dict[str, Any]:
    apps: dict[str, Any] = {}
    with local_broker("faust-restart") as broker:
        per_topic = await preproduce(broker, "sim", PREFIX, args.events)
        events = await read_inputs(broker.connection)
        per_customer = Counter(key for key, _ in events.values())
        window = Rules().engine.dedup_window
        if max(per_customer.values()) > window:
            msg = f"a customer has more than {window} events: their states forget the oldest"
            raise RuntimeError(msg)
        for kind in args.apps.split(","):
            target = Target(kind, broker, f"{PREFIX}-rs-{kind}-clean")
            await target.prepare()
            clean, got = await one_run(target, None, args.stall, args.ready_timeout)
            clean_actions = dict(got)
            clean_applied = await applied(broker.connection, target.changelog, events)
            clean |= judge(clean_actions, clean_applied, got, clean_applied)
            clean["events_with_actions"] = len(set(clean_actions.values()))
            log(
                f"{kind} clean: {len(events):,} input events, {len(clean_applied):,} applied, "
                f"{len(clean_actions):,} actions for {clean['events_with_actions']:,} events"
            )
            runs, controls = [], []
            # a control: a second clean run judged like the others, the noise floor of the
            # counts that depend on order (silenced events, action ids missing or new)
            for rep in range(-args.controls, args.repeat):
                tag = f"control {-rep}" if rep < 0 else f"restart {rep}"
                target = Target(kind, broker, f"{PREFIX}-rs-{kind}-{tag.replace(' ', '')}")
                await target.prepare()
                stopped = rep >= 0 and args.stop_at > 0  # --stop-at 0: all controls
                stop_after = max(1, int(len(got) * args.stop_at)) if stopped else None
                figures, actions = await one_run(target, stop_after, args.stall, args.ready_timeout)
                run_applied = await applied(broker.connection, target.changelog, events)
                figures |= judge(clean_actions, clean_applied, actions, run_applied)
                log(
                    f"{kind} {tag}: lost {figures['events_lost']} events "
                    f"({figures['events_lost_actions_never_sent']} with actions never sent), "
                    f"{figures['events_silenced']} silenced, "
                    f"doubled {figures['actions_doubled']} actions; missing "
                    f"{figures['actions_missing']}, unexpected {figures['actions_unexpected']} "
                    f"action ids; {figures['ended']}"
                )
                (runs if rep >= 0 else controls).append(figures)
            apps[kind] = {
                "clean": clean,
                "controls": controls,
                "runs": runs,
                "events_lost_runs": [r["events_lost"] for r in runs],
                "actions_doubled_runs": [r["actions_doubled"] for r in runs],
            }
    return {
        "faust_streaming": version("faust-streaming"),
        "guarantee": GUARANTEE,
        "events": sum(per_topic.values()),
        "per_topic": per_topic,
        "input_event_ids": len(events),
        "stop_at": args.stop_at,
        "apps": apps,
    }


def main() -> None:
    script_main(
        __doc__,
        {
            "throughput": (throughput, {"--events": 100_000, "--repeat": 3, "--stall": 30.0}),
            "restart": (
                restart,
                {"--events": 20_000, "--repeat": 3, "--apps": "faust,worker"}
                | {"--stop-at": 0.4, "--stall": 30.0, "--ready-timeout": 180.0, "--controls": 1},
            ),
        },
    )


if __name__ == "__main__":
    main()
