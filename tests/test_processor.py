"""Runtime tier: the live adapter for one partition over a dict store, no broker."""

from __future__ import annotations

import dataclasses
import tracemalloc
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from siyu_stream.core import stored
from siyu_stream.core.clock import DAY, MINUTE, format_rfc3339
from siyu_stream.core.events import decode as decode_event
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState
from siyu_stream.eventtime.keys import (
    CACHED_CUSTOMERS,
    CACHED_KEYS,
    _customers,
    _partitions,
    customer_partition,
    murmur2,
    partition_for,
)
from siyu_stream.live.arrival import MAX_WAITED, Rekeyed, Sightings, decode_command
from siyu_stream.live.batch import CACHED, StateBatch
from siyu_stream.live.processor import PartitionTask
from siyu_stream.live.records import Out, Record
from siyu_stream.observe.observer import Observer, Stats
from siyu_stream.observe.timeline import Timeline
from siyu_stream.settings import Settings
from siyu_stream.simulate import SimConfig, generate
from siyu_stream.topology import Topology
from siyu_stream.traffic import restamp

NOW = 1_795_564_800_000  # 2026-11-25T00:00:00Z
TOPOLOGY = Topology(Settings(api_auth=False, partitions=4))


def owner(customer: str) -> int:
    return partition_for(customer.encode(), 4)


class Cluster:
    """Four partition tasks and a fake broker that routes command records between them."""

    def __init__(self, stores: dict[int, dict[str, bytes]] | None = None) -> None:
        self.stats = Stats()
        self.stores = stores or {p: {} for p in range(4)}
        self.tasks = {
            p: PartitionTask(Rules(), TOPOLOGY, p, self.stores[p], Observer(self.stats, Rules()))
            for p in range(4)
        }
        for task in self.tasks.values():
            for _ in task.index(chunk=1):
                pass
        self.offsets: dict[tuple[str, int], int] = {}

    def record(self, topic: str, value: bytes, key: bytes | None, partition: int) -> Record:
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        return Record(topic, partition, offset, key, value)

    def handle(self, record: Record, now: int = NOW) -> list[Out]:
        outs = self.tasks[record.partition].handle(record, now)
        self.commit()
        return outs

    def commit(self) -> None:
        for task in self.tasks.values():
            task.committed()

    def send(
        self,
        short: str,
        now: int = NOW,
        partition: int | None = None,
        key: Any = "auto",
        **event: Any,
    ) -> list[Out]:
        event.setdefault("customer_id", "c1")
        event.setdefault("occurred_at", format_rfc3339(now))
        customer = event["customer_id"]
        k = customer.encode() if key == "auto" else key
        p = owner(customer) if partition is None else partition
        return self.handle(self.record(f"siyu.{short}", orjson.dumps(event), k, p), now)

    def deliver(self, outs: list[Out], now: int = NOW) -> list[Out]:
        """Feed command records back in, as the broker would; return the rest."""
        rest: list[Out] = []
        for out in outs:
            if out.topic == TOPOLOGY.commands:
                p = partition_for(out.key or b"", 4)
                rest.extend(
                    self.deliver(
                        self.handle(self.record(out.topic, out.value, out.key, p), now), now
                    )
                )
            else:
                rest.append(out)
        return rest

    def tick(self, now: int) -> list[Out]:
        outs = [o for task in self.tasks.values() for o in task.sweep(now)]
        self.commit()
        return self.deliver(outs, now)


def order(event_id: str = "e1", amount: str = "6000", **kw: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "order",
        "order_id": f"o-{event_id}",
        "status": "paid",
        "amount": amount,
        "channel": "tmall",
        **kw,
    }


def test_event_becomes_actions_on_their_topics_keyed_by_customer() -> None:
    c = Cluster()
    outs = c.send("orders", **order())
    topics = sorted({o.topic for o in outs})
    assert topics == ["siyu.actions.gifts", "siyu.actions.reminders", "siyu.customers.changes"]
    assert all(o.key == b"c1" for o in outs)
    gift = next(orjson.loads(o.value) for o in outs if o.topic == "siyu.actions.gifts")
    assert gift["detail"] == {"code": "tier_5000", "value": 20_000}
    assert c.stats.events[("order", "ok")] == 1


