"""One step of the rule core: the working copy of a customer's state and what it emits.

`Ctx` is what every rule function receives: it sets tracked fields (emitted as
`change` actions when the step finishes), emits gifts and reminders (routing
customer-facing ones through the contact policy), and schedules timers.

A `Step` has one of three outcomes: `ok` (apply its state and actions), `duplicate`
(an event already applied; nothing to do) and `rejected` (a valid event the rules
refuse because applying it would break a state bound, see `siyu_stream.core.state`; the
state is unchanged, and `reason` says why, for the dead-letter record). The core
decides all three, so live and replay agree on them.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from siyu_stream.core import policy
from siyu_stream.core.actions import Action, ReferralCredit, action_id
from siyu_stream.core.clock import DAY, Millis, format_rfc3339
from siyu_stream.core.ruleset import TIERS, Rules
from siyu_stream.core.state import LAYERS, CustomerState, Timer

Outcome = Literal["ok", "duplicate", "rejected"]
BEFORE_GO_LIVE: Final = "before_go_live"
"""The reason of a gift or reminder withheld because it fell due before go-live."""
# of any length, as `clock._MONTH_DAYS` (and `tracked`): `finish` walks it for every event
TRACKED: Final[tuple[str, ...]] = ("layer", "tier", "health", "membership")
LATEST_DUE: Final[Millis] = 253_370_764_800_000
"""9999-01-01T00:00:00Z: the latest due time a timer can have (it has a calendar date)."""
# timer names; one timer of each name per customer at most
REPLY_SLA: Final = "reply_sla"
REPURCHASE: Final = "repurchase"
REPURCHASE_RISK: Final = "repurchase_risk"
RENEWAL: Final = "renewal"
EXPIRY: Final = "expiry"
DORMANT: Final = "dormant"
TIMER_NAMES: Final = (REPLY_SLA, REPURCHASE, REPURCHASE_RISK, RENEWAL, EXPIRY, DORMANT)
"""Every timer name: a customer holds at most this many timers."""
_RANK: Final = {layer: rank for rank, layer in enumerate(LAYERS)}
"""The rank of each 5A layer (a dict: `LAYERS.index` is a method call, twice a step)."""


Because = str | Callable[[], str]
"""The reason of a change: a text, or what writes it once the field does change (most
steps change nothing, and formatting amounts for them cost a few percent of replay)."""


# Constructors written out (init=False): compiled, a dataclass's generated __init__ runs
# as interpreted code, at several times the cost, and one Step is built per event or timer.
@dataclass(slots=True, init=False)
class Step:
    state: CustomerState
    actions: list[Action]
    credits: list[ReferralCredit]
    outcome: Outcome
    reason: str | None
    """Why the event was rejected (outcome `rejected` only): one sentence naming the bound."""
    timed: list[tuple[Millis, str]]
    """(due, name) of each timer the step set that the state did not hold at or before
    that due time: what the partition's timer index must add."""

    def __init__(
        self, state: CustomerState, outcome: Outcome = "ok", reason: str | None = None
    ) -> None:
        self.state = state
        self.actions = []
        self.credits = []
        self.outcome = outcome
        self.reason = reason
        self.timed = []


@dataclass(slots=True, init=False)
class Why:
    rule: str
    because: str

    def __init__(self, rule: str, because: str) -> None:
        self.rule = rule
        self.because = because


def tracked(state: CustomerState) -> tuple[str | None, ...]:
    """The TRACKED fields of `state`, in that order (spelled out: it runs for every event).
    Typed of any length: compiled, a fixed-length tuple is a C struct, boxed again into a
    new tuple for each comparison, and cannot be indexed by a variable."""
    return (state.layer, state.tier, state.health, state.membership)


