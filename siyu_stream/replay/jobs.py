"""`replay --jobs N`: the partitions split over N processes, one output.

Partition p goes to job p mod N. Every job reads every line, reads only the customer id
of the other jobs' lines, and runs `jobloop.Job` over its own partitions; credits for a
referrer in another job, with the job's look-ahead bound, travel over one pipe per pair
of jobs (docs/design.md §5). Each job writes its actions and dead letters to files with
an index of step tags, in chunks; the parent merges the jobs' steps by tag, a chunk of
each index at a time, which is the order `--jobs 1` writes them in, so the bytes are the
same for any N. One job runs in-process.
"""

from __future__ import annotations

import bisect
import pickle
import select
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any, Final

import orjson

from siyu_stream.core.actions import Action
from siyu_stream.core.clock import Millis
from siyu_stream.core.errors import SiyuError
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.schemas import build_input_decoders
from siyu_stream.observe.observer import Stats, increment
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.jobloop import Job
from siyu_stream.replay.lines import Line, dead_letter, owned_lines
from siyu_stream.replay.parts import HIGHEST, LOWEST, Credit, Key, Tag

PROGRESS_SECONDS = 2.0
BUFFER = 1 << 20
"""Bytes a job buffers before writing its outputs (the parent reads them back once)."""
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
    ) -> None:
        self.actions = actions
        self.write_dead = dead
        self.json_dead = json_dead
        self.index = index
        self.job = job
        self.entries: list[Entry] = []  # not yet written to `index`
        self.tag: Tag = (0, LOWEST, 0)
        self.a = bytearray()
        self.d = bytearray()
        self.start: list[tuple[Tag, bytes, bytes]] | None = []

    def send(self, action: Action) -> None:
        self.a += action.to_json()
        self.a += b"\n"

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
                self.actions.write(self.a)
                self.a.clear()
            if self.d:
                self.write_dead(bytes(self.d))
                self.d.clear()
            return
        a, d = bytes(self.a), bytes(self.d)
        self.a.clear()
        self.d.clear()
        if self.tag[0] == 0 and self.start is not None:
            self.start.append((self.tag, a, d))
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
            start, self.start = sorted(self.start), None
            for entry in start:
                self._emit(*entry)

    def _emit(self, tag: Tag, a: bytes, d: bytes) -> None:
        if a:
            self.actions.write(a)
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


def _stderr(data: bytes) -> None:
    sys.stderr.write(data.decode())


def _progress(stream: IO[str] | None) -> Callable[[int], None] | None:
    if stream is None:
        return None
    started = last = time.monotonic()

    def report(lines: int) -> None:
        nonlocal last
        clock = time.monotonic()
        if clock - last >= PROGRESS_SECONDS:
            last = clock
            stream.write(f"replay: {lines:,} events, {lines / (clock - started):,.0f} events/s\n")
            stream.flush()

    return report


def run(
    paths: list[Path],
    out: IO[bytes],
    rules: Rules,
    *,
    until: Millis | None,
    now: Millis,
    partitions: int,
    deadletters: IO[bytes] | None,
    progress: IO[str] | None,
    jobs: int,
) -> Stats:
    if not 1 <= jobs <= partitions:
        msg = f"jobs: expected 1..{partitions} (the partitions), got {jobs}"
        raise ValueError(msg)
    dead = deadletters.write if deadletters is not None else _stderr
    if jobs == 1:
        output = Output(out, dead, json_dead=deadletters is not None)
        stats, _ = _job(
            paths, rules, until, now, partitions, 0, 1, output, None, _progress(progress)
        )
        return stats
    out.flush()
    if deadletters is not None:
        deadletters.flush()
    build_input_decoders()  # once, before the jobs fork, instead of once in each job
    with tempfile.TemporaryDirectory(prefix="siyu-jobs-") as tmp:
        directory = Path(tmp)
        _start(paths, rules, until, now, partitions, jobs, directory, deadletters, progress)
        return _merge(directory, jobs, out, dead)


