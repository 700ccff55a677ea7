"""A replay job's outputs (`Output`: actions, dead letters, the index of its steps) and,
for `replay --jobs N`, the parent's merge of N jobs' outputs into the bytes one job
writes (`merge`)."""

from __future__ import annotations

import bisect
import pickle
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Final

import orjson

from siyu_stream.core.actions import Action
from siyu_stream.observe.observer import Stats, increment
from siyu_stream.replay.lines import Line, dead_letter
from siyu_stream.replay.parts import LOWEST, Tag
from siyu_stream.replay.spill import Runs

_CLEAR: Final = bytearray.clear
"""Taken once: compiled, a method called by name is looked up in its type every step."""
BUFFER = 1 << 20
"""Bytes a job buffers before writing its outputs (the parent reads them back once)."""
START_HELD = 65_536
"""Dead letters of lines rejected before the first step held in memory to be sorted into
line order; more are sorted in runs in a temporary file (`spill.Runs`)."""
INDEX_CHUNK = 8192
"""Index entries a job pickles at a time, and the parent reads at a time from each job:
neither holds a whole index (a year's history has millions of steps)."""
Entry = tuple[Any, ...]
"""A step in a job's index: the three fields of its tag, the bytes of its actions and of
its dead letters, the job. Flat, so that the parent unpickles and compares one tuple per
step; entries sort as their tags, which are unique. (Typed as a tuple of any length: see
`parts.Key`.)"""


class Output:
    """A job's outputs, step by step: the engine's sink and the job loop's `Out`. Lines
    rejected before the first step are sorted into line order first. With an `index`, a
    job among several also writes there the entry of each step (`Entry`)."""

    def __init__(
        self,
        actions: IO[bytes],
        dead: Callable[[bytes], object],
        *,
        json_dead: bool,
        index: IO[bytes] | None = None,
        job: int = 0,
        written: Callable[[], None] | None = None,
    ) -> None:
        self.write_actions = actions.write  # bound once: a step writes through it
        self.write_dead = dead
        self.json_dead = json_dead
        self.index = index
        self.job = job
        self.written = written
        """Called after each chunk of the index is written: flushes the outputs and tells
        the parent, which merges while the jobs run (`jobs.Feed`)."""
        self.entries: list[Entry] = []  # not yet written to `index`
        self.tag: Tag = (0, LOWEST, 0)
        self.a = bytearray()
        self.d = bytearray()
        self.start: Runs | None = Runs(START_HELD)

    def send(self, action: Action) -> None:
        self.a += action.to_line()

    def dead(self, line: Line, reason: str) -> None:
        if self.json_dead:
            self.d += orjson.dumps(dead_letter(line, reason)) + b"\n"
        else:
            self.d += f"{line.path}:{line.number}: rejected: {reason}\n".encode()

    def begin(self, tag: Tag) -> None:
        self.tag = tag

    def end(self) -> None:
        if self.start is None and self.index is None:  # one job, past its start: no copy
            if self.a:
                self.write_actions(self.a)
                _CLEAR(self.a)
            if self.d:
                self.write_dead(bytes(self.d))
                _CLEAR(self.d)
            return
        a, d = bytes(self.a), bytes(self.d)
        _CLEAR(self.a)
        _CLEAR(self.d)
        if self.tag[0] == 0 and self.start is not None:
            self.start.add((self.tag, a, d))
            return
        self._started()
        self._emit(self.tag, a, d)

    def close(self) -> None:
        """The run ended: write what waits."""
        self._started()
        self._write_entries()

    def _started(self) -> None:
        """The first step came (or none will): the lines rejected before it, in line order."""
        if self.start is not None:
            start, self.start = self.start, None
            for tag, a, d in start.sorted():
                self._emit(tag, a, d)

    def _emit(self, tag: Tag, a: bytes, d: bytes) -> None:
        if a:
            self.write_actions(a)
        if d:
            self.write_dead(d)
        if self.index is not None and (a or d):
            self.entries.append((tag[0], tag[1], tag[2], len(a), len(d), self.job))
            if len(self.entries) >= INDEX_CHUNK:
                self._write_entries()

    def _write_entries(self) -> None:
        if self.index is not None and self.entries:
            pickle.dump(self.entries, self.index, protocol=pickle.HIGHEST_PROTOCOL)
            self.entries = []
            if self.written is not None:
                self.written()


