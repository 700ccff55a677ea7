"""One replay job: the merge order over the partitions it owns (docs/design.md §5).

`replay` runs one job over every partition, `replay --jobs N` one per process (`jobs`).
Both take the records of a partition in the live worker's merge order (the head with the
smallest key of its queues; a referral credit right after the order that earned it), and
across partitions the head with the smallest (key, source) first, as one merge over all
queues would. That global order has a shape that lets jobs run apart:

- a partition's own input records come in an order that credits never change, so each
  gets a **group**: the running maximum of its partition's (key, source) so far. Groups
  are distinct across partitions, and the global order is by group: a record behind a
  larger one in its queue ("late") goes right after it, in the same group;
- a credit belongs to the group of the order that earned it: it is taken within that
  group, before any record of a later group. So a job needs, before a record of group g,
  the credits of every earlier group, and no others;
- each job therefore promises its peers a **bound**: no credit it sends from now on has a
  group below it. The bound looks ahead: only the orders of a customer who joined through
  a referrer in another job, up to and including the first purchase, can earn such a
  credit, and their group is at least the running maximum of their queue. A job takes a
  record of group g once every peer's bound is above g; the job with the smallest next
  group can always go on.

Every step gets a tag, (phase, group, sequence), sorted as `--jobs 1` emits: the parent
merges the jobs' outputs by tag into the same bytes. Rejected lines are dead-lettered when
their partition reads them: before any step (in line order) or right after the step that
made the partition read further. A line without a customer id belongs to partition 0.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Final

from siyu_stream.core.actions import ReferralCredit
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import KIND, Chat, Join, Order
from siyu_stream.eventtime.keys import customer_partition
from siyu_stream.eventtime.partition import credit_key, sort_key
from siyu_stream.observe.observer import increment
from siyu_stream.replay.engine import Engine
from siyu_stream.replay.lines import Line, Revive, checked
from siyu_stream.replay.parts import (
    CREDIT,
    HIGHEST,
    LOWEST,
    SOURCE,
    Credit,
    Entry,
    Key,
    Out,
    Part,
    Peers,
    Tag,
)
from siyu_stream.replay.parts import key as merge_key

LOOKAHEAD = 100_000
"""Records a partition reads ahead to find the next record of a queue that is empty (the
live worker waits for a lagging topic partition instead); beyond it, it goes on without."""
HELD = 200_000
"""Lines read and not yet visible that a job holds in memory; more wait in temporary files
(`spill.Backlog`). A partition whose customers stop appearing long before the file ends
reads the rest of the file at its next fill, for the other partitions."""
READ_AHEAD = 20_000
"""Lines a job with peers keeps read (not yet visible) to look ahead for its bound."""
WAIT_READ_AHEAD = 2 * READ_AHEAD  # lines it may have read while it waits for a peer
LOOK_EVERY = 16
"""Steps between two looks at the peers' pipes (a system call each) while nothing waits:
what they sent only raises their bounds, and a merge that finds a bound too low for its
next step looks at once (`_wait`)."""
PUBLISH_EVERY = 64
"""Steps between two messages to the peers (a pickle and a system call each) unless one
waits for this job. Replay of the year's history, 4 partitions, 2 jobs, looking and
publishing every (1, 16) steps: 6.2 s; (8, 16): 5.9 s; (8, 32): 5.8 s; (16, 64): 5.6 s;
(32, 128): 5.9 s, the peers waiting longer. One job: 8.9 s."""


QUEUE_OF: Final = {Order: 0, Chat: 1, Join: 2}
"""The index of an event type's input queue in `Part.inputs`."""


