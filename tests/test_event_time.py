"""Live = replay under lag: the partition tasks, fed in any batching, give replay's bytes.

A tiny in-memory "Kafka" keeps one log per topic partition; polls deliver arbitrary
prefixes of them; a task's source counts as caught up when everything produced to it has
been delivered. What the tasks emit is compared with `replay` over the same records in
production order (no broker here: the broker tests are in tests/integration).
"""

from __future__ import annotations

import io
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siyu_stream.core.clock import DAY, HOUR, MINUTE, Millis, format_rfc3339, parse_rfc3339
from siyu_stream.core.ruleset import Rules
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.live.processor import PartitionTask
from siyu_stream.live.records import Out, Record
from siyu_stream.observe.observer import Observer, Stats
from siyu_stream.replay.run import replay
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

PARTITIONS = 4
TOPOLOGY = Topology(Settings(api_auth=False, partitions=PARTITIONS))
RULES = Rules()
GRACE = 2_000
FOREVER = 10**12
"""idle_ms: a task never goes on without a lagging source (the merge is then exact)."""
T0 = 1_772_330_400_000  # 2026-03-01T02:00:00Z
TOPIC = {"order": "siyu.orders", "chat": "siyu.chats", "join": "siyu.joins"}


class Broker:
    """Logs per (topic, partition), what each task was handed of them, and the outputs."""

    def __init__(self, idle_ms: Millis = FOREVER, reorder_ms: Millis = 0) -> None:
        self.logs: dict[tuple[str, int], list[Record]] = defaultdict(list)
        self.delivered: dict[tuple[str, int], int] = defaultdict(int)
        self.tasks = {
            p: PartitionTask(
                RULES,
                TOPOLOGY,
                p,
                {},
                Observer(Stats(), RULES),
                idle_ms=idle_ms,
                grace_ms=GRACE,
                reorder_ms=reorder_ms,
            )
            for p in range(PARTITIONS)
        }
        self.produced: list[bytes] = []
        self.actions: list[bytes] = []

    def produce(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        p = partition_for(key, PARTITIONS) if partition is None else partition
        log = self.logs[(topic, p)]
        log.append(Record(topic, p, len(log), key, value))

    def event(self, event: dict[str, Any]) -> None:
        value = orjson.dumps(event)
        self.produced.append(value)
        self.produce(TOPIC[event["type"]], event["customer_id"].encode(), value)

    def poll(self, rng: random.Random, now: Millis = T0 + 1000 * DAY) -> None:
        """Hand every task an arbitrary part of what it has not seen, in log order."""
        for (topic, p), log in sorted(self.logs.items()):
            start = self.delivered[(topic, p)]
            end = rng.randint(start, len(log))
            for record in log[start:end]:
                self.tasks[p].enqueue(record, now)
            self.delivered[(topic, p)] = end

    def caught_up(self, p: int) -> set[str]:
        topics = [*TOPIC.values(), TOPOLOGY.commands]
        return {t for t in topics if self.delivered[(t, p)] == len(self.logs[(t, p)])}

    def fetch(self, when: Millis) -> None:
        """Hand every task all it has not seen, fetched at wall clock `when`, and run."""
        for (topic, p), log in self.logs.items():
            for record in log[self.delivered[(topic, p)] :]:
                self.tasks[p].enqueue(record, when)
            self.delivered[(topic, p)] = len(log)
        self.run(when)

    def run(self, now: Millis, limit: int | None = None) -> None:
        for p, task in self.tasks.items():
            self.deliver(task.run(now, self.caught_up(p), limit))
            task.committed()

    def deliver(self, outs: list[Out]) -> None:
        for out in outs:
            if out.topic == TOPOLOGY.commands:
                assert out.key is not None
                self.produce(out.topic, out.key, out.value)
            elif out.topic != TOPOLOGY.changelog:
                self.actions.append(out.value)

    def drain(self, now: Millis) -> None:
        """Deliver everything and run until nothing is left to do."""
        rng = random.Random(0)
        while True:
            self.poll(rng, now)
            self.run(now)
            pending = any(self.delivered[k] < len(log) for k, log in self.logs.items()) or any(
                len(t.queues) for t in self.tasks.values()
            )
            if not pending and not any(t.more for t in self.tasks.values()):
                return


def replayed(produced: list[bytes], until: Millis, now: Millis, tmp: Path) -> list[bytes]:
    path = tmp / "input.jsonl"
    path.write_bytes(b"".join(v + b"\n" for v in produced))
    out = io.BytesIO()
    replay([path], out, RULES, until=until, now=now, partitions=PARTITIONS)
    return out.getvalue().splitlines()


def by_id(actions: list[bytes]) -> dict[str, bytes]:
    ids = {orjson.loads(a)["action_id"]: a for a in actions}
    assert len(ids) == len(actions), "an action was emitted twice"
    return ids


def at(ms: Millis) -> str:
    return format_rfc3339(ms)


def chat(event_id: str, when: Millis, direction: str, customer: str = "c1") -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "chat",
        "customer_id": customer,
        "occurred_at": at(when),
        "direction": direction,
        "channel": "wecom",
        "staff_id": "s1",
    }


