"""Invariants over random event histories (hypothesis)."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scenario import START, ListSink, histories

from siyu_stream.core import policy, stored
from siyu_stream.core.actions import Action, yuan
from siyu_stream.core.clock import DAY, HOUR, MINUTE, to_datetime
from siyu_stream.core.events import Join, from_dict
from siyu_stream.core.rules import apply_event, once_gift_codes
from siyu_stream.core.ruleset import TIERS, Rules
from siyu_stream.core.state import DIGEST_BYTES, CustomerState
from siyu_stream.core.step import TIMER_NAMES, tier_of
from siyu_stream.replay.engine import Engine, MemoryStore, Store

RULES = Rules()


class RoundTripStore:
    """Stores serialized bytes, as the live table does: proves the format loses nothing.
    (A `Store` of its own, not a MemoryStore subclass: compiled, a class of the engine
    cannot be subclassed by interpreted code.)"""

    def __init__(self) -> None:
        self.raw: dict[str, bytes] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        raw = self.raw.get(customer_id)
        return stored.loads(raw) if raw is not None else None

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.raw[customer_id] = stored.dumps(state)

    def items(self) -> Iterator[tuple[str, CustomerState]]:
        return ((c, stored.loads(raw)) for c, raw in self.raw.items())


def run(
    events: list[dict[str, Any]], store: Store | None = None, *, in_place: bool = True
) -> list[Action]:
    sink = ListSink()
    engine = Engine(RULES, store or MemoryStore(), sink, in_place=in_place)
    for event in events:
        engine.handle(from_dict(event, RULES.input))
    engine.advance(engine.clock + 400 * 24 * HOUR if engine.clock else START)
    return sink.actions


@settings(max_examples=100, deadline=None)
@given(histories())
def test_tier_gifts_never_repeat_for_a_customer(events: list[dict[str, Any]]) -> None:
    gifts = Counter(
        (a.customer_id, a.detail["code"])
        for a in run(events)
        if a.kind == "gift" and str(a.detail["code"]).startswith("tier_")
    )
    assert all(count == 1 for count in gifts.values())


@settings(max_examples=100, deadline=None)
@given(histories())
def test_replay_is_a_pure_function_of_its_input(events: list[dict[str, Any]]) -> None:
    first = [a.to_json() for a in run(events)]
    assert first == [a.to_json() for a in run(events)]
    # and storing state as bytes between events (as the live table does) changes nothing
    assert first == [a.to_json() for a in run(events, RoundTripStore())]


@settings(max_examples=100, deadline=None)
@given(histories())
def test_action_ids_are_unique(events: list[dict[str, Any]]) -> None:
    ids = [a.action_id for a in run(events)]
    assert len(ids) == len(set(ids))


@settings(max_examples=100, deadline=None)
@given(histories())
def test_state_invariants(events: list[dict[str, Any]]) -> None:
    store = MemoryStore()
    actions = run(events, store)
    for customer_id, s in store.items():
        assert s.spend_fen >= 0
        thresholds = [0, *(t * 100 for t in RULES.spend_tier.thresholds_yuan)]
        assert s.spend_fen >= thresholds[TIERS.index(s.tier)]
        if s.health == "lost":
            assert not s.carriers  # only leaving the last carrier loses a customer
        # every collection within its bound (docs/design.md §3)
        assert len(s.carriers) <= RULES.engine.max_carriers
        assert len(s.order_times) <= RULES.repurchase_due.gaps + 1
        assert len(s.recent_orders) <= RULES.engine.recent_orders
        assert len(s.seen) <= RULES.engine.dedup_window * DIGEST_BYTES
        assert set(s.gifts) <= set(once_gift_codes(RULES))
        assert len(s.gifts) == len(set(s.gifts))
        assert len(s.touches) <= RULES.contact_policy.max_per_window
        assert set(s.timers) <= set(TIMER_NAMES)
        assert len(stored.dumps(s)) < RULES.engine.max_state_bytes
        # every change of a field continues from where the previous one left it
        for field in ("layer", "tier", "health", "membership"):
            chain = [
                a.detail
                for a in actions
                if a.kind == "change"
                and a.customer_id == customer_id
                and a.detail["field"] == field
            ]
            for prev, nxt in itertools.pairwise(chain):
                assert prev["to"] == nxt["from"]
            if chain:
                assert chain[-1]["to"] == getattr(s, field)


@settings(max_examples=100, deadline=None)
@given(histories())
def test_layer_is_monotone(events: list[dict[str, Any]]) -> None:
    for a in run(events):
        if a.kind == "change" and a.detail["field"] == "layer" and a.detail["from"] is not None:
            assert str(a.detail["to"]) > str(a.detail["from"])


SMALL = Rules(engine=dataclasses.replace(RULES.engine, max_carriers=3))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.booleans()), max_size=80))
def test_carriers_never_exceed_the_bound_and_only_new_carriers_are_rejected(
    moves: list[tuple[int, bool]],
) -> None:
    state: CustomerState | None = None
    for n, (carrier_no, leave) in enumerate(moves):
        carrier = f"carrier-{carrier_no}"
        event = Join(f"j{n}", "c1", START + n * MINUTE, leave, carrier, None, None, None)
        held = set(state.carriers) if state is not None else set()
        step = apply_event(state, event, event.at, SMALL)
        full = len(held) >= SMALL.engine.max_carriers
        assert (step.outcome == "rejected") == (not leave and carrier not in held and full)
        if step.outcome == "rejected":
            assert step.state is state
            assert step.reason is not None and carrier in step.reason
        state = step.state
        assert len(state.carriers) <= SMALL.engine.max_carriers


def _quiet_reference(due: int, rules: Rules) -> int:
    """The policy's quiet-hours shift in datetime terms, with zoneinfo at every step."""
    cfg = rules.contact_policy
    start, end = (time(*map(int, t.split(":"))) for t in (cfg.quiet_start, cfg.quiet_end))
    if start == end:
        return due
    local = to_datetime(due).astimezone(rules.zone)
    now = local.time()
    inside = (now >= start or now < end) if start > end else (start <= now < end)
    if not inside:
        return due
    day = local.date() if now < end else local.date() + timedelta(days=1)
    return int(datetime.combine(day, end, tzinfo=rules.zone).timestamp()) * 1000