class Job:
    def __init__(  # noqa: PLR0917 - the run's parameters, passed by `jobs`
        self,
        engine: Engine,
        lines: Iterator[tuple[int, int, Line]],
        owned: frozenset[int],
        job_of: list[int],
        out: Out,
        peers: Peers | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.lines = lines
        self.owned = owned
        self.job_of = job_of
        self.me = job_of[min(owned)]
        self.out = out
        # bound once: a call through the `Out` protocol is looked up by name (compiled)
        self.begin, self.end = out.begin, out.end
        self.peers = peers
        self.progress = progress
        revive = Revive(engine.rules, engine.now)
        self.parts = [Part(p, revive) for p in range(len(engine.partitions))]
        for p in owned:
            self.parts[p].owned = True
        self.exhausted = False
        self.read = 0
        self.unseen = 0  # lines read, not yet made visible or rejected
        self.seq = 0
        self.foreign: list[tuple[Key, int, ReferralCredit]] = []
        self.outgoing: list[tuple[int, Credit]] = []
        self.since = 0
        # the peers' `low` and `need`, copied after each receive and send: the merge asks
        # both every step, and a call through the protocol costs more than the step's
        # own bookkeeping (compiled: a Python-level method call)
        self.low = LOWEST
        self.need: Key | None = None

    # ---------------------------------------------------------------- reading
    def _partition(self, customer_id: str) -> int:
        return customer_partition(customer_id, len(self.parts))

    def _read(self) -> bool:
        item = next(self.lines, None)
        if item is None:
            self.exhausted = True
            return False
        ordinal, p, line = item
        self.read += 1
        if self.progress is not None and self.read % 4096 == 0:
            self.progress(ordinal + 1)
        line, part = checked(line, self.engine.now, self.engine.rules), self.parts[p]
        part.pending.append(ordinal, line, spill=self.unseen >= HELD)
        self.unseen += 1
        if self.peers is not None and line.error is None:
            self._note(part, line)
        return True

    def _note(self, part: Part, line: Line) -> None:
        """Look-ahead bookkeeping: the records that may earn a credit for another job."""
        event = line.event
        assert event is not None
        kind = QUEUE_OF[type(event)]
        if kind == 1:
            return
        key = merge_key(sort_key(event), 4 * part.index + kind)
        i = kind // 2  # order 0, join 1
        part.tops[i] = max(part.tops[i], key)
        customer = event.customer_id
        if isinstance(event, Order):
            purchase = event.status == "paid" and not event.membership
            if purchase and customer in part.referred:
                part.entries[0].append(Entry(part.tops[0], customer, part.read[0]))
            part.queued[customer] = part.queued.get(customer, 0) + 1
        elif isinstance(event, Join):
            referrer = event.referrer_id
            elsewhere = referrer is not None and referrer != customer
            if elsewhere and self.job_of[self._partition(referrer or "")] != self.me:
                part.referred.add(customer)
                # orders read from now on have entries; an order read before this join
                # may still be taken after it: the join stands for those
                if part.queued.get(customer, 0) > 0:
                    part.entries[1].append(Entry(part.tops[1], customer, part.read[1]))
        part.read[i] += 1

    def _fill(self, part: Part, *, start: bool = False) -> None:
        """Make the partition's next records visible: until each input queue has a head,
        the input ends or LOOKAHEAD records are visible. Rejected lines go on the way."""
        keys = part.keys
        while (keys[0] is None or keys[1] is None or keys[2] is None) and part.visible < LOOKAHEAD:
            if not part.pending:
                if not self._read():
                    break
                continue
            ordinal, line = part.pending.popleft()
            self.unseen -= 1
            if line.error is not None:
                self._reject(line, line.error.full_reason, (0, LOWEST, ordinal) if start else None)
                continue
            event = line.event
            assert event is not None
            kind = QUEUE_OF[type(event)]
            part.push(kind, merge_key(sort_key(event), 4 * part.index + kind), line)
            part.visible += 1
        part.refresh()

    def _reject(self, line: Line, reason: str, tag: Tag | None, *, count: bool = True) -> None:
        if count:  # (a step the rules rejected is counted by the engine)
            kind = KIND[type(line.event)] if line.event is not None else "?"
            increment(self.engine.stats.events, (kind, "rejected"))
        if tag is not None:
            self.begin(tag)
        self.out.dead(line, reason)
        if tag is not None:
            self.end()

    # ---------------------------------------------------------------- the merge
    def _head(self) -> tuple[Key, Key, Part, int] | None:
        """(key, group, partition, queue: 0-2 input, 3 credit) of the next own step."""
        best: Part | None = None
        low: Key | None = None
        for part in self.parts:
            key = part.head
            if key is not None and (low is None or key < low):
                best, low = part, key
        if best is None or low is None:
            return None
        if best.head_queue == CREDIT:
            return low, best.credits[0][1], best, CREDIT
        return low, max(best.high, low), best, best.head_queue

    def run(self) -> None:
        for p in sorted(self.owned):
            self._fill(self.parts[p], start=True)
        peers = self.peers
        while True:
            if peers is not None and self.seq % LOOK_EVERY == 0:
                for item in peers.receive(block=False):
                    heapq.heappush(self.foreign, item)
                self.low, self.need = peers.low, peers.need
            head = self._head()
            if self.foreign and (head is None or self.foreign[0][0] < head[1]):
                group = self.foreign[0][0]
                # every credit of an earlier group is here once the other peers are past it
                assert peers is not None
                if not peers.allows(group, self.job_of[group[SOURCE] // 4]):
                    self._wait(group)
                    continue
                group, rank, credit = heapq.heappop(self.foreign)
                self._credit(credit, (1, group, rank))
                continue
            if head is None:
                if peers is None or (peers.done() and not self.foreign):
                    break
                self._wait(None)
                continue
            _, group, part, kind = head
            if (
                kind != CREDIT
                and peers is not None
                and not (self.low > group or peers.allows(group))
            ):
                self._wait(group)
                continue
            self.seq += 1
            if kind == CREDIT:
                _, _, credit = part.credits.popleft()
                part.refresh()
                if part.index in self.owned:
                    self._credit(credit, (1, group, self.seq))
                else:
                    self.outgoing.append((self.job_of[part.index], (group, self.seq, credit)))
            else:
                self._input(part, kind, group)
            if peers is not None:
                self.since += 1
                need = self.need
                if self.since >= PUBLISH_EVERY or (need is not None and self.bound() > need):
                    self._publish(None)
        for part in self.parts:  # every line taken: their temporary files go
            part.pending.close()
        if peers is not None:
            self._publish(None)

    def _wait(self, need: Key | None) -> None:
        """Tell the peers what the merge waits for, and read on (lines it decodes later
        anyway) while nothing comes: a peer is often a few steps away. Then block."""
        peers = self.peers
        assert peers is not None
        self._publish(need)
        heard = peers.heard
        credits: list[Credit] = []
        while peers.heard == heard and self.unseen < WAIT_READ_AHEAD and not self.exhausted:
            for _ in range(8):  # ~0.1 ms of decoding between looks
                self._read()
            credits = peers.receive(block=False)
        if peers.heard == heard:
            credits = peers.receive(block=True)
        for item in credits:
            heapq.heappush(self.foreign, item)
        self.low, self.need = peers.low, peers.need

    def _publish(self, need: Key | None) -> None:
        assert self.peers is not None
        self.peers.send(self.outgoing, self.bound(), need)
        self.low, self.need = self.peers.low, self.peers.need
        self.outgoing = []
        self.since = 0

    def _input(self, part: Part, kind: int, group: Key) -> None:
        line = part.take(kind)
        part.visible -= 1
        part.refresh()
        part.high = group
        tag: Tag = (1, group, self.seq)
        self.begin(tag)
        event = line.event
        assert event is not None
        engine = self.engine
        try:
            step = engine.apply(event, engine.partitions[part.index])
        except InvalidEvent as exc:
            self._reject(line, exc.full_reason, None)
        else:
            if step.outcome == "rejected":
                self._reject(line, step.reason or "rejected", None, count=False)
        if kind != 1:
            part.taken[kind // 2] += 1
            if kind == 0 and self.peers is not None:
                left = part.queued[event.customer_id] - 1
                if left:
                    part.queued[event.customer_id] = left
                else:
                    del part.queued[event.customer_id]
        self._route(group)
        self._fill(part)
        self.end()

    def _credit(self, credit: ReferralCredit, tag: Tag) -> None:
        self.begin(tag)
        self.engine.credit(credit)
        self._route(tag[1])
        self.end()

    def _route(self, group: Key) -> None:
        """Queue the credits the step emitted on their referrers' partitions (another job's:
        queued here all the same, to be sent when the merge takes it)."""
        for credit in self.engine.credits:
            q = self._partition(credit.referrer_id)
            self.parts[q].credits.append(
                (merge_key(credit_key(credit), 4 * q + CREDIT), group, credit)
            )
            self.parts[q].refresh()
        self.engine.credits.clear()

    # ---------------------------------------------------------------- look-ahead
    def bound(self) -> Key:
        """No credit this job sends from now on has a group below this.

        A credit's group is that of the order that earned it, which is at least the
        partition's running maximum and at least every key queued before it in its
        queue. Only a customer who joined through a referrer in another job and has not
        bought yet can earn one: their queued orders and referral joins are `entries`
        (the largest key read so far when read); lines not read yet may be any order or
        join, at least the largest of their type read so far."""
        while self.unseen < READ_AHEAD and self._read():
            pass
        bound = HIGHEST
        store = self.engine.store
        for part in self.parts:
            if part.credits and part.index not in self.owned:
                bound = min(bound, part.credits[0][1])
            if part.index not in self.owned:
                continue
            heads = [key for key in part.keys if key is not None]
            if not heads:  # nothing visible: the partition has read all its lines
                continue
            low = HIGHEST if self.exhausted else min(part.tops)
            for i, entries in enumerate(part.entries):
                while entries:
                    entry = entries[0]
                    state = store.get(entry.customer)
                    if state is not None and state.orders > 0:
                        entries.popleft()  # bought: never earns a credit again
                    elif entry.seq < part.taken[i] and (
                        i == 0 or entry.customer not in part.queued
                    ):
                        entries.popleft()  # taken (a join: no order it came after is left)
                    else:
                        low = min(low, entry.low)
                        break
            bound = min(bound, max(part.high, min(heads), low))
        return bound

    # ---------------------------------------------------------------- the end
    def finish(self, until: int | None) -> None:
        """Fire each owned partition's timers up to `until` (None: its own clock)."""
        for p in sorted(self.owned):
            partition = self.engine.partitions[p]
            self.seq += 1
            self.begin((2, (0, 0, "", p), self.seq))
            target = until if until is not None else partition.clock
            if target is not None:
                partition.advance(target)
            self.end()
        if self.engine.credits:  # timers emit none today
            msg = "a timer emitted a referral credit: replay jobs cannot route it"
            raise RuntimeError(msg)
