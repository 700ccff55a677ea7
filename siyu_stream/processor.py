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
from collections import Counter
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from siyu_stream import state as state_format
from siyu_stream.actions import ReferralCredit
from siyu_stream.clock import Millis, format_rfc3339
from siyu_stream.engine import TimerIndex, check_time
from siyu_stream.errors import InvalidEvent
from siyu_stream.events import decode
from siyu_stream.rules import apply_credit, apply_event
from siyu_stream.ruleset import Rules
from siyu_stream.state import CustomerState
from siyu_stream.step import TRACKED, Step
from siyu_stream.timers import fire_timer
from siyu_stream.topology import INPUT_TYPES, Topology

Store = MutableMapping[str, bytes]
"""A partition's state store: customer id -> serialized state (a dict, or RocksDB)."""


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


@dataclass
class Stats:
    """Counters the metrics exporter reads; plain numbers, no Prometheus here."""

    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(type, outcome) -> count; outcome ok | duplicate | rejected | rekeyed."""
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, rule) -> count."""
    deadletters: int = 0
    timers_fired: int = 0


def wall_clock() -> Millis:
    """The live engine clock: the rule core never reads it, the adapters pass it in."""
    return time.time_ns() // 1_000_000


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
        self.timers = TimerIndex()
        self.population: Counter[tuple[str, str]] = Counter()
        """(field, value) -> customers of this partition; kept up to date from the changes."""
        for customer_id, raw in store.items():
            state = state_format.loads(raw)
            self.timers.track(customer_id, None, state)
            for name in TRACKED:
                self.population[(name, str(getattr(state, name)))] += 1

    # ------------------------------------------------------------ state

    def get(self, customer_id: str) -> CustomerState | None:
        if customer_id in self.dirty:
            return self.dirty[customer_id]
        raw = self.store.get(customer_id)
        return None if raw is None else state_format.loads(raw)

    def changelog(self) -> list[Out]:
        """The batch's state changes as changelog records (explicitly on this partition)."""
        topic = self.topology.changelog
        return [
            Out(topic, cid.encode(), state_format.dumps(s), self.partition)
            for cid, s in self.dirty.items()
        ]

    def committed(self) -> None:
        """The batch is durable: its state changes become the store's."""
        for customer_id, state in self.dirty.items():
            self.store[customer_id] = state_format.dumps(state)
        self.dirty.clear()

    # ------------------------------------------------------------ records

    def handle(self, record: Record, now: Millis) -> list[Out]:
        """Process one record of this partition; returns the records to send, in order."""
        if record.topic == self.topology.commands:
            try:
                return self._command(orjson.loads(record.value), record, now)
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                # only siyu-stream writes this topic, but a bad record must not stop the stream
                return [self.dead_letter(record, f"malformed command: {exc!r}", now)]
        return self._input(record, now, forwarded=False)

    def sweep(self, now: Millis) -> list[Out]:
        """Fire every timer of this partition due by `now`, in due order."""
        outs: list[Out] = []
        while (entry := self.timers.pop_due(now)) is not None:
            due, customer_id, name = entry
            before = self.get(customer_id)
            if before is None:
                continue
            step = fire_timer(before, customer_id, name, due, self.rules)
            if step is not None:
                self.stats.timers_fired += 1
                outs.extend(self._apply(customer_id, before, step))
        return outs

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

    def _apply(self, customer_id: str, before: CustomerState | None, step: Step) -> list[Out]:
        outs = [
            Out(self.topology.output(a.kind), a.customer_id.encode(), a.to_json())
            for a in step.actions
        ]
        if before is None:  # a new customer enters the population with the defaults
            for name in TRACKED[1:]:
                self.population[(name, str(getattr(CustomerState(), name)))] += 1
        for action in step.actions:
            self.stats.actions[(action.kind, action.rule)] += 1
            if action.kind == "change":
                detail = action.detail
                if detail["from"] is not None:
                    self.population[(str(detail["field"]), str(detail["from"]))] -= 1
                self.population[(str(detail["field"]), str(detail["to"]))] += 1
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
        self.timers.track(customer_id, before, step.state)
        return outs

    def dead_letter(self, record: Record, reason: str, now: Millis) -> Out:
        self.stats.deadletters += 1
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