def join(event_id: str, when: Millis, customer: str = "c1", **kw: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "join",
        "customer_id": customer,
        "occurred_at": at(when),
        "action": "join",
        "carrier": "wecom",
        **kw,
    }


def templates(actions: list[bytes]) -> list[str]:
    return [
        str(orjson.loads(a)["detail"].get("template"))
        for a in actions
        if orjson.loads(a)["kind"] == "reminder"
    ]


def test_a_lagging_worker_invents_no_reply_overdue(tmp_path: Path) -> None:
    """An hour behind: join (t-61), inbound (t-60) delivered; the reply (t-40) not yet.
    The chat topic is not caught up, so the wall clock fires nothing ahead of it."""
    now = T0 + 10 * DAY
    broker = Broker()
    for event in (
        join("j", now - 61 * MINUTE),
        chat("in", now - 60 * MINUTE, "inbound"),
        chat("out", now - 40 * MINUTE, "outbound"),
    ):
        broker.event(event)
    p = partition_for(b"c1", PARTITIONS)
    for topic in ("siyu.joins", "siyu.chats"):
        broker.tasks[p].enqueue(broker.logs[(topic, p)][0], now)
        broker.delivered[(topic, p)] = 1
    broker.run(now)
    assert "reply_overdue" not in templates(broker.actions)
    broker.drain(now)
    assert "reply_overdue" not in templates(broker.actions)
    expected = replayed(broker.produced, now - GRACE, now, tmp_path)
    assert by_id(broker.actions) == by_id(expected)


def test_a_lagging_worker_loses_no_reply_overdue(tmp_path: Path) -> None:
    """An inbound at t-120 and a reply at t-75 in one poll: the SLA timer (due t-90) fires
    on stream time before the late reply, as replay fires it."""
    now = T0 + 10 * DAY
    broker = Broker()
    broker.event(chat("in", now - 120 * MINUTE, "inbound"))
    broker.event(chat("out", now - 75 * MINUTE, "outbound"))
    broker.drain(now)
    assert templates(broker.actions).count("reply_overdue") == 1
    expected = replayed(broker.produced, now - GRACE, now, tmp_path)
    assert by_id(broker.actions) == by_id(expected)


