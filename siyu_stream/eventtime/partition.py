"""One partition in event time: its clock, its timer index and the order of its records.

This is the one event-time semantic that replay (`engine`) and the live worker
(`processor`) share, so that a backlog processed live emits what replay emits:

- the **clock** of a partition is its stream time: the largest `occurred_at` it has
  applied, or the due time of the latest timer it fired (a caught-up live partition
  fires timers on the wall clock); it never moves backwards;
- before a record at event time t is applied, every timer of the partition due <= t
  fires, in due order (ties: customer id, timer name); the record is then applied with
  the partition clock as "now" and its own `occurred_at` as the time of its facts; a
  record behind the clock ("late") is applied at the clock;
- records are taken in **merge order**: of the heads of the partition's queues (one per
  input topic, one for the command topic), the one with the smallest `sort_key`; a
  referral credit sorts right after the order that earned it.

Timers live in each customer's state (they survive restarts with it); `TimerIndex` is a
min-heap over them, so that firing costs O(due timers log n), never a scan of every
customer.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heapify, heappop, heappush
from typing import Any, Final, Protocol

from siyu_stream.core import rules as core
from siyu_stream.core.actions import ReferralCredit
from siyu_stream.core.clock import DAY, MINUTE, Millis, format_rfc3339
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import Chat, Event, Join
from siyu_stream.core.memo import remember
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState
from siyu_stream.core.step import Step
from siyu_stream.core.timers import fire_timer

SortKey = tuple[Any, ...]
"""(event time, type rank, event id): (Millis, int, str), one total order for a
partition's records. Typed as a tuple of any length on purpose, as `replay.parts.Key`:
compiled, a fixed-length tuple type is held unboxed and boxed again to be compared."""

JOIN_RANK: Final = 0
CHAT_RANK: Final = 1
ORDER_RANK: Final = 2
"""Same-millisecond records: a join before a chat before an order, so that a customer
who joins through a referral and buys in the same instant is a referred buyer."""

LAST_YEAR: Final = 9000
"""Event times from this year on are not representable: their due times could overflow."""


def sort_key(event: Event) -> SortKey:
    rank = (
        JOIN_RANK
        if isinstance(event, Join)
        else CHAT_RANK
        if isinstance(event, Chat)
        else ORDER_RANK
    )
    return (event.at, rank, event.event_id)


def credit_key(credit: ReferralCredit) -> SortKey:
    """Right after the order that earned it: no record's key lies between the two, so
    the credit's place in the merge never depends on what has arrived yet."""
    return (credit.at, ORDER_RANK, credit.cause_event_id + "\x00")


def _year_start(year: int) -> Millis:
    days = (year - 1970) * 365 + (year - 1969) // 4 - (year - 1901) // 100 + (year - 1601) // 400
    return days * DAY


_END: Final = _year_start(LAST_YEAR)
_year_starts: Final[dict[int, Millis]] = {}


def check_time(at: Millis, now: Millis, now_is: str, rules: Rules) -> None:
    """Reject, on arrival, event times the engine cannot or should not take: before the
    floor, not representable, or too far ahead of `now` (live: the wall clock; replay:
    `--now`). On arrival, not at its turn: a record dated far ahead would otherwise sit at
    the head of its queue and hold back the records behind it."""
    limits = rules.input
    # the floor read in place (a dict hit, no call: interpreted too, twice an event)
    floor = _year_starts.get(limits.earliest_year)
    if floor is None:
        year = limits.earliest_year
        floor = remember(_year_starts, year, _year_start(year), 64)
    if at < floor or at >= _END:
        # not formatted: such an instant may not even have a calendar date
        msg = f"must lie in the years {limits.earliest_year}..{LAST_YEAR - 1} (UTC)"
        raise InvalidEvent(msg, "occurred_at")
    if at > now + limits.max_future_minutes * MINUTE:
        msg = (
            f"{format_rfc3339(at)} is more than {limits.max_future_minutes} min ahead of "
            f"{now_is} ({format_rfc3339(now)})"
        )
        raise InvalidEvent(msg, "occurred_at")


class StateStore(Protocol):
    """Where a partition's customer states live while it runs (replay: a dict; live: the
    batch's changes over the store)."""

    def get(self, customer_id: str) -> CustomerState | None: ...

    def put(self, customer_id: str, state: CustomerState) -> None: ...


