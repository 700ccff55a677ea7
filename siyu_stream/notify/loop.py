"""The notifier's consumer loop: `<app>-notify` over the gift and reminder topics.

Several notifiers share the work by partition (one consumer group). Per record: read it
(`schedule.parse_action`; unreadable -> dead letter), route it to the sinks that take its
kind and template and have no receipt for it yet (`ledger`), then send it at once, or
hold it until `not_before` (`schedule.decide`). Each sink's delivery ends in a receipt;
the partition's offset is committed only up to the first action not finished (`book`),
so held actions survive a crash or a rebalance. Past `max_pending_per_partition`
unfinished actions the partition is paused. Nothing a record or a sink does stops the
loop: it becomes a dead letter and a metric.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

import aiohttp
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from siyu_stream.core.clock import SECOND, Millis
from siyu_stream.core.deadletter import encode_bytes
from siyu_stream.core.errors import InvalidAction
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.client import client_options
from siyu_stream.notify.book import PartitionBook
from siyu_stream.notify.config import NotifyConfig
from siyu_stream.notify.ledger import Ledger
from siyu_stream.notify.metrics import NotifyMetrics, serve
from siyu_stream.notify.receipts import dead_letter, receipt, receipt_key
from siyu_stream.notify.schedule import Hold, Parsed, decide, parse_action
from siyu_stream.notify.sinks import SinkRunner, deliver
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

log = logging.getLogger("siyu_stream.notify")

MAX_RECORDS = 500
IDLE_PAUSE = 0.1
"""Sleep between empty fetches (noida-db answers them at once; see live/polling.py)."""
STOP_GRACE = 5.0
"""On SIGTERM, requests in flight get this long to finish before their partition commits."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.notifier.revoke(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.notifier.assign(list(assigned))


