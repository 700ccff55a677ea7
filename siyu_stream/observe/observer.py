"""What a worker shows operators, kept beside the processing, never inside it.

The partition adapter (`processor`) tells its `Observer` what each step did; the
observer keeps plain numbers (`Stats`, shared by the worker's partitions), the
partition's population gauges and its operator timeline. The metrics exporter and the
HTTP view read them; nothing here is part of the state or of the outputs. Every
collection has a bound: counters are keyed by finite label sets, repurchase gaps are
bucketed as they are observed, latencies are cleared with each batch.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from siyu_stream.core.clock import DAY, Millis
from siyu_stream.core.events import Event, Join, Order
from siyu_stream.core.policy import in_holdout
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState
from siyu_stream.core.step import TRACKED, Step, tracked
from siyu_stream.observe.timeline import Timeline

# of any length, as `clock._MONTH_DAYS`: a fixed-length tuple passed to bisect is boxed anew
GAP_BUCKETS: Final[tuple[int, ...]] = (1, 3, 7, 14, 21, 30, 45, 60, 90, 180, 365)
"""Upper bounds (days) of the repurchase-gap histogram."""

K = TypeVar("K")


@dataclass
class Stats:
    """Counters of a worker (read by the metrics exporter) or of a replay run; plain
    numbers, no Prometheus here."""

    # plain dicts, counted by `increment`: compiled, a Counter's item access takes the
    # generic path of a Python class, and replay counts once per event and per action
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    """(type, outcome) -> count; outcome ok | duplicate | rejected | rekeyed."""
    actions: dict[tuple[str, str], int] = field(default_factory=dict)
    """(kind, rule) -> count."""
    deadletters: dict[str, int] = field(default_factory=dict)
    """Source topic -> rejected records."""
    timers_fired: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    gift_value_fen: dict[str, int] = field(default_factory=dict)
    buyers_outside_pool: int = 0
    """Buying episodes outside the pool (a paid purchase, none in the 7 days before)."""
    buyers_joined: int = 0
    """Joins into the pool within 7 days of a paid purchase made outside it (加粉)."""
    paid_orders: dict[bool, int] = field(default_factory=dict)
    """member? -> paid purchases."""
    order_value_fen: dict[bool, int] = field(default_factory=dict)
    gap_buckets: list[int] = field(default_factory=lambda: [0] * (len(GAP_BUCKETS) + 1))
    """Inter-order gaps per GAP_BUCKETS bucket (the last: above all), not cumulative."""
    gap_sum_days: float = 0.0
    latencies: list[tuple[Millis, Millis]] = field(default_factory=list)
    """(record timestamp, action event time) per action of the batch in flight."""

    def by_outcome(self) -> Counter[str]:
        """Events per outcome, whatever their type."""
        return _summed(self.events, 1)

    def by_kind(self) -> Counter[str]:
        """Actions per kind, whatever their rule."""
        return _summed(self.actions, 0)

    def gap(self, days: float) -> None:
        self.gap_buckets[bisect.bisect_left(GAP_BUCKETS, days)] += 1
        self.gap_sum_days += days


def increment(counts: dict[K, int], key: K, n: int = 1) -> None:
    """Add `n` to `counts[key]` (a plain dict counted as a Counter would be)."""
    counts[key] = counts.get(key, 0) + n


def _summed(counter: dict[tuple[str, str], int], position: int) -> Counter[str]:
    total: Counter[str] = Counter()
    for key, n in counter.items():
        total[key[position]] += n
    return total


Profile = tuple[tuple[str | None, ...], int]
"""What a customer adds to the population gauges: its TRACKED fields, and orders up to 2."""


def _profile(state: CustomerState | None) -> Profile | None:
    return None if state is None else _known(state)


def _known(state: CustomerState) -> Profile:
    return (tracked(state), min(state.orders, 2))


class Observer:
    """One partition's observation: population gauges, business figures, timeline."""

    def __init__(self, stats: Stats, rules: Rules) -> None:
        self.stats = stats
        self.rules = rules
        # per TRACKED field, value -> customers, and "group|1+" / "group|2+" -> buyers: kept
        # up to date every step, keyed by the values themselves (no key tuple, no str()
        # per step); `population` shapes them for the few that read them
        self._fields: list[dict[str | None, int]] = [{} for _ in TRACKED]
        self._buyers_by: dict[str, int] = {}
        self.timeline = Timeline()
        self.record_ts: Millis = 0
        """Timestamp of the record in hand: where an action's processing latency starts."""

    @property
    def population(self) -> dict[tuple[str, str], int]:
        """(dimension, value) -> customers of this partition (a value counted down to 0
        stays, at 0)."""
        counts = {
            (name, str(value)): n
            for name, values in zip(TRACKED, self._fields, strict=True)
            for value, n in values.items()
        }
        counts.update({("buyers", bucket): n for bucket, n in self._buyers_by.items()})
        return counts

    def indexed(self, customer_id: str, state: CustomerState) -> None:
        """A stored state was loaded when the partition was assigned."""
        self._count(customer_id, _profile(state), +1)

    def outcome(self, kind: str, outcome: str) -> None:
        increment(self.stats.events, (kind, outcome))

    def rejected(self, topic: str) -> None:
        increment(self.stats.deadletters, topic)

    def event(self, before: CustomerState | None, after: CustomerState, event: Event) -> None:
        """An input event was applied (its step's actions follow through `applied`)."""
        self._business(before, after, event)
        self.timeline.event(event)

    def applied(
        self,
        customer_id: str,
        before: CustomerState | None,
        step: Step,
        payloads: Sequence[bytes],
    ) -> None:
        """A step was applied; `payloads` are its actions as produced (JSON bytes)."""
        after = step.state
        if before is None:
            self._count(customer_id, _profile(after), +1)
        # most steps change none of the profile's fields: compared one by one (the TRACKED
        # fields, then orders up to 2), without building two profiles for every step
        elif (
            before.layer != after.layer
            or before.tier != after.tier
            or before.health != after.health
            or before.membership != after.membership
            or min(before.orders, 2) != min(after.orders, 2)
        ):
            self._moved(customer_id, _known(before), _known(after))
        if not payloads:
            return
        stats, record_ts, add = self.stats, self.record_ts, self.timeline.action
        for i, action in enumerate(step.actions):
            payload, kind = payloads[i], action.kind
            increment(stats.actions, (kind, action.rule))
            stats.latencies.append((record_ts, action.occurred_at))
            if kind == "gift":
                increment(
                    stats.gift_value_fen, str(action.detail["code"]), int(action.detail["value"])
                )
            elif kind == "suppressed":
                increment(stats.suppressed, str(action.detail["reason"]))
            add(customer_id, payload)

    def timeline_of(self, customer_id: str) -> list[dict[str, Any]]:
        return self.timeline.of(customer_id)

    def _moved(self, customer_id: str, old: Profile, new: Profile) -> None:
        """`_count(old, -1)` then `_count(new, +1)`, touching only what changed (most
        steps change one field of a known customer)."""
        (old_fields, old_orders), (new_fields, new_orders) = old, new
        for i, values in enumerate(self._fields):
            a, b = old_fields[i], new_fields[i]
            if a != b:
                increment(values, a, -1)
                increment(values, b)
        if old_orders != new_orders:  # one of them is not 0: the group is needed, once
            group = self._group(customer_id)
            self._buyers(group, old_orders, -1)
            self._buyers(group, new_orders, +1)

    def _count(self, customer_id: str, profile: Profile | None, sign: int) -> None:
        """Add (+1) or remove (-1) a customer's contribution to the population gauges."""
        if profile is None:
            return
        fields, orders = profile
        for i, values in enumerate(self._fields):
            increment(values, fields[i], sign)
        if orders:
            self._buyers(self._group(customer_id), orders, sign)

    def _group(self, customer_id: str) -> str:
        return "holdout" if in_holdout(customer_id, self.rules) else "treated"

    def _buyers(self, group: str, orders: int, sign: int) -> None:
        if orders:
            increment(self._buyers_by, f"{group}|1+", sign)
            if orders >= 2:
                increment(self._buyers_by, f"{group}|2+", sign)

    def _business(self, before: CustomerState | None, after: CustomerState, event: Event) -> None:
        """The ROI figures of docs/design.md §1, from what one event changed."""
        week = 7 * DAY
        outside = before is None or not before.carriers
        last_order = before.last_order_at if before is not None else None
        if isinstance(event, Order) and event.status == "paid" and not event.membership:
            member = after.membership == "active"
            increment(self.stats.paid_orders, member)
            increment(self.stats.order_value_fen, member, event.amount_fen)
            if last_order is not None and event.at > last_order:
                self.stats.gap((event.at - last_order) / DAY)
            if outside and (last_order is None or event.at - last_order > week):
                self.stats.buyers_outside_pool += 1
        elif isinstance(event, Join) and outside and after.carriers:
            joined_after = event.at - last_order if last_order is not None else -1
            self.stats.buyers_joined += 0 <= joined_after <= week
