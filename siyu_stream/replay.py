"""Offline replay: JSONL input events -> the core on the replay clock -> JSONL actions.

Several input files are merged by occurred_at, as a consumer interleaves topics; the
order inside one file is kept (late events stay late, as on Kafka). Rejected lines go
to the dead-letter output with file, line and reason, and replay goes on.
"""

from __future__ import annotations

import base64
import heapq
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from siyu_stream.actions import Action
from siyu_stream.clock import Millis
from siyu_stream.engine import Counts, Engine, MemoryStore
from siyu_stream.errors import InvalidEvent
from siyu_stream.events import Event, decode
from siyu_stream.ruleset import Rules
from siyu_stream.schemas import INPUT_TOPIC_BY_TYPE

PROGRESS_SECONDS = 2.0


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
    try:
        value, encoding = line.raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(line.raw).decode(), "base64"
    topic = None
    if line.event is not None:
        topic = INPUT_TOPIC_BY_TYPE[type(line.event).__name__.lower()]
    return {
        "topic": topic,
        "partition": None,
        "offset": None,
        "reason": reason,
        "value": value,
        "encoding": encoding,
        "file": line.path,
        "line": line.number,
    }


class JsonlSink:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def send(self, action: Action) -> None:
        self.out.write(action.to_json() + b"\n")


def replay(
    paths: list[Path],
    out: IO[bytes],
    rules: Rules,
    *,
    until: Millis | None = None,
    deadletters: IO[bytes] | None = None,
    progress: IO[str] | None = None,
) -> Counts:
    """Run the engine over `paths`; returns the counts. Same input, same bytes out."""
    engine = Engine(rules, MemoryStore(), JsonlSink(out))
    started = last_report = time.monotonic()
    for n, line in enumerate(merged(paths, rules), start=1):
        try:
            if line.error is not None:
                raise line.error
            assert line.event is not None
            engine.handle(line.event)
        except InvalidEvent as exc:
            engine.counts.events["rejected"] += 1
            record = dead_letter(line, exc.full_reason)
            if deadletters is not None:
                deadletters.write(orjson.dumps(record) + b"\n")
            else:
                sys.stderr.write(f"{line.path}:{line.number}: rejected: {exc.full_reason}\n")
        if progress is not None and n % 4096 == 0:
            now = time.monotonic()
            if now - last_report >= PROGRESS_SECONDS:
                last_report = now
                progress.write(f"replay: {n:,} events, {n / (now - started):,.0f} events/s\n")
    if until is not None:
        engine.advance(until)
    elif engine.clock is not None:
        engine.advance(engine.clock)
    return engine.counts


def summary(counts: Counts, seconds: float) -> str:
    events = counts.events
    total = sum(events.values())
    kinds = ", ".join(
        f"{k} {counts.actions[k]:,}" for k in ("gift", "reminder", "change", "suppressed")
    )
    rate = total / seconds if seconds > 0 else 0.0
    return (
        f"replay: {total:,} events ({events['ok']:,} ok, {events['duplicate']:,} duplicates, "
        f"{events['rejected']:,} rejected), {sum(counts.actions.values()):,} actions ({kinds}), "
        f"{counts.timers_fired:,} timers fired, {seconds:.1f} s, {rate:,.0f} events/s"
    )
