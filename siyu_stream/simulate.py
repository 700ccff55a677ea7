"""Realistic synthetic traffic: order, chat and join messages exactly as in docs/design.md §2.

The point is to exercise every rule of docs/design.md §4 at a believable mix, so the generator
plays out one small *story* per customer (buy on a platform, maybe join the pool, chat,
repurchase on a personal cycle, refund, leave, refer a friend ...) and merges the stories
in time order through a heap. Everything is drawn from one `random.Random(seed)`, and
time is simulated, so a seed always yields the same bytes.

Story time vs. event time: stories are scheduled in *story* seconds at their natural pace.
Event time (`occurred_at`) advances by story steps scaled by a slowly adapting factor, so
that on average `rate` events are produced per second of event time while local shapes
(a reply after 5 minutes, a 30-day cycle) keep their proportions. At
`rate = natural_rate(customers)` the factor is about 1 and customers live in real time.

History mode (`SimConfig.days`, built by `history`): a purchase history rather than a steady
load. Customers keep arriving over the whole span and most lapse after a purchase or two,
so many histories are short and their timers (repurchase, at risk, dormant) fire, and
event times follow the brand's day in Asia/Shanghai: busy evenings, quiet nights.

Why one module of ~650 lines: the story handlers, the steady stream and the `--days`
history share one random stream, one clock and the world's customers; split, a seed's
bytes would hang on call order across modules.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TypeAlias
from zoneinfo import ZoneInfo

import orjson

from siyu_stream.core import jsonout

TOPIC_OF_TYPE: Final = {"order": "orders", "chat": "chats", "join": "joins"}
DEFAULT_START: Final = datetime(2026, 1, 1, tzinfo=UTC)
# Measured steady-state output of the story model below (all kinds, per customer per day);
# used to start the time scale near 1 and by `natural_rate`. Re-measure if stories change.
EVENTS_PER_CUSTOMER_DAY: Final = 0.13
# (days, records per customer) of a history that long, customers arriving all through it;
# measured in story time (re-measure if stories change). It grows slowly: a lapsed buyer's
# story ends within months, and a late arrival's has barely begun when the history ends.
HISTORY_YIELD: Final = (
    (0, 1.0), (7, 1.3), (30, 1.64), (90, 2.05), (180, 2.38), (365, 2.71), (730, 2.94), (1095, 3.14),
)  # fmt: skip

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0

_PLATFORMS: Final = ("tmall", "jd", "douyin")
_CARRIERS: Final = ("wecom", "wechat", "group", "official_account", "app", "miniprogram")
_CARRIER_WEIGHTS: Final = (60, 20, 6, 6, 4, 4)
# Self-service carriers have no staff member who added the customer.
_SELF_SERVICE: Final = frozenset({"official_account", "app", "miniprogram"})
_CHAT_CHANNEL: Final = {"group": "group", "wechat": "wechat", "official_account": "wechat"}
_ALPHA: Final = 1 / 2000  # the time scale follows ~2,000 events: smooth, yet adapts to ramp-up
_MAX_SCALE_DRIFT: Final = 4.0  # ramp-up may squeeze or stretch stories by at most this factor

# History mode. The brand's zone (docs/design.md §4 quiet hours); Shanghai keeps one UTC
# offset all year, so the offset at the start serves the whole history.
_ZONE: Final = ZoneInfo("Asia/Shanghai")
# Relative activity per local hour 0..23: shoppers and chats peak in the evening, stay
# busy through office hours and nearly stop from 01:00 to 06:00.
_HOURLY: Final = (
    3.0, 1.5, 0.8, 0.5, 0.4, 0.5, 1.0, 2.2, 3.5, 4.5, 5.2, 5.0,
    4.6, 4.6, 4.8, 4.8, 4.7, 4.5, 4.6, 5.2, 6.2, 6.6, 5.8, 4.2,
)  # fmt: skip
# Chance of buying again after the 1st, 2nd, 3rd-and-later purchase: about a quarter of
# first-time buyers come back, loyalty grows with each order; big spenders are loyal.
_REPEAT: Final = (0.25, 0.45, 0.65)
_REPEAT_BIG: Final = 0.8
# A shop's purchase history is mostly orders: a quarter as many buyers join the pool (and
# then chat) as in the steady load, whose mix is meant to exercise the pool rules.
_HISTORY_POOL: Final = 0.25

# Scheduled story steps (the heap holds at most a handful per customer).
_ARRIVE, _ORDER, _MEMBER, _REFUND, _JOIN, _JOIN_GROUP = range(6)
_LEAVE, _INBOUND, _REPLY, _OUTREACH, _SMS_INVITE = range(6, 11)

_Arg: TypeAlias = str | tuple[str, str, int] | None
_Fields: TypeAlias = dict[str, object]
_Msg: TypeAlias = tuple[str, _Fields]  # (type, fields beyond the envelope)


def natural_rate(customers: int) -> float:
    """Events per second at which `customers` live at their own pace (time scale ≈ 1)."""
    return customers * EVENTS_PER_CUSTOMER_DAY / DAY


def history_events_per_customer(days: float) -> float:
    """Records per customer of a `days`-long history: `HISTORY_YIELD` interpolated, and
    extended along its last segment."""
    i = min(max(bisect.bisect_left(HISTORY_YIELD, (days,)), 1), len(HISTORY_YIELD) - 1)
    (d0, k0), (d1, k1) = HISTORY_YIELD[i - 1], HISTORY_YIELD[i]
    return k0 + (k1 - k0) * (days - d0) / (d1 - d0)


def history(events: int, days: float, *, customers: int | None = None, seed: int = 7) -> SimConfig:
    """`events` records of a purchase history spread over `days` of event time. Without
    `customers`, as many as live that history at their own pace (time scale ≈ 1)."""
    if events < 1 or days <= 0:
        msg = "events must be >= 1 and days > 0"
        raise ValueError(msg)
    if customers is None:
        customers = max(1, round(events / history_events_per_customer(days)))
    rate = events / (days * DAY)
    return SimConfig(customers, rate, seed=seed, arrival_days=days, days=days)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate; the same config always yields the same records."""

    customers: int
    """Population size; customers arrive over `arrival_days` and then stay (memory ∝ this).
    In history mode, customers arriving per `arrival_days`, and they go on arriving."""
    rate: float
    """Average events per second of *event* time; `natural_rate(customers)` keeps real pace."""
    seed: int = 7
    """Seed of the one `random.Random` everything is drawn from; also part of every id."""
    start: datetime = DEFAULT_START
    """Event time of the simulation start; must be timezone-aware UTC."""
    bad_ratio: float = 0.002
    """Share of records that are deliberately invalid (tagged `SimRecord.bad`)."""
    duplicate_ratio: float = 0.005
    """Share of records that re-send a recent message byte for byte (a producer retry)."""
    jitter_ratio: float = 0.01
    """Share of records stamped a few seconds before the latest event already sent."""
    arrival_days: float = 60.0
    """Story days over which the customers arrive (first order or first join)."""
    days: float | None = None
    """History mode (see `history`): buyers lapse, event times follow the day in the
    brand's zone. The stream spans `days` when `rate × days × DAY` records are taken."""

    def __post_init__(self) -> None:
        offset = self.start.utcoffset()
        if offset is None or offset != timedelta(0):
            msg = f"start must be an aware UTC datetime, got {self.start!r}"
            raise ValueError(msg)
        days = 1.0 if self.days is None else self.days
        if self.customers < 1 or min(self.rate, self.arrival_days, days) <= 0:
            msg = "customers must be >= 1, rate, arrival_days and days > 0"
            raise ValueError(msg)
        ratios = (self.bad_ratio, self.duplicate_ratio, self.jitter_ratio)
        if min(ratios) < 0 or self.bad_ratio + self.duplicate_ratio >= 1 or self.jitter_ratio > 1:
            msg = "ratios must be >= 0 and bad_ratio + duplicate_ratio < 1"
            raise ValueError(msg)


