"""Time as the engine sees it: integer milliseconds since the Unix epoch, UTC.

Events carry RFC 3339 strings with an offset; the core works on integer epoch
milliseconds (cheap to compare, store and hash, no naive datetimes anywhere) and
formats back to RFC 3339 UTC only at the edges.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from siyu_stream.core.memo import remember

SECOND: Final = 1000
MINUTE: Final = 60 * SECOND
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR

Millis = int

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)

# RFC 3339 date-time: full date, 'T' or space, time with optional fraction, and a
# mandatory offset. fromisoformat alone would accept dates without time or offset.
_RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


# of any length: compiled, a fixed-length tuple is a C struct, boxed into a new tuple
# each time a variable indexes it (a 13-tuple for every timestamp read)
_MONTH_DAYS: Final[tuple[int, ...]] = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _number(raw: bytes, start: int, end: int) -> int:
    """The decimal digits raw[start:end] as an int; -1 if any is not an ASCII digit."""
    value = 0
    for i in range(start, end):
        digit = raw[i] - 48
        if digit < 0 or digit > 9:
            return -1
        value = value * 10 + digit
    return value


def _utc_fast(text: str) -> Millis | None:
    """`YYYY-MM-DDTHH:MM:SSZ` and `...SS.mmmZ` (what every producer and our own output
    write) by integer arithmetic on the bytes; None for any other form or an impossible
    value, which the general parser then reads or refuses. The regular expression and
    `datetime.fromisoformat` cost ~10,000 instructions a timestamp compiled, and slicing
    and `int()` of each field still ~5,000."""
    n = len(text)
    if n not in (20, 24) or not text.isascii():
        return None
    raw = text.encode()
    # the separators by their codes: - - : : T|t|space Z|z and the fraction's .
    if raw[4] != 45 or raw[7] != 45 or raw[13] != 58 or raw[16] != 58:
        return None
    sep, zone = raw[10], raw[n - 1]
    if sep not in (84, 116, 32) or zone not in (90, 122):
        return None
    if n == 24 and raw[19] != 46:
        return None
    # a field with a character other than a digit reads -1, which every check refuses
    year, month, day = _number(raw, 0, 4), _number(raw, 5, 7), _number(raw, 8, 10)
    hour, minute, second = _number(raw, 11, 13), _number(raw, 14, 16), _number(raw, 17, 19)
    millis = _number(raw, 20, 23) if n == 24 else 0
    if year < 1 or month < 1 or month > 12 or day < 1 or millis < 0:
        return None
    if hour < 0 or hour > 23 or minute < 0 or minute > 59 or second < 0 or second > 59:
        return None
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if day > _MONTH_DAYS[month] + leap:
        return None
    days = _days_from_civil(year, month, day)
    return ((days * 24 + hour) * 60 + minute) * MINUTE + second * SECOND + millis


class _Last:
    """The last stamp parsed and the last instant formatted, each as one (input, output)
    pair (one assignment: a thread reading it never sees half of an update).

    Not an LRU cache: a stream's stamps repeat in runs (a burst shares its second, an
    event's actions share its time), so the last one catches the repeats, while over a
    year's history an LRU of 4,096 met 1 parse in 100 and 1 format in 3 again, and its
    bookkeeping cost more than it saved."""

    def __init__(self) -> None:
        self.parsed: tuple[str, Millis] = ("1970-01-01T00:00:00Z", 0)
        self.formatted: tuple[Millis, str] = (0, "1970-01-01T00:00:00Z")


_LAST: Final = _Last()


def parse_common(text: str) -> Millis | None:
    """`text` in UTC with at most milliseconds, the form every producer and our own output
    write (a subset of RFC 3339, read without a regular expression); None otherwise."""
    last = _LAST.parsed
    if last[0] == text:
        return last[1]
    fast = _utc_fast(text)
    if fast is not None:
        _LAST.parsed = (text, fast)
    return fast


def parse_rfc3339(text: str) -> Millis:
    """Parse an RFC 3339 timestamp with offset to epoch milliseconds (UTC).

    Raises ValueError with a readable message when the text is not RFC 3339.
    """
    common = parse_common(text)
    if common is not None:
        return common
    match = _RFC3339.match(text)
    if match is None:
        msg = f"not an RFC 3339 timestamp with offset: {text!r}"
        raise ValueError(msg)
    fraction = match.group(1)
    # fromisoformat takes at most microseconds; trim nanoseconds, they are below our unit
    if fraction and len(fraction) > 7:
        text = text.replace(fraction, fraction[:7], 1)
    parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    # integer arithmetic: float timestamps can round .123 down to .122
    return (parsed - _EPOCH) // _ONE_MS


def to_datetime(ms: Millis) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return _EPOCH + ms * _ONE_MS


_dates: Final[dict[int, str]] = {}


def _date(days: int) -> str:
    text = (_EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")
    return remember(_dates, days, text, 1024)


_HOUR_MINUTE: Final = [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]
"""`HH:MM` of each minute of a day."""
_SECOND: Final = [f"{s:02d}" for s in range(60)]
_MILLI: Final = [f"{m:03d}" for m in range(1000)]
"""Compiled, `f"{millis:03d}"` calls `int.__format__`: ~2,000 instructions, 40 % of a
worker's `Action.to_dict` (a live record's time has milliseconds)."""


def format_rfc3339(ms: Millis) -> str:
    """Epoch milliseconds as RFC 3339 UTC: `2026-11-25T08:00:00Z` (milliseconds only if any)."""
    # integer arithmetic, a cached date and the clock's digits from tables: strftime per
    # call was a top cost of every action, and formatting integers the next
    last = _LAST.formatted
    if last[0] == ms:
        return last[1]
    days = ms // DAY
    rest = ms - days * DAY
    minutes = rest // MINUTE
    rest -= minutes * MINUTE
    seconds = rest // SECOND
    millis = rest - seconds * SECOND
    date = _dates.get(days)  # read in place: a dict hit, no call (interpreted too)
    if date is None:
        date = _date(days)
    # one string built, not a stamp and then the text (compiled, each f-string is a join)
    if millis:
        text = f"{date}T{_HOUR_MINUTE[minutes]}:{_SECOND[seconds]}.{_MILLI[millis]}Z"
    else:
        text = f"{date}T{_HOUR_MINUTE[minutes]}:{_SECOND[seconds]}Z"
    _LAST.formatted = (ms, text)
    return text
