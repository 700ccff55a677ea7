"""Offline replay: JSONL input events -> the engine, per partition -> JSONL actions.

The lines (several files merged by occurred_at, each file's order kept) are queued per
partition and event type and taken in the live worker's merge order, each partition on
its own clock, so that replay emits what the worker emits (`jobloop`). `--jobs N` runs
the partitions in N processes with the same bytes out (`jobs`). Rejected lines go to the
dead-letter output with file, line and reason, and replay goes on. `Merge` is the same
order for backtest, which drives two engines in lockstep in one process.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from siyu_stream.build import build
from siyu_stream.core.actions import Action, ReferralCredit
from siyu_stream.core.clock import Millis
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import KIND
from siyu_stream.core.ruleset import Rules
from siyu_stream.eventtime.keys import customer_partition
from siyu_stream.eventtime.merge import Queues
from siyu_stream.eventtime.partition import credit_key, sort_key
from siyu_stream.observe.observer import Stats, increment
from siyu_stream.replay import jobs as parallel
from siyu_stream.replay.engine import Engine
from siyu_stream.replay.jobloop import LOOKAHEAD
from siyu_stream.replay.lines import Line, checked, dead_letter, merged, read_lines
from siyu_stream.topology import INPUT_TYPES

__all__ = ["LOOKAHEAD", "JsonlSink", "Line", "Merge", "dead_letter", "merged", "read_lines"]
__all__ += ["collector_paused", "replay", "summary"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector off for an offline run (replay, backtest, bootstrap), on again
    after it. The rule core and the merge loop build no reference cycles per event
    (tests/test_gc.py), so reference counting frees everything they drop and the collector
    only re-scans the states being built: 9-10 % of the CPU of a replay of a year's history,
    more on a larger one. A run's few cycles (the engine and its partitions) are collected
    after it; `--jobs` processes inherit the setting when forked."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        _to_oldest()
        if enabled:
            gc.enable()


def _to_oldest() -> None:
    """Move what the run left alive to the oldest generation, unscanned. Resumed, the
    collector would otherwise scan all of it at once, as the youngest generation: the
    states a bootstrap keeps to write them out (for a backtest that kept its engines to
    its summary: 0.4 s of 5.5 s over 40,000 events). In the oldest generation they wait
    for a full collection, like any long-lived object. (Through the permanent generation,
    and only when the caller froze nothing there: unfreezing moves all of it.)"""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


class JsonlSink:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def send(self, action: Action) -> None:
        self.out.write(action.to_line())


class Merge:
    """The live worker's merge order, per partition, over the lines of the input files:
    one queue per (partition, event type) in file order, one per partition for credits.
    Backtest's merge: it reads ahead over all partitions at once (LOOKAHEAD in total),
    where `replay` reads ahead per partition; the orders agree unless a queue waits for
    more than LOOKAHEAD records."""

    def __init__(
        self, engine: Engine, lines: Iterator[Line], rejected: Callable[[Line, str], None]
    ):
        self.engine = engine
        self.lines = lines
        self.rejected = rejected
        count = len(engine.partitions)
        self.queues: Queues[Line | ReferralCredit] = Queues(
            f"{p}:{kind}" for p in range(count) for kind in (*INPUT_TYPES.values(), "credit")
        )
        self.inputs = frozenset(
            f"{p}:{kind}" for p in range(count) for kind in INPUT_TYPES.values()
        )
        self.exhausted = False
        self.read = 0

    def _source(self, customer_id: str, kind: str) -> str:
        return f"{customer_partition(customer_id, len(self.engine.partitions))}:{kind}"

    def _read_one(self) -> bool:
        line = next(self.lines, None)
        if line is None:
            self.exhausted = True
            return False
        self.read += 1
        line = checked(line, self.engine.now, self.engine.rules)
        error = line.error
        if error is not None:  # changes no state: its place in the order does not matter
            kind = KIND[type(line.event)] if line.event is not None else "?"
            increment(self.engine.stats.events, (kind, "rejected"))
            self.rejected(line, error.full_reason)
            return True
        assert line.event is not None
        kind = KIND[type(line.event)]
        self.queues.push(self._source(line.event.customer_id, kind), sort_key(line.event), line)
        return True

    def _fill(self) -> None:
        """Read until every input queue has a head, the input ends or the look-ahead is full."""
        while not self.exhausted and len(self.queues) < LOOKAHEAD:
            if not self.queues.starved(self.inputs):
                return
            self._read_one()

    def run(self) -> Iterator[int]:
        """Take every record in merge order; yields the lines read so far, now and then."""
        engine = self.engine
        reported = 0
        while True:
            self._fill()
            head = self.queues.head()
            if head is None:
                if self.exhausted:
                    return
                continue
            source, _, item = head
            self.queues.pop(source)
            if isinstance(item, ReferralCredit):
                engine.credit(item)
            else:
                assert item.event is not None
                try:
                    step = engine.apply(item.event)
                except InvalidEvent as exc:
                    increment(engine.stats.events, (KIND[type(item.event)], "rejected"))
                    self.rejected(item, exc.full_reason)
                    continue
                if step.outcome == "rejected":
                    self.rejected(item, step.reason or "rejected")
            for credit in engine.credits:
                self.queues.push(
                    self._source(credit.referrer_id, "credit"), credit_key(credit), credit
                )
            engine.credits.clear()
            if self.read - reported >= 4096:
                reported = self.read
                yield self.read


def replay(
    paths: list[Path],
    out: IO[bytes],
    rules: Rules,
    *,
    until: Millis | None = None,
    now: Millis | None = None,
    partitions: int = 1,
    deadletters: IO[bytes] | None = None,
    progress: IO[str] | None = None,
    jobs: int = 1,
) -> Stats:
    """Run the engine over `paths`; returns its counters. Same input, `now` and partitions,
    same bytes out, whatever the `jobs` (processes, 1..partitions). `now` bounds how far
    ahead an event may be (default: the wall clock when replay starts)."""
    if now is None:
        now = time.time_ns() // 1_000_000
    with collector_paused():
        return parallel.run(
            paths,
            out,
            rules,
            until=until,
            now=now,
            partitions=partitions,
            deadletters=deadletters,
            progress=progress,
            jobs=jobs,
        )


def summary(stats: Stats, seconds: float) -> str:
    events, actions = stats.by_outcome(), stats.by_kind()
    total = sum(events.values())
    kinds = ", ".join(f"{k} {actions[k]:,}" for k in ("gift", "reminder", "change", "suppressed"))
    rate = total / seconds if seconds > 0 else 0.0
    held = stats.suppressed.get("before_go_live", 0)
    if held:
        kinds += f" ({held:,} suppressed before go-live)"
    return (
        f"replay: {total:,} events ({events['ok']:,} ok, {events['duplicate']:,} duplicates, "
        f"{events['rejected']:,} rejected), {sum(actions.values()):,} actions ({kinds}), "
        f"{stats.timers_fired:,} timers fired, {seconds:.1f} s, {rate:,.0f} events/s, "
        f"{build()} build"
    )