Applied = Callable[[str, CustomerState | None, Step], None]
"""Told of every step that changed a state, with the state it started from, before the
new one is stored: emit its actions (or refuse the step by raising)."""


TIMER_BUCKET: Final = 3_600_000
"""The due times one bucket of the timer index holds (an hour)."""
TimerEntry = tuple[Any, ...]
"""(due, customer id, timer name): (Millis, str, str), typed as a tuple of any length
(see `SortKey`)."""


class TimerIndex:
    """Min-heap of (due, customer, timer name) over the timers held in customer states.

    Invariant: every timer held in a state has an entry at or before its due time. A
    timer moved later keeps its old entry; when that entry comes up, it is pushed again
    at the real due time. So the heap holds about one entry per live timer rather than
    one per reschedule (the dormant timer moves on every order and inbound chat).
    Entries popped since the last `settle()` can be put back by `rollback()` (a live
    batch that failed fires its timers again).

    Laid out as buckets of an hour of due times: a heap of bucket numbers over a list of
    entries per bucket, left unordered (a push appends) until the bucket first comes up,
    and a heap from then on. The same order as one heap of every entry, but most pushes
    land in a later hour and only append, and a pop sifts through one hour's entries (a
    year of timers: ~25 an hour, where one heap took ~17 levels).
    """

    def __init__(self, *, undo: bool = True) -> None:
        self._hours: list[int] = []  # a heap of the bucket numbers that hold entries
        self._buckets: dict[int, list[TimerEntry]] = {}
        self._heaped: set[int] = set()  # the buckets that have come up: heaps
        self._head: list[TimerEntry] | None = None
        """The first bucket while it stays first (`_first` runs once an event and twice a
        firing: a heap top, a dict and a set lookup each time, 3 % of replay)."""
        self._head_hour = 0
        self._size = 0
        self._popped: list[TimerEntry] = []
        self._undo = undo
        """Keep popped entries for `rollback()`; replay never rolls back (nor settles)."""

    def __len__(self) -> int:
        return self._size

    def _push(self, entry: TimerEntry) -> None:
        hour = entry[0] // TIMER_BUCKET
        entries = self._buckets.get(hour)
        if entries is None:
            self._buckets[hour] = [entry]
            heappush(self._hours, hour)
            if hour < self._head_hour:
                self._head = None  # an hour before the first bucket's comes first now
        elif hour in self._heaped:
            heappush(entries, entry)
        else:
            entries.append(entry)
        self._size += 1

    def _first(self) -> list[TimerEntry] | None:
        """The first bucket, a heap by now; None when the index is empty."""
        entries = self._head
        if entries is not None:
            return entries
        if not self._hours:
            return None
        hour = self._hours[0]
        entries = self._buckets[hour]
        if hour not in self._heaped:
            heapify(entries)
            self._heaped.add(hour)
        self._head, self._head_hour = entries, hour
        return entries

    def _pop(self, entries: list[TimerEntry]) -> TimerEntry:
        """The smallest entry, from `entries`: the first bucket."""
        entry = heappop(entries)
        if not entries:
            hour = heappop(self._hours)
            del self._buckets[hour]
            self._heaped.discard(hour)
            self._head = None
        self._size -= 1
        return entry

    def index(self, customer_id: str, state: CustomerState) -> None:
        """Index every timer of a state read from the store (a worker's start)."""
        for name, timer in state.timers.items():
            self._push((timer.due, customer_id, name))

    def push(self, due: Millis, customer_id: str, name: str) -> None:
        """Index a timer just set (`Step.timed`)."""
        self._push((due, customer_id, name))

    def pop_due(
        self, now: Millis, state_of: Callable[[str], CustomerState | None]
    ) -> tuple[Millis, str, str, CustomerState] | None:
        """The next timer due by `now`, with its customer's state; None when there is none."""
        while (entries := self._first()) is not None and entries[0][0] <= now:
            entry = self._pop(entries)
            if self._undo:
                self._popped.append(entry)
            while (entries := self._first()) is not None and entries[0] == entry:
                self._pop(entries)  # the same timer indexed twice
            due, customer_id, name = entry
            state = state_of(customer_id)
            timer = None if state is None else state.timers.get(name)
            if timer is None or timer.due < due:
                continue  # cancelled, or already fired from an earlier entry
            if timer.due > due:
                self._push((timer.due, customer_id, name))  # moved later
                continue
            assert state is not None  # a timer was found in it
            return due, customer_id, name, state
        return None

    def next_due(self) -> Millis | None:
        entries = self._first()
        return entries[0][0] if entries is not None else None

    def settle(self) -> None:
        """The states the popped entries were checked against are durable."""
        self._popped.clear()

    def rollback(self) -> None:
        """Put back the entries popped since `settle()` (stale ones are skipped later)."""
        for entry in self._popped:
            self._push(entry)
        self._popped.clear()


