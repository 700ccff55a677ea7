"""The rule core for input events (docs/design.md §4): pure (state, input, clock) -> Step.

No Kafka, wall clock, logging or I/O: the same functions run in the live
worker and in replay. Entry points:

- `apply_event`  an order, chat or join for its customer;
- `apply_credit` a referral credit for the referrer (maybe on another partition);
- `timers.fire_timer` (in `siyu_stream.core.timers`) a timer whose due time the clock passed.

Each returns a `Step`: the new state, the actions in a deterministic order, and
referral credits to deliver to other customers. The caller's state is left as it was,
unless the caller hands it over with `in_place=True` (offline runs, which never need
it again: `replay.engine`); both ways give the same step (tests/test_properties.py).
An event that would break a bound of the state (see `siyu_stream.core.state`) is not
applied: its step has outcome `rejected`, the unchanged state and the reason.
"""

from __future__ import annotations

from typing import Final

from siyu_stream.core.actions import ReferralCredit, yuan
from siyu_stream.core.clock import DAY, MINUTE, Millis, format_rfc3339
from siyu_stream.core.events import Chat, Event, Join, Order
from siyu_stream.core.ruleset import TIERS, Rules
from siyu_stream.core.state import (
    DIGEST_BYTES,
    ID_CHARS,
    LAYERS,
    NAME_CHARS,
    CustomerState,
    OrderRecord,
    Timer,
    digest,
)
from siyu_stream.core.step import (
    EXPIRY,
    RENEWAL,
    REPLY_SLA,
    REPURCHASE,
    REPURCHASE_RISK,
    TIMER_NAMES,
    Ctx,
    Step,
    repurchase_cycle,
    tier_of,
)

THIRD_ORDER_GIFT: Final = "third_order_reward"
MEMBER_GIFT: Final = "member_welcome_pack"

# ------------------------------------------------------------------ events


def apply_event(
    state: CustomerState | None,
    event: Event,
    clock: Millis,
    rules: Rules,
    *,
    in_place: bool = False,
) -> Step:
    """Apply one validated input event for its customer at engine time `clock`.
    `in_place`: change `state` itself, not a copy (offline runs: `Partition`)."""
    s = CustomerState() if state is None else state if in_place else state.clone()
    key = digest(event.event_id)
    if s.has_seen(key):
        return Step(state if state is not None else s, outcome="duplicate")
    order_key = digest(event.order_id) if isinstance(event, Order) else b""
    paid = isinstance(event, Order) and event.status == "paid"
    if paid and s.find_order(order_key) is not None:
        # the same order re-sent under a new event id must not count twice either
        return Step(state if state is not None else s, outcome="duplicate")
    reason = _over_bound(s, event, rules)
    if reason is not None:
        # not remembered in `seen`: a re-send is judged again, and rejected again while
        # the state is the same (live and replay alike)
        return Step(state if state is not None else s, outcome="rejected", reason=reason)
    s.remember(key, rules.engine.dedup_window)
    ctx = Ctx(s, event.customer_id, event.at, event.event_id, event.event_id, rules)
    ctx.raise_layer("A1", "first seen")
    if isinstance(event, Order):
        _order(ctx, event, order_key, clock)
    elif isinstance(event, Chat):
        _chat(ctx, event)
    else:
        _join(ctx, event)
    return ctx.finish()


def _over_bound(s: CustomerState, event: Event, rules: Rules) -> str | None:
    """Why applying `event` would break a bound of the state, or None (docs/design.md §3)."""
    if isinstance(event, Join) and not event.leave and event.carrier not in s.carriers:
        limit = rules.engine.max_carriers
        if len(s.carriers) >= limit:
            return (
                f"state_too_large: already in {len(s.carriers)} carriers (max_carriers "
                f"{limit}); join to {event.carrier!r} not applied"
            )
    if isinstance(event, Order) and event.membership and event.status == "paid":
        # each payment extends from the later of now and the current expiry: thousands of
        # them would carry member_until past year 9999, where formatting it raises
        start = event.at if s.member_until is None else max(event.at, s.member_until)
        ahead_days = (start - event.at) // DAY + rules.membership.days
        limit = rules.engine.max_member_ahead_days
        if ahead_days > limit:
            return (
                f"out_of_range: membership would run {ahead_days} days past this payment "
                f"(max_member_ahead_days {limit}); {event.order_id!r} not applied"
            )
    return None


