"""Engine time: epoch milliseconds to and from RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

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
