"""Time as the engine sees it: integer milliseconds since the Unix epoch, UTC.

Events carry RFC 3339 strings with an offset; the core works on integer epoch
milliseconds (cheap to compare, store and hash, no naive datetimes anywhere) and
formats back to RFC 3339 UTC only at the edges.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Millis = int

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

# RFC 3339 date-time: full date, 'T' or space, time with optional fraction, and a
# mandatory offset. fromisoformat alone would accept dates without time or offset.
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


@lru_cache(maxsize=4096)  # events arrive in bursts that share a timestamp
def parse_rfc3339(text: str) -> Millis:
    """Parse an RFC 3339 timestamp with offset to epoch milliseconds (UTC).

    Raises ValueError with a readable message when the text is not RFC 3339.
    """
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


@lru_cache(maxsize=1024)
def _date(days: int) -> str:
    return (_EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")


_HOUR_MINUTE = [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]
"""`HH:MM` of each minute of a day."""
_SECOND = [f"{s:02d}" for s in range(60)]


@lru_cache(maxsize=4096)  # an event's actions share its time, and a burst shares it too
def format_rfc3339(ms: Millis) -> str:
    """Epoch milliseconds as RFC 3339 UTC: `2026-11-25T08:00:00Z` (milliseconds only if any)."""
    # integer arithmetic, a cached date and the clock's digits from tables: strftime per
    # call was a top cost of every action, and formatting integers the next
    days, rest = divmod(ms, DAY)
    minutes, rest = divmod(rest, MINUTE)
    seconds, millis = divmod(rest, SECOND)
    stamp = f"{_date(days)}T{_HOUR_MINUTE[minutes]}:{_SECOND[seconds]}"
    return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"