def _job(  # noqa: PLR0917
    paths: list[Path],
    rules: Rules,
    until: Millis | None,
    now: Millis,
    partitions: int,
    me: int,
    jobs: int,
    output: Output,
    peers: Pipes | None,
    progress: Callable[[int], None] | None,
) -> tuple[Stats, Engine]:
    engine = Engine(rules, MemoryStore(), output, partitions=partitions, now=now)
    owned = frozenset(p for p in range(partitions) if p % jobs == me)
    lines = owned_lines(paths, rules, partitions, owned)
    job_of = [p % jobs for p in range(partitions)]
    job = Job(engine, lines, owned, job_of, output, peers, progress)
    job.run()
    job.finish(until)
    output.close()
    engine.stats.timers_fired = engine.timers_fired
    return engine.stats, engine


class Pipes:
    """The other jobs: a pipe from each and to each (`parts.Peers`)."""

    def __init__(self, inbox: dict[int, Connection], outbox: dict[int, Connection]) -> None:
        self.inbox = dict(inbox)
        self.outbox = outbox
        self.bounds: dict[int, Key] = dict.fromkeys(inbox, LOWEST)
        self.low = LOWEST  # the smallest bound
        self.needs: dict[int, Key] = {}
        self.need: Key | None = None
        self.sent = LOWEST
        self.heard = 0
        self.poller = select.poll()  # one system call per look, every step
        self.by_fd = {conn.fileno(): job for job, conn in inbox.items()}
        for fd in self.by_fd:
            self.poller.register(fd, select.POLLIN)

    def receive(self, *, block: bool) -> list[Credit]:
        got: list[Credit] = []
        timeout = None if block else 0
        while self.inbox:
            ready = self.poller.poll(timeout)
            if not ready:
                break
            timeout = 0
            for fd, _ in ready:
                job = self.by_fd[fd]
                try:
                    credits, bound, need = self.inbox[job].recv()
                except EOFError:
                    msg = f"replay job {job} stopped before its end"
                    raise SiyuError(msg) from None
                self.heard += 1
                got.extend(credits)
                if bound < self.bounds[job]:
                    msg = f"replay job {job} lowered its bound"
                    raise RuntimeError(msg)
                self.bounds[job] = bound
                if need is not None:
                    self.needs[job] = need
                if bound == HIGHEST:  # its last message
                    del self.inbox[job]
                    self.poller.unregister(fd)
            self.low = min(self.bounds.values())
            self.need = min(self.needs.values(), default=None)
        return got

    def allows(self, group: Key, sender: int | None = None) -> bool:
        """Every credit of a group below `group` is here (`sender`'s own credits of that
        group come in order: its bound may still equal it)."""
        if self.low > group:
            return True
        return all(bound > group for job, bound in self.bounds.items() if job != sender)

    def done(self) -> bool:
        return all(bound == HIGHEST for bound in self.bounds.values())

    def send(self, credits: list[tuple[int, Credit]], bound: Key, need: Key | None) -> None:
        if self.sent == HIGHEST and not credits:
            return
        self.sent = bound
        if self.need is not None and self.need < bound:
            self.needs = {job: n for job, n in self.needs.items() if n >= bound}
            self.need = min(self.needs.values(), default=None)
        for job, conn in self.outbox.items():
            mine = [credit for to, credit in credits if to == job]
            conn.send((mine, bound, need))