class Notifier:
    def __init__(
        self,
        settings: Settings,
        config: NotifyConfig,
        *,
        clock: Callable[[], Millis] = wall_clock,
        out: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.topology = Topology(settings)
        self.clock = clock
        self.out = out or sys.stdout
        self.metrics = NotifyMetrics()
        self.ledger = Ledger(settings, config.horizon_ms, config.max_delivered_ids)
        self.kind_of = dict(zip(self.topology.notify_inputs, ("gift", "reminder"), strict=True))
        self.books: dict[Any, PartitionBook] = {}
        self.flow_paused: set[Any] = set()
        self.loading: set[Any] = set()
        """Assigned partitions whose receipts are being read back: paused until then."""
        self.runners: list[SinkRunner] = []
        self.consumer: Any = None
        self._stop = asyncio.Event()
        self.running = False
        self.outcomes: Counter[str] = Counter()
        """Finished deliveries by outcome (the demo's summary line)."""

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        s = self.settings
        await ensure_topics(s.kafka, self.topology.specs())
        session = aiohttp.ClientSession()
        self.runners = [
            SinkRunner(sink, self.config, session, self.clock, self.out)
            for sink in self.config.sinks
        ]
        await self.ledger.start()
        self.consumer = AIOKafkaConsumer(
            **client_options(s.kafka),
            group_id=self.topology.notify_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # exactly_once workers write in transactions: never deliver an aborted action
            isolation_level="read_committed",
            max_poll_records=MAX_RECORDS,
            # the worker's: a crashed notifier's partitions move after the same time
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
        )
        self.consumer.subscribe(self.topology.notify_inputs, listener=_Rebalance(self))
        web = None
        if self.config.metrics_port:
            c = self.config
            web = await serve(self.metrics, c.metrics_host, c.metrics_port, lambda: self.running)
        await self.consumer.start()
        self.running = True
        log.info(
            "notifier started: group %s, sinks %s",
            self.topology.notify_group,
            ", ".join(f"{r.sink.name} ({r.sink.type})" for r in self.runners),
        )
        try:
            await self._loop()
        finally:
            self.running = False
            await self._shutdown()
            await self.consumer.stop()
            await self.ledger.stop()
            await session.close()
            if web is not None:
                await web.cleanup()
            log.info("notifier stopped")

    async def _loop(self) -> None:
        next_commit = 0.0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=10, max_records=MAX_RECORDS)
                if not batch:
                    await self._idle()
                now = self.clock()
                for tp, records in batch.items():
                    book = self.books.get(tp)
                    if book is None:
                        # fetched before its receipts were read back, or revoked since:
                        # never skipped, read again once it is ours and ready
                        if tp in self.consumer.assignment():
                            self.consumer.seek(tp, records[0].offset)
                        continue
                    for record in records:
                        self._take(book, record, now)
                self._release(self.clock())
                self._flow()
                if loop.time() >= next_commit:
                    next_commit = loop.time() + self.config.commit_interval_seconds
                    await self._commit()
                    self._gauges()
            except KafkaError as exc:  # the broker away: aiokafka reconnects; so do we
                log.warning("consumer loop: %r; retrying", exc)
                await asyncio.sleep(1.0)

    async def _idle(self) -> None:
        # pause what is fetched while sleeping, resume only what this paused
        held = self.consumer.paused()
        paused = [tp for tp in self.consumer.assignment() if tp not in held]
        self.consumer.pause(*paused)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), IDLE_PAUSE)
        finally:
            # a rebalance during the sleep may have taken some away, or paused them to
            # read their receipts first
            assigned = self.consumer.assignment()
            busy = self.loading | self.flow_paused
            self.consumer.resume(*[tp for tp in paused if tp in assigned and tp not in busy])

    # ---------------------------------------------------------------- records

    def _take(self, book: PartitionBook, record: Any, now: Millis) -> None:
        try:
            action = parse_action(record.value, self.kind_of[record.topic])
        except InvalidAction as exc:
            book.take(record.offset, 1)
            self._spawn(book, self._reject(book, record, str(exc)))
            return
        runners = [
            r
            for r in self.runners
            if r.sink.takes(action.kind, action.template)
            and not self.ledger.done(book.partition, receipt_key(action.action_id, r.sink.name))
        ]
        book.take(record.offset, len(runners))
        if not runners:
            return
        staleness = self.config.staleness_ms(action.kind, action.template)
        decision = decide(action, now, staleness)
        if isinstance(decision, Hold):
            book.hold(decision.until, record.offset, now, (action, runners))
            return
        for runner in runners:
            self._spawn(book, self._deliver(book, record.offset, action, runner))

    def _release(self, now: Millis) -> None:
        for book in self.books.values():
            for held in book.due(now):
                action, runners = held.payload
                for runner in runners:
                    self._spawn(book, self._deliver(book, held.offset, action, runner))

    def _spawn(self, book: PartitionBook, work: Any) -> None:
        task = asyncio.create_task(work)
        book.tasks.add(task)
        task.add_done_callback(book.tasks.discard)
        task.add_done_callback(_log_failure)

    async def _deliver(
        self, book: PartitionBook, offset: int, action: Parsed, runner: SinkRunner
    ) -> None:
        name = runner.sink.name
        depth = self.metrics.queue_depth.labels(name)
        depth.inc()
        try:
            final = await deliver(runner, action, self.metrics)
        finally:
            depth.dec()
        now = self.clock()
        alive = lambda: not book.revoked  # noqa: E731
        if final.outcome in ("dead", "failed"):
            where = {
                "topic": book.topic,
                "partition": book.partition,
                "offset": offset,
                "key": action.customer_id,
            }
            reason = f"sink {name}: {final.outcome} after {final.attempts} attempts"
            record = dead_letter(where, action.raw, reason, now=now, sink=name, answer=final.answer)
            await self.ledger.write(
                self.topology.notify_deadletter, book.partition, action.action_id, record, alive
            )
            self.metrics.deadletters.labels(final.outcome).inc()
        made = receipt(
            action, name, final.outcome, attempts=final.attempts, now=now, answer=final.answer
        )
        key = receipt_key(action.action_id, name)
        await self.ledger.write(self.topology.deliveries, book.partition, key, made, alive)
        self.ledger.remember(book.partition, key, now)
        self.metrics.deliveries.labels(name, final.outcome).inc()
        self.outcomes[final.outcome] += 1
        if final.outcome == "delivered":
            self.metrics.latency.labels(name).observe(max(0, now - action.ready_at) / SECOND)
        book.finish(offset)

    async def _reject(self, book: PartitionBook, record: Any, reason: str) -> None:
        where = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": encode_bytes(record.key),
        }
        value = dead_letter(where, record.value, reason, now=self.clock())
        alive = lambda: not book.revoked  # noqa: E731
        await self.ledger.write(self.topology.notify_deadletter, book.partition, None, value, alive)
        self.metrics.deadletters.labels("unreadable").inc()
        book.finish(record.offset)

    @property
    def held(self) -> int:
        return sum(len(book.held) for book in self.books.values())

    # ---------------------------------------------------------------- flow and commits

    def _flow(self) -> None:
        bound = self.config.max_pending_per_partition
        for tp, book in self.books.items():
            if tp not in self.flow_paused and book.pending >= bound:
                self.consumer.pause(tp)
                self.flow_paused.add(tp)
                log.warning(
                    "%s[%d]: %d actions pending, paused", book.topic, tp.partition, book.pending
                )
            elif tp in self.flow_paused and book.pending <= bound // 2:
                self.consumer.resume(tp)
                self.flow_paused.discard(tp)

    async def _commit(self, only: list[Any] | None = None) -> None:
        offsets = {}
        for tp, book in self.books.items():
            position = book.position()
            if (only is None or tp in only) and position is not None and position != book.committed:
                offsets[tp] = OffsetAndMetadata(position, "")
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance under way: the next owner reads from before
            log.warning("commit failed: %r", exc)
            return
        for tp, meta in offsets.items():
            owned = self.books.get(tp)  # a rebalance may have taken it during the commit
            if owned is not None:
                owned.committed = meta.offset

    def _gauges(self) -> None:
        now = self.clock()
        m = self.metrics
        held = sum(len(b.held) for b in self.books.values())
        oldest = min(
            (s for b in self.books.values() if (s := b.oldest_held_since()) is not None),
            default=None,
        )
        m.held.set(held)
        m.oldest_held.set(0 if oldest is None else max(0, now - oldest) / SECOND)
        m.paused.set(len(self.flow_paused))
        m.owned.set(len(self.books))
        for book in self.books.values():
            m.pending.labels(book.topic, str(book.partition)).set(book.pending)
        self.ledger.prune(now)

    # ---------------------------------------------------------------- rebalancing

    async def assign(self, assigned: list[Any]) -> None:
        # aiokafka may fetch for a new partition while this listener awaits: it stays
        # paused, and has no book (its records are sought back), until the receipts that
        # stop re-sends are in
        new = [tp for tp in assigned if tp not in self.books]
        self.consumer.pause(*new)
        self.loading |= set(new)
        loaded = 0
        try:
            loaded = await self.ledger.load(sorted({tp.partition for tp in new}), self.clock())
        except KafkaError as exc:
            # better to go on than to stall: what was delivered may go out again, with the
            # same idempotency key
            log.error("receipts of %s not read back (%r): repeats possible", new, exc)
        finally:
            self.loading -= set(new)
        for tp in new:
            self.books[tp] = PartitionBook(tp.topic, tp.partition)
            log.info("partition %s[%d] assigned", tp.topic, tp.partition)
        current = self.consumer.assignment()
        self.consumer.resume(*[tp for tp in new if tp in current])
        log.info("assigned %d partitions: %d receipts read back", len(new), loaded)

    async def revoke(self, revoked: list[Any]) -> None:
        await self._commit(only=revoked)
        for tp in revoked:
            book = self.books.pop(tp, None)
            self.flow_paused.discard(tp)
            if book is None:
                continue
            book.revoked = True
            for task in list(book.tasks):
                task.cancel()
            with contextlib.suppress(KeyError):  # never set if no gauge update ran
                self.metrics.pending.remove(book.topic, str(book.partition))
            log.info("partition %s[%d] revoked", tp.topic, tp.partition)
        remaining = {tp.partition for tp in self.books}
        for partition in {tp.partition for tp in revoked} - remaining:
            self.ledger.forget(partition)

    async def _shutdown(self) -> None:
        tasks = [t for b in self.books.values() for t in b.tasks]
        if tasks:  # requests in flight may finish; held actions stay for the next owner
            await asyncio.wait(tasks, timeout=STOP_GRACE)
        await self._commit()
        for book in self.books.values():
            book.revoked = True
            for task in list(book.tasks):
                task.cancel()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("delivery task failed", exc_info=task.exception())