@dataclass(frozen=True)
class SimRecord:
    """One message to produce: Kafka key is the customer id, value the UTF-8 JSON bytes."""

    topic: str  # "orders" | "chats" | "joins" (prefixing is the caller's business)
    key: str
    value: bytes
    bad: bool = False  # deliberately invalid: the engine must dead-letter it
    duplicate: bool = False  # byte-identical re-send of an earlier record
    defect: str = ""  # for bad records: invalid_json, missing_field, negative_amount, ...


@dataclass
class SimCounts:
    """Counts of a written stream; orders/chats/joins count first sends of good messages."""

    orders: int = 0
    chats: int = 0
    joins: int = 0
    bad: int = 0
    duplicates: int = 0

    @property
    def total(self) -> int:
        return self.orders + self.chats + self.joins + self.bad + self.duplicates

    def add(self, record: SimRecord) -> None:
        if record.bad:
            self.bad += 1
        elif record.duplicate:
            self.duplicates += 1
        else:
            name = record.topic
            setattr(self, name, getattr(self, name) + 1)


@dataclass(slots=True)
class _Customer:
    cid: str
    staff: str
    level: int  # typical order value, fen
    cycle: float  # personal repurchase cycle, days
    chatty: float  # chance of asking something after an order or join
    responsive: float  # chance of answering staff outreach (0: ignores staff entirely)
    leaver: bool  # will delete the brand at some point
    carriers: list[str]
    big: bool = False
    orders: int = 0  # purchases so far
    lapsed: bool = False  # history mode: made the last purchase of the story
    member_until: float = 0.0  # story time
    outreach_live: bool = False
    join_pending: bool = False
    last: float = 0.0  # event time of the last record, keeps each story causal under jitter


