"""The live adapter for one partition: records in, state changes and records out.

The worker (`siyu_stream.worker`) owns partitions; for each it keeps a `PartitionTask`
and hands it every record of that partition of the input topics and of the internal
command topic. Everything that makes the live run correct lives here, where runtime
tests drive it with a dict store and no broker:

- **decode and validate**; rejected input becomes a dead-letter record with topic,
  partition, offset and reason, and processing goes on;
- **re-keying**: an event on a partition that does not own its customer is forwarded
  through the command topic keyed by customer id (the state lives with the key);
- **live clock**: the wall clock passed in as `now`; `sweep(now)` fires the
  partition's due timers from a heap (O(due timers));
- **referral credits** travel as commands keyed by the referrer (maybe another
  partition, maybe another worker);
- **state changes are buffered** (`dirty`) until the worker has made the batch durable:
  `changelog()` yields one changelog record per changed customer, `committed()` folds
  them into the store, `discard()` drops them when the batch failed.
"""

from __future__ import annotations

import base64
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from siyu_stream import state as state_format
from siyu_stream.actions import ReferralCredit, yuan
from siyu_stream.clock import DAY, Millis, format_rfc3339
from siyu_stream.engine import TimerIndex, check_time
from siyu_stream.errors import InvalidEvent
from siyu_stream.events import Chat, Event, Join, Order, decode
from siyu_stream.policy import in_holdout
from siyu_stream.rules import apply_credit, apply_event
from siyu_stream.ruleset import Rules
from siyu_stream.state import CustomerState
from siyu_stream.step import TRACKED, Step, tracked
from siyu_stream.timers import fire_timer
from siyu_stream.topology import INPUT_TYPES, Topology

TIMELINE_ENTRIES = 20
TIMELINE_CUSTOMERS = 20_000
"""Per partition: the timeline is an operator's aid kept in memory, not part of the state."""

Store = MutableMapping[str, bytes]
"""A partition's state store: customer id -> serialized state (see `stores`)."""


@dataclass(frozen=True, slots=True)
class Out:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: Millis = 0
    """Kafka record timestamp (producer create time): the start of processing latency."""


@dataclass
class Stats:
    """Counters the metrics exporter reads; plain numbers, no Prometheus here."""

    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(type, outcome) -> count; outcome ok | duplicate | rejected | rekeyed."""
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, rule) -> count."""
    deadletters: Counter[str] = field(default_factory=Counter)
    """Source topic -> rejected records."""
    timers_fired: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    gift_value_fen: Counter[str] = field(default_factory=Counter)
    buyers_outside_pool: int = 0
    """Buying episodes outside the pool (a paid purchase, none in the 7 days before)."""
    buyers_joined: int = 0
    """Joins into the pool within 7 days of a paid purchase made outside it (加粉)."""
    paid_orders: Counter[bool] = field(default_factory=Counter)
    """member? -> paid purchases."""
    order_value_fen: Counter[bool] = field(default_factory=Counter)
    repurchase_gaps_days: list[float] = field(default_factory=list)
    """Inter-order gaps observed since the exporter last drained them."""
    latencies: list[tuple[Millis, Millis]] = field(default_factory=list)
    """(record timestamp, action event time) per action of the batch in flight."""


Profile = tuple[str | None, str, str, str, int]
"""What a customer adds to the population gauges: the TRACKED fields, orders up to 2."""


def _profile(state: CustomerState | None) -> Profile | None:
    if state is None:
        return None
    return (*tracked(state), min(state.orders, 2))


def describe(event: Event) -> str:
    """One line about an event for the timeline (no PII: the contract carries none)."""
    if isinstance(event, Order):
        kind = "membership" if event.membership else "order"
        return f"{kind} {event.order_id} {event.status} {yuan(event.amount_fen)} on {event.channel}"
    if isinstance(event, Chat):
        return f"{'inbound' if event.inbound else 'outbound'} chat on {event.channel}"
    return f"{'left' if event.leave else 'joined'} {event.carrier}"


def wall_clock() -> Millis:
    """The live engine clock: the rule core never reads it, the adapters pass it in."""
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=65_536)  # aiokafka's murmur2 is pure Python: ~3 µs a key, once per event
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) puts `key` on."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


