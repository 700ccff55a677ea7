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
from functools import lru_cache
from hashlib import sha256
from typing import Final
from zoneinfo import ZoneInfo

from siyu_stream.core.actions import Action, action_id
from siyu_stream.core.clock import DAY, HOUR, MINUTE, Millis, to_datetime
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState

CUSTOMER_FACING: Final = frozenset(
    {"invite_join", "repurchase_followup", "reengage", "winback", "vip_call", "membership_renewal"}
)


@lru_cache(maxsize=64)
def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _ms(clock: time) -> Millis:
    return (clock.hour * 60 + clock.minute) * MINUTE


@lru_cache(maxsize=4096)
def _steady_offset(zone: ZoneInfo, day: int) -> Millis | None:
    """The zone's UTC offset through UTC days `day` and `day + 1`, read every hour; None
    when it changes in them (a DST switch), or the days lie outside `datetime`'s range.
    A due time and the quiet end it may move to lie in those two days."""
    offsets = set()
    for hour in range(49):
        instant = (day * 24 + hour) * HOUR
        try:
            offset = to_datetime(instant).astimezone(zone).utcoffset()
        except OverflowError:
            return None
        offsets.add(offset)
    only = offsets.pop()
    if offsets or only is None:
        return None
    return only // timedelta(milliseconds=1)


def shift_out_of_quiet_hours(due: Millis, rules: Rules) -> Millis:
    """A due time inside quiet hours (brand's zone) moves to the next quiet_end."""
    policy = rules.contact_policy
    start, end = _hhmm(policy.quiet_start), _hhmm(policy.quiet_end)
    if start == end:
        return due
    zone = rules.zone
    offset = _steady_offset(zone, due // DAY)
    if offset is not None:
        # the zone's offset holds over the two days: integer arithmetic, ~10x cheaper
        wall = due + offset
        clock, begin, finish = wall % DAY, _ms(start), _ms(end)
        quiet = (clock >= begin or clock < finish) if begin > finish else begin <= clock < finish
        if not quiet:
            return due
        days = wall // DAY if clock < finish else wall // DAY + 1
        return days * DAY + finish - offset
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
