"""Hostile input to replay: it never raises, every line is applied or dead-lettered with
file, line and reason, and the lines it applied give the same bytes on their own."""

from __future__ import annotations

import io
import string
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siyu_stream.core.clock import DAY, parse_common, parse_rfc3339
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import amount_form, decode, from_dict, parse_amount_fen
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.schemas import input_pattern
from siyu_stream.replay.run import replay

RULES = Rules()
NOW = parse_rfc3339("2026-04-01T00:00:00Z")
VALID = (Path(__file__).resolve().parent / "data" / "lifecycle.jsonl").read_bytes().splitlines()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def mangled(draw: st.DrawFn) -> bytes:
    """A valid event with one field replaced by anything, or dropped."""
    event = orjson.loads(draw(st.sampled_from(VALID)))
    field = draw(st.sampled_from(sorted(event)))
    if draw(st.booleans()):
        del event[field]
    else:
        event[field] = draw(json_values)
    event["event_id"] = f"fuzz-{draw(st.integers(0, 10**6))}"
    return orjson.dumps(event)


line_bytes = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))
bad_lines = st.one_of(
    line_bytes,
    json_values.map(orjson.dumps),
    mangled(),
    st.sampled_from(
        [
            b'{"occurred_at": "9999-12-31T23:59:59-14:00"}',
            orjson.dumps({**orjson.loads(VALID[0]), "occurred_at": "9999-12-31T23:59:59-14:00"}),
            orjson.dumps({**orjson.loads(VALID[0]), "occurred_at": "0001-01-01T00:00:00+01:00"}),
            orjson.dumps({**orjson.loads(VALID[0]), "occurred_at": "9999-12-31T23:58:00Z"}),
            orjson.dumps({**orjson.loads(VALID[1]), "occurred_at": "2026-05-20T00:00:00Z"}),
            b"[" * 5000,
        ]
    ),
)


def run(lines: list[bytes], tmp: Path) -> tuple[bytes, list[dict[str, Any]], dict[str, int]]:
    path = tmp / "input.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    out, dead = io.BytesIO(), io.BytesIO()
    counts = replay([path], out, RULES, now=NOW, until=NOW + 400 * DAY, deadletters=dead)
    letters = [orjson.loads(line) for line in dead.getvalue().splitlines()]
    return out.getvalue(), letters, dict(counts.by_outcome())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=st.lists(bad_lines, max_size=12), positions=st.lists(st.integers(0, 100)))
def test_hostile_lines_never_stop_replay_nor_change_the_valid_ones(
    tmp_path_factory: pytest.TempPathFactory, bad: list[bytes], positions: list[int]
) -> None:
    lines = list(VALID)
    for n, line in enumerate(bad):
        lines.insert(positions[n] % (len(lines) + 1) if n < len(positions) else 0, line)
    tmp = tmp_path_factory.mktemp("fuzz")
    actions, letters, events = run(lines, tmp)
    counted = [line for line in lines if line.strip()]
    assert sum(events.values()) == len(counted)  # every line applied or rejected, once
    assert events.get("rejected", 0) == len(letters)
    for letter in letters:
        assert letter["file"].endswith("input.jsonl") and letter["line"] >= 1 and letter["reason"]
    rejected = {letter["line"] for letter in letters}
    kept = [line for n, line in enumerate(lines, start=1) if n not in rejected]
    again, letters_again, _ = run(kept, tmp)
    assert again == actions  # the valid lines' actions, byte for byte
    assert letters_again == []


@pytest.mark.parametrize(
    ("occurred_at", "reason"),
    [
        ("9999-12-31T23:59:59-14:00", "must lie in the years 2000..8999"),
        ("0001-01-01T00:00:00+01:00", "must lie in the years 2000..8999"),
        ("9999-12-31T23:58:00Z", "must lie in the years 2000..8999"),
        ("1999-12-31T23:59:59Z", "must lie in the years 2000..8999"),
        ("2026-04-01T00:00:01+00:00", None),  # within max_future_minutes of --now
        ("2026-04-02T00:00:01Z", "ahead of --now"),
    ],
)
def test_out_of_range_times_are_dead_lettered_with_a_reason(
    tmp_path: Path, occurred_at: str, reason: str | None
) -> None:
    line = orjson.dumps({**orjson.loads(VALID[0]), "occurred_at": occurred_at})
    _, letters, _ = run([line, *VALID], tmp_path)
    if reason is None:
        assert letters == []
    else:
        assert [(letter["line"], reason in letter["reason"]) for letter in letters] == [(1, True)]


@pytest.mark.parametrize("first", ["0001-01-01T00:00:00Z", "2026-05-20T00:00:00Z"])
def test_one_line_cannot_poison_the_clock(tmp_path: Path, first: str) -> None:
    """A first line dated year 0001 must not reject what follows; one dated weeks ahead
    (of --now) must not fire everyone's timers early: both are rejected, nothing else."""
    poison = orjson.dumps({**orjson.loads(VALID[0]), "event_id": "poison", "occurred_at": first})
    clean, _, _ = run(list(VALID), tmp_path)
    actions, letters, _ = run([poison, *VALID], tmp_path)
    assert [letter["line"] for letter in letters] == [1]
    assert actions == clean


