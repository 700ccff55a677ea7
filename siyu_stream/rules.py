"""The rule core (DESIGN §4): pure functions of (state, input, clock) -> Step.

No Kafka, Faust, wall clock, logging or I/O: the same functions run in the live
worker and in replay. Three entry points:

- `apply_event`  an order, chat or join for its customer;
- `fire_timer`   a timer of the customer's state whose due time the clock passed;
- `apply_credit` a referral credit for the referrer (maybe on another partition).

Each returns a `Step`: the new state, the actions in a deterministic order, and
referral credits to deliver to other customers. The caller's state is never mutated.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from statistics import median
from typing import Literal

from siyu_stream import policy
from siyu_stream.actions import Action, ReferralCredit, action_id, yuan
from siyu_stream.clock import DAY, MINUTE, Millis, format_rfc3339
from siyu_stream.events import Chat, Event, Join, Order
from siyu_stream.ruleset import TIERS, Rules
from siyu_stream.state import LAYERS, CustomerState, OrderRecord, Timer, digest

Outcome = Literal["ok", "duplicate"]
TRACKED = ("layer", "tier", "health", "membership")
LAYER_MEANING = {
    "A1": "known",
    "A2": "in the private-domain pool",
    "A3": "has written to us",
    "A4": "has a paid purchase",
    "A5": "has referred a customer who bought",
}
# timer names; one timer of each name per customer at most
REPLY_SLA, REPURCHASE, REPURCHASE_RISK = "reply_sla", "repurchase", "repurchase_risk"
RENEWAL, EXPIRY, DORMANT = "renewal", "expiry", "dormant"


@dataclass(slots=True)
class Step:
    state: CustomerState
    actions: list[Action] = field(default_factory=list)
    credits: list[ReferralCredit] = field(default_factory=list)
    outcome: Outcome = "ok"


@dataclass(slots=True)
class _Why:
    rule: str
    because: str


class _Ctx:
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
        self.before = {name: getattr(state, name) for name in TRACKED}
        self.why: dict[str, _Why] = {}
        self.step = Step(state)

    # ---- tracked fields: set now, emitted as `change` actions at the end of the step
    def set(self, name: str, value: str, rule: str, because: str) -> None:
        if getattr(self.s, name) != value:
            setattr(self.s, name, value)
            self.why[name] = _Why(rule, because)

    def raise_layer(self, layer: str, because: str) -> None:
        current = self.s.layer
        if current is None or LAYERS.index(layer) > LAYERS.index(current):
            self.set("layer", layer, "layer", because)

    def finish(self) -> Step:
        for name in TRACKED:
            old, new = self.before[name], getattr(self.s, name)
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
        self, kind: str, rule: str, detail: dict[str, object], because: str, *extra: str | int
    ) -> Action:
        action = Action(
            action_id=action_id(rule, kind, self.customer_id, self.fact, *extra),
            kind=kind,  # type: ignore[arg-type]  # callers pass the four literal kinds
            rule=rule,
            customer_id=self.customer_id,
            occurred_at=self.at,
            cause_event_id=self.cause,
            detail=detail,
            because=because,
        )
        self.step.actions.append(action)
        return action

    def gift(self, rule: str, code: str, because: str, once: bool) -> None:
        if once:
            if code in self.s.gifts:
                return
            self.s.gifts.append(code)
        value = self.rules.gift_fen(code)
        self.emit("gift", rule, {"code": code, "value": value}, because, code)

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
        detail: dict[str, object] = {
            "template": template,
            "assignee": assignee,
            "channel": channel,
            "due_at": format_rfc3339(due),
            "priority": priority,
        }
        action = self.emit("reminder", rule, detail, because, template)
        if facing:
            delivered = policy.apply(self.s, action, due, self.rules)
            if delivered is not action:
                self.step.actions[-1] = delivered

    # ---- helpers shared by several rules
    def schedule(self, name: str, due: Millis, note: str = "") -> None:
        self.s.timers[name] = Timer(due, self.cause, note)

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


def _tier_of(spend_fen: int, rules: Rules) -> str:
    tier = TIERS[0]
    for name, threshold in zip(TIERS[1:], rules.spend_tier.thresholds_yuan, strict=True):
        if spend_fen >= threshold * 100:
            tier = name
    return tier


def repurchase_cycle(order_times: list[Millis], rules: Rules) -> Millis:
    """Median of the last <= N inter-order gaps, floored; the default with < 2 orders."""
    cfg = rules.repurchase_due
    if len(order_times) < 2:
        return cfg.default_days * DAY
    recent = order_times[-(cfg.gaps + 1) :]
    gaps = [b - a for a, b in itertools.pairwise(recent)]
    return max(int(median(gaps)), cfg.floor_days * DAY)


# ------------------------------------------------------------------ events


def apply_event(state: CustomerState | None, event: Event, clock: Millis, rules: Rules) -> Step:
    """Apply one validated input event for its customer at engine time `clock`."""
    s = state.clone() if state is not None else CustomerState()
    key = digest(event.event_id)
    if s.has_seen(key):
        return Step(state if state is not None else s, outcome="duplicate")
    paid = isinstance(event, Order) and event.status == "paid"
    if paid and s.find_order(digest(event.order_id)) is not None:  # type: ignore[union-attr]  # paid implies Order
        # the same order re-sent under a new event id must not count twice either
        return Step(state if state is not None else s, outcome="duplicate")
    s.remember(key, rules.engine.dedup_window)
    ctx = _Ctx(s, event.customer_id, event.at, event.event_id, event.event_id, rules)
    ctx.raise_layer("A1", "first seen")
    if isinstance(event, Order):
        _order(ctx, event, clock)
    elif isinstance(event, Chat):
        _chat(ctx, event)
    else:
        _join(ctx, event)
    return ctx.finish()


def _order(ctx: _Ctx, order: Order, clock: Millis) -> None:
    s, rules = ctx.s, ctx.rules
    order_key = digest(order.order_id)
    if order.status == "refunded":
        _refund(ctx, order, order_key)
        return
    s.recent_orders.append(OrderRecord(order_key, order.amount_fen, order.membership))
    del s.recent_orders[: -rules.engine.recent_orders]
    ctx.activity(f"order {order.order_id}")
    if order.membership:
        _membership(ctx, order)
        return

    before = s.spend_fen
    s.spend_fen += order.amount_fen
    s.orders += 1
    newest = s.last_order_at is None or order.at >= s.last_order_at
    s.first_order_at = order.at if s.first_order_at is None else min(s.first_order_at, order.at)
    s.last_order_at = order.at if newest else s.last_order_at
    s.order_times = sorted([*s.order_times, order.at])[-(rules.repurchase_due.gaps + 1) :]
    ctx.raise_layer("A4", f"paid purchase {order.order_id} of {yuan(order.amount_fen)}")

    # spend_tier: one gift per threshold crossed upward, each once per customer ever
    spend_note = f"net spend {yuan(before)} → {yuan(s.spend_fen)}"
    for threshold in rules.spend_tier.thresholds_yuan:
        if before < threshold * 100 <= s.spend_fen:
            ctx.gift(
                "spend_tier",
                rules.tier_code(threshold),
                f"{spend_note} crossed {threshold:,}",
                True,
            )
    ctx.set("tier", _tier_of(s.spend_fen, rules), "spend_tier", spend_note)

    nth = rules.third_order.order_number
    if s.orders >= nth:
        ctx.gift(
            "third_order", "third_order_reward", f"paid purchase number {s.orders} (≥ {nth})", True
        )

    if s.orders == 1 and s.referrer_id is not None:
        ctx.step.credits.append(
            ReferralCredit(s.referrer_id, ctx.customer_id, order.at, order.event_id)
        )

    _invite(ctx, order, clock)
    if newest:
        cycle = repurchase_cycle(s.order_times, rules)
        ctx.schedule(REPURCHASE, order.at + cycle)
        ctx.schedule(REPURCHASE_RISK, order.at + rules.repurchase_due.at_risk_multiple * cycle)


def _refund(ctx: _Ctx, order: Order, order_key: bytes) -> None:
    s, rules = ctx.s, ctx.rules
    record = s.find_order(order_key)
    amount = order.amount_fen
    if record is not None:
        amount = min(amount, record.remaining_fen)  # never refund more than was paid
        record.remaining_fen -= amount
    if (record.membership if record is not None else order.membership) or amount == 0:
        return  # membership fees never counted toward spend
    before = s.spend_fen
    s.spend_fen = max(0, before - amount)
    note = (
        f"refund of {yuan(amount)} on {order.order_id}: "
        f"net spend {yuan(before)} → {yuan(s.spend_fen)}"
    )
    ctx.set("tier", _tier_of(s.spend_fen, rules), "spend_tier", note)


def _membership(ctx: _Ctx, order: Order) -> None:
    s, cfg = ctx.s, ctx.rules.membership
    first = s.member_until is None
    start = order.at if first else max(order.at, s.member_until or 0)
    s.member_until = start + cfg.days * DAY
    until = format_rfc3339(s.member_until)
    ctx.set(
        "membership",
        "active",
        "membership",
        f"membership paid ({order.order_id}), valid until {until}",
    )
    if first:
        ctx.gift(
            "membership", "member_welcome_pack", f"first paid membership {order.order_id}", True
        )
    ctx.schedule(RENEWAL, s.member_until - cfg.renewal_notice_days * DAY)
    ctx.schedule(EXPIRY, s.member_until)


def _invite(ctx: _Ctx, order: Order, clock: Millis) -> None:
    s, cfg = ctx.s, ctx.rules.invite_to_join
    if s.carriers or order.at < clock - cfg.max_order_age_days * DAY:
        return
    if s.last_invite_at is not None and order.at < s.last_invite_at + cfg.every_days * DAY:
        return
    s.last_invite_at = order.at
    ctx.remind(
        "invite_to_join",
        "invite_join",
        f"paid order {order.order_id} on {order.channel} from a customer outside the pool, "
        f"{(clock - order.at) // DAY} days old (≤ {cfg.max_order_age_days})",
        due=order.at,
        channel=cfg.channel,
        assignee=ctx.staff(),
    )


def _chat(ctx: _Ctx, chat: Chat) -> None:
    s, rules = ctx.s, ctx.rules
    if chat.inbound:
        s.last_inbound_at = (
            chat.at if s.last_inbound_at is None else max(s.last_inbound_at, chat.at)
        )
        s.outbound_streak = 0
        ctx.raise_layer("A3", f"inbound message on {chat.channel}")
        ctx.activity("inbound chat")
        replied = s.last_outbound_at is not None and s.last_outbound_at >= chat.at
        if s.pending_reply_since is None and not replied:
            s.pending_reply_since = chat.at
            ctx.schedule(REPLY_SLA, chat.at + rules.reply_sla.minutes * MINUTE, chat.channel)
        return

    s.last_outbound_at = chat.at if s.last_outbound_at is None else max(s.last_outbound_at, chat.at)
    if chat.staff_id:
        s.last_staff = chat.staff_id
    if s.pending_reply_since is not None and chat.at >= s.pending_reply_since:
        s.pending_reply_since = None  # any outbound ends the waiting episode
        ctx.cancel(REPLY_SLA)
    if s.last_inbound_at is not None and chat.at < s.last_inbound_at:
        return  # a late outbound from before the customer's last message breaks no silence
    s.outbound_streak += 1
    streak = rules.silence.streak
    if s.outbound_streak == streak:
        because = f"{streak} outbound messages in a row without a reply"
        if s.health == "active":
            ctx.set("health", "at_risk", "silence", because)
        ctx.remind(
            "silence",
            "reengage",
            because,
            due=chat.at,
            channel=ctx.contact_channel(),
            assignee=ctx.staff(),
        )


def _join(ctx: _Ctx, join: Join) -> None:
    s, rules = ctx.s, ctx.rules
    if join.leave:
        if join.carrier not in s.carriers:
            return
        del s.carriers[join.carrier]
        if s.carriers:
            return
        because = f"left {join.carrier}, the last carrier in the pool"
        ctx.set("health", "lost", "leave", because)
        threshold = rules.leave.winback_min_spend_yuan
        if s.spend_fen >= threshold * 100:
            ctx.remind(
                "leave",
                "winback",
                f"{because}; net spend {yuan(s.spend_fen)} ≥ {threshold:,}",
                due=join.at,
                channel="phone",
                assignee=ctx.staff(),
                priority="high",
            )
        return

    was_out = not s.carriers
    s.carriers.setdefault(join.carrier, join.at)
    s.join_source = s.join_source or join.source
    if s.referrer_id is None and join.referrer_id is not None and s.orders == 0:
        s.referrer_id = join.referrer_id
    if join.staff_id:
        s.owner_staff = join.staff_id
    ctx.raise_layer("A2", f"joined {join.carrier}")
    if not was_out:
        return
    if s.health == "lost":
        ctx.set("health", "active", "health", f"re-joined via {join.carrier}")
    source = f" from {join.source}" if join.source else ""
    ctx.remind(
        "welcome",
        "welcome_survey",
        f"joined the pool via {join.carrier}{source}: first reply and needs survey "
        f"within {rules.welcome.due_minutes} min",
        due=join.at + rules.welcome.due_minutes * MINUTE,
        channel=join.carrier,
        assignee=join.staff_id,
        priority="high",
    )


# ------------------------------------------------------------------ timers


def fire_timer(
    state: CustomerState, customer_id: str, name: str, due: Millis, rules: Rules
) -> Step | None:
    """Fire timer `name` due at `due`; None when the state no longer holds that timer."""
    timer = state.timers.get(name)
    if timer is None or timer.due != due:
        return None  # rescheduled or cancelled since it was indexed
    s = state.clone()
    del s.timers[name]
    ctx = _Ctx(s, customer_id, due, timer.cause, f"{name}@{due}", rules)
    _TIMERS[name](ctx, timer)
    return ctx.finish()


def _fire_reply_sla(ctx: _Ctx, timer: Timer) -> None:
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


def _fire_repurchase(ctx: _Ctx, timer: Timer) -> None:
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


def _fire_repurchase_risk(ctx: _Ctx, timer: Timer) -> None:
    s, cfg = ctx.s, ctx.rules.repurchase_due
    if s.last_order_at is None or s.health == "lost":
        return
    cycle = repurchase_cycle(s.order_times, ctx.rules)
    because = (
        f"no purchase since {format_rfc3339(s.last_order_at)}, {cfg.at_risk_multiple} × the "
        f"repurchase cycle of {cycle / DAY:.1f} days"
    )
    if s.health == "active":
        ctx.set("health", "at_risk", "repurchase_due", because)
    if TIERS.index(s.tier) >= TIERS.index(cfg.vip_min_tier):
        ctx.remind(
            "repurchase_due",
            "vip_call",
            f"{because}; tier {s.tier}",
            due=ctx.at,
            channel="phone",
            assignee=ctx.staff(),
            priority="high",
        )


def _fire_renewal(ctx: _Ctx, timer: Timer) -> None:
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


def _fire_expiry(ctx: _Ctx, timer: Timer) -> None:
    if ctx.s.membership == "active":
        ctx.set("membership", "expired", "membership", f"not renewed by {format_rfc3339(ctx.at)}")


def _fire_dormant(ctx: _Ctx, timer: Timer) -> None:
    s = ctx.s
    if s.health in ("active", "at_risk"):
        days = ctx.rules.dormant.days
        ctx.set("health", "dormant", "dormant", f"{days} days with neither order nor inbound chat")


_TIMERS = {
    REPLY_SLA: _fire_reply_sla,
    REPURCHASE: _fire_repurchase,
    REPURCHASE_RISK: _fire_repurchase_risk,
    RENEWAL: _fire_renewal,
    EXPIRY: _fire_expiry,
    DORMANT: _fire_dormant,
}


# ------------------------------------------------------------------ referral credits


def apply_credit(state: CustomerState | None, credit: ReferralCredit, rules: Rules) -> Step:
    """Credit referrer R for a referred customer's first purchase (once per referred customer)."""
    s = state.clone() if state is not None else CustomerState()
    key = digest(credit.event_id)
    if s.has_seen(key):
        return Step(state if state is not None else s, outcome="duplicate")
    s.remember(key, rules.engine.dedup_window)
    ctx = _Ctx(s, credit.referrer_id, credit.at, credit.cause_event_id, credit.event_id, rules)
    s.referrals += 1
    because = f"referred {credit.referred_id}, who made a first purchase (referral {s.referrals})"
    ctx.raise_layer("A5", because)
    ctx.gift("referral", "referral_reward", because, once=False)
    return ctx.finish()
