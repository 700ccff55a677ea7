"""Contact policy (docs/design.md §4): quiet hours, frequency cap, holdout.

Applies to customer-facing reminders only; the rules decide *whether* a reminder
fires, the policy decides whether it reaches the customer. A held-back reminder is
emitted as a `suppressed` action that embeds it, so the audit shows what was withheld
(`withhold`; the go-live cut in `step` uses it too, for gifts and reminders alike).

The frequency cap keeps its own state bounded: `touches` holds only due times inside
the window of the latest reminder it let through, and gains one only below the cap,
so never more than `max_per_window` (docs/design.md §3).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from hashlib import sha256
from typing import Final
from zoneinfo import ZoneInfo

from siyu_stream.core.actions import Action, action_id
from siyu_stream.core.clock import DAY, HOUR, MINUTE, Millis, to_datetime
from siyu_stream.core.memo import remember, table
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState

CUSTOMER_FACING: Final = frozenset(
    {"invite_join", "repurchase_followup", "reengage", "winback", "vip_call", "membership_renewal"}
)


REMEMBERED: Final = 4096
"""Bound of the memos below (`core.memo`): clock times, and days per zone."""
ZONES: Final = 64
"""Zones whose offsets `_steady_offset` and `_day_offset` remember (a run has one)."""
_clock_ms: Final[dict[str, Millis]] = {}
_offsets: Final[dict[ZoneInfo, dict[int, Millis | None]]] = {}
_day_offsets: Final[dict[ZoneInfo, dict[int, Millis | None]]] = {}


def _ms_of_day(text: str) -> Millis:
    """`HH:MM` (checked when the rules were read) as ms after midnight."""
    found = _clock_ms.get(text)
    if found is None:
        hours, minutes = text.split(":")
        found = remember(_clock_ms, text, (int(hours) * 60 + int(minutes)) * MINUTE, REMEMBERED)
    return found


def _steady_offset(zone: ZoneInfo, day: int) -> Millis | None:
    """The zone's UTC offset through UTC days `day` and `day + 1`, read every hour; None
    when it changes in them (a DST switch), or the days lie outside `datetime`'s range.
    A due time and the quiet end it may move to lie in those two days."""
    known = table(_offsets, zone, ZONES)
    if day in known:
        return known[day]
    first = _day_offset(zone, day)
    steady = first if first is not None and _day_offset(zone, day + 1) == first else None
    return remember(known, day, steady, REMEMBERED)


def _day_offset(zone: ZoneInfo, day: int) -> Millis | None:
    """The zone's offset at each hour from the start of UTC day `day` to the start of the
    next, if it is one. Two days' readings are the 49 of `_steady_offset`'s window, and
    each day is read once, not for each of the two windows it lies in."""
    known = table(_day_offsets, zone, ZONES)
    if day in known:
        return known[day]
    return remember(known, day, _read_offset(zone, day), REMEMBERED)


def _read_offset(zone: ZoneInfo, day: int) -> Millis | None:
    offsets = set()
    start = day * DAY // 1000
    for hour in range(25):
        # one C call a reading, not three (`to_datetime(...).astimezone(zone)`): the
        # readings took 5 % of the instructions of replaying 20,000 events over a year
        try:
            offset = datetime.fromtimestamp(start + hour * 3600, zone).utcoffset()
        except (OverflowError, ValueError, OSError):  # outside datetime's (or time_t's) range
            return None
        offsets.add(offset)
    only = offsets.pop()
    if offsets or only is None:
        return None
    return only // timedelta(milliseconds=1)


def shift_out_of_quiet_hours(due: Millis, rules: Rules) -> Millis:
    """A due time inside quiet hours (brand's zone) moves to the next quiet_end."""
    policy = rules.contact_policy
    begin, finish = _ms_of_day(policy.quiet_start), _ms_of_day(policy.quiet_end)
    if begin == finish:
        return due
    zone = rules.zone
    offset = _steady_offset(zone, due // DAY)
    if offset is not None:
        # the zone's offset holds over the two days: integer arithmetic, ~10x cheaper
        wall = due + offset
        clock = wall % DAY
        quiet = (clock >= begin or clock < finish) if begin > finish else begin <= clock < finish
        if not quiet:
            return due
        days = wall // DAY if clock < finish else wall // DAY + 1
        return days * DAY + finish - offset
    start, end = _clock(begin), _clock(finish)
    local = to_datetime(due).astimezone(zone)
    now = local.time()
    wraps = start > end  # e.g. 22:00-08:00 spans midnight
    inside = (now >= start or now < end) if wraps else (start <= now < end)
    if not inside:
        return due
    day = local.date() if now < end else local.date() + timedelta(days=1)
    # combine in the zone, then let zoneinfo pick the UTC offset of that wall time
    target = datetime.combine(day, end, tzinfo=zone)
    return int(target.timestamp()) * 1000


def _clock(ms_of_day: Millis) -> time:
    return time(ms_of_day // HOUR, ms_of_day % HOUR // MINUTE)


def in_holdout(customer_id: str, rules: Rules) -> bool:
    """Deterministic, salted: the same customer is always in or always out for a salt."""
    percent = rules.contact_policy.holdout_percent
    if percent <= 0:
        return False
    digest = sha256(f"{rules.contact_policy.holdout_salt}:{customer_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000  # 0.01 % resolution
    return bucket < percent * 100


def apply(state: CustomerState, reminder: Action, due: Millis, rules: Rules) -> Action:
    """The reminder itself, or a `suppressed` action holding it; records the touch."""
    reason: str | None = None
    explanation = ""
    policy = rules.contact_policy
    window = policy.window_days * DAY
    if in_holdout(reminder.customer_id, rules):
        reason = "holdout"
        explanation = f"customer is in the {policy.holdout_percent:g} % holdout group"
    else:
        recent = [t for t in state.touches if abs(t - due) < window]
        if len(recent) >= policy.max_per_window:
            reason = "frequency_cap"
            explanation = (
                f"{len(recent)} customer-facing reminders already within "
                f"{policy.window_days} days (cap {policy.max_per_window})"
            )
        else:
            # keep only touches that can still matter for a later reminder
            state.touches = sorted([*recent, due])
    if reason is None:
        return reminder
    return withhold(reminder, reason, f"held back {reminder.detail['template']}: {explanation}")


def withhold(action: Action, reason: str, because: str) -> Action:
    """The `suppressed` action that holds `action` back for `reason`: the audit keeps it
    whole, and its id is a digest of the withheld action's."""
    return Action(
        action_id=action_id("suppressed", action.action_id),
        kind="suppressed",
        rule=action.rule,
        customer_id=action.customer_id,
        occurred_at=action.occurred_at,
        cause_event_id=action.cause_event_id,
        detail={"reason": reason, "action": action.to_dict()},
        because=because,
        rules_version=action.rules_version,
    )