class _World:
    """All customers' stories, merged in story-time order."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.history = cfg.days is not None
        self.customers: list[_Customer | None] = [] if self.history else [None] * cfg.customers
        self.arrived: list[int] = []
        self.staff = [f"s{i:03d}" for i in range(1, max(3, cfg.customers // 150) + 1)]
        self.heap: list[tuple[float, int, int, int, _Arg]] = []
        self.seq = 0  # heap tie-breaker: equal times pop in scheduling order
        self.serial = 0  # distinct messages so far: event ids, order ids, message ids
        self.story = 0.0
        self.clock = 0.0  # event seconds since cfg.start
        self.goods = 0  # good records so far: the clock aims at goods / rate
        self.newest = 0.0  # latest event time sent (jitter goes below it)
        good_share = 1 - cfg.bad_ratio - cfg.duplicate_ratio
        self.target_dt = 1 / (cfg.rate * good_share)
        self.story_dt = DAY / (cfg.customers * EVENTS_PER_CUSTOMER_DAY)  # prior: steady state
        self.rhythm: _Rhythm | None = None
        self.pool = 1.0  # scales the chances of joining the pool
        if cfg.days is not None:
            self.story_dt = cfg.days * DAY / (cfg.customers * history_events_per_customer(cfg.days))
            self.rhythm = _Rhythm(cfg.start)
            self.pool = _HISTORY_POOL
        # History mode: customers keep arriving, `customers` per `arrival_days` on average,
        # so newcomers come all through a history of any length and it never runs dry.
        self.arrival_gap = cfg.arrival_days * DAY / cfg.customers
        self.scale_ref = self.target_dt / self.story_dt
        self.recent: deque[SimRecord] = deque(maxlen=32)  # producers retry recent sends
        self.last_good: tuple[str, str, _Fields] | None = None
        self.stamp_cache = (-1, "")
        self.handlers: tuple[Callable[[int, float, _Arg], _Msg | None], ...] = (
            self._on_arrive, self._on_order, self._on_member, self._on_refund,
            self._on_join, self._on_join_group, self._on_leave, self._on_inbound,
            self._on_reply, self._on_outreach, self._on_sms_invite,
        )  # fmt: skip
        if self.history:
            self._at(self.rng.expovariate(1 / self.arrival_gap), 0, _ARRIVE)
            return
        span = cfg.arrival_days * DAY
        for idx in range(cfg.customers):
            self.heap.append((self.rng.uniform(0, span), idx, idx, _ARRIVE, None))
        self.seq = cfg.customers
        heapq.heapify(self.heap)

    # -- the stream ---------------------------------------------------------------------

    def next_record(self) -> SimRecord:
        u = self.rng.random()
        if u < self.cfg.bad_ratio and self.last_good is not None:
            return self._bad()
        if u < self.cfg.bad_ratio + self.cfg.duplicate_ratio and self.recent:
            return replace(self.rng.choice(self.recent), duplicate=True)
        return self._good()

    def _good(self) -> SimRecord:
        while True:
            t, _, idx, act, arg = heapq.heappop(self.heap)
            msg = self.handlers[act](idx, t, arg)
            if msg is not None:  # a step can turn moot (e.g. outreach after the customer left)
                break
        self._advance_clock(t)
        c = self._cust(idx)
        when = self.clock if self.rhythm is None else self.rhythm(self.clock)
        if self.rng.random() < self.cfg.jitter_ratio:
            # Late delivery: a bit older than what was already sent, never before the
            # customer's own previous event (a reply must not precede its question).
            when = max(c.last, min(when, self.newest - self.rng.uniform(1, 5)))
        self.newest = max(self.newest, when)
        c.last = when
        kind, fields = msg
        envelope: _Fields = {
            "event_id": self._next_id("sim"),
            "type": kind,
            "customer_id": c.cid,
            "occurred_at": self._stamp(when),
        }
        envelope.update(fields)
        self.last_good = (kind, c.cid, envelope)
        record = SimRecord(TOPIC_OF_TYPE[kind], c.cid, jsonout.dumps(envelope))
        self.recent.append(record)
        return record

    def _advance_clock(self, t: float) -> None:
        # Feed-forward: scale story steps by the recent story density, so about `rate`
        # events come per event second while one story keeps its shape (the scale moves
        # over ~2,000 events). Feedback: a gentle pull toward n / rate removes the lag of
        # that average, so the long-run rate is exact.
        step = t - self.story
        self.story = t
        self.goods += 1
        self.story_dt += _ALPHA * (step - self.story_dt)
        behind = (self.goods * self.target_dt - self.clock) / self.target_dt * _ALPHA
        scale = self.target_dt / max(self.story_dt, 1e-9) * math.exp(min(max(behind, -1), 1))
        ref = self.scale_ref
        self.clock += step * min(max(scale, ref / _MAX_SCALE_DRIFT), ref * _MAX_SCALE_DRIFT)

    def _stamp(self, when: float) -> str:
        second = int(when)
        if second != self.stamp_cache[0]:  # many events share a second at high rates
            moment = self.cfg.start + timedelta(seconds=second)
            self.stamp_cache = (second, moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return self.stamp_cache[1]

    def _next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.cfg.seed}-{self.serial}"

    def _upcoming(self, prefix: str) -> str:
        # Numbered like the event id about to be issued: unique, and a refund can be
        # scheduled with its order's id before the order's envelope exists.
        return f"{prefix}{self.cfg.seed}-{self.serial + 1}"

    def _bad(self) -> SimRecord:
        assert self.last_good is not None
        kind, cid, good = self.last_good
        msg = dict(good, event_id=self._next_id("sim"))
        defect = self.rng.choice(
            ("invalid_json", "missing_field", "negative_amount", "bad_timestamp", "unknown_type")
        )
        if defect == "invalid_json":
            full = orjson.dumps(msg)
            value = self.rng.choice((full[: len(full) // 2], full[:-1] + b",}", b"[" + full))
        else:
            if defect == "missing_field":
                del msg[self.rng.choice(("event_id", "customer_id", "occurred_at", "type"))]
            elif defect == "negative_amount":
                kind = "order"
                msg.update(type="order", order_id=self._next_id("o"), status="paid")
                msg.update(amount=self.rng.choice(("-99.00", -5)), channel="tmall")
            elif defect == "bad_timestamp":
                stamps = ("2026-02-30T25:61:00Z", "yesterday", "1999-01-01T00:00:00Z")
                msg["occurred_at"] = self.rng.choice((*stamps, "2026-01-01T10:00:00"))
            else:
                msg["type"] = self.rng.choice(("refund_request", "like", "review"))
            value = jsonout.dumps(msg)
        return SimRecord(TOPIC_OF_TYPE[kind], cid, value, bad=True, defect=defect)

    # -- scheduling helpers ---------------------------------------------------------------

    def _at(self, t: float, idx: int, act: int, arg: _Arg = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, idx, act, arg))

    def _cust(self, idx: int) -> _Customer:
        c = self.customers[idx]
        assert c is not None, "a step was scheduled before its customer arrived"
        return c

    def _days(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high) * DAY

    def _new_customer(self, idx: int) -> _Customer:
        rng = self.rng
        big = rng.random() < 0.04  # the few who cross 5,000 / 10,000 / 50,000 yuan
        level = rng.uniform(1200, 2500) if big else min(3000, rng.lognormvariate(5.2, 0.7))
        cycle = rng.uniform(8, 20) if big else min(120, max(10, rng.lognormvariate(3.55, 0.35)))
        ignorer = rng.random() < 0.1  # never answers staff: builds silent outbound streaks
        return _Customer(
            cid=f"c{idx:06d}",
            staff=rng.choice(self.staff),
            level=round(max(30.0, level) * 100),
            cycle=cycle,
            chatty=0.0 if ignorer else rng.uniform(0.1, 0.8),
            responsive=0.0 if ignorer else rng.uniform(0.4, 0.95),
            leaver=rng.random() < 0.1,
            carriers=[],
            big=big,
        )

    def _price(self, c: _Customer) -> int:
        # Around the customer's own level, rounded to shelf prices like 299.00 or 158.90.
        yuan = round(min(3000.0, max(30.0, c.level / 100 * self.rng.lognormvariate(0, 0.35))))
        if self.rng.random() < 0.5:
            yuan = min(3000, yuan - yuan % 10 + 9)
        return yuan * 100 - (10 if self.rng.random() < 0.2 else 0)

    def _amount(self, fen: int) -> str | int | float:
        # Most producers send a decimal string; some send a JSON number. Both are contract.
        if self.rng.random() < 0.1:
            return fen // 100 if fen % 100 == 0 else fen / 100
        return f"{fen // 100}.{fen % 100:02d}"

    def _chat_channel(self, c: _Customer) -> str:
        return _CHAT_CHANNEL.get(c.carriers[0], "wecom") if c.carriers else "sms"

    # -- story steps: each returns the message to send, or None when it became moot --------

    def _on_arrive(self, idx: int, t: float, _: _Arg) -> _Msg | None:
        if self.history:
            self.customers.append(None)
            self._at(t + self.rng.expovariate(1 / self.arrival_gap), idx + 1, _ARRIVE)
        c = self.customers[idx] = self._new_customer(idx)
        if self.rng.random() < 0.03:  # members buy the paid membership soon after arriving
            self._at(t + self._days(3, 40), idx, _MEMBER)
        r = self.rng.random()
        referrer = self._pick_referrer() if r < 0.12 * self.pool and self.arrived else None
        self.arrived.append(idx)
        if referrer is not None or r < 0.22 * self.pool:
            # Joined first (friend's referral, store, live room); most then buy within days.
            soon = self.rng.random() < 0.8
            self._at(t + (self._days(0.1, 10) if soon else c.cycle * DAY), idx, _ORDER)
            source = (
                "referral" if referrer else self.rng.choice(("store", "live", "customer_service"))
            )
            return self._join(c, idx, t, source, referrer)
        self._next_order(c, idx, t)
        return self._purchase(c, idx, t, first=True)

    def _pick_referrer(self) -> str:
        # Advocates are usually pool members: try a few before settling for any buyer.
        for _ in range(4):
            other = self._cust(self.rng.choice(self.arrived))
            if other.carriers:
                break
        return other.cid

    def _next_order(self, c: _Customer, idx: int, t: float) -> None:
        c.orders += 1
        if self.history:  # this purchase may be the customer's last one
            repeat = _REPEAT_BIG if c.big else _REPEAT[min(c.orders, len(_REPEAT)) - 1]
            if self.rng.random() >= repeat:
                c.lapsed = True
                return
        gap = c.cycle * self.rng.lognormvariate(0, 0.3)
        if self.rng.random() < 0.07:  # a long pause: exercises repurchase_due and dormant
            gap *= self.rng.uniform(5, 9)
        self._at(t + gap * DAY, idx, _ORDER)

    def _on_order(self, idx: int, t: float, _: _Arg) -> _Msg | None:
        c = self._cust(idx)
        self._next_order(c, idx, t)
        return self._purchase(c, idx, t, first=False)

    def _purchase(self, c: _Customer, idx: int, t: float, *, first: bool) -> _Msg:
        rng = self.rng
        if c.carriers and rng.random() < 0.7:  # pool members buy in the brand's own channels
            channel = "miniprogram" if rng.random() < 0.7 else "store"
        else:
            channel = rng.choice(_PLATFORMS) if rng.random() < 0.85 else "store"
        fen = self._price(c)
        order_id = self._upcoming("o")
        if rng.random() < 0.05:  # refund days later: full, or partial (never above paid)
            part = fen if rng.random() < 0.55 else round(fen * rng.uniform(0.1, 0.9))
            self._at(t + self._days(1, 12), idx, _REFUND, (order_id, channel, part))
        if c.carriers and rng.random() < c.chatty:  # "where is my parcel?"
            self._at(t + rng.uniform(10 * MINUTE, 2 * DAY), idx, _INBOUND)
        convert = (0.35 if first else 0.02) * self.pool
        if not c.carriers and not c.join_pending and rng.random() < convert:
            self._plan_conversion(c, idx, t)
        items = [
            {"sku": f"sku-{rng.randint(1, 120):03d}", "qty": rng.choice((1, 1, 1, 2, 3))}
            for _ in range(rng.choice((1, 1, 2, 3)))
        ]
        fields: _Fields = {
            "order_id": order_id,
            "status": "paid",
            "amount": self._amount(fen),
            "channel": channel,
        }
        if rng.random() < 0.3:  # `kind` is optional; producers that send it say "purchase"
            fields["kind"] = "purchase"
        fields["items"] = items
        return "order", fields

    def _plan_conversion(self, c: _Customer, idx: int, t: float) -> None:
        # Recent buyers are invited into the pool: package card, SMS, live room, service.
        c.join_pending = True
        how = self.rng.choices(
            ("package_card", "sms", "live", "customer_service"), (50, 25, 15, 10)
        )[0]
        if how == "sms":
            self._at(t + self.rng.uniform(HOUR, DAY), idx, _SMS_INVITE)
        else:
            low, high = {"package_card": (2, 6), "live": (0.05, 2)}.get(how, (1, 10))
            self._at(t + self._days(low, high), idx, _JOIN, how)

    def _on_member(self, idx: int, t: float, _: _Arg) -> _Msg | None:
        c = self._cust(idx)
        c.member_until = max(t, c.member_until) + 365 * DAY
        if self.rng.random() < 0.6:  # renewals: mostly before expiry, some after it lapsed
            early = self.rng.random() < 0.7
            when = c.member_until + (self._days(-30, 0) if early else self._days(3, 60))
            self._at(when, idx, _MEMBER)
        fields: _Fields = {"order_id": self._upcoming("o"), "status": "paid", "amount": "1000.00"}
        items = [{"sku": "membership-annual", "qty": 1}]
        return "order", dict(fields, channel="miniprogram", kind="membership", items=items)

    def _on_refund(self, idx: int, t: float, arg: _Arg) -> _Msg | None:
        assert isinstance(arg, tuple)
        order_id, channel, fen = arg
        fields: _Fields = {"order_id": order_id, "status": "refunded", "amount": self._amount(fen)}
        return "order", dict(fields, channel=channel)

    def _on_sms_invite(self, idx: int, t: float, _: _Arg) -> _Msg | None:
        c = self._cust(idx)
        self._at(t + self.rng.uniform(10 * MINUTE, 2 * DAY), idx, _JOIN, "sms")
        return "chat", self._chat("outbound", "sms", c.staff)

    def _on_join(self, idx: int, t: float, arg: _Arg) -> _Msg | None:
        c = self._cust(idx)
        c.join_pending = False
        if c.carriers:  # joined meanwhile through another path
            return None
        return self._join(c, idx, t, str(arg), None)

    def _join(self, c: _Customer, idx: int, t: float, source: str, referrer: str | None) -> _Msg:
        rng = self.rng
        carrier = rng.choices(_CARRIERS, _CARRIER_WEIGHTS)[0]
        c.carriers.append(carrier)
        fields: _Fields = {"action": "join", "carrier": carrier, "source": source}
        if carrier not in _SELF_SERVICE:
            fields["staff_id"] = c.staff
        if referrer is not None:
            fields["referrer_id"] = referrer
        # Staff greet the newcomer within minutes; chatty ones answer the needs survey.
        self._at(t + rng.uniform(MINUTE, 20 * MINUTE), idx, _REPLY, self._chat_channel(c))
        if rng.random() < c.chatty:
            self._at(t + rng.uniform(20 * MINUTE, DAY), idx, _INBOUND)
        if not c.outreach_live:
            c.outreach_live = True
            self._at(t + self._days(3, 10), idx, _OUTREACH)
        if c.leaver:
            c.leaver = False
            self._at(t + self._days(2, 150), idx, _LEAVE)
        if rng.random() < 0.15 and carrier != "group":
            self._at(t + self._days(1, 30), idx, _JOIN_GROUP)
        return "join", fields

    def _on_join_group(self, idx: int, t: float, _: _Arg) -> _Msg | None:
        c = self._cust(idx)
        if not c.carriers or "group" in c.carriers:
            return None
        c.carriers.append("group")
        source = self.rng.choice(("live", "customer_service"))
        return "join", {"action": "join", "carrier": "group", "source": source, "staff_id": c.staff}

    def _on_leave(self, idx: int, t: float, _: _Arg) -> _Msg | None:
        c = self._cust(idx)
        if not c.carriers:
            return None
        carrier = c.carriers.pop()  # most recent first: quitting the group, then the friend
        if c.carriers and self.rng.random() < 0.5:
            self._at(t + self._days(0.1, 5), idx, _LEAVE)
        elif not c.carriers and self.rng.random() < 0.35:  # some come back (win-back works)
            c.join_pending = True
            self._at(
                t + self._days(10, 120), idx, _JOIN, self.rng.choice(("customer_service", "sms"))
            )
        return "join", {"action": "leave", "carrier": carrier}

    def _on_inbound(self, idx: int, t: float, arg: _Arg) -> _Msg | None:
        c = self._cust(idx)
        if not c.carriers:
            return None
        channel, u = self._chat_channel(c), self.rng.random()
        if arg == "again":  # the reply planned for the first message answers both
            pass
        elif u < 0.8:  # answered within minutes
            self._at(t + self.rng.uniform(MINUTE, 15 * MINUTE), idx, _REPLY, channel)
        elif u < 0.9:  # answered late: past the 30-minute reply SLA; else never answered
            self._at(t + self.rng.uniform(45 * MINUTE, 5 * HOUR), idx, _REPLY, channel)
        if arg is None and self.rng.random() < 0.2:  # a second message before any answer
            self._at(t + self.rng.uniform(MINUTE, 10 * MINUTE), idx, _INBOUND, "again")
        return "chat", self._chat("inbound", channel, None)

    def _on_reply(self, idx: int, t: float, arg: _Arg) -> _Msg | None:
        c = self._cust(idx)
        if not c.carriers:  # deleted us meanwhile: the message cannot be sent
            return None
        staff = c.staff if self.rng.random() < 0.9 else self.rng.choice(self.staff)
        return "chat", self._chat("outbound", str(arg), staff)

    def _on_outreach(self, idx: int, t: float, _: _Arg) -> _Msg | None:
        c = self._cust(idx)
        if not c.carriers or c.lapsed:  # staff give up on a buyer who stopped buying
            c.outreach_live = False  # a later re-join restarts it
            return None
        self._at(t + self._days(7, 21), idx, _OUTREACH)
        if self.rng.random() < c.responsive:
            self._at(t + self.rng.uniform(5 * MINUTE, DAY), idx, _INBOUND)
        u = self.rng.random()
        channel = "phone" if u < 0.05 else "sms" if u < 0.15 else self._chat_channel(c)
        return "chat", self._chat("outbound", channel, c.staff)

    def _chat(self, direction: str, channel: str, staff: str | None) -> _Fields:
        fields: _Fields = {"direction": direction, "channel": channel}
        if staff is not None:
            fields["staff_id"] = staff
        fields["message_id"] = self._upcoming("m")
        return fields


class _Rhythm:
    """Evenly spread event seconds -> the brand's day: each day of input becomes one day,
    its events moved toward the busy local hours of `_HOURLY`. Monotone, so the stream
    order, causality and the long-run rate are kept; a story step taken in a busy hour
    shrinks and one at night stretches (staff answer slower at 3 am)."""

    def __init__(self, start: datetime) -> None:
        total = sum(_HOURLY)
        self.cdf = list(itertools.accumulate((w / total for w in _HOURLY), initial=0.0))
        local = start.astimezone(_ZONE)
        self.start_local = local.hour * HOUR + local.minute * MINUTE + local.second
        # Even seconds at which `start`'s local time of day falls: second 0 maps to start.
        hour, rest = divmod(self.start_local, HOUR)
        low, high = self.cdf[int(hour)], self.cdf[int(hour) + 1]
        self.shift = (low + (high - low) * rest / HOUR) * DAY

    def __call__(self, even: float) -> float:
        day, rest = divmod(even + self.shift, DAY)
        share = rest / DAY
        hour = min(bisect.bisect_right(self.cdf, share) - 1, len(_HOURLY) - 1)
        low, high = self.cdf[hour], self.cdf[hour + 1]
        local = hour * HOUR + (share - low) / (high - low) * HOUR
        return day * DAY + local - self.start_local


def generate(cfg: SimConfig, limit: int | None = None) -> Iterator[SimRecord]:
    """Yield records in (mostly) event-time order; infinite when `limit` is None."""
    world = _World(cfg)
    produced = 0
    while limit is None or produced < limit:
        yield world.next_record()
        produced += 1


def write_jsonl(records: Iterable[SimRecord], path: Path) -> SimCounts:
    """Write one message per line (the replay input format) and count what was written."""
    counts = SimCounts()
    with path.open("wb") as out:
        for record in records:
            # Good messages never contain raw newlines (JSON escapes them); bad ones are
            # built from JSON too, but a line per message is the format's one promise.
            out.write(record.value.replace(b"\n", b" ") + b"\n")
            counts.add(record)
    return counts
