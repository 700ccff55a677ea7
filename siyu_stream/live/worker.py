"""The live worker: a consume-transform-produce loop on aiokafka.

    inputs (orders, chats, joins) ─┐                     ┌─> actions.* / customers.changes
    commands (credits, re-keyed) ──┼─> PartitionTask(p) ─┼─> commands (to other partitions)
    changelog (restore on assign) ─┘   (pure rule core)  ├─> deadletter
                                                         └─> changelog (state of p)

Partitions are the unit of work: a consumer group with the range assignor gives each
worker the same partition numbers of every co-partitioned topic; each owned partition
has a `PartitionTask` holding its customers' state. A newly assigned partition is taken
over by the loop, not inside the rebalance (`_take_over`): its producer started, its
state restored from the compacted changelog, then its records fetched.

Each poll is one batch, handled partition by partition, then made durable by one of the
two commit protocols (`commit`: a transaction per partition under `exactly_once`; acks,
then offsets under `at_least_once`). From a backlog, a batch is made durable in the
background while the next poll's batch is processed: its states read through the batch
in flight, its commit starts when that one is done, so commits stay in order, and a
failure of either discards both (see `_process`).

Records are merged and timers fire on stream time in each partition task (`processor`),
and on the wall clock once caught up. A batch the broker does not take is retried with
backoff from the committed offsets, never a crash.

The loop, the retry and the rebalance callbacks stay in this module: they share the
consumer, the owned partitions and the lock that keeps a rebalance out of a batch in
flight. What they call has modules of its own (`commit`, `produce`, `restore`, `view`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError, ProducerFenced

from siyu_stream.core.clock import Millis
from siyu_stream.core.ruleset import Rules
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.live.commit import InFlight, Owned, Work, flush, transact
from siyu_stream.live.members import Members
from siyu_stream.live.polling import poll_fair
from siyu_stream.live.produce import (
    TRANSACTION_TIMEOUT_MS,
    plain_producer,
    stop_failed,
    transactional_producer,
)
from siyu_stream.live.records import Record
from siyu_stream.live.restore import Restorer
from siyu_stream.live.standby import Standby
from siyu_stream.live.view import OwnedView
from siyu_stream.observe import web
from siyu_stream.observe.metrics import Exporter
from siyu_stream.observe.observer import Stats
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

log = logging.getLogger("siyu_stream.live.worker")

MAX_RECORDS = 2_000
"""Records per poll: one batch, one transaction per partition."""
COMMIT_TIMEOUT = TRANSACTION_TIMEOUT_MS / 1000
"""Seconds a batch may take to become durable before it counts as failed."""
BACKOFF_FIRST, BACKOFF_LAST = 0.5, 30.0
"""Seconds before retrying a batch the broker did not take, doubling up to the last."""
PIPELINE_RECORDS = MAX_RECORDS // 4
"""A batch this large means a backlog: its commit overlaps the next batch (`_process`)."""
IN_FLIGHT = 2
"""Batches being made durable at once from a backlog, each after the one before."""
FIRST_PAUSE = 0.005
"""Seconds of the first pause of an idle poll (doubling to polling.IDLE_PAUSE): see `poll`."""


class Worker(OwnedView):
    def __init__(self, settings: Settings, rules: Rules) -> None:
        self.settings = settings
        self.rules = rules
        self.topology = Topology(settings)
        self.stats = Stats()
        self.owned: dict[int, Owned] = {}
        self.exactly_once = settings.guarantee == "exactly_once"
        self._lock = asyncio.Lock()  # a rebalance waits for the batch in flight
        self._inflight = InFlight()
        self._failed = False
        """A batch failed: the loop rewinds every partition before processing again."""
        self._fatal: BaseException | None = None
        """Raised by the loop: seen in a rebalance callback (which cannot raise)."""
        self._backoff = BACKOFF_FIRST
        self._paused = False
        self._behind = False
        """A partition stopped at the batch limit with work left: poll again at once."""
        self._wake: Millis | None = None  # when a record held for stragglers may go
        self._held: set[TopicPartition] = set()
        """Sources not fetched while their queues are full."""
        self._pending: set[int] = set()
        """Partitions assigned but not yet taken over (`_take_over`): not fetched."""
        self._retry_at, self._take_over_backoff = 0.0, BACKOFF_FIRST
        self._topics = [*self.topology.inputs, self.topology.commands]
        self._stop = asyncio.Event()
        self._consumer: Any = None
        self._producer: Any = None  # at_least_once: one plain producer for everything
        self.members = Members(settings.kafka, self.topology.members, settings.advertised_url)
        self._background: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()
        self.running = False
        self.url = settings.advertised_url
        self.exporter = Exporter(self)
        self.standby = Standby(settings)
        self.restorer = Restorer(rules, self.topology, self.stats, self.standby, self._stop)

    @property
    def is_ready(self) -> bool:
        """Partitions assigned and their state restored."""
        return self.running and self.ready.is_set() and not self._paused and not self._pending

    # ------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await ensure_topics(self.settings.kafka, self.topology.specs())
        self._consumer = AIOKafkaConsumer(
            **client_options(self.settings.kafka),
            group_id=self.settings.app_id,
            enable_auto_commit=False,  # offsets move only with a durable batch
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
        )
        if not self.exactly_once:
            self._producer = await plain_producer(self.settings)
        await self.members.start()
        runner = await web.start(self, self.exporter.registry) if self.settings.web_port else None
        self._background.append(asyncio.create_task(self.members.follow()))
        await self.standby.start()
        await self._consumer.start()
        self._consumer.subscribe(self._topics, listener=_Listener(self))
        self.running = True
        s = self.settings  # its Kafka connection logs no secret (KafkaConnection.__str__)
        log.info("worker %s started (%s, %s) on %s", s.app_id, s.guarantee, self.url, s.kafka)
        try:
            await self._loop()
        finally:
            self.running = False
            await self._shutdown()
            for task in self._background:
                task.cancel()
            if runner is not None:
                await runner.cleanup()

    async def _loop(self) -> None:
        interval = self.settings.timer_interval
        while not self._stop.is_set():
            # no waiting with a partition stopped at the batch limit; else until a
            # partition may be taken over, or a record held back for stragglers may go
            timeout = 0.0 if self._behind else interval
            if self._pending:
                timeout = min(timeout, max(0.0, self._retry_at - time.monotonic()))
            if self._wake is not None:
                timeout = min(timeout, max(0.0, (self._wake - wall_clock()) / 1000))
            batch = await poll_fair(self._consumer, timeout, MAX_RECORDS, first=FIRST_PAUSE)
            async with self._lock:
                if self._fatal is not None:
                    raise self._fatal
                if self._paused:
                    continue
                try:
                    if self._failed:
                        await self._rewind()
                        self._failed = False
                        continue  # the batch in hand was read past the rewind: read again
                    if self._pending:
                        taken = await self._take_over()
                        if self._stop.is_set():
                            continue  # a restore cut short: never process with its state
                        # their records in hand were read before the seek to their offsets
                        batch = {tp: m for tp, m in batch.items() if tp.partition not in taken}
                    await self._process(batch)
                    self._backoff = BACKOFF_FIRST
                except ProducerFenced:
                    raise  # a newer owner holds the partition: leave, a restart rejoins the group
                except (KafkaError, OSError, TimeoutError) as exc:
                    self._fail(exc)
            if self._failed:
                await asyncio.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, BACKOFF_LAST)

    def _fail(self, exc: BaseException) -> None:
        """The broker or the network (records are checked before they are sent): nothing
        of the batches in hand counts; the loop rewinds to the committed offsets."""
        log.warning("batch not committed (%r); retrying in %.1f s", exc, self._backoff)
        self._failed = True
        self.stats.latencies.clear()  # the batch will be processed again
        for owned in self.owned.values():
            owned.task.discard()

    async def _settle(self) -> None:
        """Wait until every batch in flight is durable; the first failure is raised here."""
        await self._inflight.settle()

    async def _settle_quietly(self) -> None:
        """`_settle` before a rebalance, a rewind or a stop: a failure is noted, not raised
        (the loop rewinds, or raises a fencing)."""
        try:
            await self._settle()
        except ProducerFenced as exc:
            self._fatal = exc
        except (KafkaError, OSError, TimeoutError) as exc:
            self._fail(exc)

    async def _rewind(self) -> None:
        """After a failed batch, every owned partition resumes as a new owner would: state
        restored from its changelog (what of the batch reached it counts, as after a
        crash: the offsets may have been committed although the answer never came),
        records from the committed offsets, fresh producers (an idempotent producer's
        sequence may be broken; a new transactional one aborts what the old left open)."""
        await self._settle_quietly()  # a batch failed before it: it fails too, or it is done
        if self._fatal is not None:
            raise self._fatal
        if self._producer is not None:
            await stop_failed(self._producer)
            self._producer = await plain_producer(self.settings)
        for p, owned in list(self.owned.items()):
            producer = owned.producer
            if producer is not None:
                await stop_failed(producer)
                producer = await transactional_producer(self.settings, p)
            owned.task.discard()
            self.owned[p] = await self.restorer.resume(p, owned.store, producer)
            await self._seek_committed(p)

    async def _seek_committed(self, partition: int) -> None:
        """Read the partition's sources again from their committed offsets."""
        for tp in self._sources(partition).values():
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    async def _shutdown(self) -> None:
        async with self._lock:
            await self._settle_quietly()  # the batch in flight commits, or fails, first
            # leaving the group hands the partitions over at once (no session timeout wait)
            await self._consumer.stop()
            for owned in self.owned.values():
                if owned.producer is not None:
                    await owned.producer.stop()
                owned.store.close()
            self.owned.clear()
            if self._producer is not None:
                await self._producer.stop()
            await self.members.announce([])  # no partitions: the API stops routing here
            await self.members.stop()
            await self.standby.stop()
        log.info("worker stopped")

    # ------------------------------------------------------------ batches

    async def _process(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Process a batch, then make it durable.

        From a backlog (a large batch, or a task stopped at its limit) the commit runs in
        the background while the next batches are processed, `IN_FLIGHT` at most: the CPU
        of the rules and the broker's round trips overlap instead of adding up. A batch's
        states read through the batches in flight (`processor`); its transactions (or
        acks and offset commit) start only once those of the batch before are done, so
        every partition commits in order. Otherwise the commit is awaited here:
        back-to-back small transactions kept the local broker busier and raised latency
        at moderate load (measured: p50 ~100 ms instead of ~70 ms at 250 events/s,
        exactly_once)."""
        work, latencies = await self._prepare(batch)
        await self._inflight.settle(keep=IN_FLIGHT - 1)
        self._inflight.add(lambda: self._complete(work, latencies))
        backlog = self._behind or sum(len(m) for m in batch.values()) >= PIPELINE_RECORDS
        if not backlog:
            await self._settle()

    async def _prepare(
        self, batch: dict[TopicPartition, list[Any]]
    ) -> tuple[list[Work], list[tuple[Millis, Millis]]]:
        """Queue the batch's records, run every partition task, seal their changes."""
        now = wall_clock()
        for tp, messages in batch.items():
            owned = self.owned.get(tp.partition)
            if owned is None:
                continue  # revoked while polling: the new owner reads it
            for m in messages:
                record = Record(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
                owned.task.enqueue(record, now)
            if self._inflight:
                # let the batch in flight take its next step (a response in, the next
                # request out): otherwise its round trips wait until this one is processed
                await asyncio.sleep(0)
        work = []
        for p, owned in self.owned.items():
            tps = self._sources(p)
            caught_up, positions = set(), {}
            for topic, tp in tps.items():
                positions[tp] = position = await self._consumer.position(tp)
                end = self._consumer.last_stable_offset(tp)
                if end is None or end < 0:  # not known yet (no fetch answered), or no LSO
                    end = self._consumer.highwater(tp)
                owned.task.seen(topic, end, wall_clock())  # the fetcher may have moved it
                if end is not None and position >= end:
                    caught_up.add(topic)
            outs = owned.task.run(now, caught_up, MAX_RECORDS)
            # Commit where each source resumes: its first record still queued, else its
            # position (a position also steps over transaction markers, so lag reaches 0).
            queued = owned.task.positions()
            offsets = {}
            for topic, tp in tps.items():
                resume = queued.get(topic, positions[tp])
                if owned.committed.get(tp) != resume:
                    offsets[tp] = resume
            full = {tps[topic] for topic in owned.task.full()}
            self._held = (self._held - set(tps.values())) | full
            work.append(Work(owned, outs, owned.task.changelog(), offsets))
            if self._inflight:
                await asyncio.sleep(0)  # as above
        self._hold()
        self._behind = any(owned.task.more for owned in self.owned.values())
        wakes = [o.task.wake_at for o in self.owned.values() if o.task.wake_at is not None]
        self._wake = min(wakes, default=None)
        latencies, self.stats.latencies = self.stats.latencies, []
        return work, latencies

    async def _complete(self, work: list[Work], latencies: list[tuple[Millis, Millis]]) -> None:
        # a broker that stopped answering must not hold the worker forever: the batch
        # fails, and the loop retries it from the committed offsets
        await asyncio.wait_for(self._durable(work), COMMIT_TIMEOUT)
        self.exporter.observe_committed(latencies, wall_clock())

    async def _durable(self, work: list[Work]) -> None:
        if self.exactly_once:
            # one transaction per partition, all in flight together: the round trips of
            # the partitions overlap instead of adding up
            results = await asyncio.gather(
                *(transact(w, self.settings.app_id) for w in work), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        else:
            await flush(work, self._producer, self._consumer)

    def _sources(self, partition: int) -> dict[str, TopicPartition]:  # by topic
        return {t: TopicPartition(t, partition) for t in self._topics}

    def _hold(self) -> None:
        """Stop fetching sources whose queues are full, and those of partitions not yet
        taken over; fetch the others again."""
        held = self._held | {tp for p in self._pending for tp in self._sources(p).values()}
        assigned = self._consumer.assignment()
        paused = self._consumer.paused()
        self._consumer.pause(*[tp for tp in held if tp in assigned])
        self._consumer.resume(*[tp for tp in paused if tp not in held and tp in assigned])

    # ------------------------------------------------------------ rebalancing

    async def in_callback(self, step: Awaitable[None]) -> None:
        """aiokafka only logs a rebalance callback's exception: the loop raises it."""
        try:
            await step
        except Exception as exc:  # anything: it is raised again, by the loop
            self._fatal = exc

    async def revoked(self, tps: Iterable[TopicPartition]) -> None:
        # Eager rebalancing revokes everything; keep the tasks (and their warm state) until
        # the new assignment says which partitions really moved, but process nothing.
        async with self._lock:
            await self._settle_quietly()  # the batch in flight commits while we still own it
            self._paused = True

    async def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Drop the partitions that moved away; the new ones wait, unfetched, for the loop
        to take them over (`_take_over`): a restore inside the rebalance held the whole
        group up, and one that failed left the worker paused for good."""
        async with self._lock:
            await self._settle_quietly()
            partitions = {tp.partition for tp in tps}
            for p in sorted(set(self.owned) - partitions):
                owned = self.owned.pop(p)
                if owned.producer is not None:
                    await stop_failed(owned.producer)  # nothing of it is needed any more
                self.standby.give(p, owned.store)
                log.info("partition %d revoked", p)
            for owned in self.owned.values():
                # the consumer resumes a kept partition at its committed offsets, which are
                # where its queues start: read those records again rather than twice
                owned.task.discard()
            self._pending = partitions - set(self.owned)
            self._retry_at, self._take_over_backoff = 0.0, BACKOFF_FIRST
            self._hold()
            self.standby.follow(set(self.owned))  # pending partitions stay warm until taken
            self._paused = False
            if not self._pending:
                self.ready.set()
        await self.members.announce(sorted(self.owned))

    async def _take_over(self) -> set[int]:
        """Take the pending partitions over; returns those taken. One the broker refuses
        is tried again with backoff (`_retry_at`) while the others go on."""
        taken: set[int] = set()
        if time.monotonic() < self._retry_at:
            return taken
        refused: dict[int, BaseException] = {}
        for p in sorted(self._pending):
            try:
                self.owned[p] = await self.restorer.take_over(p)
            except (KafkaError, OSError, TimeoutError) as exc:
                refused[p] = exc
                continue
            self._pending.discard(p)
            taken.add(p)
            await self._seek_committed(p)
            if self._stop.is_set():
                return taken
        self._hold()
        wait, self._take_over_backoff = self._take_over_backoff, BACKOFF_FIRST
        if refused:
            log.warning("partitions not taken over, retrying in %.1f s: %r", wait, refused)
            self._take_over_backoff = min(wait * 2, BACKOFF_LAST)
            self._retry_at = time.monotonic() + wait
        else:
            self.ready.set()
            await self.members.announce(sorted(self.owned))
        return taken


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.in_callback(self.worker.revoked(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.worker.in_callback(self.worker.assigned(assigned))