def _order(ctx: Ctx, order: Order, order_key: bytes, clock: Millis) -> None:
    """`order_key`: digest(order.order_id)."""
    s, rules = ctx.s, ctx.rules
    if order.status == "refunded":
        _refund(ctx, order, order_key)
        return
    # containers other than timers are replaced, never changed: clone() shares them
    record = OrderRecord(order_key, order.amount_fen, order.membership)
    s.recent_orders = [*s.recent_orders, record][-rules.engine.recent_orders :]
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
    ctx.raise_layer("A4", lambda: f"paid purchase {order.order_id} of {yuan(order.amount_fen)}")

    # spend_tier: one gift per threshold crossed upward, each once per customer ever
    def spend_note() -> str:
        return f"net spend {yuan(before)} → {yuan(s.spend_fen)}"

    for threshold in rules.spend_tier.thresholds_yuan:
        if before < threshold * 100 <= s.spend_fen:
            ctx.gift(
                "spend_tier",
                rules.tier_code(threshold),
                f"{spend_note()} crossed {threshold:,}",
                True,
            )
    ctx.set("tier", tier_of(s.spend_fen, rules), "spend_tier", spend_note)

    nth = rules.third_order.order_number
    if s.orders >= nth:
        ctx.gift(
            "third_order", THIRD_ORDER_GIFT, f"paid purchase number {s.orders} (≥ {nth})", True
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


def _refund(ctx: Ctx, order: Order, order_key: bytes) -> None:
    s, rules = ctx.s, ctx.rules
    record = s.find_order(order_key)
    amount = order.amount_fen
    if record is not None:
        amount = min(amount, record.remaining_fen)  # never refund more than was paid
        orders = list(s.recent_orders)
        orders[orders.index(record)] = OrderRecord(
            record.key, record.remaining_fen - amount, record.membership
        )
        s.recent_orders = orders
    if (record.membership if record is not None else order.membership) or amount == 0:
        return  # membership fees never counted toward spend
    before = s.spend_fen
    s.spend_fen = max(0, before - amount)
    note = (
        f"refund of {yuan(amount)} on {order.order_id}: "
        f"net spend {yuan(before)} → {yuan(s.spend_fen)}"
    )
    ctx.set("tier", tier_of(s.spend_fen, rules), "spend_tier", note)


def _membership(ctx: Ctx, order: Order) -> None:
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
        ctx.gift("membership", MEMBER_GIFT, f"first paid membership {order.order_id}", True)
    ctx.schedule(RENEWAL, s.member_until - cfg.renewal_notice_days * DAY)
    ctx.schedule(EXPIRY, s.member_until)


def _invite(ctx: Ctx, order: Order, clock: Millis) -> None:
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


def _chat(ctx: Ctx, chat: Chat) -> None:
    s, rules = ctx.s, ctx.rules
    if chat.inbound:
        s.last_inbound_at = (
            chat.at if s.last_inbound_at is None else max(s.last_inbound_at, chat.at)
        )
        s.outbound_streak = 0
        ctx.raise_layer("A3", lambda: f"inbound message on {chat.channel}")
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


def _join(ctx: Ctx, join: Join) -> None:
    s, rules = ctx.s, ctx.rules
    if join.leave:
        if join.carrier not in s.carriers:
            return
        s.carriers = {name: at for name, at in s.carriers.items() if name != join.carrier}
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
    if join.carrier not in s.carriers:
        s.carriers = {**s.carriers, join.carrier: join.at}
    s.join_source = s.join_source or join.source
    if s.referrer_id is None and join.referrer_id is not None and s.orders == 0:
        s.referrer_id = join.referrer_id
    if join.staff_id:
        s.owner_staff = join.staff_id
    ctx.raise_layer("A2", lambda: f"joined {join.carrier}")
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


# ------------------------------------------------------------------ referral credits


def apply_credit(
    state: CustomerState | None, credit: ReferralCredit, rules: Rules, *, in_place: bool = False
) -> Step:
    """Credit referrer R for a referred customer's first purchase (once per referred customer)."""
    s = CustomerState() if state is None else state if in_place else state.clone()
    key = digest(credit.event_id)
    if s.has_seen(key):
        return Step(state if state is not None else s, outcome="duplicate")
    s.remember(key, rules.engine.dedup_window)
    ctx = Ctx(s, credit.referrer_id, credit.at, credit.cause_event_id, credit.event_id, rules)
    s.referrals += 1
    # no running count in the text: credits from referred customers on other partitions
    # arrive in either order, and the gift's bytes must not depend on that order
    because = f"referred {credit.referred_id}, who made a first purchase"
    ctx.raise_layer("A5", because)
    ctx.gift("referral", "referral_reward", because, once=False)
    return ctx.finish()


# ------------------------------------------------------------------ bounds


def once_gift_codes(rules: Rules) -> tuple[str, ...]:
    """Every gift code granted at most once per customer: the codes `gifts` can hold."""
    tiers = tuple(rules.tier_code(t) for t in rules.spend_tier.thresholds_yuan)
    return (*tiers, THIRD_ORDER_GIFT, MEMBER_GIFT)


_WIDE: Final = "".join(chr(c) for c in range(0x20) if chr(c) not in "\b\t\n\f\r")
"""Characters JSON writes as a 6-byte \\u00XX escape, the most any one character takes
(the 5 with a 2-byte escape left out; non-ASCII takes at most 4 bytes as UTF-8)."""
_BIG: Final = 2**64 - 1
"""An integer with the most digits orjson writes (20); it refuses larger ones."""


def _widest(chars: int, n: int = 0) -> str:
    """The `n`-th distinct string of `chars` characters, every one in its widest JSON form."""
    out = []
    for _ in range(chars):
        n, d = divmod(n, len(_WIDE))
        out.append(_WIDE[d])
    return "".join(out)


def largest_state(rules: Rules) -> CustomerState:
    """The largest state the bounds of `rules` allow (docs/design.md §3): every collection
    full, every string at its longest and in its widest JSON encoding, every number at 20
    digits. Its serialized size is an upper bound of any customer's changelog record."""
    engine, big = rules.engine, _BIG
    return CustomerState(
        layer=LAYERS[-1],
        tier=max(TIERS, key=len),
        health="dormant",  # the longest of active, at_risk, dormant, lost
        membership="expired",  # the longest of none, active, expired
        spend_fen=big,
        orders=big,
        first_order_at=big,
        last_order_at=big,
        order_times=[big] * (rules.repurchase_due.gaps + 1),
        recent_orders=[OrderRecord(digest(str(n)), big, True) for n in range(engine.recent_orders)],
        carriers={_widest(NAME_CHARS, n): big for n in range(engine.max_carriers)},
        join_source=_widest(NAME_CHARS),
        referrer_id=_widest(ID_CHARS),
        owner_staff=_widest(ID_CHARS),
        last_staff=_widest(ID_CHARS),
        last_inbound_at=big,
        last_outbound_at=big,
        pending_reply_since=big,
        outbound_streak=big,
        last_activity_at=big,
        referrals=big,
        member_until=big,
        gifts=list(once_gift_codes(rules)),
        touches=[big] * rules.contact_policy.max_per_window,
        last_invite_at=big,
        seen=b"\xff" * (DIGEST_BYTES * engine.dedup_window),
        # only reply_sla carries a note today; every timer gets one, to stay an upper bound
        timers={name: Timer(big, _widest(ID_CHARS), _widest(NAME_CHARS)) for name in TIMER_NAMES},
    )
