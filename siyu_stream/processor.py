"""The live adapter, independent of Faust: one Kafka record in, state written, records out.

The Faust agent (`siyu_stream.app`) hands every record of the input topics and of the
internal command topic to `Processor.handle` and sends what it returns. Everything
that makes the live run correct lives here, where runtime tests can drive it with a
dict store and no broker:

- **decode and validate**; rejected input becomes a dead-letter record with topic,
  partition, offset and reason;
- **re-keying**: an event on a partition that does not own its customer is forwarded
  through the command topic keyed by customer id (the state lives with the key);
- **live clock**: the wall clock passed in as `now`; ticks on the command topic (one
  per partition per `SIYU_TIMER_INTERVAL`) sweep that partition's due timers in the
  stream, so state is only ever written by the partition's owner, in order;
- **referral credits** travel as commands keyed by the referrer (maybe another
  partition, maybe another worker);
- **outbox**: without transactions a crash can persist a state change (changelog) but
  lose the records it caused. Each step therefore keeps its output records in the
  customer's state until the offset that caused them is committed (Faust flushes the
  producer before it commits). When a partition is (re)assigned, every outbox in it
  is sent again: a crash can duplicate records — with the same action ids — but never
  lose one. Ticks clear outboxes whose offsets are committed.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from siyu_stream.actions import ReferralCredit
from siyu_stream.clock import Millis, format_rfc3339
from siyu_stream.engine import TimerIndex, check_time
from siyu_stream.errors import InvalidEvent
from siyu_stream.events import decode
from siyu_stream.rules import apply_credit, apply_event
from siyu_stream.ruleset import Rules
from siyu_stream.state import CustomerState
from siyu_stream.step import Step
from siyu_stream.timers import fire_timer
from siyu_stream.topology import INPUT_TYPES, Topology


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


@dataclass(frozen=True, slots=True)
class Origin:
    """The consumed record a step came from: its outputs are tagged with it in the outbox."""

    source: int
    """Index of the topic in Processor.sources."""
    partition: int
    offset: int


class TableStore(Protocol):
    """The customer table: the StateStore seam plus iteration (for recovery)."""

    def get(self, customer_id: str) -> CustomerState | None: ...

    def put(self, customer_id: str, state: CustomerState) -> None: ...

    def items(self) -> Iterator[tuple[str, CustomerState]]: ...


@dataclass
class Stats:
    """Counters the metrics exporter reads; plain ints, no Prometheus here."""

    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(type, outcome) -> count; outcome ok | duplicate | rejected | rekeyed."""
    actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(kind, rule) -> count."""
    deadletters: int = 0
    resent: int = 0
    """Outbox records sent again after a (re)assignment."""
    latencies: list[tuple[Millis, Millis]] = field(default_factory=list)
    """(event time, processing time) per action since the exporter last drained it."""


def wall_clock() -> Millis:
    """The live engine clock: the rule core never reads it, the adapters pass it in."""
    return time.time_ns() // 1_000_000


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) puts `key` on."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


class Processor:
    def __init__(self, rules: Rules, topology: Topology, store: TableStore) -> None:
        self.rules = rules
        self.topology = topology
        self.store = store
        self.partitions = topology.settings.partitions
        self.sources = [*topology.inputs, topology.commands]
        self.type_of_topic = {topology.settings.topic(n): t for n, t in INPUT_TYPES.items()}
        self.assignment: set[int] = set()
        self.timers: dict[int, TimerIndex] = {}
        self.dirty: dict[int, set[str]] = {}
        self.committed: dict[tuple[int, int], int] = {}
        self.stats = Stats()

    # ------------------------------------------------------------ lifecycle

    def assign(self, partitions: set[int]) -> None:
        """A rebalance happened: forget the indexes, rebuild lazily from the recovered table."""
        self.assignment = set(partitions)
        self.timers.clear()
        self.dirty.clear()

    def on_commit(self, topic: str, partition: int, offset: int) -> None:
        if topic in self.sources:
            self.committed[(self.sources.index(topic), partition)] = offset

    def _recover(self) -> list[Out]:
        """Index timers and re-send outboxes of every assigned partition not yet indexed."""
        todo = self.assignment - set(self.timers)
        if not todo:
            return []
        for p in todo:
            self.timers[p] = TimerIndex()
            self.dirty[p] = set()
        outs: list[Out] = []
        for customer_id, state in self.store.items():
            p = partition_for(customer_id.encode(), self.partitions)
            if p not in todo:
                continue
            self.timers[p].track(customer_id, None, state)
            if state.outbox:
                self.dirty[p].add(customer_id)
                outs.extend(
                    Out(topic, _key(key), orjson.dumps(v)) for _, _, topic, key, v in state.outbox
                )
        self.stats.resent += len(outs)
        return outs

    # ------------------------------------------------------------ records

    def handle(self, record: Record, now: Millis) -> list[Out]:
        """Process one record; returns the records to send (in order)."""
        # records only arrive for partitions this worker owns, whatever the last rebalance said
        self.assignment.add(record.partition)
        outs = self._recover()
        origin = Origin(self.sources.index(record.topic), record.partition, record.offset)
        if record.topic == self.topology.commands:
            outs.extend(self._command(record, origin, now))
        else:
            outs.extend(self._input(record, origin, now))
        return outs

    def _input(self, record: Record, origin: Origin, now: Millis) -> list[Out]:
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
            return [self._dead(record, exc.full_reason, now)]
        owner = partition_for(event.customer_id.encode(), self.partitions)
        if owner != origin.partition:
            # the state lives on the owner's partition: forward, keyed by customer id
            self.stats.events[(expected, "rekeyed")] += 1
            command = {
                "cmd": "event",
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "value": record.value.decode(),
            }
            key = event.customer_id.encode()
            return [Out(self.topology.commands, key, orjson.dumps(command))]
        before = self.store.get(event.customer_id)
        step = apply_event(before, event, now, self.rules)
        self.stats.events[(expected, step.outcome)] += 1
        if step.outcome != "ok":
            return []
        return self._commit(event.customer_id, before, step, origin, now)

    def _command(self, record: Record, origin: Origin, now: Millis) -> list[Out]:
        try:
            return self._run_command(orjson.loads(record.value), record, origin, now)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            # only siyu-stream writes this topic, but a bad record must not stop the stream
            return [self._dead(record, f"malformed command: {exc!r}", now)]

    def _run_command(
        self, command: dict[str, Any], record: Record, origin: Origin, now: Millis
    ) -> list[Out]:
        kind = command.get("cmd")
        if kind == "tick":
            return self._sweep(origin, now)
        if kind == "credit":
            credit = ReferralCredit(
                command["referrer"], command["referred"], command["at"], command["cause"]
            )
            before = self.store.get(credit.referrer_id)
            step = apply_credit(before, credit, self.rules)
            if step.outcome != "ok":
                return []
            return self._commit(credit.referrer_id, before, step, origin, now)
        # a re-keyed input event: process it here, where its customer's state lives
        original = Record(
            command["topic"],
            command["partition"],
            command["offset"],
            record.key,
            str(command["value"]).encode(),
        )
        return self._input(original, origin, now)

    def _sweep(self, origin: Origin, now: Millis) -> list[Out]:
        index = self.timers.get(origin.partition)
        if index is None:
            return []
        outs: list[Out] = []
        while (entry := index.pop_due(now)) is not None:
            due, customer_id, name = entry
            before = self.store.get(customer_id)
            if before is None:
                continue
            step = fire_timer(before, customer_id, name, due, self.rules)
            if step is not None:
                outs.extend(self._commit(customer_id, before, step, origin, now))
        self._clear_delivered(origin.partition)
        return outs

    # ------------------------------------------------------------ outputs and outbox

    def _commit(
        self,
        customer_id: str,
        before: CustomerState | None,
        step: Step,
        origin: Origin,
        now: Millis,
    ) -> list[Out]:
        outs = [
            Out(self.topology.output(a.kind), a.customer_id.encode(), a.to_json())
            for a in step.actions
        ]
        for action in step.actions:
            self.stats.actions[(action.kind, action.rule)] += 1
            self.stats.latencies.append((action.occurred_at, now))
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
        state = step.state
        partition = origin.partition
        state.outbox = [e for e in state.outbox if not self._delivered(partition, e)]
        state.outbox.extend(
            [origin.source, origin.offset, o.topic, _text(o.key), orjson.loads(o.value)]
            for o in outs
        )
        self.store.put(customer_id, state)
        if partition in self.timers:
            self.timers[partition].track(customer_id, before, state)
        if state.outbox and partition in self.dirty:
            self.dirty[partition].add(customer_id)
        return outs

    def _delivered(self, partition: int, entry: list[Any]) -> bool:
        committed = self.committed.get((entry[0], partition))
        return committed is not None and entry[1] < committed

    def _clear_delivered(self, partition: int) -> None:
        dirty = self.dirty.get(partition, set())
        for customer_id in list(dirty):
            state = self.store.get(customer_id)
            if state is None:
                dirty.discard(customer_id)
                continue
            keep = [e for e in state.outbox if not self._delivered(partition, e)]
            if len(keep) != len(state.outbox):
                state.outbox = keep
                self.store.put(customer_id, state)
            if not keep:
                dirty.discard(customer_id)

    def _dead(self, record: Record, reason: str, now: Millis) -> Out:
        self.stats.deadletters += 1
        dead = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": _text(record.key),
            "reason": reason,
            **_encoded(record.value),
            "rejected_at": format_rfc3339(now),
        }
        return Out(self.topology.deadletter, record.key, orjson.dumps(dead))

    def ticks(self) -> list[Out]:
        """One tick per assigned partition (the adapter sends them every timer interval)."""
        tick = orjson.dumps({"cmd": "tick"})
        return [Out(self.topology.commands, None, tick, p) for p in sorted(self.assignment)]


def _encoded(value: bytes) -> dict[str, str]:
    try:
        return {"value": value.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"value": base64.b64encode(value).decode(), "encoding": "base64"}


def _text(key: bytes | None) -> str | None:
    if key is None:
        return None
    return key.decode("utf-8", errors="replace")


def _key(text: str | None) -> bytes | None:
    return None if text is None else text.encode()
