"""State serialization: compact, versioned, lossless."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from scenario import Scenario

from siyu_stream.core import state as st
from siyu_stream.core import stored
from siyu_stream.core.errors import StateError
from siyu_stream.core.rules import largest_state, once_gift_codes
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.schemas import load_schema
from siyu_stream.core.step import TIMER_NAMES, TRACKED, tracked


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
    assert stored.loads(stored.dumps(state)) == state


def test_default_state_is_tiny_and_defaults_are_omitted() -> None:
    raw = stored.dumps(st.CustomerState())
    assert raw == b'{"v":1}'


def test_busy_customer_state_fits_in_a_kibibyte() -> None:
    assert len(stored.dumps(busy_state())) <= 1024


FULL = (
    b'{"v":1,"l":"A5","t":"gold","h":"at_risk","m":"active","s":1234567,"o":9,'
    b'"fo":1767225600000,"lo":1769904000000,"ot":[1767225600000,1769904000000],'
    b'"ro":[["AQIDBAUG",500,1],["YWJjZGVm",0,0]],'
    b'"c":{"wecom":1767225600000,"group":1767312000000},"js":"referral","r":"R-1",'
    b'"os":"s7","ls":"s1","li":1769000000000,"lu":1769000060000,"p":1769000000000,"u":2,'
    b'"a":1769904000000,"rc":3,"mu":1801440000000,"g":["gold_welcome","first_purchase"],'
    b'"x":[1769000000000],"iv":1768000000000,"e":"////////////////",'
    b'"tm":{"dormant":[1785000000000,"e-9"],"reply_sla":[1769003600000,"e-7","wecom"]}}'
)
"""A state with every field set, as format 1 was first written (by a dict per state and
orjson): changelogs and state stores hold these bytes, so a writer must keep them."""


def test_every_field_is_written_under_its_key_in_format_order() -> None:
    state = st.CustomerState(
        *("A5", "gold", "at_risk", "active", 1234567, 9, 1767225600000, 1769904000000),
        [1767225600000, 1769904000000],
        [
            st.OrderRecord(b"\x01\x02\x03\x04\x05\x06", 500, True),
            st.OrderRecord(b"abcdef", 0, False),
        ],
        {"wecom": 1767225600000, "group": 1767312000000},
        *("referral", "R-1", "s7", "s1", 1769000000000, 1769000060000, 1769000000000, 2),
        *(1769904000000, 3, 1801440000000, ["gold_welcome", "first_purchase"]),
        *([1769000000000], 1768000000000, b"\xff" * 12),
        {
            "dormant": st.Timer(1785000000000, "e-9"),
            "reply_sla": st.Timer(1769003600000, "e-7", "wecom"),
        },
    )
    assert all(  # every field away from its default: a field left out would show
        getattr(state, f.name) != getattr(st.CustomerState(), f.name)
        for f in dataclasses.fields(st.CustomerState)
    )
    assert stored.dumps(state) == FULL
    assert stored.loads(FULL) == state


def test_missing_fields_read_as_defaults_so_older_writers_stay_readable() -> None:
    # a writer that knew fewer fields: only version, spend and layer
    old = orjson.dumps({"v": 1, "s": 500, "l": "A4"})
    state = stored.loads(old)
    assert (state.spend_fen, state.layer, state.tier, state.timers) == (500, "A4", "none", {})


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v": 2}',
        b'{"s": 1}',
        b"[]",
        b"not json",
        b'{"v": 1, "tm": {"x": 5}}',
        b'{"v": 1, "e": 5}',  # digests not as base64 text
        b'{"v": 1, "ro": [["AAAAAAAA", 1]]}',  # an order record short of a field
        b'{"v": 1, "ro": [["AAAAAAAA", 1, true]]}',  # membership is 0 or 1
        b'{"v": 1, "s": "500"}',
        b'{"v": 1, "l": 4}',
        b'{"v": 1, "ot": [1, "2"]}',
        b'{"v": 1, "c": {"wecom": null}}',
        b'{"v": 1, "tm": {"x": [1, 2]}}',  # a cause that is not text
        b'{"v": 1, "tm": {"x": ["1", "e"]}}',  # a due time that is not a number
        b'{"v": 1, "tm": {"x": [1, "e", "n", "extra"]}}',
        b'{"v": 1, "tm": {"x": [1]}}',
        b'{"v": "1"}',
    ],
)
def test_unreadable_state_is_an_error_not_a_guess(raw: bytes) -> None:
    with pytest.raises(StateError):
        stored.loads(raw)


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


def test_clone_copies_every_field_and_the_timers() -> None:
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
    # the timers change on most steps; the other containers are shared, and the core
    # replaces them (test_properties: a step never changes the state it was given)
    assert copy.timers is not state.timers


def test_tracked_spells_out_the_tracked_fields_in_order() -> None:
    state = st.CustomerState(layer="A4", tier="gold", health="at_risk", membership="active")
    assert tracked(state) == tuple(getattr(state, name) for name in TRACKED)


# ---------------------------------------------------------------- bounds (docs/design.md §3)


def test_largest_possible_state_serializes_far_below_max_state_bytes() -> None:
    rules = Rules()
    big = largest_state(rules)
    raw = stored.dumps(big)
    assert len(raw) < rules.engine.max_state_bytes
    # the producer's default max.request.size is 1 MiB: the record stays far below it
    assert rules.engine.max_state_bytes <= 1_048_576 // 32
    assert stored.loads(raw) == big


def test_largest_state_has_every_collection_at_its_bound() -> None:
    rules = Rules()
    big = largest_state(rules)
    engine = rules.engine
    assert len(big.carriers) == engine.max_carriers
    assert len(big.order_times) == rules.repurchase_due.gaps + 1
    assert len(big.recent_orders) == engine.recent_orders
    assert len(big.seen) == engine.dedup_window * st.DIGEST_BYTES
    assert big.gifts == list(once_gift_codes(rules))
    assert len(big.touches) == rules.contact_policy.max_per_window
    assert sorted(big.timers) == sorted(TIMER_NAMES)
    # and every field away from its default: a field added later must be sized here too
    for f in dataclasses.fields(st.CustomerState):
        assert getattr(big, f.name) != getattr(st.CustomerState(), f.name), f.name


def test_largest_state_strings_take_six_json_bytes_per_character() -> None:
    # 6 is the most one character can take: the \u00XX escape of a control character
    big = largest_state(Rules())
    names = [*big.carriers, big.join_source or "", *(t.note for t in big.timers.values())]
    ids = [big.referrer_id or "", big.owner_staff or "", big.last_staff or ""]
    ids += [t.cause for t in big.timers.values()]
    for text, chars in [*((n, st.NAME_CHARS) for n in names), *((i, st.ID_CHARS) for i in ids)]:
        assert len(text) == chars
        assert len(orjson.dumps(text)) == 6 * chars + 2


def max_length(schema: str, name: str) -> int:
    value = load_schema(schema)["properties"][name]["maxLength"]
    assert isinstance(value, int)
    return value


@pytest.mark.parametrize(
    ("schema", "name", "bound"),
    [
        ("envelope", "event_id", st.ID_CHARS),  # Timer.cause
        ("siyu.joins", "carrier", st.NAME_CHARS),  # carriers keys
        ("siyu.joins", "source", st.NAME_CHARS),  # join_source
        ("siyu.joins", "staff_id", st.ID_CHARS),  # owner_staff
        ("siyu.joins", "referrer_id", st.ID_CHARS),  # referrer_id
        ("siyu.chats", "staff_id", st.ID_CHARS),  # last_staff
        ("siyu.chats", "channel", st.NAME_CHARS),  # Timer.note of reply_sla
    ],
)
def test_every_string_the_state_keeps_is_bounded_by_its_input_schema(
    schema: str, name: str, bound: int
) -> None:
    # largest_state sizes strings by ID_CHARS and NAME_CHARS: a schema allowing more
    # would make the size proof above wrong
    assert max_length(schema, name) <= bound
