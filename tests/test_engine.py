"""The engine's timer index: due order, moved and cancelled timers, and its size."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scenario import Scenario

from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState, Timer
from siyu_stream.core.step import Ctx
from siyu_stream.eventtime.partition import TimerIndex


def with_timers(**due: int) -> CustomerState:
    return CustomerState(timers={name: Timer(at, "e1") for name, at in due.items()})


def rewrite(
    index: TimerIndex, customer_id: str, before: CustomerState | None, after: CustomerState
) -> None:
    """Tell the index what a step that rewrote `before` as `after` lists in `Step.timed`:
    each timer new, or due before the one it replaces."""
    held = before.timers if before is not None else {}
    for name, timer in after.timers.items():
        old = held.get(name)
        if old is None or timer.due < old.due:
            index.push(timer.due, customer_id, name)


def test_a_step_lists_each_timer_the_index_must_add() -> None:
    """`Step.timed`, what the partition pushes (the `rewrite` above mirrors it): a timer
    new or moved earlier, never one moved later (its entry still covers it); a timer
    removed as it fires and set again by the same step counts as new."""
    state = with_timers(x=100, y=100, z=100)
    ctx = Ctx(state, "a", 0, "e2", "e2", Rules())
    ctx.schedule("x", 50)  # earlier
    ctx.schedule("y", 150)  # later: not listed
    ctx.schedule("w", 300)  # new
    del state.timers["z"]  # as `fire_timer` removes the timer it fires
    ctx.schedule("z", 400)
    assert ctx.finish().timed == [(50, "x"), (300, "w"), (400, "z")]
    assert {name: t.due for name, t in state.timers.items()} == {
        "x": 50,
        "y": 150,
        "w": 300,
        "z": 400,
    }


def drain(
    index: TimerIndex, now: int, states: dict[str, CustomerState]
) -> list[tuple[int, str, str]]:
    fired = []
    while (due_timer := index.pop_due(now, states.get)) is not None:
        due, customer_id, name, state = due_timer
        assert state is states[customer_id]
        fired.append((due, customer_id, name))
        after = state.clone()
        del after.timers[name]
        states[customer_id] = after
    return fired


def test_timers_come_out_in_due_order_and_only_when_due() -> None:
    index = TimerIndex()
    states = {"a": with_timers(x=30, y=10), "b": with_timers(x=20)}
    for customer_id, state in states.items():
        index.index(customer_id, state)
    assert drain(index, 15, states) == [(10, "a", "y")]
    assert drain(index, 100, states) == [(20, "b", "x"), (30, "a", "x")]
    assert drain(index, 1000, states) == []


def test_a_timer_moved_later_fires_once_at_its_new_time() -> None:
    index = TimerIndex()
    states = {"a": with_timers(x=10)}
    index.index("a", states["a"])
    for due in range(20, 1000, 10):  # moved later again and again
        moved = with_timers(x=due)
        rewrite(index, "a", states["a"], moved)
        states["a"] = moved
    assert len(index) == 1  # the first entry still covers it
    assert drain(index, 500, states) == []
    assert drain(index, 990, states) == [(990, "a", "x")]
    assert len(index) == 0


def test_a_timer_moved_earlier_or_cancelled() -> None:
    index = TimerIndex()
    states = {"a": with_timers(x=100, y=50)}
    index.index("a", states["a"])
    changed = with_timers(x=40)  # x earlier, y cancelled
    rewrite(index, "a", states["a"], changed)
    states["a"] = changed
    assert drain(index, 1000, states) == [(40, "a", "x")]
    assert len(index) == 0


def test_a_timer_scheduled_again_by_its_own_firing_is_indexed_again() -> None:
    index = TimerIndex()
    states = {"a": with_timers(x=10)}
    index.index("a", states["a"])
    due_timer = index.pop_due(10, states.get)
    assert due_timer is not None
    again = with_timers(x=20)  # later than the entry just consumed, which it replaces
    rewrite(index, "a", CustomerState(), again)
    states["a"] = again
    assert drain(index, 20, states) == [(20, "a", "x")]


def test_the_dormant_timer_moving_on_every_message_does_not_grow_the_index() -> None:
    run = Scenario()
    run.join("2026-03-01 09:00")
    for minute in range(60):
        run.chat(f"2026-03-01 10:{minute:02d}")  # each inbound chat moves `dormant` later
    assert "dormant" in run.state().timers
    assert sum(len(p.timers) for p in run.engine.partitions) <= len(run.state().timers) + 1


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(0, 40), max_size=3),
            st.integers(0, 12),
        ),
        max_size=40,
    ),
    st.sampled_from([1, 900_000]),
)
def test_the_index_fires_what_the_states_hold_in_due_order(
    changes: list[tuple[str, dict[str, int], int]], unit: int
) -> None:
    """States rewritten at random (timers added, moved either way, cancelled; due times
    that tie across customers) while the clock moves on: each drain fires exactly the
    timers the states hold due by then, in (due, customer, name) order. `unit` scales
    the times: 1 keeps them in one hour's bucket of the index, 900,000 ms spreads them
    over ten (a timer set in an hour before the first bucket's, buckets emptied)."""
    index = TimerIndex()
    states: dict[str, CustomerState] = {}
    now = 0
    for customer_id, timers, step in changes:
        after = with_timers(**{name: now + due * unit for name, due in timers.items()})
        rewrite(index, customer_id, states.get(customer_id), after)
        states[customer_id] = after
        now += step * unit
        expected = sorted(
            (timer.due, c, name)
            for c, state in states.items()
            for name, timer in state.timers.items()
            if timer.due <= now
        )
        assert drain(index, now, states) == expected