def test_state_changes_wait_in_dirty_until_committed_and_become_changelog_records() -> None:
    c = Cluster()
    p = owner("c1")
    task = c.tasks[p]
    task.handle(
        c.record(
            "siyu.orders",
            orjson.dumps({**order(), "customer_id": "c1", "occurred_at": format_rfc3339(NOW)}),
            b"c1",
            p,
        ),
        NOW,
    )
    assert "c1" not in c.stores[p] and "c1" in task.dirty
    record, clock = task.changelog()
    assert (clock.key, orjson.loads(clock.value)) == (b"", {"clock": NOW})
    assert (record.topic, record.key, record.partition) == (TOPOLOGY.changelog, b"c1", p)
    assert stored.loads(record.value).spend_fen == 600_000
    task.committed()
    assert c.stores[p]["c1"] == record.value and not task.dirty


def test_retry_is_a_counted_duplicate_with_no_output() -> None:
    c = Cluster()
    c.send("orders", **order())
    assert c.send("orders", **order()) == []
    assert c.stats.events[("order", "duplicate")] == 1


@pytest.mark.parametrize("key", [None, b"someone-else"])
def test_miskeyed_event_is_forwarded_to_its_owner_and_processed_once(key: bytes | None) -> None:
    c = Cluster()
    wrong = (owner("c1") + 1) % 4
    outs = c.send("orders", partition=wrong, key=key, **order())
    assert [o.topic for o in outs] == [TOPOLOGY.commands]
    assert outs[0].key == b"c1"
    actions = c.deliver(outs)
    assert any(o.topic == "siyu.actions.gifts" for o in actions)
    assert "c1" in c.stores[owner("c1")] and "c1" not in c.stores[wrong]
    assert c.stats.events[("order", "rekeyed")] == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{oops", "invalid JSON"),
        (
            orjson.dumps(order(amount="-3", customer_id="c1", occurred_at="2026-11-25T00:00:00Z")),
            "amount",
        ),
        (
            orjson.dumps(
                {
                    "event_id": "x",
                    "type": "chat",
                    "customer_id": "c1",
                    "occurred_at": "2026-11-25T00:00:00Z",
                    "direction": "inbound",
                    "channel": "wecom",
                }
            ),
            "a chat event on topic siyu.orders",
        ),
        (orjson.dumps(order(customer_id="c1", occurred_at="2026-11-28T00:00:00Z")), "wall clock"),
        (b"\xff\x00", "invalid JSON"),
    ],
)
def test_bad_input_goes_to_the_deadletter_topic_with_position_and_reason(
    value: bytes, reason: str
) -> None:
    c = Cluster()
    # an event time is checked on the customer's own partition, after re-keying
    [dead] = c.deliver(c.handle(c.record("siyu.orders", value, b"c1", 2)))
    assert dead.topic == "siyu.deadletter"
    record = orjson.loads(dead.value)
    assert (record["topic"], record["partition"], record["offset"]) == ("siyu.orders", 2, 0)
    assert reason in record["reason"]
    assert c.stats.deadletters == {"siyu.orders": 1}
    assert c.send("orders", **order("e2"))  # and the stream goes on


def test_malformed_command_is_dead_lettered() -> None:
    c = Cluster()
    [dead] = c.handle(c.record(TOPOLOGY.commands, b'{"cmd": "credit"}', b"x", 1))
    assert (
        dead.topic == "siyu.deadletter"
        and "malformed command" in orjson.loads(dead.value)["reason"]
    )


@pytest.mark.parametrize(
    ("waited", "arrived"),
    [(None, NOW), (200, NOW - 200), (-5, NOW), (10**12, NOW - MAX_WAITED), ("300", NOW - 300)],
)
def test_a_command_arrives_as_early_as_its_origin_had_waited(waited: object, arrived: int) -> None:
    """A command counts as arrived `waited` ms before it was read (absent: an older
    worker's command, no earlier; never later, nor more than the largest window)."""
    extra = {} if waited is None else {"waited": waited}
    credit = {"cmd": "credit", "referrer": "r", "referred": "c", "at": NOW, "cause": "o"}
    event = {"cmd": "event", "topic": "siyu.orders", "partition": 2, "offset": 7, "value": "{}"}
    decoded = decode_command(
        Record(TOPOLOGY.commands, 1, 0, b"r", orjson.dumps(credit | extra)), NOW
    )
    assert not isinstance(decoded, Rekeyed)
    _, pending = decoded
    assert pending.credit is not None and pending.reason is None
    assert pending.arrived == arrived
    rekeyed = decode_command(
        Record(TOPOLOGY.commands, 1, 1, b"c", orjson.dumps(event | extra)), NOW
    )
    assert isinstance(rekeyed, Rekeyed) and rekeyed.record.offset == 7
    assert rekeyed.arrived == arrived