@pytest.mark.parametrize("reorder_ms", [500, 0])
def test_a_join_fetched_just_after_a_later_order_is_taken_first(
    tmp_path: Path, reorder_ms: Millis
) -> None:
    """Live traffic: a referred customer joins, then buys 50 ms later. On a cluster the
    order's broker may answer first, so the task has the order while the join topic
    looks caught up. With `reorder_ms` the order waits until it has been there that long;
    the join, fetched 100 ms later, is taken first, as replay takes it. Without it the
    join is late and the order was a stranger's, which the second case shows."""
    now = T0 + 10 * DAY
    broker = Broker(idle_ms=0, reorder_ms=reorder_ms)
    fetch = broker.fetch
    sent = now - 200
    order = {"event_id": "o", "type": "order", "customer_id": "c1", "occurred_at": at(sent + 50)}
    broker.event(
        order | {"order_id": "o1", "status": "paid", "amount": "99.00", "channel": "tmall"}
    )
    fetch(now)  # the order's broker answered first
    p = partition_for(b"c1", PARTITIONS)
    assert broker.tasks[p].wake_at == (now + reorder_ms if reorder_ms else None)
    broker.event(join("j", sent, source="referral", referrer_id="c9"))
    fetch(now + 100)
    broker.run(now + 600)
    fetch(now + 600)  # the referral credit, through the command topic
    broker.run(now + 1200)
    assert not any(task.queues for task in broker.tasks.values())
    expected = replayed(broker.produced, now + 1200 - GRACE, now + 1200, tmp_path)
    if reorder_ms:
        assert by_id(broker.actions) == by_id(expected)
    else:
        assert by_id(broker.actions) != by_id(expected)


@pytest.mark.parametrize("rekeyed", [False, True])
def test_a_referral_credit_waits_out_the_reorder_window_once_not_at_each_hop(
    tmp_path: Path, *, rekeyed: bool
) -> None:
    """A referred customer's first order earns their referrer (another partition) a
    credit, which travels through the command topic. The order waits out `reorder_ms`
    where it is taken; the credit is taken as soon as it arrives, not after a second
    window. Also for an order produced to the wrong partition: it is re-keyed at once,
    waits its window where its customer lives, and its credit does not wait again."""
    reorder = 500
    broker = Broker(idle_ms=0, reorder_ms=reorder)
    now = T0 + 10 * DAY
    referred, referrer = partition_for(b"c1", PARTITIONS), partition_for(b"c9", PARTITIONS)
    assert referred != referrer
    broker.event(join("j9", now - DAY, customer="c9"))
    broker.event(join("j1", now - 2 * MINUTE, source="referral", referrer_id="c9"))
    order = {"event_id": "o", "type": "order", "customer_id": "c1", "occurred_at": at(now - 100)}
    order |= {"order_id": "o1", "status": "paid", "amount": "99.00", "channel": "tmall"}
    value = orjson.dumps(order)
    broker.produced.append(value)
    wrong = next(p for p in range(PARTITIONS) if p not in {referred, referrer})
    broker.produce(TOPIC["order"], b"c1", value, partition=wrong if rekeyed else None)
    broker.fetch(now)  # all of it, caught up: the order waits its window
    start = now
    if rekeyed:
        assert broker.logs[(TOPOLOGY.commands, referred)], "re-keyed at once"
        start = now + 1
        broker.fetch(start)  # the re-keyed order reaches its customer's partition
    credits = broker.logs[(TOPOLOGY.commands, referrer)]
    broker.run(start + reorder - 1)
    assert not credits, "the order was taken before its window was over"
    broker.run(start + reorder)
    assert credits, "the credit goes through the command topic"
    broker.fetch(start + reorder + 1)  # the credit arrives
    assert not any(task.queues for task in broker.tasks.values()), "the credit waited again"
    end = start + reorder + 1
    expected = replayed(broker.produced, end - GRACE, end, tmp_path)
    assert by_id(broker.actions) == by_id(expected)


def test_same_millisecond_join_and_order_take_one_order(tmp_path: Path) -> None:
    """A referred customer joins and buys in the same millisecond, the order produced
    first: both are buffered, so the merge takes the join first (as replay does) and the
    referrer is credited."""
    when = T0 + DAY
    broker = Broker()
    order = {
        "event_id": "o",
        "type": "order",
        "customer_id": "new",
        "occurred_at": at(when),
        "order_id": "o1",
        "status": "paid",
        "amount": "100",
        "channel": "tmall",
    }
    broker.event(order)
    broker.event(join("j", when, customer="new", referrer_id="ref"))
    broker.drain(when + HOUR)
    gifts = [orjson.loads(a) for a in broker.actions if orjson.loads(a)["kind"] == "gift"]
    assert [(g["customer_id"], g["detail"]["code"]) for g in gifts] == [("ref", "referral_reward")]
    expected = replayed(broker.produced, when + HOUR - GRACE, when + HOUR, tmp_path)
    assert by_id(broker.actions) == by_id(expected)


