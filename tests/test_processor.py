"""Runtime tier: the live adapter over a dict table, no broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from siyu_stream import state as state_format
from siyu_stream.clock import DAY, MINUTE, format_rfc3339
from siyu_stream.processor import Out, Processor, Record, partition_for
from siyu_stream.ruleset import Rules
from siyu_stream.settings import Settings
from siyu_stream.state import CustomerState
from siyu_stream.topology import Topology

NOW = 1_795_564_800_000  # 2026-11-25T00:00:00Z
TOPOLOGY = Topology(Settings(api_auth=False, partitions=4))


class DictTable:
    """Keeps serialized bytes, like the Faust table."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        raw = self.data.get(customer_id)
        return None if raw is None else state_format.loads(raw)

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.data[customer_id] = state_format.dumps(state)

    def items(self) -> Iterator[tuple[str, CustomerState]]:
        for key, raw in list(self.data.items()):
            yield key, state_format.loads(raw)


def owner(customer: str) -> int:
    return partition_for(customer.encode(), 4)


class Harness:
    def __init__(self, table: DictTable | None = None) -> None:
        self.table = table or DictTable()
        self.proc = Processor(Rules(), TOPOLOGY, self.table)
        self.offsets: dict[tuple[str, int], int] = {}

    def record(self, topic: str, value: bytes, key: bytes | None, partition: int) -> Record:
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        return Record(topic, partition, offset, key, value)

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
        value = orjson.dumps(event)
        return self.proc.handle(self.record(f"siyu.{short}", value, k, p), now)

    def deliver(self, outs: list[Out], now: int = NOW) -> list[Out]:
        """Feed command records back in, as the broker would; return the rest."""
        rest: list[Out] = []
        for out in outs:
            if out.topic == TOPOLOGY.commands:
                p = out.partition if out.partition is not None else partition_for(out.key or b"", 4)
                rest.extend(
                    self.deliver(
                        self.proc.handle(self.record(out.topic, out.value, out.key, p), now), now
                    )
                )
            else:
                rest.append(out)
        return rest

    def tick(self, now: int) -> list[Out]:
        return self.deliver(self.proc.ticks(), now)


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
    h = Harness()
    outs = h.send("orders", **order())
    topics = sorted({o.topic for o in outs})
    assert topics == ["siyu.actions.gifts", "siyu.actions.reminders", "siyu.customers.changes"]
    assert all(o.key == b"c1" for o in outs)
    gift = next(orjson.loads(o.value) for o in outs if o.topic == "siyu.actions.gifts")
    assert gift["detail"] == {"code": "tier_5000", "value": 20_000}
    assert h.proc.stats.events[("order", "ok")] == 1


def test_retry_is_a_counted_duplicate_with_no_output() -> None:
    h = Harness()
    h.send("orders", **order())
    assert h.send("orders", **order()) == []
    assert h.proc.stats.events[("order", "duplicate")] == 1


@pytest.mark.parametrize("key", [None, b"someone-else"])
def test_miskeyed_event_is_forwarded_to_its_owner_and_processed_once(key: bytes | None) -> None:
    h = Harness()
    wrong = (owner("c1") + 1) % 4
    outs = h.send("orders", partition=wrong, key=key, **order())
    assert [o.topic for o in outs] == [TOPOLOGY.commands]
    assert outs[0].key == b"c1"
    actions = h.deliver(outs)
    assert any(o.topic == "siyu.actions.gifts" for o in actions)
    assert h.table.get("c1") is not None
    assert h.proc.stats.events[("order", "rekeyed")] == 1


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
    h = Harness()
    [dead] = h.proc.handle(h.record("siyu.orders", value, b"c1", 2), NOW)
    assert dead.topic == "siyu.deadletter"
    record = orjson.loads(dead.value)
    assert (record["topic"], record["partition"], record["offset"]) == ("siyu.orders", 2, 0)
    assert reason in record["reason"]
    assert h.proc.stats.deadletters == 1
    # and the stream goes on
    assert h.send("orders", **order("e2"))


def test_ticks_fire_due_timers_on_the_wall_clock() -> None:
    h = Harness()
    h.send("chats", event_id="in1", type="chat", direction="inbound", channel="wecom")
    assert h.tick(NOW + 29 * MINUTE) == []
    [overdue] = h.tick(NOW + 31 * MINUTE)
    assert overdue.topic == "siyu.actions.reminders"
    assert orjson.loads(overdue.value)["detail"]["template"] == "reply_overdue"
    assert h.tick(NOW + 60 * MINUTE) == []


def test_referral_credit_travels_as_a_command_to_the_referrer() -> None:
    h = Harness()
    h.send(
        "joins",
        event_id="j",
        type="join",
        action="join",
        carrier="wecom",
        customer_id="new",
        referrer_id="ref",
    )
    outs = h.send("orders", **order("o", amount="10", customer_id="new"))
    credit = [o for o in outs if o.topic == TOPOLOGY.commands]
    assert [c.key for c in credit] == [b"ref"]
    rest = h.deliver(credit)
    gifts = [orjson.loads(o.value) for o in rest if o.topic == "siyu.actions.gifts"]
    assert [(g["customer_id"], g["detail"]["code"]) for g in gifts] == [("ref", "referral_reward")]
    assert h.deliver(credit) == []  # a re-sent credit counts once


def test_outbox_is_resent_after_a_restart_until_committed() -> None:
    h = Harness()
    outs = h.send("orders", **order())
    state = h.table.get("c1")
    assert state is not None and len(state.outbox) == len(outs)
    # a crash: the new worker's processor re-sends the outbox of its partitions on start
    restarted = Harness(h.table)
    restarted.proc.assign({0, 1, 2, 3})
    resent = restarted.tick(NOW)
    assert sorted(o.value for o in resent) == sorted(o.value for o in outs)
    assert restarted.proc.stats.resent == len(outs)
    # once the offset is committed, the next tick clears the outbox
    restarted.proc.on_commit("siyu.orders", owner("c1"), 1)
    restarted.tick(NOW + 1000)
    cleared = h.table.get("c1")
    assert cleared is not None and cleared.outbox == []


def test_outbox_entries_from_committed_offsets_are_dropped_on_the_next_step() -> None:
    h = Harness()
    h.send("orders", **order("e1"))
    h.proc.on_commit("siyu.orders", owner("c1"), 1)
    outs = h.send("orders", **order("e2", amount="5000"))
    state = h.table.get("c1")
    assert state is not None
    assert len(state.outbox) == len(outs)
    assert {entry[1] for entry in state.outbox} == {1}


def test_ticks_go_to_every_assigned_partition() -> None:
    h = Harness()
    h.proc.assign({0, 2})
    assert sorted(o.partition for o in h.proc.ticks() if o.partition is not None) == [0, 2]
    assert all(o.topic == TOPOLOGY.commands and o.key is None for o in h.proc.ticks())


def test_dormant_timer_survives_restart_and_fires_from_the_rebuilt_index() -> None:
    h = Harness()
    h.send("chats", event_id="in1", type="chat", direction="inbound", channel="wecom")
    h.send(
        "chats", event_id="out1", type="chat", direction="outbound", channel="wecom", staff_id="s"
    )
    restarted = Harness(h.table)
    restarted.proc.assign({owner("c1")})
    fired = restarted.tick(NOW + 181 * DAY)
    changes = [
        orjson.loads(o.value)["detail"] for o in fired if o.topic == "siyu.customers.changes"
    ]
    assert {"field": "health", "from": "active", "to": "dormant"} in changes