def test_an_offset_counts_as_arrived_when_an_end_offset_first_passed_it() -> None:
    seen = Sightings(limit=3)
    assert seen.since(0) is None  # nothing noted: arrived when read
    seen.note(10, 1_000)
    seen.note(10, 1_500)  # the same end again: the first sighting stands
    seen.note(25, 2_000)
    assert [seen.since(o) for o in (0, 9, 10, 24, 25)] == [1_000, 1_000, 2_000, 2_000, None]
    seen.note(30, 3_000)
    seen.note(40, 4_000)  # over the limit: the oldest goes, its offsets count as seen later
    assert [seen.since(o) for o in (0, 10, 29, 35)] == [2_000, 2_000, 3_000, 4_000]
    seen.note(12, 5_000)  # the end went back (the log truncated): nothing older holds
    assert [seen.since(o) for o in (0, 11, 12, 35)] == [5_000, 5_000, None, None]


@given(st.lists(st.integers(0, 60), max_size=40), st.integers(0, 80))
def test_a_bounded_sighting_is_never_earlier_than_the_first(ends: list[int], offset: int) -> None:
    """Whatever the bound drops, an offset never counts as seen before it first was."""
    growing = [e for i, e in enumerate(ends) if all(e > x for x in ends[:i])]
    first = next((t for t, e in enumerate(growing) if e > offset), None)
    seen = Sightings(limit=4)
    for t, end in enumerate(growing):
        seen.note(end, t)
    since = seen.since(offset)
    assert (since is None) == (first is None)
    assert since is None or first is None or since >= first


def test_a_caught_up_record_waits_from_when_it_was_in_kafka_not_from_its_read() -> None:
    """The end of a catch-up: a record read now, but known to be in Kafka since an
    earlier fetch's end offset passed it, waits out the window from then."""
    task = PartitionTask(Rules(), TOPOLOGY, 1, {}, Observer(Stats(), Rules()), reorder_ms=500)
    for _ in task.index(chunk=1):
        pass

    def record(offset: int) -> Record:
        event = order(f"e{offset}", customer_id="c2", occurred_at=format_rfc3339(NOW - DAY))
        return Record("siyu.orders", 1, offset, b"c2", orjson.dumps(event))

    assert owner("c2") == 1
    task.seen("siyu.orders", 3, NOW)  # a fetch's end offset: offsets 0-2 are in Kafka
    task.enqueue(record(2), NOW + 400)
    assert task.run(NOW + 499, task.sources) == [] and task.wake_at == NOW + 500
    assert task.run(NOW + 500, task.sources), "taken: in Kafka for the window"
    task.enqueue(record(3), NOW + 600)  # above every end seen: arrived when read
    assert task.run(NOW + 1_099, task.sources) == [] and task.wake_at == NOW + 1_100
    assert task.run(NOW + 1_100, task.sources)


def test_a_command_that_says_nonsense_of_its_wait_is_dead_lettered() -> None:
    c = Cluster()
    credit = {"cmd": "credit", "referrer": "r", "referred": "c", "at": NOW, "cause": "o"}
    [dead] = c.handle(
        c.record(TOPOLOGY.commands, orjson.dumps(credit | {"waited": "soon"}), b"r", 1)
    )
    assert "malformed command" in orjson.loads(dead.value)["reason"]


def test_sweep_fires_due_timers_on_the_wall_clock() -> None:
    c = Cluster()
    c.send("chats", event_id="in1", type="chat", direction="inbound", channel="wecom")
    assert c.tick(NOW + 29 * MINUTE) == []
    [overdue] = c.tick(NOW + 31 * MINUTE)
    assert overdue.topic == "siyu.actions.reminders"
    assert orjson.loads(overdue.value)["detail"]["template"] == "reply_overdue"
    assert c.tick(NOW + 60 * MINUTE) == []


