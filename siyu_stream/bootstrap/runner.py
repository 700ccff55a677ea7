"""The bootstrap run, from the history to the topics:

1. refuse while a worker of the app is running (its consumer group has members);
2. the start offsets: the input topics' end, or their first record from go-live on;
3. with `--from-kafka`, the input topics' history up to exactly those offsets;
4. the history through the engine with the go-live rules (`build`): states in memory,
   outputs spilled to disk;
5. refuse again (the run may have taken hours), then per partition its outputs, its
   changelog and its group offsets in transactions (`plan`, `publish`);
6. a summary.

Nothing is written to Kafka before step 5. A crash in step 5 leaves the partitions
written so far complete (their offsets committed with their last records) and at most one
partition in part; the same bootstrap run again writes every partition again, with the
same changelog records (docs/go-live.md).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from siyu_stream.bootstrap import plan, publish
from siyu_stream.bootstrap.build import Built, build
from siyu_stream.bootstrap.plan import Where
from siyu_stream.core.clock import format_rfc3339
from siyu_stream.core.golive import GoLive
from siyu_stream.core.ruleset import Rules
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.live.records import Out
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology


@dataclass
class Written:
    """What went to Kafka."""

    states: int = 0
    changelog_bytes: int = 0
    outputs: Counter[str] = field(default_factory=Counter)
    """Records per topic."""
    output_bytes: int = 0
    transactions: int = 0


def run(
    settings: Settings,
    rules: Rules,
    paths: list[Path],
    *,
    from_kafka: bool,
    start: str,
    now: int,
    progress: IO[str] | None = None,
) -> tuple[Built, Written]:
    """The bootstrap of `settings`' app (broker, app id, partitions) with `rules`, which
    go live; prints progress and the summary to `progress` (default: stderr)."""
    if progress is None:
        progress = sys.stderr  # looked up now: the caller may have replaced it
    go_live = rules.go_live
    assert go_live is not None, "a bootstrap goes live"
    started = time.monotonic()

    async def prepare(directory: Path) -> tuple[dict[Where, int], list[Path]]:
        await publish.ensure_idle(settings)
        # the topics with the run's partition count, or an error before any work
        await ensure_topics(settings.kafka, Topology(settings).specs())
        offsets = await publish.find_offsets(settings, start, go_live.at)
        history: list[Path] = []
        if from_kafka:
            history = await publish.read_history(settings, offsets, directory, progress)
        return offsets, history

    with tempfile.TemporaryDirectory(prefix="siyu-bootstrap-") as tmp:
        directory = Path(tmp)
        (directory / "kafka").mkdir()
        offsets, history = asyncio.run(prepare(directory / "kafka"))
        built = build(
            [*paths, *history],
            rules,
            partitions=settings.partitions,
            now=now,
            spill_dir=directory,
            progress=progress,
        )
        written = asyncio.run(write(settings, built, offsets, progress))
    print(summary(built, written, go_live, start, time.monotonic() - started), file=progress)
    print(
        f"bootstrap: --now {format_rfc3339(now)} (a re-run with the same --now and input "
        "writes the same changelog)",
        file=progress,
    )
    return built, written


async def write(
    settings: Settings, built: Built, offsets: dict[Where, int], progress: IO[str]
) -> Written:
    """Every partition's records and offsets, one partition after the other."""
    await publish.ensure_idle(settings)  # the run may have taken hours: check again
    topology = Topology(settings)
    written = Written()
    for p, ids in enumerate(plan.ids_by_partition(built)):

        def records(p: int = p, ids: list[str] = ids) -> Iterator[Out]:
            for record in plan.output_records(built, topology, p):
                written.outputs[record.topic] += 1
                written.output_bytes += plan.size(record)
                yield record
            for record in plan.changelog_records(built, topology, p, ids):
                written.states += record.key != b""
                written.changelog_bytes += plan.size(record)
                yield record

        mine = {w: o for w, o in offsets.items() if w.partition == p}
        transactions, _ = await publish.write_partition(
            settings, p, records(), mine, plan.CHUNK_BYTES
        )
        written.transactions += transactions
        progress.write(
            f"bootstrap: partition {p + 1}/{settings.partitions} written "
            f"({len(ids):,} states, {transactions} transaction(s))\n"
        )
        progress.flush()
    return written


def summary(built: Built, written: Written, go_live: GoLive, start: str, seconds: float) -> str:
    events = built.engine.stats.by_outcome()
    kinds = built.outputs.kinds
    actions = ", ".join(f"{k} {kinds[k]:,}" for k in ("gift", "reminder", "change", "suppressed"))
    held = built.outputs.suppressed.get("before_go_live", 0)
    rate = built.lines / built.seconds if built.seconds > 0 else 0.0
    return (
        f"bootstrap: {built.lines:,} events ({events['ok']:,} ok, "
        f"{events['duplicate']:,} duplicates, {events['rejected']:,} rejected) in "
        f"{built.seconds:.1f} s ({rate:,.0f} events/s); "
        f"{built.engine.timers_fired:,} timers fired\n"
        f"bootstrap: {len(built.store.data):,} customers; changelog {written.states:,} states, "
        f"{written.changelog_bytes / 1e6:,.2f} MB\n"
        f"bootstrap: outputs {actions} ({held:,} suppressed before go-live), "
        f"dead letters {kinds['deadletter']:,}: {written.output_bytes / 1e6:,.2f} MB\n"
        f"bootstrap: {len(built.engine.partitions)} partitions in {written.transactions} "
        f"transactions; workers start at the input topics' {start} (go-live "
        f"{format_rfc3339(go_live.at)}, gifts granted from {format_rfc3339(go_live.grant_from)}); "
        f"{seconds:.1f} s in all"
    )
