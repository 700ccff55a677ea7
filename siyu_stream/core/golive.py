"""Going live on a brand's history: the instant from which gifts and reminders reach people.

A brand that adopts siyu-stream has years of orders, joins and chats. Its customers'
state must know all of it (spend, tiers granted, cycles, expiry dates), but the gifts and
reminders that history would have produced are stale on the day the brand goes live.
Every rule runs in event time, so the cut is exact: the core withholds what falls due
before the instant (`step.Ctx`), and emits what falls due from it on, timers the history
set included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from siyu_stream.core.clock import DAY, Millis, parse_rfc3339

GRANT_SINCE_DAYS: Final = 7
"""Default window before go-live whose gifts are still granted (see `GoLive`)."""


@dataclass(frozen=True, slots=True)
class GoLive:
    """The instant a brand goes live on a history, and the window of gifts still granted.

    Not a rule: a run parameter (`SIYU_GO_LIVE`, `--go-live`) that the adapters set on
    the rules so that every step sees it. The state is built from the whole history, but
    a gift or reminder due before `at` is withheld as `suppressed` (`before_go_live`);
    a gift whose cause lies in the last `grant_since_ms` before `at` is still granted:
    a customer who crossed a tier last week still deserves the gift. It is not read from
    the rules file and not part of the rules version.
    """

    at: Millis
    """Epoch milliseconds (UTC)."""
    grant_since_ms: Millis = GRANT_SINCE_DAYS * DAY

    @property
    def grant_from(self) -> Millis:
        """The earliest cause time of a gift still granted."""
        return self.at - self.grant_since_ms


def parse_go_live(text: str, grant_since_days: int = GRANT_SINCE_DAYS) -> GoLive:
    """A go-live instant from RFC 3339 text; ValueError says what is wrong."""
    if not 0 <= grant_since_days <= 366:
        msg = f"grant window of {grant_since_days} days: expected 0 to 366"
        raise ValueError(msg)
    return GoLive(parse_rfc3339(text), grant_since_days * DAY)