def test_a_limited_sweep_leaves_the_rest_due_for_the_next_batch() -> None:
    c = Cluster()
    customers = [f"c{n}" for n in range(40)]
    for n, customer in enumerate(customers):
        c.send(
            "chats",
            event_id=f"in{n}",
            type="chat",
            direction="inbound",
            channel="wecom",
            customer_id=customer,
        )
    task = c.tasks[owner(customers[0])]
    mine = sum(owner(customer) == task.partition for customer in customers)
    assert mine > 3
    later = NOW + 31 * MINUTE
    first = task.sweep(later, limit=3)
    assert len([o for o in first if o.topic == "siyu.actions.reminders"]) == 3
    assert task.more
    rest = task.sweep(later)
    assert len([o for o in rest if o.topic == "siyu.actions.reminders"]) == mine - 3
    assert not task.more


def test_referral_credit_travels_as_a_command_to_a_referrer_elsewhere() -> None:
    c = Cluster()
    assert owner("new") != owner("r")  # "ref" would share the partition: see below
    c.send(
        "joins",
        event_id="j",
        type="join",
        action="join",
        carrier="wecom",
        customer_id="new",
        referrer_id="r",
    )
    outs = c.send("orders", **order("o", amount="10", customer_id="new"))
    credit = [o for o in outs if o.topic == TOPOLOGY.commands]
    assert [o.key for o in credit] == [b"r"]
    rest = c.deliver(credit)
    gifts = [orjson.loads(o.value) for o in rest if o.topic == "siyu.actions.gifts"]
    assert [(g["customer_id"], g["detail"]["code"]) for g in gifts] == [("r", "referral_reward")]
    assert c.deliver(credit) == []  # a re-sent credit counts once


def test_a_referrer_on_the_same_partition_is_credited_without_a_command() -> None:
    c = Cluster()
    assert owner("new") == owner("ref")
    c.send(
        "joins",
        event_id="j",
        type="join",
        action="join",
        carrier="wecom",
        customer_id="new",
        referrer_id="ref",
    )
    outs = c.send("orders", **order("o", amount="10", customer_id="new"))
    assert not [o for o in outs if o.topic == TOPOLOGY.commands]
    gifts = [orjson.loads(o.value) for o in outs if o.topic == "siyu.actions.gifts"]
    assert ("ref", "referral_reward") in [(g["customer_id"], g["detail"]["code"]) for g in gifts]


def test_restored_store_rebuilds_timers_and_population() -> None:
    c = Cluster()
    c.send("chats", event_id="in1", type="chat", direction="inbound", channel="wecom")
    c.send(
        "chats", event_id="out1", type="chat", direction="outbound", channel="wecom", staff_id="s"
    )
    restarted = Cluster(c.stores)  # a new worker over the restored stores
    assert restarted.tasks[owner("c1")].observer.population[("layer", "A3")] == 1
    fired = restarted.tick(NOW + 181 * DAY)
    changes = [
        orjson.loads(o.value)["detail"] for o in fired if o.topic == "siyu.customers.changes"
    ]
    assert {"field": "health", "from": "active", "to": "dormant"} in changes


def test_population_follows_changes_incrementally() -> None:
    c = Cluster()
    c.send("orders", **order("e1", amount="6000"))
    pop = c.tasks[owner("c1")].observer.population
    assert (pop[("layer", "A4")], pop[("tier", "silver")], pop[("health", "active")]) == (1, 1, 1)
    c.send("orders", **order("e2", amount="6000"))
    pop = c.tasks[owner("c1")].observer.population  # a view of the counts as they are
    assert (pop[("tier", "silver")], pop[("tier", "gold")]) == (0, 1)


@pytest.mark.parametrize("holdout", [0.0, 50.0])
def test_population_kept_incrementally_is_a_recount_of_the_states(holdout: float) -> None:
    # a simulated stream moves customers through layers, tiers, health, memberships and
    # their first and second orders: what each step adjusts must add up to a recount
    # (with a holdout, buyers are counted per group)
    rules = Rules()
    rules = dataclasses.replace(
        rules, contact_policy=dataclasses.replace(rules.contact_policy, holdout_percent=holdout)
    )
    settings = Settings(partitions=1, api_auth=False, web_port=0)
    observer = Observer(Stats(), rules)
    task = PartitionTask(rules, Topology(settings), 0, {}, observer)
    for i, r in enumerate(generate(SimConfig(customers=300, rate=1_000, seed=3), 3_000)):
        record = Record(settings.topic(r.topic), 0, i, r.key.encode(), restamp(r, NOW), NOW)
        task.handle(record, NOW)
    task.committed()
    recount = Observer(Stats(), rules)
    for customer_id, raw in task.store.items():
        if customer_id:  # not the partition clock
            recount.indexed(customer_id, stored.loads(raw))
    kept = {k: n for k, n in observer.population.items() if n}
    assert kept == {k: n for k, n in recount.population.items() if n}
    assert kept[("buyers", "treated|2+")] > 0 and len({k for k, _ in kept}) == 5
    if holdout:
        assert kept[("buyers", "holdout|2+")] > 0


