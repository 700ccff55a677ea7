"""The job loop's vocabulary (`jobloop`): merge keys and step tags, a partition's queues,
and what a job sees of its peers and its output."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from siyu_stream.core.actions import ReferralCredit
from siyu_stream.eventtime.partition import SortKey
from siyu_stream.replay.lines import Line
from siyu_stream.replay.spill import Backlog

Key = tuple[Any, ...]
"""(the three fields of a sort key, source): (int, int, str, int), source = 4 x partition
+ (order 0, chat 1, join 2, credit 3), which breaks ties in one merge over every queue.
Flat, not (sort key, source): the same order, and one tuple comparison where nesting made
it three; the merge compares keys several times per record.

Typed as a tuple of any length on purpose: compiled, a fixed-length tuple type is held
unboxed (a C struct) and boxed into a new tuple for each comparison, `max` and queue
append, which cost 9 % of a replay's instructions (mypyc)."""
LOWEST: Key = (-(2**63), -1, "", -1)
HIGHEST: Key = (2**63, 0, "", 0)
SOURCE: Final = 3
"""The index of the source in a key."""


def key(sort: SortKey, source: int) -> Key:
    at, rank, name = sort
    return (at, rank, name, source)


Tag = tuple[int, Key, int]
"""(phase: 0 lines rejected before the first step, 1 merge, 2 final timers; group or
partition; sequence): the order of a step's outputs."""
Credit = tuple[Key, int, ReferralCredit]
"""A credit for another job: its group, the emitting job's sequence, the credit."""
CREDIT = 3


class Peers(Protocol):
    """The other jobs, as `jobs` connects them."""

    heard: int  # messages received so far
    low: Key  # the smallest of their bounds: every credit of a group below it is here
    need: Key | None  # the smallest key a peer waits for this job to pass, if any

    def receive(self, *, block: bool) -> list[Credit]: ...
    def allows(self, group: Key, sender: int | None = None) -> bool: ...
    def done(self) -> bool: ...
    def send(self, credits: list[tuple[int, Credit]], bound: Key, need: Key | None) -> None: ...


class Out(Protocol):
    def begin(self, tag: Tag) -> None: ...
    def dead(self, line: Line, reason: str) -> None: ...
    def end(self) -> None: ...


@dataclass(slots=True)
class Entry:
    """A read record that may earn a credit for another job (see `Job.bound`)."""

    low: Key
    customer: str
    seq: int


class Part:
    """A partition's queues: read lines not yet visible, one FIFO per input type, credits."""

    def __init__(self, index: int, revive: Callable[[str, int, bytes], Line]) -> None:
        self.index = index
        self.pending = Backlog(revive)
        self.inputs: tuple[deque[tuple[Key, Line]], ...] = (deque(), deque(), deque())
        self.keys: list[Key | None] = [None, None, None]
        """The key at the head of each input queue (None: empty), kept by `push` and
        `take`: compiled, a deque's item and truth are generic calls, and the merge asks
        for every queue's head several times an event."""
        # bound once, as `spill.Backlog`'s: a deque's method by name is looked up per call
        self._appends = tuple(queue.append for queue in self.inputs)
        self._poplefts = tuple(queue.popleft for queue in self.inputs)
        self.credits: deque[tuple[Key, Key, ReferralCredit]] = deque()  # key, group, credit
        self.visible = 0
        self.high = LOWEST
        """The running maximum of the input keys taken: the group of the last one."""
        # look-ahead for peers (several jobs only)
        self.tops = [LOWEST, LOWEST]  # largest order / join key read
        self.read = [0, 0]  # orders, joins read
        self.taken = [0, 0]
        self.entries: tuple[deque[Entry], deque[Entry]] = (deque(), deque())
        self.queued: dict[str, int] = {}  # customer -> orders read, not taken
        self.referred: set[str] = set()
        # the merge: the smallest head key of the queues the job takes from here (its own
        # inputs if it owns the partition, and credits), kept by `refresh` on every change
        self.owned = False
        self.head: Key | None = None
        self.head_queue = 0

    def push(self, kind: int, key: Key, line: Line) -> None:
        """A record made visible at the tail of input queue `kind`."""
        if self.keys[kind] is None:
            self.keys[kind] = key
        self._appends[kind]((key, line))

    def take(self, kind: int) -> Line:
        """The record at the head of input queue `kind`, taken off it."""
        _, line = self._poplefts[kind]()
        queue = self.inputs[kind]
        self.keys[kind] = queue[0][0] if queue else None
        return line

    def refresh(self) -> None:
        """Recompute `head` and `head_queue` (0-2 input, 3 credit) after a queue changed."""
        best: Key | None = None
        which = 0
        if self.owned:
            for kind in range(3):
                key = self.keys[kind]
                if key is not None and (best is None or key < best):
                    best, which = key, kind
        if self.credits and (best is None or self.credits[0][0] < best):
            best, which = self.credits[0][0], CREDIT
        self.head, self.head_queue = best, which
