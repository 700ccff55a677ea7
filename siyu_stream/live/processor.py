"""The live adapter for one partition: records in, state changes and records out.

The worker (`siyu_stream.live.worker`) owns partitions; it hands each `PartitionTask` the
records of that partition of the input topics and of the internal command topic
(`enqueue`), then lets it `run`. Everything that makes the live run correct lives here,
where runtime tests drive it with a dict store and no broker:

- **decode and validate** on arrival (`arrival`); a record that cannot be taken (null
  value, undecodable, oversized, a schema violation, an event time out of range, a step
  the core rejects) becomes one dead-letter record and processing goes on;
- **merge order and stream time** (`merge`, `partition`): records are taken by sort
  key across the partition's queues, waiting up to `idle_ms` for a queue whose topic
  partition is not caught up; timers fire on the partition clock before each record,
  and on the wall clock (less `grace_ms`) only when every queue is caught up and empty;
- **re-keying**: an event on a partition that does not own its customer is forwarded
  through the command topic keyed by customer id (the state lives with the key);
- **referral credits** travel as commands keyed by the referrer, carrying the event
  time of the order that earned them;
- **state changes are buffered** (`batch`) until the worker has made the batch durable:
  `changelog()` seals them as one changelog record per changed customer and one for the
  partition clock (the next batch builds on them while they commit), `committed()` folds
  the oldest sealed batch into the store, `discard()` forgets every change not committed
  (and the records queued: the worker rewinds to the committed offsets).

The merge loop and the step's records stay together here because they share the queues
and the batch in hand; decoding, the command topic's format (`arrival`) and the states of
the batches in flight (`batch`) have modules of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from typing import Final

import orjson

from siyu_stream.core import jsonout, stored
from siyu_stream.core.clock import Millis
from siyu_stream.core.errors import InvalidEvent, OutputTooLarge
from siyu_stream.core.events import Event
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState
from siyu_stream.core.step import Step
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.eventtime.merge import FIRST, Queues
from siyu_stream.eventtime.partition import Partition, credit_key
from siyu_stream.live.arrival import (
    Rekeyed,
    Sightings,
    credit_command,
    dead_letter,
    decode_command,
    decode_input,
    event_command,
)
from siyu_stream.live.batch import StateBatch, Store
from siyu_stream.live.records import CLOCK_KEY, Out, Pending, Record
from siyu_stream.observe.observer import Observer
from siyu_stream.topology import INPUT_TYPES, OUTPUT_BY_KIND, Topology

log = logging.getLogger("siyu_stream.live.processor")

MAX_RECORD_BYTES: Final = 900_000
"""Outputs larger than this (Kafka's default request limit is 1 MiB) are never sent: the
input that would produce one is dead-lettered instead, so no record stops a partition."""
LOCAL: Final = ""
"""The queue of referral credits for referrers on this same partition: each is taken
right after the order that earned it (its sort key), without a round trip through the
command topic, which would make it late."""
QUEUE_LIMIT = 10_000
"""Records queued per source before the worker stops fetching it (see `full`)."""


class PartitionTask:
    """Everything one worker does for one partition."""

    def __init__(
        self,
        rules: Rules,
        topology: Topology,
        partition: int,
        store: Store,
        observer: Observer,
        *,
        idle_ms: Millis = 0,
        grace_ms: Millis = 0,
        reorder_ms: Millis = 0,
    ) -> None:
        self.rules = rules
        self.partition = partition
        self.store = store
        self.observer = observer
        self.idle_ms = idle_ms
        self.grace_ms = grace_ms
        self.reorder_ms = reorder_ms
        self.wake_at: Millis | None = None
        """Set by `run` while a record waits out `reorder_ms`: when it may be taken."""
        self.partitions = topology.settings.partitions
        self.type_of_topic = {topology.settings.topic(n): t for n, t in INPUT_TYPES.items()}
        # topic names read once: the topology's are properties, interpreted (per record)
        self._commands, self._changelog = topology.commands, topology.changelog
        self._deadletter = topology.deadletter
        self.sources = [*self.type_of_topic, self._commands]
        self._seen = {source: Sightings() for source in self.sources}
        self._output_topic = {kind: topology.output(kind) for kind in OUTPUT_BY_KIND}
        self.queues: Queues[Pending] = Queues([*self.sources, LOCAL])
        self._batch = StateBatch(store)
        self.events = Partition(rules, self._batch, self._applied)
        raw_clock = store.get(CLOCK_KEY)
        self.events.clock = None if raw_clock is None else int(orjson.loads(raw_clock)["clock"])
        self._committed_clock = self.events.clock
        self._sealed_clock = self.events.clock
        self._outs: list[Out] = []
        self._event: Event | None = None
        self._record = Record("", partition, -1, None, None)
        """The record in hand (what a credit it earns names as its source)."""
        self._arrived: Millis = 0
        """When the record in hand arrived: its credits and commands carry it on."""
        self._now: Millis = 0  # the wall clock of this `run`
        self._waiting_since: Millis | None = None
        self.more = False
        """The last `run` stopped at its limit with work left (call it again soon)."""

    def index(self, chunk: int = 10_000) -> Iterator[int]:
        """Index the stored states (timers, population gauges) before the first record,
        yielding the count every `chunk` states: a worker yields to its event loop there,
        so that a million-customer partition does not stall its group heartbeats."""
        count = 0
        for customer_id, raw in self.store.items():
            if customer_id == CLOCK_KEY:
                continue
            state = stored.loads(raw)
            self.events.timers.index(customer_id, state)
            self.observer.indexed(customer_id, state)
            count += 1
            if count % chunk == 0:
                yield count
        yield count

    # ------------------------------------------------------------ state

    @property
    def clock(self) -> Millis | None:
        return self.events.clock

    @property
    def dirty(self) -> dict[str, CustomerState]:
        return self._batch.dirty

    def get(self, customer_id: str) -> CustomerState | None:
        """A customer's state as the batch in flight has it."""
        return self._batch.get(customer_id)

    def committed_state(self, customer_id: str) -> CustomerState | None:
        """A customer's state as last made durable (what the API shows)."""
        return self._batch.committed(customer_id) if customer_id != CLOCK_KEY else None

    def changelog(self) -> list[Out]:
        """Seal the batch's state changes and return them as changelog records (explicitly
        on this partition), the partition clock with them when it moved. What is processed
        next builds the next batch over this one until `committed()`."""
        serialized = {cid: stored.dumps(s) for cid, s in self.dirty.items()}
        clock = self.events.clock
        if clock is not None and clock != self._sealed_clock:
            serialized[CLOCK_KEY] = jsonout.dumps({"clock": clock})
        self._batch.seal(serialized, clock)
        self._sealed_clock = clock
        topic = self._changelog
        return [Out(topic, cid.encode(), raw, self.partition) for cid, raw in serialized.items()]

    def committed(self) -> None:
        """The oldest sealed batch is durable: its state changes become the store's (with
        none sealed, the changes so far are sealed first: runtime tests).

        The timer entries popped so far are settled, a later batch's with them: if that
        batch fails, the worker rebuilds the task from the store (`worker._rewind`), which
        indexes every timer again."""
        if not self._batch.sealed:
            self.changelog()
        self._committed_clock = self._batch.settle()
        self.events.timers.settle()

    def discard(self) -> None:
        """The batch failed: forget its state changes and queued records (the worker
        rewinds the partition to its committed offsets and reads them again)."""
        self._batch.discard()
        self.events.timers.rollback()
        self.events.clock = self._committed_clock
        self._sealed_clock = self._committed_clock
        self.queues.clear()
        self._waiting_since = None

    # ------------------------------------------------------------ records

    def seen(self, source: str, end: int | None, now: Millis) -> None:
        """The worker read `end` as the end offset of `source` at wall-clock `now` (None:
        not known yet): what lies below it is in Kafka (`arrival.Sightings`)."""
        if end is not None:
            self._seen[source].note(end, now)

    def enqueue(self, record: Record, now: Millis) -> None:
        """Decode a consumed record read at wall-clock `now` and queue it for its turn."""
        seen = self._seen.get(record.topic)
        since = None if seen is None else seen.since(record.offset)
        arrived = now if since is None else min(since, now)
        if record.topic == self._commands:
            self._enqueue_command(record, now, arrived)
            return
        kind = self.type_of_topic.get(record.topic, "?")
        topic, offset = record.topic, record.offset
        self._enqueue_input(record, topic, offset, kind, now, arrived, forwarded=False)

    def full(self) -> list[str]:
        """Sources with QUEUE_LIMIT records queued: the worker pauses fetching them."""
        return [s for s in self.sources if self.queues.queued(s) >= QUEUE_LIMIT]

    def positions(self) -> dict[str, int]:
        """Per source with records queued: the offset of the first (where to resume)."""
        return {
            s: first.offset for s in self.sources if (first := self.queues.first(s)) is not None
        }

    def run(self, now: Millis, caught_up: Collection[str], limit: int | None = None) -> list[Out]:
        """Take queued records in merge order, timers first, and fire the timers the wall
        clock (`now` - grace) has passed when every source is caught up (`caught_up`
        names the sources with nothing left to read). Stops after about `limit` output
        records; `more` says so."""
        self._outs = list[Out]()
        self._now = now
        self.more = False
        self.wake_at = None
        self._run(now, {*caught_up, LOCAL}, limit)
        # a stop at the limit may fall between an order and its credit: the credit is next
        while (pending := self.queues.first(LOCAL)) is not None:
            self.queues.pop(LOCAL)
            assert pending.credit is not None
            self._fire(pending.credit.at, None)
            self._take_guarded(LOCAL, pending, now)
        return self._outs

    def _run(self, now: Millis, caught_up: Collection[str], limit: int | None) -> None:
        outs = self._outs
        while True:
            budget = None if limit is None else limit - len(outs)
            if budget is not None and budget <= 0:
                self.more = True
                return
            head = self.queues.head()
            if head is None:
                if all(s in caught_up for s in self.sources):
                    self.more = not self._fire(now - self.grace_ms, budget, punctuate=True)
                return
            source, key, pending = head
            if key != FIRST:
                # a local credit comes right after its order: nothing unread can precede it
                if source != LOCAL and self._must_wait(now, caught_up, pending):
                    return
                problem = self._time_problem(pending, now)
                if problem is not None:
                    self.queues.pop(source)
                    self._dead(pending, problem, now)
                    continue
                if not self._fire(key[0], budget):
                    self.more = True
                    return
            self.queues.pop(source)
            self._take_guarded(source, pending, now)

    def _take_guarded(self, source: str, pending: Pending, now: Millis) -> None:
        self.observer.record_ts = pending.record.timestamp or now
        self._record = pending.record
        self._arrived = pending.arrived
        try:
            self._take(pending, now)
        except Exception as exc:  # a bug must not stop the stream: dead-letter the record
            log.exception("internal error on %s[%d]@%d", source, self.partition, pending.offset)
            self._dead(pending, f"internal error: {exc!r}", now)

    def handle(self, record: Record, now: Millis) -> list[Out]:
        """Queue one record and run as if every source were caught up (runtime tests)."""
        self.enqueue(record, now)
        return self.run(now, self.sources)

    def sweep(self, now: Millis, limit: int | None = None) -> list[Out]:
        """Run with every source caught up: the wall clock fires what is due."""
        return self.run(now, self.sources, limit)

    # ------------------------------------------------------------ internals

    def _enqueue_input(  # noqa: PLR0917
        self,
        record: Record,
        source: str,
        offset: int,
        kind: str,
        now: Millis,
        arrived: Millis,
        *,
        forwarded: bool,
    ) -> None:
        key, pending = decode_input(
            record,
            offset,
            kind,
            self.rules,
            now,
            partitions=self.partitions,
            here=self.partition,
            forwarded=forwarded,
        )
        pending.arrived = arrived
        self.queues.push(source, key, pending)

    def _enqueue_command(self, record: Record, now: Millis, arrived: Millis) -> None:
        source = self._commands
        decoded = decode_command(record, arrived)
        if isinstance(decoded, Rekeyed):  # an input event: taken here, with its state
            original = decoded.record
            kind = self.type_of_topic.get(original.topic, "?")
            self._enqueue_input(
                original, source, record.offset, kind, now, decoded.arrived, forwarded=True
            )
        else:
            key, pending = decoded
            self.queues.push(source, key, pending)

    def _must_wait(self, now: Millis, caught_up: Collection[str], head: Pending) -> bool:
        """An empty queue may yet get a record that comes before the head:

        - its topic partition has more to read: wait for it, up to idle_ms (then go on;
          what comes later is late);
        - caught up, an input topic: a record sent just before the head may still be on
          its way (the fetch from its broker answers after the one from the head's, or
          its producer sent it a moment later): take the head only once it has been here
          `reorder_ms`. Seen without it, on a three-node cluster: a customer's order
          taken after the chat sent 50 ms after it, which changed its health."""
        empty = self.queues.empty()
        if all(s in caught_up for s in empty):
            self._waiting_since = None
            if self.reorder_ms and any(s in self.type_of_topic for s in empty):
                ready = head.arrived + self.reorder_ms
                if now < ready:
                    self.wake_at = ready
                    return True
            return False
        if self._waiting_since is None:
            self._waiting_since = now
        return now - self._waiting_since < self.idle_ms

    def _time_problem(self, pending: Pending, now: Millis) -> str | None:
        """Why the head's event time is out of range, if it is."""
        if pending.event is None:
            return None
        try:
            self.events.check_age(pending.event.at)
        except InvalidEvent as exc:
            return exc.full_reason
        return None

    def _fire(self, until: Millis, budget: int | None, *, punctuate: bool = False) -> bool:
        try:
            return self.events.advance(until, budget, punctuate=punctuate)
        except Exception:  # a bug in a timer rule: that timer is skipped, the stream goes on
            log.exception("internal error firing a timer on partition %d", self.partition)
            return False

    def _take(self, pending: Pending, now: Millis) -> None:
        if pending.reason is not None:
            self._dead(pending, pending.reason, now)
        elif pending.forward:
            assert pending.event is not None and pending.record.value is not None
            self.observer.outcome(pending.kind, "rekeyed")
            key = pending.event.customer_id.encode()
            command = event_command(pending.record, now - pending.arrived)
            self._outs.append(Out(self._commands, key, command))
        elif pending.credit is not None:
            self.events.credit(pending.credit)
        else:
            assert pending.event is not None
            self._event = pending.event
            try:
                step = self.events.apply(pending.event)
            except OutputTooLarge as exc:
                self._dead(pending, str(exc), now)
                return
            finally:
                self._event = None
            if step.outcome == "rejected":
                self._dead(pending, step.reason or "rejected by the rules", now)
            else:
                self.observer.outcome(pending.kind, step.outcome)

    def _applied(self, customer_id: str, before: CustomerState | None, step: Step) -> None:
        """A step the partition is about to store: its actions and credits become records."""
        topic_of = self._output_topic
        payloads: list[bytes] = []
        outs: list[Out] = []
        largest = 0
        for a in step.actions:  # a loop: compiled, zip(strict=) and max(default=) are generic
            payload = jsonout.dumps(a.to_dict())  # kept until the batch commits
            payloads.append(payload)
            outs.append(Out(topic_of[a.kind], a.customer_id.encode(), payload))
            largest = max(largest, len(payload))
        for credit in step.credits:
            referrer = credit.referrer_id.encode()
            if partition_for(referrer, self.partitions) == self.partition:
                pending = Pending(-1, self._record, "credit", credit=credit, arrived=self._arrived)
                self.queues.push(LOCAL, credit_key(credit), pending)
                continue
            command = credit_command(credit, self._now - self._arrived)
            outs.append(Out(self._commands, referrer, command))
            largest = max(largest, len(command))
        if largest > MAX_RECORD_BYTES:
            msg = f"output_too_large: a record of {largest} bytes (max {MAX_RECORD_BYTES})"
            raise OutputTooLarge(msg)
        self._outs.extend(outs)
        if self._event is not None and customer_id == self._event.customer_id:
            self.observer.event(before, step.state, self._event)
        self.observer.applied(customer_id, before, step, payloads)

    def _dead(self, pending: Pending, reason: str, now: Millis) -> None:
        record = pending.record
        self.observer.rejected(record.topic)
        self.observer.outcome(pending.kind, "rejected")
        key = None if record.key is None else record.key[:1024]
        self._outs.append(Out(self._deadletter, key, dead_letter(record, reason, now)))
