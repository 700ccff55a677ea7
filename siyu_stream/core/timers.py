"""Timer rules (docs/design.md §4): what happens when the clock passes a customer's timer.

Timers are held in the customer's state (they survive restarts with it); the engine
indexes them and calls `fire_timer` once the clock passes their due time.
"""

from __future__ import annotations

from typing import Final

from siyu_stream.core.clock import DAY, Millis, format_rfc3339
from siyu_stream.core.ruleset import TIERS, Rules
from siyu_stream.core.state import CustomerState, Timer
from siyu_stream.core.step import (
    DORMANT,
    EXPIRY,
    RENEWAL,
    REPLY_SLA,
    REPURCHASE,
    REPURCHASE_RISK,
    Ctx,
    Step,
    repurchase_cycle,
)

_TIER_RANK: Final = {tier: rank for rank, tier in enumerate(TIERS)}
"""The rank of each tier (a dict: compiled, `TIERS.index` is a generic method call)."""


def fire_timer(
    state: CustomerState,
    customer_id: str,
    name: str,
    due: Millis,
    rules: Rules,
    *,
    in_place: bool = False,
) -> Step | None:
    """Fire timer `name` due at `due`; None when the state no longer holds that timer."""
    timer = state.timers.get(name)
    if timer is None or timer.due != due:
        return None  # rescheduled or cancelled since it was indexed
    s = state if in_place else state.clone()
    del s.timers[name]
    ctx = Ctx(s, customer_id, due, timer.cause, f"{name}@{due}", rules)
    _TIMERS[name](ctx, timer)
    return ctx.finish()


def _fire_reply_sla(ctx: Ctx, timer: Timer) -> None:
    since = ctx.s.pending_reply_since
    if since is None:
        return
    ctx.remind(
        "reply_sla",
        "reply_overdue",
        f"customer wrote at {format_rfc3339(since)} and had no reply within "
        f"{ctx.rules.reply_sla.minutes} min",
        due=ctx.at,
        channel=timer.note or ctx.contact_channel(),
        assignee=ctx.staff(),
        priority="high",
    )


def _fire_repurchase(ctx: Ctx, timer: Timer) -> None:
    s = ctx.s
    if not s.carriers or s.last_order_at is None:
        return  # pool members only
    cycle = repurchase_cycle(s.order_times, ctx.rules)
    ctx.remind(
        "repurchase_due",
        "repurchase_followup",
        f"no purchase since {format_rfc3339(s.last_order_at)}, one repurchase cycle "
        f"({cycle / DAY:.1f} days) ago",
        due=ctx.at,
        channel=ctx.contact_channel(),
        assignee=ctx.staff(),
    )


def _fire_repurchase_risk(ctx: Ctx, timer: Timer) -> None:
    s, cfg = ctx.s, ctx.rules.repurchase_due
    if s.last_order_at is None or s.health == "lost":
        return
    vip = _TIER_RANK[s.tier] >= _TIER_RANK[cfg.vip_min_tier]
    if s.health != "active" and not vip:
        return  # no change and no call: the reason is never read
    cycle = repurchase_cycle(s.order_times, ctx.rules)
    because = (
        f"no purchase since {format_rfc3339(s.last_order_at)}, {cfg.at_risk_multiple} × the "
        f"repurchase cycle of {cycle / DAY:.1f} days"
    )
    if s.health == "active":
        ctx.set("health", "at_risk", "repurchase_due", because)
    if vip:
        ctx.remind(
            "repurchase_due",
            "vip_call",
            f"{because}; tier {s.tier}",
            due=ctx.at,
            channel="phone",
            assignee=ctx.staff(),
            priority="high",
        )


def _fire_renewal(ctx: Ctx, timer: Timer) -> None:
    s = ctx.s
    if s.membership != "active" or s.member_until is None:
        return
    ctx.remind(
        "membership",
        "membership_renewal",
        f"membership expires at {format_rfc3339(s.member_until)}, in "
        f"{ctx.rules.membership.renewal_notice_days} days",
        due=ctx.at,
        channel=ctx.contact_channel(),
        assignee=ctx.staff(),
    )


def _fire_expiry(ctx: Ctx, timer: Timer) -> None:
    if ctx.s.membership == "active":
        ctx.set("membership", "expired", "membership", f"not renewed by {format_rfc3339(ctx.at)}")


def _fire_dormant(ctx: Ctx, timer: Timer) -> None:
    s = ctx.s
    if s.health in ("active", "at_risk"):
        days = ctx.rules.dormant.days
        ctx.set("health", "dormant", "dormant", f"{days} days with neither order nor inbound chat")


_TIMERS: Final = {
    REPLY_SLA: _fire_reply_sla,
    REPURCHASE: _fire_repurchase,
    REPURCHASE_RISK: _fire_repurchase_risk,
    RENEWAL: _fire_renewal,
    EXPIRY: _fire_expiry,
    DORMANT: _fire_dormant,
}