TRANSITION = 1_711_846_800_000  # 2024-03-31T01:00:00Z: Europe/London springs forward


@settings(max_examples=400, deadline=None)
@given(
    zone=st.sampled_from(
        ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC"]
    ),
    window=st.sampled_from([("22:00", "08:00"), ("01:00", "05:30"), ("12:00", "12:00")]),
    due=st.integers(946_684_800_000, 4_102_444_800_000)
    | st.integers(TRANSITION - 2 * DAY, TRANSITION + 2 * DAY),
)
def test_quiet_hours_shift_equals_the_zoneinfo_reading(
    zone: str, window: tuple[str, str], due: int
) -> None:
    """The integer fast path (a steady offset over two days) moves exactly what zoneinfo
    moves, DST switches and half-hour zones included."""
    rules = dataclasses.replace(
        RULES,
        engine=dataclasses.replace(RULES.engine, timezone=zone),
        contact_policy=dataclasses.replace(
            RULES.contact_policy, quiet_start=window[0], quiet_end=window[1]
        ),
    )
    assert policy.shift_out_of_quiet_hours(due, rules) == _quiet_reference(due, rules)


@given(
    thresholds=st.lists(st.integers(1, 10**9), min_size=len(TIERS) - 1, max_size=len(TIERS) - 1),
    spend=st.integers(-(10**12), 10**12),
    nudge=st.sampled_from([-1, 0, 1, None]),
)
def test_tier_of_compares_whole_yuan_as_fen(
    thresholds: list[int], spend: int, nudge: int | None
) -> None:
    """tier_of compares spend // 100 with the yuan thresholds; the reference compares
    fen with fen. `nudge` puts the spend one fen around a threshold."""
    floors = sorted(set(thresholds))
    if len(floors) < len(thresholds):
        return  # the rules file refuses thresholds that do not increase
    if nudge is not None:
        spend = floors[spend % len(floors)] * 100 + nudge
    rules = dataclasses.replace(
        RULES, spend_tier=dataclasses.replace(RULES.spend_tier, thresholds_yuan=tuple(floors))
    )
    assert tier_of(spend, rules) == TIERS[bisect.bisect_right([t * 100 for t in floors], spend)]


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_yuan_groups_as_the_format_spec_does(fen: int) -> None:
    # yuan groups digits by slicing (cheaper compiled); the format spec is the reference
    whole, cents = divmod(abs(fen), 100)
    assert yuan(fen) == f"{'-' if fen < 0 else ''}{whole:,}.{cents:02d}"


class SnapshotStore:
    """Checks, whenever a customer's state is replaced, that the state the step was given
    (the one stored) is still what was stored: the core copies what it changes. (A `Store`
    of its own, as RoundTripStore.)"""

    def __init__(self) -> None:
        self.states: dict[str, CustomerState] = {}
        self.snapshots: dict[str, bytes] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        return self.states.get(customer_id)

    def put(self, customer_id: str, state: CustomerState) -> None:
        before = self.states.get(customer_id)
        if before is not None:
            assert stored.dumps(before) == self.snapshots[customer_id], customer_id
        self.states[customer_id] = state
        self.snapshots[customer_id] = stored.dumps(state)

    def items(self) -> Iterator[tuple[str, CustomerState]]:
        return iter(self.states.items())


@settings(max_examples=150, deadline=None)
@given(histories())
def test_a_step_never_changes_the_state_it_was_given(events: list[dict[str, Any]]) -> None:
    # events, timers and referral credits all go through the store
    store = SnapshotStore()
    run(events, store, in_place=False)
    assert store.snapshots


@settings(max_examples=150, deadline=None)
@given(histories())
def test_steps_in_place_emit_and_store_what_steps_on_copies_do(
    events: list[dict[str, Any]],
) -> None:
    """Replay changes its states in place, the live worker steps on copies: the same
    actions in the same order, and the same states at the end."""
    stores = {True: MemoryStore(), False: MemoryStore()}
    emitted = {mode: run(events, store, in_place=mode) for mode, store in stores.items()}
    assert emitted[True] == emitted[False]
    assert {c: stored.dumps(s) for c, s in stores[True].items()} == {
        c: stored.dumps(s) for c, s in stores[False].items()
    }