class Ctx:
    """Accumulates one step: the working copy of the state and what it emits."""

    def __init__(  # noqa: PLR0917 - private, called from three places with all six
        self,
        state: CustomerState,
        customer_id: str,
        at: Millis,
        cause: str,
        fact: str,
        rules: Rules,
    ) -> None:
        self.s = state
        self.customer_id = customer_id
        self.at = at
        self.cause = cause
        self.fact = fact  # identifies this firing for action ids: an event id or a timer
        self.rules = rules
        self.before = tracked(state)
        self.why: dict[str, Why] = {}
        self.step = Step(state)

    # ---- tracked fields: set now, emitted as `change` actions at the end of the step
    def set(self, name: str, value: str, rule: str, because: Because) -> None:
        if getattr(self.s, name) != value:
            setattr(self.s, name, value)
            self.why[name] = Why(rule, because if isinstance(because, str) else because())

    def raise_layer(self, layer: str, because: Because) -> None:
        current = self.s.layer
        if current is None or _RANK[layer] > _RANK[current]:
            self.set("layer", layer, "layer", because)

    def finish(self) -> Step:
        after = tracked(self.s)
        if after == self.before:
            return self.step  # most steps change none of them
        for i, name in enumerate(TRACKED):
            old, new = self.before[i], after[i]
            if old == new:
                continue
            why = self.why[name]
            self.emit(
                "change",
                why.rule,
                {"field": name, "from": old, "to": new},
                f"{name} {old or 'unknown'} → {new}: {why.because}",
                name,
            )
        return self.step

    # ---- emitting
    def emit(
        self, kind: str, rule: str, detail: dict[str, object], because: str, extra: str
    ) -> Action:
        """`extra` tells apart the firings of one rule in one step (a field, code, template)."""
        # by position, in the field order of Action: a keyword call costs more, compiled too
        action = Action(
            action_id(rule, kind, self.customer_id, self.fact, extra),
            kind,  # type: ignore[arg-type]  # callers pass the four literal kinds
            rule,
            self.customer_id,
            self.at,
            self.cause,
            detail,
            because,
            self.rules.version,
        )
        self.step.actions.append(action)
        return action

    def gift(self, rule: str, code: str, because: str, once: bool) -> None:
        if once:
            if code in self.s.gifts:
                return
            self.s.gifts = [*self.s.gifts, code]  # replaced, not changed: clone() shares it
        value = self.rules.gift_fen(code)
        action = self.emit("gift", rule, {"code": code, "value": value}, because, code)
        go_live = self.rules.go_live
        if go_live is not None and self.at < go_live.grant_from:
            # recorded as granted all the same (`gifts`): the moment has passed, and a
            # tier crossed before go-live is never granted after it
            late = f"earned {format_rfc3339(self.at)}, before the go-live grant window"
            self.step.actions[-1] = policy.withhold(action, BEFORE_GO_LIVE, late)

    def remind(
        self,
        rule: str,
        template: str,
        because: str,
        *,
        due: Millis,
        channel: str,
        assignee: str | None,
        priority: str = "normal",
    ) -> None:
        facing = template in policy.CUSTOMER_FACING
        if facing:
            due = policy.shift_out_of_quiet_hours(due, self.rules)
        # Two times with two meanings, never one field read two ways: a customer-facing
        # reminder must not reach the customer before `not_before` (quiet hours moved it); a
        # staff task goes out at once and shows its `deadline` (docs/design.md §2).
        detail: dict[str, object] = {
            "template": template,
            "assignee": assignee,
            "channel": channel,
            "not_before": format_rfc3339(due) if facing else None,
            "deadline": None if facing else format_rfc3339(due),
            "priority": priority,
        }
        action = self.emit("reminder", rule, detail, because, template)
        go_live = self.rules.go_live
        if go_live is not None and due < go_live.at:
            # stale on the day the brand goes live; withheld before the contact policy,
            # whose counters count only what reaches the customer
            stale = f"due {format_rfc3339(due)}, before go-live {format_rfc3339(go_live.at)}"
            self.step.actions[-1] = policy.withhold(action, BEFORE_GO_LIVE, stale)
        elif facing:
            delivered = policy.apply(self.s, action, due, self.rules)
            if delivered is not action:
                self.step.actions[-1] = delivered

    # ---- helpers shared by several rules
    def schedule(self, name: str, due: Millis, note: str = "") -> None:
        # clamped, never overflowing: events lie before year 9000, but a repurchase cycle
        # is as long as the gap between two orders, and its multiples could pass year 9999
        due = min(due, LATEST_DUE)
        timers = self.s.timers
        held = timers.get(name)
        timers[name] = Timer(due, self.cause, note)
        if held is None or due < held.due:
            self.step.timed.append((due, name))

    def cancel(self, name: str) -> None:
        self.s.timers.pop(name, None)

    def contact_channel(self) -> str:
        """Where to reach the customer: the carrier they joined first, else the default."""
        if self.s.carriers:
            return min(self.s.carriers.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return self.rules.contact_policy.default_channel

    def staff(self) -> str | None:
        return self.s.last_staff or self.s.owner_staff

    def activity(self, what: str) -> None:
        """An order or inbound chat: health back to active (unless lost), dormant clock reset."""
        s = self.s
        if s.health in ("at_risk", "dormant"):
            self.set("health", "active", "health", f"{what} at {format_rfc3339(self.at)}")
        if s.last_activity_at is None or self.at >= s.last_activity_at:
            s.last_activity_at = self.at
            self.schedule(DORMANT, self.at + self.rules.dormant.days * DAY)


def tier_of(spend_fen: int, rules: Rules) -> str:
    """The highest tier whose threshold the spend reaches (thresholds increase: the rules
    file is checked for it)."""
    # whole yuan against whole-yuan thresholds: spend >= t * 100 fen exactly when
    # spend // 100 >= t, for any integer t (floor division, negatives too)
    return TIERS[bisect_right(rules.spend_tier.thresholds_yuan, spend_fen // 100)]


def repurchase_cycle(order_times: list[Millis], rules: Rules) -> Millis:
    """Median of the last <= N inter-order gaps, floored; the default with < 2 orders."""
    cfg = rules.repurchase_due
    if len(order_times) < 2:
        return cfg.default_days * DAY
    recent = order_times[-(cfg.gaps + 1) :]
    gaps = sorted(b - a for a, b in itertools.pairwise(recent))
    # the median (statistics.median's arithmetic, not its interpreted call), floored
    mid = len(gaps) // 2
    median = gaps[mid] if len(gaps) % 2 else (gaps[mid - 1] + gaps[mid]) / 2
    return max(int(median), cfg.floor_days * DAY)