def test_business_figures_follow_the_events() -> None:
    c = Cluster()
    c.send("orders", **order("e1", amount="100"))  # outside the pool: a buyer to convert
    c.send("joins", NOW + DAY, event_id="j", type="join", action="join", carrier="wecom")
    c.send("orders", NOW + 3 * DAY, **order("e2", amount="300"))
    assert (c.stats.buyers_outside_pool, c.stats.buyers_joined) == (1, 1)
    assert c.stats.gap_sum_days == 3.0 and sum(c.stats.gap_buckets) == 1
    assert c.stats.order_value_fen[False] == 40_000 and c.stats.paid_orders[False] == 2
    pop = c.tasks[owner("c1")].observer.population
    assert (pop[("buyers", "treated|1+")], pop[("buyers", "treated|2+")]) == (1, 1)
    timeline = c.tasks[owner("c1")].observer.timeline_of("c1")
    assert timeline[-1]["event"].startswith("order o-e1 paid 100.00")  # newest first
    assert any(entry.get("because") for entry in timeline)


def test_partition_for_agrees_with_aiokafkas_default_partitioner() -> None:
    # the worker's producers route keyed records by partition_for (murmur2 cached), replay
    # and the API by partition_for too: all must put a key where Kafka's default would
    default = DefaultPartitioner()
    odd = [b"", "客户-7".encode(), b"x" * 300, bytes(range(256))]
    for n in (1, 4, 12):
        every = list(range(n))
        for key in [*(f"customer-{i}".encode() for i in range(500)), *odd]:
            assert partition_for(key, n) == default(key, every, every), (key, n)
        for customer in ("c1", "客户-7", "x" * 300):  # replay's shortcut for one partition
            expected = default(customer.encode(), every, every)
            assert customer_partition(customer, n) == expected, (customer, n)


def test_partition_for_stays_right_past_its_memo_bound() -> None:
    # the memo of murmur2 results is emptied when full: bounded, and the answers do not
    # change when it is (the bound is a compiled constant, so the test fills it)
    default = DefaultPartitioner()
    every = list(range(7))
    keys = [f"k{i}".encode() for i in range(CACHED_KEYS + 1_000)]
    for key in keys:
        partition_for(key, 7)
        assert len(_partitions[7]) <= CACHED_KEYS
    assert len(_partitions[7]) == 1_000
    for key in keys[::97]:
        assert partition_for(key, 7) == default(key, every, every) == murmur2(key) % 2**31 % 7


def test_customer_partition_stays_right_past_its_memo_bound() -> None:
    # the same for the memo by customer id (replay asks once per record)
    default = DefaultPartitioner()
    every = list(range(5))
    customers = [f"c{i}" for i in range(CACHED_CUSTOMERS + 1_000)]
    for customer in customers:
        customer_partition(customer, 5)
    assert len(_customers[5]) == 1_000
    for customer in customers[::997]:
        key = customer.encode()
        assert customer_partition(customer, 5) == default(key, every, every)


def test_the_api_sees_committed_state_only() -> None:
    c = Cluster()
    p = owner("c1")
    task = c.tasks[p]
    event = {**order(), "customer_id": "c1", "occurred_at": format_rfc3339(NOW)}
    task.handle(c.record("siyu.orders", orjson.dumps(event), b"c1", p), NOW)
    assert task.get("c1") is not None and task.committed_state("c1") is None  # batch in flight
    task.committed()
    state = task.committed_state("c1")
    assert state is not None and state.spend_fen == 600_000
    assert task.committed_state("") is None  # the clock's key is no customer


