"""Replay's input lines: JSONL files read (several merged by event time) and decoded, and
the dead-letter record of a line that is rejected. Shared by the replay merge
(`replay.Merge`, backtest) and the replay jobs (`jobloop`)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import orjson

from siyu_stream.core import deadletter
from siyu_stream.core.clock import Millis
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import KIND, Event, decode
from siyu_stream.core.ruleset import Input, Rules
from siyu_stream.eventtime.keys import customer_partition
from siyu_stream.eventtime.partition import check_time
from siyu_stream.settings import Settings
from siyu_stream.topology import INPUT_TYPES

_TOPIC_OF_TYPE: Final = {kind: Settings().topic(name) for name, kind in INPUT_TYPES.items()}
"""Dead letters name the topic a line's event would have come from (default prefix)."""
_RSTRIP: Final = bytes.rstrip
"""Taken once: compiled, a method called by name is looked up in its type every line."""


def _blank(raw: bytes) -> bool:
    """Empty or white space only (without a stripped copy). Every white space byte is
    below 33, so a line that starts with anything else is not blank without a scan."""
    return not raw or (raw[0] < 33 and raw.isspace())


@dataclass(slots=True, init=False, unsafe_hash=True)
class Line:
    """One non-blank input line (a dataclass with its constructor written out, as events
    are: one is built per line)."""

    path: Final[str]
    number: Final[int]
    raw: Final[bytes]
    event: Final[Event | None]
    error: Final[InvalidEvent | None]

    def __init__(
        self, path: str, number: int, raw: bytes, event: Event | None, error: InvalidEvent | None
    ) -> None:
        self.path = path
        self.number = number
        self.raw = raw
        self.event = event
        # without its traceback: the reason is all a dead letter needs, and the traceback
        # holds the frame that read the line, a reference cycle per rejected line
        self.error = error if error is None else error.with_traceback(None)


def read_lines(path: Path, rules: Rules) -> Iterator[Line]:
    name = str(path)  # once, not per line: Path.__str__ runs as interpreted code
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            raw = _RSTRIP(raw_line, b"\r\n")
            if _blank(raw):
                continue
            yield decode_line(name, number, raw, rules.input)


def decode_line(path: str, number: int, raw: bytes, limits: Input) -> Line:
    """Line `number` of `path`, decoded: its event, or why it has none."""
    try:
        return Line(path, number, raw, decode(raw, limits), None)
    except InvalidEvent as exc:
        return Line(path, number, raw, None, exc)


def checked(line: Line, now: Millis | None, rules: Rules) -> Line:
    """`line`, or the same line rejected if its event is too far after `--now`."""
    if line.event is not None and now is not None:
        try:
            check_time(line.event.at, now, "--now", rules)
        except InvalidEvent as exc:
            return Line(line.path, line.number, line.raw, line.event, exc)
    return line


class Revive:
    """A line read back from a partition's backlog, as the job first read it (not a
    method of the job: the parts hold it, and the job holds the parts)."""

    def __init__(self, rules: Rules, now: Millis | None) -> None:
        self.rules = rules
        self.now = now

    def __call__(self, path: str, number: int, raw: bytes) -> Line:
        rules = self.rules
        return checked(decode_line(path, number, raw, rules.input), self.now, rules)


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


_CUSTOMER_ONLY: Final[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(
    msgspec.defstruct("CustomerOnly", [("customer_id", object, None)])
)
"""A line's customer id and nothing else, read by the event decoder's parser: it skips
the other fields as the event decoder skips fields it does not know."""


def line_partition(raw: bytes, partitions: int, limit: int) -> int:
    """The partition of a line: its customer's, else 0 (a line whose customer id cannot
    be read is dead-lettered by whoever owns partition 0).

    Every job asks this of every line. The event decoder's parser reads the id and only
    skips the rest (0.4 µs a line, a third of a full parse), so a valid event gets its
    customer's partition by construction; a line that parser refuses is tried with the
    parser of the decoder's slow path, which may still accept it."""
    if partitions == 1 or len(raw) > limit:
        return 0
    customer: object = None
    try:
        customer = _CUSTOMER_ONLY.decode(raw).customer_id
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 0
        customer = data.get("customer_id") if isinstance(data, dict) else None
    return customer_partition(customer, partitions) if isinstance(customer, str) else 0


def owned_lines(
    paths: list[Path], rules: Rules, partitions: int, owned: frozenset[int]
) -> Iterator[tuple[int, int, Line]]:
    """(ordinal in the merged stream, partition, decoded line) of every non-blank line of
    the `owned` partitions, in `merged` order. One file: the other partitions' lines are
    only read for their customer id (`line_partition`); several files: every line is
    decoded (the merge by event time needs to know which lines are valid)."""
    limits = rules.input
    if len(paths) > 1:
        for ordinal, line in enumerate(merged(paths, rules)):
            if line.event is not None:
                p = customer_partition(line.event.customer_id, partitions)
            else:
                p = line_partition(line.raw, partitions, limits.max_message_bytes)
            if p in owned:
                yield ordinal, p, line
        return
    path, name = paths[0], str(paths[0])
    every = len(owned) == partitions  # one job: decode first (the fast path), parse no line twice
    ordinal = -1
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            raw = _RSTRIP(raw_line, b"\r\n")
            if _blank(raw):
                continue
            ordinal += 1
            if not every:  # another job's line is only read for its customer id
                p = line_partition(raw, partitions, limits.max_message_bytes)
                if p not in owned:
                    continue
            line = decode_line(name, number, raw, limits)
            if every:
                event = line.event
                if event is not None:
                    p = customer_partition(event.customer_id, partitions)
                else:
                    p = line_partition(raw, partitions, limits.max_message_bytes)
            yield ordinal, p, line


def dead_letter(line: Line, reason: str) -> dict[str, Any]:
    topic = None
    if line.event is not None:
        topic = _TOPIC_OF_TYPE[KIND[type(line.event)]]
    where = {"topic": topic, "partition": None, "offset": None}
    return {**deadletter.record(where, line.raw, reason), "file": line.path, "line": line.number}
