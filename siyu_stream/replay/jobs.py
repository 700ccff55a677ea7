"""`replay --jobs N`: the partitions split over N processes, one output.

Partition p goes to job p mod N. Every job reads every line, reads only the customer id
of the other jobs' lines, and runs `jobloop.Job` over its own partitions; credits for a
referrer in another job, with the job's look-ahead bound, travel over one pipe per pair
of jobs (docs/design.md §5). Each job writes its actions and dead letters to files with
an index of step tags (`outputs`); the parent merges the jobs' steps by tag, which is the
order `--jobs 1` writes them in, so the bytes are the same for any N. It merges while the
jobs run, a chunk of each one's index at a time (`Feed`): the time it takes then falls
where the jobs wait for each other, not after them. One job runs in-process.
"""

from __future__ import annotations

import pickle
import select
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Final

from siyu_stream.core.clock import Millis
from siyu_stream.core.errors import SiyuError
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.schemas import build_input_decoders
from siyu_stream.observe.observer import Stats
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.jobloop import Job
from siyu_stream.replay.lines import owned_lines
from siyu_stream.replay.outputs import (
    BUFFER,
    Entry,
    Output,
    job_file,
    merge,
    read_chunk,
    total_stats,
)
from siyu_stream.replay.parts import HIGHEST, LOWEST, Credit, Key

PROGRESS_SECONDS = 2.0


def _stderr(data: bytes) -> None:
    """Dead letters without `--deadletter`, a line at a time: the parent writes them while
    job 0 writes its progress to the same stream, and a pipe keeps a write whole only up
    to PIPE_BUF bytes (stderr writes each line as it comes)."""
    for line in data.decode().splitlines(keepends=True):
        sys.stderr.write(line)


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
        stats, engine = _job(
            paths, rules, until, now, partitions, 0, 1, output, None, _progress(progress)
        )
        leave_to_exit(engine)
        return stats
    out.flush()
    if deadletters is not None:
        deadletters.flush()
    build_input_decoders()  # once, before the jobs fork, instead of once in each job
    with tempfile.TemporaryDirectory(prefix="siyu-jobs-") as tmp:
        directory = Path(tmp)
        processes, feed = _start(
            paths, rules, until, now, partitions, jobs, directory, deadletters, progress
        )
        try:
            with feed:
                merge(directory, jobs, feed.next_chunk, out, dead)
        except JobStoppedError:
            pass  # its exit code, or another job's, names it below
        except BaseException:
            stop_all(processes)
            raise
        failed = join_all(processes)
        if failed is not None:
            msg = f"{failed.name} failed (exit code {failed.exitcode})"
            raise SiyuError(msg)
        return total_stats(directory, jobs)


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


CHUNK_WRITTEN: Final = b"c"
ENDED: Final = b"e"
"""What a job tells the parent: it wrote a chunk of its index; it wrote its last."""


class JobStoppedError(SiyuError):
    """A job's pipe to the parent closed before it said it ended."""