def job_file(directory: Path, kind: str, job: int) -> Path:
    """Where job `job` writes its `kind`: actions, dead (letters), index or stats."""
    return directory / f"{kind}-{job}"


def merge(
    directory: Path,
    jobs: int,
    next_chunk: Callable[[int], list[Entry]],
    out: IO[bytes],
    dead: Callable[[bytes], object],
) -> None:
    """The jobs' outputs in `directory`, to `out` and `dead` in tag order, while the jobs
    write them: `next_chunk(job)` returns the job's next chunk of its index once the job
    has written it and the bytes its entries name, and an empty one after its last."""
    with ExitStack() as files:
        actions = [files.enter_context(_read(directory, "actions", me)) for me in range(jobs)]
        deads = [files.enter_context(_read(directory, "dead", me)) for me in range(jobs)]
        # each job's index is in tag order; a chunk of it at a time from each (`ahead`).
        # Every entry up to the smallest last entry of those chunks comes before any entry
        # not read yet: those are taken, sorted together (in C: the sort merges sorted
        # runs) and copied, a run of one job's steps in one read and write per output;
        # the job whose chunk ran out reads its next.
        ahead = [next_chunk(me) for me in range(jobs)]
        while live := [chunk for chunk in ahead if chunk]:
            bound = min(chunk[-1] for chunk in live)
            batch: list[Entry] = []
            for me, chunk in enumerate(ahead):
                cut = bisect.bisect_right(chunk, bound)
                batch += chunk[:cut]
                del chunk[:cut]
                if cut and not chunk:
                    ahead[me] = next_chunk(me)
            batch.sort()
            job, a, d = -1, 0, 0
            for entry in batch:
                if entry[5] != job or a + d > BUFFER:
                    _copy(actions, deads, job, a, d, out, dead)
                    job, a, d = entry[5], 0, 0
                a += entry[3]
                d += entry[4]
            _copy(actions, deads, job, a, d, out, dead)


def total_stats(directory: Path, jobs: int) -> Stats:
    """The jobs' counts, summed (each writes them as it ends)."""
    total = Stats()
    for me in range(jobs):
        with job_file(directory, "stats", me).open("rb") as handle:
            _add(total, pickle.load(handle))
    return total


def _read(directory: Path, kind: str, job: int) -> IO[bytes]:
    return job_file(directory, kind, job).open("rb", buffering=BUFFER)


def read_chunk(index: IO[bytes]) -> list[Entry]:
    """The next chunk of a job's index (one the job has told it wrote)."""
    chunk: list[Entry] = pickle.load(index)
    return chunk


def _copy(  # noqa: PLR0917
    actions: list[IO[bytes]],
    deads: list[IO[bytes]],
    job: int,
    a: int,
    d: int,
    out: IO[bytes],
    dead: Callable[[bytes], object],
) -> None:
    """The next `a` bytes of `job`'s actions and `d` of its dead letters, to the outputs."""
    if a:
        out.write(actions[job].read(a))
    if d:
        dead(deads[job].read(d))


def _add(total: Stats, stats: Stats) -> None:
    for name in (
        "events",
        "actions",
        "deadletters",
        "suppressed",
        "gift_value_fen",
        "paid_orders",
        "order_value_fen",
    ):
        counts = getattr(total, name)
        for key, n in getattr(stats, name).items():
            increment(counts, key, n)
    total.timers_fired += stats.timers_fired
    total.buyers_outside_pool += stats.buyers_outside_pool
    total.buyers_joined += stats.buyers_joined
    total.gap_buckets = [a + b for a, b in zip(total.gap_buckets, stats.gap_buckets, strict=True)]
    total.gap_sum_days += stats.gap_sum_days