def test_the_fuzz_alphabet_reaches_the_schema() -> None:
    """The strategies reach past JSON parsing (else the property proves little)."""
    assert any(c in string.printable for c in "{}")


def slow_decode(raw: bytes) -> object:
    """The schema path alone (orjson, then the validators built from topics/): the
    reference the msgspec fast path of `decode` must agree with."""
    try:
        if len(raw) > RULES.input.max_message_bytes:
            return decode(raw, RULES.input)  # refused before either path runs
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return f"invalid JSON: {exc}"
        return from_dict(data, RULES.input)
    except InvalidEvent as exc:
        return exc.full_reason


def fast_decode(raw: bytes) -> object:
    try:
        return decode(raw, RULES.input)
    except InvalidEvent as exc:
        return exc.full_reason


EDGES = [
    order | over
    for order in [orjson.loads(VALID[i]) for i in range(len(VALID)) if b'"order"' in VALID[i]][:1]
    for over in [
        {"amount": 2**63 - 1},
        {"amount": 2**63},
        {"amount": "12.5\n"},
        {"amount": "١٢"},
        {"amount": "12."},
        {"amount": 1e300},
        {"kind": None},
        {"kind": "membership"},
        {"items": [{}] * 501},
        {"items": [[]]},
        {"items": [{"a": [[[[1]]]]}]},
        {"type": "chat"},
        {"extra": {"x": 1}},
        {"occurred_at": "2026-01-01T00:00:00Z\n"},
        # the patterns decode checks itself (schemas.DEFERRED), past and within them
        {"amount": "1234567890123"},
        {"amount": "123456789012.34"},
        {"amount": "12.345"},
        {"amount": ".5"},
        {"occurred_at": "2026-01-01T08:00:00+08:00"},
        {"occurred_at": "2026-01-01 00:00:00.123456789z"},
        {"occurred_at": "2026-01-01T00:00:00.1234567890Z"},
        {"occurred_at": "２０２６-01-01T00:00:00Z"},
        {"occurred_at": "2026-01-01T00:00:00.12Z"},
        {"occurred_at": "2026-02-30T00:00:00Z"},
        {"customer_id": "x" * 129},
    ]
]
RAW_EDGES = [
    b'{"type":"order","type":"chat"}',
    VALID[0].replace(b"}", b',"event_id":"again"}'),
    VALID[0].replace(b"}", b',"items":[{"a":"\\ud800"}]}'),
    VALID[0].replace(b"}", b',"items":[{"a":"\xff"}]}'),
    VALID[0].replace(b"}", b',"items":[{"a":1e400}]}'),
    VALID[0].replace(b"}", b',"items":[' + b"[" * 3000 + b"]" * 3000 + b"]}"),
    VALID[0].replace(b"}", b',"items":[{"a":123456789012345678901234567890}]}'),
    b"\xef\xbb\xbf" + VALID[0],
    *(  # amounts orjson cannot write: past 64 bits, and a number past a float
        VALID[0].replace(b"}", b',"amount":' + number + b"}")
        for number in (b"18446744073709551617", b"1" + b"0" * 400, b"1e400", b"-0")
    ),
]


@pytest.mark.parametrize("raw", [orjson.dumps(e) for e in EDGES] + RAW_EDGES)
def test_fast_decoding_agrees_with_the_schemas_on_edge_cases(raw: bytes) -> None:
    assert fast_decode(raw) == slow_decode(raw)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.one_of(bad_lines, st.sampled_from(VALID)))
def test_fast_decoding_agrees_with_the_schemas(raw: bytes) -> None:
    """msgspec structs are built from the schema files: whatever they accept, the schemas
    accept with the same event; whatever they refuse gets the schema path's reason."""
    assert fast_decode(raw) == slow_decode(raw)


@given(st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{1,2})?\Z") | st.text(max_size=8))
def test_amount_fast_path_equals_decimal(text: str) -> None:
    def exact(value: str) -> object:
        try:
            fen = Decimal(value) * 100
        except InvalidOperation:
            return "invalid"
        if not fen.is_finite() or fen < 0 or fen != fen.to_integral_value():
            return "invalid"
        return int(fen)

    try:
        got: object = parse_amount_fen(text)
    except InvalidEvent:
        got = "invalid"
    assert got == exact(text)


AMOUNT, STAMP = input_pattern("amount"), input_pattern("occurred_at")


@given(st.from_regex(AMOUNT) | st.from_regex(r"\A[0-9.١٢]{0,16}\Z") | st.text(max_size=16))
def test_amount_form_is_the_schema_pattern(text: str) -> None:
    """decode checks a string amount with `amount_form`, not the schema's regex."""
    assert amount_form(text) == (AMOUNT.search(text) is not None)


@given(st.from_regex(STAMP) | st.text(alphabet="0123456789-:.+TtZz ２", max_size=26))
def test_what_the_common_parse_reads_is_in_the_schema_pattern(text: str) -> None:
    """decode trusts `parse_common` where it reads a time, and asks the regex otherwise."""
    if parse_common(text) is not None:
        assert STAMP.search(text)
