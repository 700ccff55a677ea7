"""The history through the replay engine, as `replay` runs it, with the go-live rules.

One replay job over every partition (`replay.jobloop.Job`): the lines of the files,
merged by event time, queued per partition and type and taken in the worker's merge
order, with the live partitioner; referral credits reach their referrer's partition in
process, in merge order, as one replay job delivers them. What it emits (actions and
dead letters) is spilled per partition (`spill`); what it keeps in memory is the replay
engine's: one `CustomerState` per customer (and the job's bounded look-ahead). Events are
streamed from the files, never all held.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from siyu_stream.bootstrap.spill import Spill
from siyu_stream.core.actions import Action
from siyu_stream.core.clock import Millis
from siyu_stream.core.ruleset import Rules
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.jobloop import Job
from siyu_stream.replay.lines import Line, dead_letter, owned_lines
from siyu_stream.replay.parts import Tag
from siyu_stream.replay.run import collector_paused

DESTINATIONS = ("gift", "reminder", "change", "suppressed", "deadletter")
"""What a spilled record is (its code is the index here): an action kind, or a dead letter."""
DEADLETTER = DESTINATIONS.index("deadletter")
PROGRESS_LINES = 50_000
"""Lines between two progress lines on stderr."""


def line_partition(line: Line, partitions: int) -> int:
    """The partition a line belongs to: its customer's; a line without a readable customer
    id, partition 0 (as replay dead-letters it)."""
    customer: object = None
    if line.event is not None:
        customer = line.event.customer_id
    else:
        try:
            data = orjson.loads(line.raw)
        except orjson.JSONDecodeError:
            data = None
        customer = data.get("customer_id") if isinstance(data, dict) else None
    if not isinstance(customer, str):
        return 0
    return partition_for(customer.encode(), partitions)


class Outputs:
    """The engine's sink and the replay job's `Out`: every record to the spill of the
    partition a worker would have produced it on (an action keyed by its customer; a dead
    letter on its line's partition, keyed by the customer id when it has one)."""

    def __init__(self, spill: Spill, partitions: int) -> None:
        self.spill = spill
        self.partitions = partitions
        self.kinds: Counter[str] = Counter()
        self.suppressed: Counter[str] = Counter()

    def send(self, action: Action) -> None:
        key = action.customer_id.encode()
        p = partition_for(key, self.partitions)
        self.spill.add(p, DESTINATIONS.index(action.kind), key, action.to_json())
        self.kinds[action.kind] += 1
        if action.kind == "suppressed":
            self.suppressed[str(action.detail.get("reason"))] += 1

    def dead(self, line: Line, reason: str) -> None:
        p = line_partition(line, self.partitions)
        key = line.event.customer_id.encode() if line.event is not None else None
        self.spill.add(p, DEADLETTER, key, orjson.dumps(dead_letter(line, reason)))
        self.kinds["deadletter"] += 1

    def begin(self, tag: Tag) -> None:
        pass  # one job: the spill keeps the emission order, no tags to merge by

    def end(self) -> None:
        pass


@dataclass
class Built:
    """The run's result: the engine (its partitions' clocks), every state, the spill."""

    engine: Engine
    store: MemoryStore
    spill: Spill
    outputs: Outputs
    lines: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    inputs: list[str] = field(default_factory=list)


class Progress:
    """A progress line on stderr every PROGRESS_LINES lines: events, customers, bytes read
    (and the share of the input's bytes, when known)."""

    def __init__(self, out: IO[str] | None, total_bytes: int | None) -> None:
        self.out = out
        self.total = total_bytes
        self.started = time.monotonic()

    def line(self, built: Built) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        text = (
            f"bootstrap: {built.lines:,} events, {len(built.store.data):,} customers, "
            f"{built.bytes_read / 1e6:,.1f} MB read, {built.lines / seconds:,.0f} events/s"
        )
        if self.total:
            share = min(built.bytes_read / self.total, 1.0)
            bar = "#" * int(share * 20)
            text = f"[{bar:<20}] {share:4.0%} " + text
        return text

    def report(self, built: Built) -> None:
        if self.out is not None:
            self.out.write(self.line(built) + "\n")
            self.out.flush()


def build(
    paths: list[Path],
    rules: Rules,
    *,
    partitions: int,
    now: Millis,
    spill_dir: Path,
    progress: IO[str] | None = None,
) -> Built:
    """Run `rules` (with their go-live) over `paths` in replay's order; the outputs are
    spilled under `spill_dir`, the states kept in memory."""
    started = time.monotonic()
    spill = Spill(spill_dir, partitions)
    outputs = Outputs(spill, partitions)
    store = MemoryStore()
    engine = Engine(rules, store, outputs, partitions=partitions, now=now)
    built = Built(engine, store, spill, outputs, inputs=[str(p) for p in paths])
    meter = Progress(progress, sum(p.stat().st_size for p in paths))
    owned = frozenset(range(partitions))

    def counted() -> Iterator[tuple[int, int, Line]]:
        for item in owned_lines(paths, rules, partitions, owned):
            built.lines += 1
            built.bytes_read += len(item[2].raw) + 1
            if built.lines % PROGRESS_LINES == 0:
                meter.report(built)
            yield item

    job = Job(engine, counted(), owned, [0] * partitions, outputs)
    with collector_paused():
        job.run()
        job.finish(None)  # each partition's timers up to its own clock, as replay ends
    spill.close()
    built.seconds = time.monotonic() - started
    meter.report(built)
    return built