def test_the_timeline_keeps_summaries_within_its_byte_bound() -> None:
    timeline = Timeline(max_bytes=50_000)
    c = Cluster()
    task = c.tasks[owner("c1")]
    big = {
        **order(),
        "customer_id": "c1",
        "occurred_at": format_rfc3339(NOW),
        "items": [{"sku": "x" * 1000}] * 60,  # ~64 KB: fits the input limit, not the timeline
    }
    value = orjson.dumps(big)
    assert len(value) > 60_000
    task.handle(c.record("siyu.orders", value, b"c1", owner("c1")), NOW)
    entries = task.observer.timeline_of("c1")
    assert entries and max(len(orjson.dumps(e)) for e in entries) < 1_000  # a summary
    for n in range(2_000):
        event = {**order(f"e{n}"), "customer_id": f"c{n}", "occurred_at": "2026-11-25T00:00:00Z"}
        timeline.event(decode_event(orjson.dumps(event), Rules().input))
    assert timeline.size <= 50_000 and 0 < len(timeline) < 2_000


def test_the_decoded_state_cache_drops_the_least_recently_used() -> None:
    store = {f"c{n}": stored.dumps(CustomerState()) for n in range(CACHED + 3)}
    batch = StateBatch(store)
    for n in range(CACHED):
        batch.committed(f"c{n}")
    first = batch.committed("c0")  # used again: now the most recent
    assert batch.committed("c0") is first  # a hit, not decoded again
    for n in range(CACHED, CACHED + 3):  # three more: c1, c2, c3 go
        batch.committed(f"c{n}")
    assert len(batch.cache) == CACHED
    assert "c0" in batch.cache and "c4" in batch.cache
    assert not {"c1", "c2", "c3"} & set(batch.cache)
    batch.put("c4", CustomerState())  # written, sealed and settled: the most recent too
    batch.seal({"c4": stored.dumps(CustomerState())}, None)
    batch.settle()
    batch.committed(f"c{CACHED + 3 - 1}")
    store["new"] = stored.dumps(CustomerState())
    batch.committed("new")
    assert "c4" in batch.cache and "c5" not in batch.cache


def test_the_timeline_holds_about_its_byte_bound_in_memory() -> None:
    """Its bound counts the bytes of its entries: the memory behind them must be about that
    (orjson's output sat in a 4 KiB buffer whatever its length: six times the bound)."""
    settings = Settings(partitions=1, api_auth=False, web_port=0)
    task = PartitionTask(Rules(), Topology(settings), 0, {}, Observer(Stats(), Rules()))
    task.observer.timeline = Timeline(max_bytes=200_000)
    simulated = generate(SimConfig(customers=500, rate=50), 3_000)
    records = [
        Record(settings.topic(r.topic), 0, i, r.key.encode(), restamp(r, NOW), NOW)
        for i, r in enumerate(simulated)
    ]
    tracemalloc.start()
    try:
        for i in range(0, len(records), 500):  # batches, as the worker runs them
            for record in records[i : i + 500]:
                task.enqueue(record, NOW)
            task.sweep(NOW)
            task.changelog()
            task.committed()
        size = task.observer.timeline.size
        with_it, _ = tracemalloc.get_traced_memory()
        task.observer.timeline = Timeline()  # what dropping it frees is what it held
        without, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 150_000 < size <= 200_000
    assert with_it - without < 2 * 200_000, with_it - without  # bytes, lists and the dict


def test_the_timeline_drops_the_least_recently_active_and_keeps_the_newest_entries() -> None:
    timeline = Timeline(max_bytes=10_000)
    kept = timeline._entries  # the raw entries (`of` shapes them as actions)
    for n in range(30):  # c0 writes often: its newest 20 entries are kept
        timeline.action("c0", b"%d" % n)
    assert kept["c0"] == [b"%d" % n for n in range(10, 30)]
    for n in range(1, 400):  # then others, c0 active again halfway
        timeline.action(f"c{n}", b"x" * 40)
        if n == 200:
            timeline.action("c0", b"30")
    assert timeline.size == sum(len(e) for entries in kept.values() for e in entries) <= 10_000
    assert kept["c0"][-1] == b"30"  # still kept: active after the customers dropped
    assert "c1" not in kept and "c399" in kept
    assert list(kept)[-1] == "c399" and list(kept).index("c0") < list(kept).index("c201")


def test_repurchase_gaps_are_bucketed_not_kept() -> None:
    stats = Stats()
    for n in range(100_000):
        stats.gap(n % 400)
    assert len(stats.gap_buckets) == 12 and sum(stats.gap_buckets) == 100_000


@given(st.binary(max_size=64))
def test_murmur2_agrees_with_aiokafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)
