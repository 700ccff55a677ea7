"""Engine time: epoch milliseconds to and from RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from siyu_stream.core import clock
from siyu_stream.core.clock import format_rfc3339, parse_rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YEAR_1900, YEAR_2200 = -2208988800000, 7258118400000


@given(st.integers(YEAR_1900, YEAR_2200))
def test_format_agrees_with_datetime_and_parses_back(ms: int) -> None:
    reference = EPOCH + timedelta(milliseconds=ms)
    text = format_rfc3339(ms)
    expected = reference.strftime("%Y-%m-%dT%H:%M:%S")
    expected += f".{ms % 1000:03d}Z" if ms % 1000 else "Z"
    assert text == expected
    assert parse_rfc3339(text) == ms


def test_offsets_and_fractions() -> None:
    assert parse_rfc3339("2026-11-25T16:00:00+08:00") == parse_rfc3339("2026-11-25T08:00:00Z")
    assert format_rfc3339(parse_rfc3339("2026-11-25T08:00:00.123456789z")) == (
        "2026-11-25T08:00:00.123Z"
    )


def _reference(text: str) -> int | None:
    """What datetime makes of `text` (None: refused), in epoch milliseconds."""
    try:
        parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _parsed(text: str) -> int | None:
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


@given(st.datetimes(timezones=st.just(UTC)), st.sampled_from(["T", "t", " "]), st.booleans())
def test_the_integer_path_agrees_with_datetime_on_utc_stamps(
    at: datetime, sep: str, millis: bool
) -> None:
    fraction = f".{at.microsecond // 1000:03d}" if millis else ""
    date = f"{at.year:04d}-{at.month:02d}-{at.day:02d}"  # strftime drops a year's zeros
    text = f"{date}{sep}{at:%H:%M:%S}{fraction}Z"
    assert _parsed(text) == _reference(text) is not None


@given(st.text(alphabet="0123456789", min_size=14, max_size=17), st.sampled_from(["Z", "z"]))
@example("19000229000000", "Z")  # not a leap year: divisible by 100
@example("20000229000000", "Z")  # a leap year: divisible by 400
@example("20230229000000", "Z")
@example("20240229235959999", "Z")
@example("20260431000000", "Z")
@example("20261301000000", "Z")
@example("20260001000000", "Z")
@example("20260101240000", "Z")
@example("20260101236000", "Z")
@example("20260101235960", "Z")
@example("00000101000000", "Z")
@example("00010101000000", "z")
def test_the_integer_path_refuses_what_datetime_refuses(digits: str, zone: str) -> None:
    """Any digits in the shape (month 13, 30 February, hour 24, second 60, year 0000):
    parsed exactly when datetime parses them, to the same instant."""
    d = digits.ljust(17, "0")
    text = f"{d[:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:{d[12:14]}"
    text += (f".{d[14:17]}" if len(digits) > 14 else "") + zone
    assert _parsed(text) == _reference(text)


@given(
    st.datetimes(timezones=st.just(UTC)),
    st.booleans(),
    st.integers(0, 23),
    st.characters(codec="utf-8"),
)
@example(datetime(2026, 1, 2, tzinfo=UTC), False, 6, "\u0663")  # ARABIC-INDIC DIGIT THREE
@example(datetime(2026, 1, 2, tzinfo=UTC), False, 6, "/")  # one below "0"
@example(datetime(2026, 1, 2, tzinfo=UTC), False, 6, ":")  # one above "9": month "0:" would read 10
@example(datetime(2026, 1, 2, tzinfo=UTC), True, 19, ",")
def test_the_integer_path_takes_only_rfc3339(
    at: datetime, millis: bool, where: int, char: str
) -> None:
    """One character of a UTC stamp replaced by any other: what the integer path takes,
    the RFC 3339 pattern takes too, and datetime reads as the same instant."""
    fraction = f".{at.microsecond // 1000:03d}" if millis else ""
    text = f"{at.year:04d}-{at.month:02d}-{at.day:02d}T{at:%H:%M:%S}{fraction}Z"
    text = text[:where] + char + text[where + 1 :]
    fast = clock._utc_fast(text)
    if fast is not None:
        assert clock._RFC3339.match(text) is not None
        assert fast == _reference(text)


@given(st.lists(st.integers(YEAR_1900, YEAR_2200), max_size=6), st.sampled_from(["", "x", "Z"]))
def test_the_last_stamp_memo_never_answers_for_another(times: list[int], junk: str) -> None:
    """parse and format remember their last stamp: repeated, alternated or refused
    inputs all get their own answer."""
    for ms in [*times, *times[::-1], *times]:
        text = format_rfc3339(ms)
        assert parse_rfc3339(text) == ms
        assert format_rfc3339(parse_rfc3339(text)) == text
    assert _parsed(junk) is None
