"""The per-event memos (`core.memo`): bounded, and a memo emptied gives the same answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from siyu_stream.core import policy
from siyu_stream.core.clock import DAY, format_rfc3339, to_datetime
from siyu_stream.core.memo import remember


def test_remember_empties_a_full_memo_first() -> None:
    memo: dict[int, str] = {}
    for n in range(10):
        assert remember(memo, n, str(n), 4) == str(n)
        assert len(memo) <= 4
    assert memo == {8: "8", 9: "9"}  # emptied at 4 and at 8


def test_the_offset_memo_stays_bounded_and_right() -> None:
    zone = ZoneInfo("Europe/London")
    days = range(19_000, 19_000 + policy.REMEMBERED + 500)
    for day in days:
        policy._steady_offset(zone, day)
        assert len(policy._offsets[zone]) <= policy.REMEMBERED
        assert len(policy._day_offsets[zone]) <= policy.REMEMBERED
    # 2024-03-31 (day 19,813) springs forward: no steady offset over it and the day before
    assert policy._steady_offset(zone, 19_812) is None
    assert policy._steady_offset(zone, 19_813) is None
    assert policy._steady_offset(zone, 19_900) == 3_600_000  # summer time, BST
    assert policy._steady_offset(zone, 20_100) == 0  # winter, GMT
    for n in range(policy.ZONES + 10):  # zones are bounded apart (instances not cached)
        policy._steady_offset(ZoneInfo.no_cache("Asia/Shanghai"), 19_000 + n)
        assert len(policy._offsets) <= policy.ZONES
        assert len(policy._day_offsets) <= policy.ZONES


def _window_reference(zone: ZoneInfo, day: int) -> int | None:
    """The offset read at each of the 49 hours of days `day` and `day + 1`, if only one."""
    start = datetime.fromtimestamp(day * DAY // 1000, UTC)
    found = {(start + timedelta(hours=h)).astimezone(zone).utcoffset() for h in range(49)}
    only = found.pop()
    return None if found or only is None else only // timedelta(milliseconds=1)


def test_each_window_is_read_as_its_49_hours() -> None:
    """Windows built from days read once each: the same answer as reading the window's own
    hours, around switches both ways, one at midnight UTC (Chisinau: the window's last
    hour sees it) and one by half an hour (Lord Howe); read in order, backwards and by
    leaps."""
    for name in ("Europe/London", "Europe/Chisinau", "Australia/Lord_Howe", "America/New_York"):
        zone = ZoneInfo(name)
        days = [*range(19_700, 20_120), *range(20_120, 19_700, -1), *range(19_000, 21_000, 37)]
        for day in days:
            assert policy._steady_offset(zone, day) == _window_reference(zone, day), (name, day)


def test_formatted_dates_past_the_memo_bound_stay_right() -> None:
    for days in range(0, 3_000 * 7, 7):
        ms = days * DAY + 1
        expected = to_datetime(ms).strftime("%Y-%m-%dT%H:%M:%S.001Z")
        assert format_rfc3339(ms) == expected, days
    assert format_rfc3339(19_813 * DAY + DAY - 1) == "2024-03-31T23:59:59.999Z"