def test_the_partition_clock_never_moves_back_and_survives_a_restart() -> None:
    broker = Broker()
    broker.event(chat("in", T0 + 5 * HOUR, "inbound"))
    broker.event(chat("late", T0 + 1 * HOUR, "inbound", customer="c1"))
    broker.drain(T0 + 5 * HOUR)
    p = partition_for(b"c1", PARTITIONS)
    task = broker.tasks[p]
    assert task.clock == T0 + 5 * HOUR  # the late chat did not move it back
    restarted = PartitionTask(RULES, TOPOLOGY, p, task.store, Observer(Stats(), RULES))
    assert restarted.clock == T0 + 5 * HOUR  # restored from the store with the states


# ------------------------------------------------------------------ the property


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of a few customers over weeks, produced in merge order (event time, then
    join < chat < order, then event id: what the guarantee asks of producers): joins
    (some through a referrer on the same partition), chats both ways, orders and refunds,
    memberships; gaps long enough for every timer to fire."""
    customers = [f"c{n}" for n in range(6)]
    clock = T0
    events: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 40))):
        clock += draw(st.sampled_from([0, 0, MINUTE, 20 * MINUTE, 2 * HOUR, 3 * DAY, 40 * DAY]))
        customer = draw(st.sampled_from(customers))
        kind = draw(st.sampled_from(["order", "refund", "membership", "in", "out", "join"]))
        eid = f"e{n}"
        if kind in ("in", "out"):
            events.append(chat(eid, clock, "inbound" if kind == "in" else "outbound", customer))
        elif kind == "join":
            mates = [
                c
                for c in customers
                if c != customer
                and partition_for(c.encode(), PARTITIONS)
                == partition_for(customer.encode(), PARTITIONS)
            ]
            referrer = draw(st.sampled_from([None, *mates]))
            extra = {"referrer_id": referrer} if referrer else {}
            events.append(join(eid, clock, customer, **extra))
        else:
            events.append(
                {
                    "event_id": eid,
                    "type": "order",
                    "customer_id": customer,
                    "occurred_at": at(clock),
                    "order_id": f"o{n // 2 if kind == 'refund' else n}",
                    "status": "refunded" if kind == "refund" else "paid",
                    "amount": str(draw(st.sampled_from([50, 3000, 6000, 60000]))),
                    "channel": "tmall",
                    **({"kind": "membership"} if kind == "membership" else {}),
                }
            )
    rank = {"join": 0, "chat": 1, "order": 2}
    return sorted(events, key=lambda e: (e["occurred_at"], rank[e["type"]], e["event_id"]))


@settings(max_examples=60, deadline=None)
@given(events=streams(), seed=st.integers(0, 2**32 - 1), limit=st.sampled_from([None, 1, 3]))
def test_any_batching_gives_replays_actions(
    tmp_path_factory: pytest.TempPathFactory,
    events: list[dict[str, Any]],
    seed: int,
    limit: int | None,
) -> None:
    rng = random.Random(seed)
    broker = Broker()
    now = T0
    for event in events:
        broker.event(event)
        # the wall clock is at or a little past the latest event produced (less than the grace)
        now = max(now, parse_rfc3339(event["occurred_at"]) + rng.randint(0, GRACE - 1))
        for _ in range(rng.randint(0, 2)):
            broker.poll(rng, now)
            broker.run(now, limit)
    end = now + 500 * DAY
    broker.drain(end)
    expected = replayed(broker.produced, end - GRACE, end, tmp_path_factory.mktemp("replay"))
    got, want = by_id(broker.actions), by_id(expected)
    assert got.keys() == want.keys()
    assert got == want
