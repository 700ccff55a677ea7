"""The engine loop around the pure core: state store, timer index, clock, sink.

Used as is by `replay`; the live worker drives the same core through Faust. The
engine owns no rule logic: it loads state, calls `rules.*`, stores, and sends.

Timers live in each customer's state (so they survive restarts with it); the
engine keeps a min-heap index over them so that a sweep costs O(due timers log n),
never a scan of every customer.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from siyu_stream import rules as core
from siyu_stream.actions import Action, ReferralCredit
from siyu_stream.clock import DAY, MINUTE, Millis, format_rfc3339
from siyu_stream.errors import InvalidEvent
from siyu_stream.events import Event
from siyu_stream.ruleset import Rules
from siyu_stream.state import CustomerState
from siyu_stream.step import Outcome, Step
from siyu_stream.timers import fire_timer


class StateStore(Protocol):
    """The state seam: memory, RocksDB and Faust tables all fit it."""

    def get(self, customer_id: str) -> CustomerState | None: ...

    def put(self, customer_id: str, state: CustomerState) -> None: ...


class Sink(Protocol):
    """The output seam: one method."""

    def send(self, action: Action) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, CustomerState] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        return self.data.get(customer_id)

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.data[customer_id] = state

    def items(self) -> Iterator[tuple[str, CustomerState]]:
        return iter(self.data.items())


class ListSink:
    """A sink that keeps what it is sent: the fake for tests, the buffer for batching."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    def send(self, action: Action) -> None:
        self.actions.append(action)


class TimerIndex:
    """Min-heap of (due, customer, timer name) over the timers held in customer states.

    Invariant: every timer held in a state has an entry at or before its due time. A
    timer moved later keeps its old entry; when that entry comes up, it is pushed again
    at the real due time. So the heap holds about one entry per live timer rather than
    one per reschedule (the dormant timer moves on every order and inbound chat).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[Millis, str, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def track(
        self,
        customer_id: str,
        before: CustomerState | None,
        after: CustomerState,
        fired: str | None = None,
    ) -> None:
        """Index the timers of `after` that no entry covers yet; `fired` names the timer
        whose entry was just consumed (it may have been scheduled again)."""
        old = before.timers if before is not None else {}
        for name, timer in after.timers.items():
            previous = old.get(name) if name != fired else None
            if previous is None or timer.due < previous.due:
                heapq.heappush(self._heap, (timer.due, customer_id, name))

    def pop_due(
        self, now: Millis, state_of: Callable[[str], CustomerState | None]
    ) -> tuple[Millis, str, str, CustomerState] | None:
        """The next timer due by `now`, with its customer's state; None when there is none."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            while heap and heap[0] == entry:
                heapq.heappop(heap)  # the same timer indexed twice
            due, customer_id, name = entry
            state = state_of(customer_id)
            timer = None if state is None else state.timers.get(name)
            if timer is None or timer.due < due:
                continue  # cancelled, or already fired from an earlier entry
            if timer.due > due:
                heapq.heappush(heap, (timer.due, customer_id, name))  # moved later
                continue
            assert state is not None  # a timer was found in it
            return due, customer_id, name, state
        return None

    def next_due(self) -> Millis | None:
        return self._heap[0][0] if self._heap else None


@dataclass
class Counts:
    events: Counter[str] = field(default_factory=Counter)
    """Per outcome: ok, duplicate, rejected."""
    actions: Counter[str] = field(default_factory=Counter)
    """Per kind."""
    timers_fired: int = 0


def check_time(at: Millis, reference: Millis | None, rules: Rules, *, live: bool) -> None:
    """Reject absurd event times relative to the engine clock (DESIGN §5)."""
    if reference is None:
        return
    limits = rules.input
    if at < reference - limits.max_age_days * DAY:
        msg = (
            f"{format_rfc3339(at)} is more than {limits.max_age_days} days before the engine clock"
        )
        raise InvalidEvent(msg, "occurred_at")
    ahead = limits.max_future_minutes * MINUTE if live else limits.max_clock_jump_days * DAY
    if at > reference + ahead:
        what = "wall clock" if live else "replay clock"
        msg = f"{format_rfc3339(at)} is too far ahead of the {what} ({format_rfc3339(reference)})"
        raise InvalidEvent(msg, "occurred_at")


class Engine:
    """Event-time engine: the replay clock is the largest occurred_at read so far."""

    def __init__(self, rules: Rules, store: StateStore, sink: Sink) -> None:
        self.rules = rules
        self.store = store
        self.sink = sink
        self.timers = TimerIndex()
        self.clock: Millis | None = None
        self.counts = Counts()

    def rebuild_timers(self, states: Iterable[tuple[str, CustomerState]]) -> None:
        """After recovery: index every timer held in the recovered states."""
        for customer_id, state in states:
            self.timers.track(customer_id, None, state)

    def handle(self, event: Event) -> Outcome:
        """Advance the clock to the event, fire due timers, then apply the event."""
        check_time(event.at, self.clock, self.rules, live=False)
        self.advance(event.at)
        clock = self.clock if self.clock is not None else event.at
        before = self.store.get(event.customer_id)
        step = core.apply_event(before, event, clock, self.rules)
        self.counts.events[step.outcome] += 1
        if step.outcome == "ok":
            self._commit(event.customer_id, before, step)
        return step.outcome

    def advance(self, now: Millis) -> None:
        """Move the clock to `now` (never back) and fire every timer due by then, in due order."""
        if self.clock is None or now > self.clock:
            self.clock = now
        while (due_timer := self.timers.pop_due(self.clock, self.store.get)) is not None:
            due, customer_id, name, before = due_timer
            step = fire_timer(before, customer_id, name, due, self.rules)
            if step is not None:
                self.counts.timers_fired += 1
                self._commit(customer_id, before, step, fired=name)

    def _commit(
        self, customer_id: str, before: CustomerState | None, step: Step, fired: str | None = None
    ) -> None:
        self.store.put(customer_id, step.state)
        self.timers.track(customer_id, before, step.state, fired)
        for action in step.actions:
            self.counts.actions[action.kind] += 1
            self.sink.send(action)
        for credit in step.credits:
            self._credit(credit)

    def _credit(self, credit: ReferralCredit) -> None:
        before = self.store.get(credit.referrer_id)
        step = core.apply_credit(before, credit, self.rules)
        if step.outcome == "ok":
            self._commit(credit.referrer_id, before, step)