class Partition:
    """A partition's clock and timers over a state store; the adapters feed it records in
    merge order and emit what `applied` is told.

    `in_place`: the steps change the stored states themselves rather than copies, for a
    caller that never looks back: no `applied` that refuses a step, no rollback, and the
    state `applied` is given as the one a step started from is the changed one (replay's
    reads none). The live worker steps on copies: a batch that fails is run again from
    its stored states, and its observer compares each state before and after."""

    def __init__(
        self,
        rules: Rules,
        store: StateStore,
        applied: Applied,
        *,
        undo: bool = True,
        in_place: bool = False,
    ) -> None:
        self.rules = rules
        self.in_place = in_place
        # the store's two methods, bound once: compiled, a call through the protocol looks
        # the method up by name, and `advance` bound `get` anew for every event (-1.2 % of
        # a replay's instructions)
        self._get: Callable[[str], CustomerState | None] = store.get
        self._put: Callable[[str, CustomerState], None] = store.put
        self.applied = applied
        self.clock: Millis | None = None
        self.timers = TimerIndex(undo=undo)
        self.timers_fired = 0

    def check_age(self, at: Millis) -> None:
        """Reject an event time too far behind the partition clock (when its turn comes;
        `check_time` has ruled out the rest on arrival)."""
        limits = self.rules.input
        if self.clock is not None and at < self.clock - limits.max_age_days * DAY:
            msg = (
                f"{format_rfc3339(at)} is more than {limits.max_age_days} days behind the "
                f"partition clock ({format_rfc3339(self.clock)})"
            )
            raise InvalidEvent(msg, "occurred_at")

    def advance(self, until: Millis, limit: int | None = None, *, punctuate: bool = False) -> bool:
        """Fire the timers due by `until`, in due order, at most `limit` of them, and move
        the clock to `until` (never back). A live punctuation on the wall clock moves it
        only as far as the timers it fired. False when `limit` left due timers unfired
        (the clock then stays before them: the caller comes back before going past)."""
        fired = 0
        while (due_timer := self.timers.pop_due(until, self._get)) is not None:
            due, customer_id, name, before = due_timer
            step = fire_timer(before, customer_id, name, due, self.rules, in_place=self.in_place)
            if step is None:
                continue
            self._stored(customer_id, before, step)
            self.timers_fired += 1
            self._move(due)
            fired += 1
            if limit is not None and fired >= limit and self.behind(until):
                return False
        if not punctuate:
            self._move(until)
        return True

    def _move(self, to: Millis) -> None:
        if self.clock is None or to > self.clock:
            self.clock = to

    def behind(self, until: Millis) -> bool:
        """Timers due by `until` are waiting."""
        due = self.timers.next_due()
        return due is not None and due <= until

    def apply(self, event: Event) -> Step:
        """Apply a checked event at the partition clock (call `advance(event.at)` first)."""
        clock = self.clock if self.clock is not None else event.at
        before = self._get(event.customer_id)
        step = core.apply_event(before, event, clock, self.rules, in_place=self.in_place)
        if step.outcome == "ok":
            self._stored(event.customer_id, before, step)
        return step

    def credit(self, credit: ReferralCredit) -> Step:
        before = self._get(credit.referrer_id)
        step = core.apply_credit(before, credit, self.rules, in_place=self.in_place)
        if step.outcome == "ok":
            self._stored(credit.referrer_id, before, step)
        return step

    def _stored(self, customer_id: str, before: CustomerState | None, step: Step) -> None:
        self.applied(customer_id, before, step)  # first: it may refuse the step by raising
        self._put(customer_id, step.state)
        for due, name in step.timed:
            self.timers.push(due, customer_id, name)