class Feed:
    """The jobs' indexes to the parent's merge as they are written: each job tells the
    parent over a pipe of its own when it has written a chunk. Only counts cross the
    pipes (the chunks stay in the files), so a job ahead of the merge never blocks."""

    def __init__(self, directory: Path, news: list[Connection]) -> None:
        self.indexes = [job_file(directory, "index", me).open("rb") for me in range(len(news))]
        self.written = [0] * len(news)  # chunks written, not yet read
        self.ended = [False] * len(news)
        self.news = {conn: me for me, conn in enumerate(news)}

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        for index in self.indexes:
            index.close()

    def next_chunk(self, me: int) -> list[Entry]:
        while not self.written[me] and not self.ended[me]:
            self._hear()
        if not self.written[me]:
            return []
        self.written[me] -= 1
        return read_chunk(self.indexes[me])

    def _hear(self) -> None:
        for conn in wait(list(self.news)):
            assert isinstance(conn, Connection)
            me = self.news[conn]
            while conn.poll():
                try:
                    news = conn.recv_bytes()
                except EOFError:
                    raise JobStoppedError(me) from None
                if news == CHUNK_WRITTEN:
                    self.written[me] += 1
                else:
                    self.ended[me] = True
                    del self.news[conn]
                    break


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
) -> tuple[list[BaseProcess], Feed]:
    """The jobs, started, and the feed of their indexes."""
    context = get_context("fork")
    pipes = {(i, j): context.Pipe(duplex=False) for i in range(jobs) for j in range(jobs) if i != j}
    news = [context.Pipe(duplex=False) for _ in range(jobs)]
    for me in range(jobs):  # before the parent opens them to read
        for kind in ("actions", "dead", "index"):
            job_file(directory, kind, me).touch()

    def main(me: int) -> None:
        ends_by_exit()  # a forked process: multiprocessing ends it with os._exit
        for (i, j), (reader, writer) in pipes.items():
            if j != me:
                reader.close()
            if i != me:
                writer.close()
        for job, (reader, writer) in enumerate(news):
            reader.close()
            if job != me:
                writer.close()
        tell = news[me][1]
        inbox = {i: reader for (i, j), (reader, _) in pipes.items() if j == me}
        outbox = {j: writer for (i, j), (_, writer) in pipes.items() if i == me}
        with (
            job_file(directory, "actions", me).open("wb", buffering=BUFFER) as actions,
            job_file(directory, "dead", me).open("wb", buffering=BUFFER) as dead,
            job_file(directory, "index", me).open("wb", buffering=BUFFER) as index,
        ):

            def written() -> None:
                # the bytes the chunk's entries name first, then the chunk
                actions.flush()
                dead.flush()
                index.flush()
                tell.send_bytes(CHUNK_WRITTEN)

            json_dead = deadletters is not None
            output = Output(
                actions, dead.write, json_dead=json_dead, index=index, job=me, written=written
            )
            report = _progress(progress) if me == 0 else None
            peers = Pipes(inbox, outbox)
            stats, engine = _job(
                paths, rules, until, now, partitions, me, jobs, output, peers, report
            )
            leave_to_exit(engine)
        with job_file(directory, "stats", me).open("wb") as handle:
            pickle.dump(stats, handle, protocol=pickle.HIGHEST_PROTOCOL)
        tell.send_bytes(ENDED)

    processes: list[BaseProcess] = [
        context.Process(target=main, args=(me,), name=f"replay-job-{me}") for me in range(jobs)
    ]
    for process in processes:
        process.start()
    for reader, writer in pipes.values():
        reader.close()
        writer.close()
    for _, writer in news:
        writer.close()
    return processes, Feed(directory, [reader for reader, _ in news])


_LEFT_TO_EXIT: Final[list[object]] = []
_ENDS_BY_EXIT: Final[list[bool]] = []
"""Not empty once the process has promised to end by os._exit (`ends_by_exit`)."""


def ends_by_exit() -> None:
    """Promise that this process ends by os._exit once its run is written: a forked job,
    or the command line (`cli.entry`). From then on `leave_to_exit` keeps what it is given."""
    if not _ENDS_BY_EXIT:
        _ENDS_BY_EXIT.append(True)


def leave_to_exit(run: object) -> None:
    """Leave `run` (an engine and its states) to the process's end instead of freeing it
    object by object, when the process has promised to end by os._exit (`ends_by_exit`):
    freeing takes ~0.1 s for 50,000 customers, and in a job it is wall time before the
    parent can go on. Without the promise nothing is kept: the interpreter's own exit
    would walk every state left alive in its final collection, which costs more than
    freeing them (a one-job replay kept to a normal exit ran 44 % longer)."""
    if _ENDS_BY_EXIT:
        _LEFT_TO_EXIT.append(run)


def left_to_exit() -> bool:
    """Whether this process holds a run it must not free: it has to end by os._exit."""
    return bool(_LEFT_TO_EXIT)


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
                stop_all(list(running.values()))
                return process
    return None


def stop_all(processes: Sequence[BaseProcess]) -> None:
    for process in processes:
        process.terminate()
        process.join()
