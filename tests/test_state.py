"""State serialization: compact, versioned, lossless."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from scenario import Scenario

from siyu_stream import state as st
from siyu_stream.errors import StateError
from siyu_stream.step import TRACKED, tracked


def busy_state() -> st.CustomerState:
    s = Scenario()
    s.join("2026-01-01 10:00", staff_id="s7", referrer_id="R", source="referral")
    for n in range(8):
        s.order(f"2026-0{n % 9 + 1}-02 10:00", "1234.56", order_id=f"order-{n}")
    s.order("2026-09-03 10:00", "1000", kind="membership")
    s.chat("2026-09-04 10:00", "inbound")
    s.chat("2026-09-04 10:05", "outbound", staff_id="s1")
    return s.state()


def test_round_trip_is_lossless() -> None:
    state = busy_state()
    assert st.loads(st.dumps(state)) == state


def test_default_state_is_tiny_and_defaults_are_omitted() -> None:
    raw = st.dumps(st.CustomerState())
    assert raw == b'{"v":1}'


def test_busy_customer_state_fits_in_a_kibibyte() -> None:
    assert len(st.dumps(busy_state())) <= 1024


def test_missing_fields_read_as_defaults_so_older_writers_stay_readable() -> None:
    # a writer that knew fewer fields: only version, spend and layer
    old = orjson.dumps({"v": 1, "s": 500, "l": "A4"})
    state = st.loads(old)
    assert (state.spend_fen, state.layer, state.tier, state.timers) == (500, "A4", "none", {})


@pytest.mark.parametrize(
    "raw", [b'{"v": 2}', b'{"s": 1}', b"[]", b"not json", b'{"v": 1, "tm": {"x": 5}}']
)
def test_unreadable_state_is_an_error_not_a_guess(raw: bytes) -> None:
    with pytest.raises(StateError):
        st.loads(raw)


def test_seen_window_is_bounded_and_aligned() -> None:
    state = st.CustomerState()
    keys = [st.digest(f"e{n}") for n in range(40)]
    for key in keys:
        state.remember(key, 32)
    assert len(state.seen) == 32 * st.DIGEST_BYTES
    assert not state.has_seen(keys[0])
    assert all(state.has_seen(k) for k in keys[8:])
    # a straddle of two stored digests is not a hit
    straddle = state.seen[3 : 3 + st.DIGEST_BYTES]
    assert not state.has_seen(straddle) or straddle in keys


def test_clone_copies_every_field_and_shares_no_container() -> None:
    state = busy_state()
    # every field away from its default, so a field clone() forgot would show
    for f in dataclasses.fields(st.CustomerState):
        if getattr(state, f.name) == getattr(st.CustomerState(), f.name):
            value = {str: "x", int: 7}.get(type(getattr(state, f.name)), 7)
            setattr(state, f.name, value if f.name not in ("gifts", "touches") else [value])
    assert all(
        getattr(state, f.name) != getattr(st.CustomerState(), f.name)
        for f in dataclasses.fields(st.CustomerState)
    )
    copy = state.clone()
    assert copy == state
    for f in dataclasses.fields(st.CustomerState):
        value = getattr(copy, f.name)
        if isinstance(value, list | dict):
            assert value is not getattr(state, f.name), f.name


def test_tracked_spells_out_the_tracked_fields_in_order() -> None:
    state = st.CustomerState(layer="A4", tier="gold", health="at_risk", membership="active")
    assert tracked(state) == tuple(getattr(state, name) for name in TRACKED)
