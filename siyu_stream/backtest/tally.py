"""One backtest run's numbers, taken from its actions as the engine emits them.

A `Tally` is the engine's sink: it counts (per rule and kind, per day, gift value per code
and week, reminders per staff member and day, contact pressure per customer) and hands
each action to the run's `Spill` for the diff. Everything it keeps grows with customers,
staff and days, never with actions.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from datetime import date, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from siyu_stream.backtest.diff import Spill
from siyu_stream.core.actions import Action
from siyu_stream.core.clock import DAY, MINUTE, Millis, parse_rfc3339, to_datetime
from siyu_stream.core.policy import CUSTOMER_FACING
from siyu_stream.observe.observer import increment

WINDOW: Final = 7 * DAY
"""The contact-pressure window: fixed, so that both rule sets are measured alike even when
they set different `[contact_policy] window_days`."""


class Calendar:
    """Local days and weeks in the report's zone, cached per quarter hour (every zone's
    offset is a multiple of 15 minutes), since every action asks."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.cache: dict[int, date] = {}

    def day(self, at: Millis) -> date:
        slot = at // (15 * MINUTE)
        found = self.cache.get(slot)
        if found is None:
            found = to_datetime(slot * 15 * MINUTE).astimezone(self.zone).date()
            self.cache[slot] = found
        return found


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


class Tally:
    """One run's numbers, taken from its actions as they are emitted (the engine's sink)."""

    def __init__(self, calendar: Calendar, spill: Spill) -> None:
        self.calendar = calendar
        self.spill = spill
        # plain dicts, as in `Stats` (the summary reads them as Counters)
        self.actions: dict[tuple[str, str], int] = {}  # (rule, kind)
        self.per_day: dict[tuple[date, str], int] = {}  # (day, kind)
        self.gift_fen: dict[str, int] = {}
        self.gift_count: dict[str, int] = {}
        self.gift_week: dict[date, int] = {}
        self.staff_day: dict[tuple[str, date], int] = {}  # (assignee, due day)
        self.unassigned = 0
        self.suppressed: dict[str, int] = {}
        self.recent: dict[str, list[Millis]] = {}
        """Per customer, due times of customer-facing reminders within two windows of the
        latest: exact peaks for reminders emitted up to one window out of due order."""
        self.peak: dict[str, int] = {}

    def send(self, action: Action) -> None:
        self.spill.add(action)
        increment(self.actions, (action.rule, action.kind))
        day = self.calendar.day(action.occurred_at)
        increment(self.per_day, (day, action.kind))
        detail = action.detail
        if action.kind == "gift":
            code, value = str(detail["code"]), int(detail["value"])
            increment(self.gift_fen, code, value)
            increment(self.gift_count, code)
            increment(self.gift_week, monday(day), value)
        elif action.kind == "suppressed":
            increment(self.suppressed, str(detail["reason"]))
        elif action.kind == "reminder":
            due = parse_rfc3339(str(detail["not_before"] or detail["deadline"]))
            assignee = detail["assignee"]
            if assignee is None:
                self.unassigned += 1
            else:
                increment(self.staff_day, (str(assignee), self.calendar.day(due)))
            if detail["template"] in CUSTOMER_FACING:
                self._contact(action.customer_id, due)

    def _contact(self, customer_id: str, due: Millis) -> None:
        times = self.recent.setdefault(customer_id, [])
        if times and due < times[-1] - 2 * WINDOW:  # far out of order: counted alone
            self.peak[customer_id] = max(self.peak[customer_id], 1)
            return
        insort(times, due)
        del times[: bisect_left(times, times[-1] - 2 * WINDOW)]
        # the fullest window [s, s + 7 d) holding `due` starts at one of the times before
        # it; with the starts in order, the window's end only moves forward (a loop, not a
        # bisection per start: compiled, that was 12,000 instructions a reminder)
        best, end = 0, 0
        for i in range(bisect_right(times, due - WINDOW), bisect_right(times, due)):
            limit = times[i] + WINDOW
            end = max(end, i)
            while end < len(times) and times[end] < limit:
                end += 1
            best = max(best, end - i)
        self.peak[customer_id] = max(self.peak.get(customer_id, 0), best)


def percentiles(values: list[int]) -> dict[str, int]:
    """p50, p95 (nearest rank) and max of whole numbers; zeros when there are none."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0, "p95": 0, "max": 0}

    def rank(p: int) -> int:
        return ordered[max(math.ceil(p * len(ordered) / 100) - 1, 0)]

    return {"p50": rank(50), "p95": rank(95), "max": ordered[-1]}