def _start(  # noqa: PLR0917
    paths: list[Path],
    rules: Rules,
    until: Millis | None,
    now: Millis,
    partitions: int,
    jobs: int,
    directory: Path,
    deadletters: IO[bytes] | None,
    progress: IO[str] | None,
) -> None:
    context = get_context("fork")
    pipes = {(i, j): context.Pipe(duplex=False) for i in range(jobs) for j in range(jobs) if i != j}

    def main(me: int) -> None:
        for (i, j), (reader, writer) in pipes.items():
            if j != me:
                reader.close()
            if i != me:
                writer.close()
        inbox = {i: reader for (i, j), (reader, _) in pipes.items() if j == me}
        outbox = {j: writer for (i, j), (_, writer) in pipes.items() if i == me}
        with (
            (directory / f"actions-{me}").open("wb", buffering=BUFFER) as actions,
            (directory / f"dead-{me}").open("wb", buffering=BUFFER) as dead,
            (directory / f"index-{me}").open("wb", buffering=BUFFER) as index,
        ):
            json_dead = deadletters is not None
            output = Output(actions, dead.write, json_dead=json_dead, index=index, job=me)
            report = _progress(progress) if me == 0 else None
            peers = Pipes(inbox, outbox)
            stats, engine = _job(
                paths, rules, until, now, partitions, me, jobs, output, peers, report
            )
            leave_to_exit(engine)
        with (directory / f"stats-{me}").open("wb") as handle:
            pickle.dump(stats, handle, protocol=pickle.HIGHEST_PROTOCOL)

    processes = [
        context.Process(target=main, args=(me,), name=f"replay-job-{me}") for me in range(jobs)
    ]
    for process in processes:
        process.start()
    for reader, writer in pipes.values():
        reader.close()
        writer.close()
    failed = join_all(processes)
    if failed is not None:
        msg = f"{failed.name} failed (exit code {failed.exitcode})"
        raise SiyuError(msg)


_LEFT_TO_EXIT: Final[list[object]] = []


def leave_to_exit(run: object) -> None:
    """In a forked job only: leave `run` (an engine and its states) to the process's end
    instead of freeing it object by object, which takes ~0.1 s for 50,000 customers, all
    wall time before the parent can go on. The process ends without freeing anything."""
    _LEFT_TO_EXIT.append(run)


def join_all(processes: Sequence[BaseProcess]) -> BaseProcess | None:
    """Wait for every started process; the first to fail, once the others are stopped
    (their work is of no use without its part), or None when all succeeded."""
    running = {process.sentinel: process for process in processes}
    while running:
        for sentinel in wait(list(running)):
            assert isinstance(sentinel, int)  # a process sentinel
            process = running.pop(sentinel)
            process.join()
            if process.exitcode != 0:
                for other in running.values():
                    other.terminate()
                    other.join()
                return process
    return None


def _merge(directory: Path, jobs: int, out: IO[bytes], dead: Callable[[bytes], object]) -> Stats:
    total = Stats()
    for me in range(jobs):
        with (directory / f"stats-{me}").open("rb") as handle:
            _add(total, pickle.load(handle))
    with ExitStack() as files:
        actions = [files.enter_context(_open(directory / f"actions-{me}")) for me in range(jobs)]
        deads = [files.enter_context(_open(directory / f"dead-{me}")) for me in range(jobs)]
        indexes = [files.enter_context(_open(directory / f"index-{me}")) for me in range(jobs)]
        # each job's index is in tag order; a chunk of it at a time from each (`ahead`).
        # Every entry up to the smallest last entry of those chunks comes before any entry
        # not read yet: those are taken, sorted together (in C: the sort merges sorted
        # runs) and copied, a run of one job's steps in one read and write per output;
        # the job whose chunk ran out reads its next.
        ahead = [_chunk(index) for index in indexes]
        while live := [chunk for chunk in ahead if chunk]:
            bound = min(chunk[-1] for chunk in live)
            batch: list[Entry] = []
            for me, chunk in enumerate(ahead):
                cut = bisect.bisect_right(chunk, bound)
                batch += chunk[:cut]
                del chunk[:cut]
                if cut and not chunk:
                    ahead[me] = _chunk(indexes[me])
            batch.sort()
            job, a, d = -1, 0, 0
            for entry in batch:
                if entry[5] != job or a + d > BUFFER:
                    _copy(actions, deads, job, a, d, out, dead)
                    job, a, d = entry[5], 0, 0
                a += entry[3]
                d += entry[4]
            _copy(actions, deads, job, a, d, out, dead)
    return total


def _open(path: Path) -> IO[bytes]:
    return path.open("rb", buffering=BUFFER)


def _chunk(index: IO[bytes]) -> list[Entry]:
    """The next chunk of a job's index; empty at its end."""
    try:
        chunk: list[Entry] = pickle.load(index)
    except EOFError:
        return []
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
