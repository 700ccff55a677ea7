"""Offline replay: JSONL input events -> the engine, per partition -> JSONL actions.

The lines (several files merged by occurred_at, each file's order kept) are queued per
partition and event type and taken in the live worker's merge order (`Merge`), each
partition on its own clock, so that replay emits what the worker emits. Rejected lines
go to the dead-letter output with file, line and reason, and replay goes on.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from siyu_stream import deadletter
from siyu_stream.actions import Action, ReferralCredit
from siyu_stream.clock import Millis
from siyu_stream.engine import Engine, MemoryStore
from siyu_stream.errors import InvalidEvent
from siyu_stream.events import Event, decode
from siyu_stream.keys import partition_for
from siyu_stream.merge import Queues
from siyu_stream.observe import Stats
from siyu_stream.partition import check_time, credit_key, sort_key
from siyu_stream.ruleset import Rules
from siyu_stream.settings import Settings
from siyu_stream.topology import INPUT_TYPES

PROGRESS_SECONDS = 2.0
_TOPIC_OF_TYPE = {kind: Settings().topic(name) for name, kind in INPUT_TYPES.items()}
"""Dead letters name the topic a line's event would have come from (default prefix)."""


@dataclass(frozen=True, slots=True)
class Line:
    path: str
    number: int
    raw: bytes
    event: Event | None
    error: InvalidEvent | None


def read_lines(path: Path, rules: Rules) -> Iterator[Line]:
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            raw = raw_line.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                yield Line(str(path), number, raw, decode(raw, rules.input), None)
            except InvalidEvent as exc:
                yield Line(str(path), number, raw, None, exc)


def merged(paths: list[Path], rules: Rules) -> Iterator[Line]:
    """One stream of lines; several files are merged by event time, stable per file."""
    if len(paths) == 1:
        yield from read_lines(paths[0], rules)
        return

    def keyed(index: int, path: Path) -> Iterator[tuple[Millis, int, int, Line]]:
        last = -(2**62)  # a bad line sorts with the valid line before it
        for line in read_lines(path, rules):
            if line.event is not None:
                last = line.event.at
            yield (last, index, line.number, line)

    streams = [keyed(i, p) for i, p in enumerate(paths)]
    for *_, line in heapq.merge(*streams):
        yield line


def dead_letter(line: Line, reason: str) -> dict[str, Any]:
    topic = None
    if line.event is not None:
        topic = _TOPIC_OF_TYPE[type(line.event).__name__.lower()]
    where = {"topic": topic, "partition": None, "offset": None}
    return {**deadletter.record(where, line.raw, reason), "file": line.path, "line": line.number}


class JsonlSink:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def send(self, action: Action) -> None:
        self.out.write(action.to_json() + b"\n")


LOOKAHEAD = 100_000
"""Lines replay reads ahead to find the next record of a queue that is empty (the live
worker waits for a lagging topic partition instead). Beyond it, replay goes on as a
worker does once its idle time is over."""


class Merge:
    """The live worker's merge order, per partition, over the lines of the input files:
    one queue per (partition, event type) in file order, one per partition for credits."""

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
        self.inputs = {f"{p}:{kind}" for p in range(count) for kind in INPUT_TYPES.values()}
        self.exhausted = False
        self.read = 0

    def _source(self, customer_id: str, kind: str) -> str:
        count = len(self.engine.partitions)
        return f"{partition_for(customer_id.encode(), count) if count > 1 else 0}:{kind}"

    def _read_one(self) -> bool:
        line = next(self.lines, None)
        if line is None:
            self.exhausted = True
            return False
        self.read += 1
        error = line.error
        if line.event is not None and self.engine.now is not None:
            try:
                check_time(line.event.at, self.engine.now, "--now", self.engine.rules)
            except InvalidEvent as exc:
                error = exc
        if error is not None:  # changes no state: its place in the order does not matter
            kind = type(line.event).__name__.lower() if line.event is not None else "?"
            self.engine.stats.events[(kind, "rejected")] += 1
            self.rejected(line, error.full_reason)
            return True
        assert line.event is not None
        kind = type(line.event).__name__.lower()
        self.queues.push(self._source(line.event.customer_id, kind), sort_key(line.event), line)
        return True

    def _fill(self) -> None:
        """Read until every input queue has a head, the input ends or the look-ahead is full."""
        while not self.exhausted and len(self.queues) < LOOKAHEAD:
            if not any(s in self.inputs for s in self.queues.empty()):
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
                    engine.stats.events[(type(item.event).__name__.lower(), "rejected")] += 1
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
) -> Stats:
    """Run the engine over `paths`; returns its counters. Same input, `now` and partitions,
    same bytes out. `now` bounds how far ahead an event may be (default: the wall clock
    when replay starts)."""
    if now is None:
        now = time.time_ns() // 1_000_000
    engine = Engine(rules, MemoryStore(), JsonlSink(out), partitions=partitions, now=now)

    def rejected(line: Line, reason: str) -> None:
        record = dead_letter(line, reason)
        if deadletters is not None:
            deadletters.write(orjson.dumps(record) + b"\n")
        else:
            sys.stderr.write(f"{line.path}:{line.number}: rejected: {reason}\n")

    started = last_report = time.monotonic()
    for n in Merge(engine, merged(paths, rules), rejected).run():
        if progress is not None:
            clock = time.monotonic()
            if clock - last_report >= PROGRESS_SECONDS:
                last_report = clock
                progress.write(f"replay: {n:,} events, {n / (clock - started):,.0f} events/s\n")
    engine.advance(until)
    engine.stats.timers_fired = engine.timers_fired
    return engine.stats


def summary(stats: Stats, seconds: float) -> str:
    events, actions = stats.by_outcome(), stats.by_kind()
    total = sum(events.values())
    kinds = ", ".join(f"{k} {actions[k]:,}" for k in ("gift", "reminder", "change", "suppressed"))
    rate = total / seconds if seconds > 0 else 0.0
    return (
        f"replay: {total:,} events ({events['ok']:,} ok, {events['duplicate']:,} duplicates, "
        f"{events['rejected']:,} rejected), {sum(actions.values()):,} actions ({kinds}), "
        f"{stats.timers_fired:,} timers fired, {seconds:.1f} s, {rate:,.0f} events/s"
    )