class PartitionTask:
    """Everything one worker does for one partition."""

    def __init__(
        self, rules: Rules, topology: Topology, partition: int, store: Store, stats: Stats
    ) -> None:
        self.rules = rules
        self.topology = topology
        self.partition = partition
        self.store = store
        self.stats = stats
        self.partitions = topology.settings.partitions
        self.type_of_topic = {topology.settings.topic(n): t for n, t in INPUT_TYPES.items()}
        self.dirty: dict[str, CustomerState] = {}
        self._serialized: dict[str, bytes] = {}
        self.timers = TimerIndex()
        self.population: Counter[tuple[str, str]] = Counter()
        """(dimension, value) -> customers of this partition; kept up to date incrementally."""
        self.timeline: OrderedDict[str, deque[bytes]] = OrderedDict()
        """Recent input and action records (JSON) of recently active customers, in memory.
        Kept as bytes: the garbage collector never scans them (hundreds of thousands of
        long-lived objects made its passes the worker's longest pauses)."""
        self.current_ts: Millis = 0

    def index(self, chunk: int = 10_000) -> Iterator[int]:
        """Index the stored states (timers, population gauges) before the first record,
        yielding the count every `chunk` states: a worker yields to its event loop there,
        so that a million-customer partition does not stall its group heartbeats."""
        count = 0
        for customer_id, raw in self.store.items():
            state = state_format.loads(raw)
            self.timers.track(customer_id, None, state)
            self._count(customer_id, _profile(state), +1)
            count += 1
            if count % chunk == 0:
                yield count
        yield count

    # ------------------------------------------------------------ state

    def get(self, customer_id: str) -> CustomerState | None:
        if customer_id in self.dirty:
            return self.dirty[customer_id]
        raw = self.store.get(customer_id)
        return None if raw is None else state_format.loads(raw)

    def changelog(self) -> list[Out]:
        """The batch's state changes as changelog records (explicitly on this partition)."""
        self._serialized = {cid: state_format.dumps(s) for cid, s in self.dirty.items()}
        topic = self.topology.changelog
        return [
            Out(topic, cid.encode(), raw, self.partition) for cid, raw in self._serialized.items()
        ]

    def committed(self) -> None:
        """The batch is durable: its state changes become the store's."""
        if self._serialized.keys() != self.dirty.keys():  # changelog() was not asked for
            self.changelog()
        self.store.update(self._serialized)
        self.discard()

    def discard(self) -> None:
        """The batch failed: forget its state changes (the stream will deliver it again)."""
        self.dirty.clear()
        self._serialized = {}

    # ------------------------------------------------------------ records

    def handle(self, record: Record, now: Millis) -> list[Out]:
        """Process one record of this partition; returns the records to send, in order."""
        self.current_ts = record.timestamp or now
        if record.topic == self.topology.commands:
            try:
                return self._command(orjson.loads(record.value), record, now)
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                # only siyu-stream writes this topic, but a bad record must not stop the stream
                return [self.dead_letter(record, f"malformed command: {exc!r}", now)]
        return self._input(record, now, forwarded=False)

    def sweep(self, now: Millis, limit: int | None = None) -> list[Out]:
        """Fire the timers of this partition due by `now`, in due order, at most `limit`:
        after an outage a partition can hold a million overdue timers, and one batch that
        fires them all would stall the worker for minutes (see `behind`)."""
        self.current_ts = now  # a timer's action waited for nothing but the clock
        outs: list[Out] = []
        fired = 0
        while limit is None or fired < limit:
            due_timer = self.timers.pop_due(now, self.get)
            if due_timer is None:
                break
            due, customer_id, name, before = due_timer
            step = fire_timer(before, customer_id, name, due, self.rules)
            if step is not None:
                fired += 1
                self.stats.timers_fired += 1
                outs.extend(self._apply(customer_id, before, step, fired=name))
        return outs

    def behind(self, now: Millis) -> bool:
        """Timers due by `now` are waiting (a limited sweep left them for the next batch)."""
        due = self.timers.next_due()
        return due is not None and due <= now

    def _input(self, record: Record, now: Millis, *, forwarded: bool) -> list[Out]:
        expected = self.type_of_topic.get(record.topic, "?")
        try:
            event = decode(record.value, self.rules.input)
            actual = type(event).__name__.lower()
            if actual != expected:
                msg = f"a {actual} event on topic {record.topic} (expects {expected})"
                raise InvalidEvent(msg, "type")
            check_time(event.at, now, self.rules, live=True)
        except InvalidEvent as exc:
            self.stats.events[(expected, "rejected")] += 1
            return [self.dead_letter(record, exc.full_reason, now)]
        key = event.customer_id.encode()
        if not forwarded and partition_for(key, self.partitions) != self.partition:
            # the state lives on the owner's partition: forward, keyed by customer id
            self.stats.events[(expected, "rekeyed")] += 1
            command = {
                "cmd": "event",
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "value": record.value.decode(),
            }
            return [Out(self.topology.commands, key, orjson.dumps(command))]
        before = self.get(event.customer_id)
        step = apply_event(before, event, now, self.rules)
        self.stats.events[(expected, step.outcome)] += 1
        if step.outcome != "ok":
            return []
        self._business(before, step.state, event)
        self._remember(event.customer_id, record.value)
        return self._apply(event.customer_id, before, step)

    def _command(self, command: dict[str, Any], record: Record, now: Millis) -> list[Out]:
        if command["cmd"] == "credit":
            credit = ReferralCredit(
                command["referrer"], command["referred"], command["at"], command["cause"]
            )
            before = self.get(credit.referrer_id)
            step = apply_credit(before, credit, self.rules)
            if step.outcome != "ok":
                return []
            return self._apply(credit.referrer_id, before, step)
        # a re-keyed input event: process it here, where its customer's state lives
        original = Record(
            command["topic"],
            command["partition"],
            command["offset"],
            record.key,
            str(command["value"]).encode(),
        )
        return self._input(original, now, forwarded=True)

    # ------------------------------------------------------------ outputs

    def _apply(
        self,
        customer_id: str,
        before: CustomerState | None,
        step: Step,
        fired: str | None = None,
    ) -> list[Out]:
        outs = [
            Out(self.topology.output(a.kind), a.customer_id.encode(), a.to_json())
            for a in step.actions
        ]
        old, new = _profile(before), _profile(step.state)
        if old != new:
            self._count(customer_id, old, -1)
            self._count(customer_id, new, +1)
        for action, out in zip(step.actions, outs, strict=True):
            self.stats.actions[(action.kind, action.rule)] += 1
            self.stats.latencies.append((self.current_ts, action.occurred_at))
            if action.kind == "gift":
                self.stats.gift_value_fen[str(action.detail["code"])] += int(action.detail["value"])
            elif action.kind == "suppressed":
                self.stats.suppressed[str(action.detail["reason"])] += 1
            self._remember(customer_id, out.value)
        for credit in step.credits:
            command = {
                "cmd": "credit",
                "referrer": credit.referrer_id,
                "referred": credit.referred_id,
                "at": credit.at,
                "cause": credit.cause_event_id,
            }
            key = credit.referrer_id.encode()
            outs.append(Out(self.topology.commands, key, orjson.dumps(command)))
        self.dirty[customer_id] = step.state
        self.timers.track(customer_id, before, step.state, fired)
        return outs

    def _count(self, customer_id: str, profile: Profile | None, sign: int) -> None:
        """Add (+1) or remove (-1) a customer's contribution to the population gauges."""
        if profile is None:
            return
        *tracked, orders = profile
        for name, value in zip(TRACKED, tracked, strict=True):
            self.population[(name, str(value))] += sign
        if orders:
            group = "holdout" if in_holdout(customer_id, self.rules) else "treated"
            self.population[("buyers", f"{group}|1+")] += sign
            if orders >= 2:
                self.population[("buyers", f"{group}|2+")] += sign

    def _business(self, before: CustomerState | None, after: CustomerState, event: Event) -> None:
        """The ROI figures of DESIGN §1, from what one event changed."""
        week = 7 * DAY
        outside = before is None or not before.carriers
        last_order = before.last_order_at if before is not None else None
        if isinstance(event, Order) and event.status == "paid" and not event.membership:
            member = after.membership == "active"
            self.stats.paid_orders[member] += 1
            self.stats.order_value_fen[member] += event.amount_fen
            if last_order is not None and event.at > last_order:
                self.stats.repurchase_gaps_days.append((event.at - last_order) / DAY)
            if outside and (last_order is None or event.at - last_order > week):
                self.stats.buyers_outside_pool += 1
        elif isinstance(event, Join) and outside and after.carriers:
            joined_after = event.at - last_order if last_order is not None else -1
            self.stats.buyers_joined += 0 <= joined_after <= week

    def timeline_of(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's recent events and actions as the API shows them, newest first."""
        entries = []
        for raw in reversed(self.timeline.get(customer_id, ())):
            data = orjson.loads(raw)
            if "action_id" in data:
                keep = ("occurred_at", "kind", "rule", "detail", "because")
                entry = {k: data[k] for k in keep}
                entry["at"], entry["action"] = entry.pop("occurred_at"), entry.pop("kind")
            else:  # an input that was accepted, so it decodes
                event = decode(raw, self.rules.input)
                entry = {"at": format_rfc3339(event.at), "event": describe(event)}
            entries.append(entry)
        return entries

    def _remember(self, customer_id: str, entry: bytes) -> None:
        entries = self.timeline.pop(customer_id, None) or deque(maxlen=TIMELINE_ENTRIES)
        entries.append(entry)
        self.timeline[customer_id] = entries  # most recently active last
        while len(self.timeline) > TIMELINE_CUSTOMERS:
            self.timeline.popitem(last=False)

    def dead_letter(self, record: Record, reason: str, now: Millis) -> Out:
        self.stats.deadletters[record.topic] += 1
        key = None if record.key is None else record.key.decode("utf-8", errors="replace")
        dead = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": key,
            "reason": reason,
            **_encoded(record.value),
            "rejected_at": format_rfc3339(now),
        }
        return Out(self.topology.deadletter, record.key, orjson.dumps(dead))


def _encoded(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode(), "encoding": "base64"}
