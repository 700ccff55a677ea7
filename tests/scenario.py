"""A tiny driver for rule tests: build events by keyword, run them through the engine."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import strategies as st

from siyu_stream.core.actions import Action
from siyu_stream.core.clock import HOUR, MINUTE, format_rfc3339, parse_rfc3339
from siyu_stream.core.events import from_dict
from siyu_stream.core.ruleset import Rules
from siyu_stream.core.state import CustomerState
from siyu_stream.replay.engine import Engine, MemoryStore

START = 1_772_330_400_000  # 2026-03-01T02:00:00Z
CUSTOMERS = ["c1", "c2", "c3"]


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Mixed events for a few customers: mostly forward in time, some late, some retried."""
    events: list[dict[str, Any]] = []
    now = START
    for n in range(draw(st.integers(1, 60))):
        now += draw(st.sampled_from([MINUTE, 20 * MINUTE, 3 * HOUR, 26 * HOUR, 9 * 24 * HOUR]))
        at = now - draw(st.sampled_from([0, 0, 0, 2 * HOUR]))  # occasionally out of order
        customer = draw(st.sampled_from(CUSTOMERS))
        base = {"event_id": f"e{n}", "customer_id": customer, "occurred_at": format_rfc3339(at)}
        kind = draw(
            st.sampled_from(["paid", "paid", "refund", "member", "in", "out", "join", "leave"])
        )
        if kind in ("paid", "refund", "member"):
            event = {
                **base,
                "type": "order",
                "order_id": f"o{draw(st.integers(0, 8))}" if kind == "refund" else f"o{n}",
                "status": "refunded" if kind == "refund" else "paid",
                "amount": str(draw(st.integers(0, 60_000_00)) / 100),
                "channel": "tmall",
                "kind": "membership" if kind == "member" else "purchase",
            }
        elif kind in ("in", "out"):
            direction = "inbound" if kind == "in" else "outbound"
            event = {
                **base,
                "type": "chat",
                "direction": direction,
                "channel": "wecom",
                "staff_id": "s1",
            }
        else:
            other = draw(st.sampled_from([*CUSTOMERS, None]))
            event = {
                **base,
                "type": "join",
                "action": kind,
                "carrier": draw(st.sampled_from(["wecom", "group"])),
                "referrer_id": other,
            }
        events.append(event)
        if draw(st.integers(0, 9)) == 0:
            events.append(dict(event))  # a producer retry
    return events


class ListSink:
    """A sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.actions: list[Action] = []

    def send(self, action: Action) -> None:
        self.actions.append(action)


def t(text: str) -> int:
    """'2026-03-01 10:00' in Asia/Shanghai (the default brand zone) as epoch ms."""
    return parse_rfc3339(text.replace(" ", "T") + ":00+08:00")


class Scenario:
    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()
        self.store = MemoryStore()
        self.sink = ListSink()
        self.engine = Engine(self.rules, self.store, self.sink)
        self._ids = itertools.count(1)

    # ---- input
    def send(self, **fields: Any) -> str:
        fields.setdefault("event_id", f"e{next(self._ids)}")
        fields.setdefault("customer_id", "c1")
        if isinstance(fields.get("at"), str):
            fields["occurred_at"] = format_rfc3339(t(fields.pop("at")))
        self.last_outcome = self.engine.handle(from_dict(fields, self.rules.input))
        return str(fields["event_id"])

    def order(self, at: str, amount: str | float = "100.00", **kw: Any) -> str:
        kw.setdefault("order_id", f"o{next(self._ids)}")
        kw.setdefault("status", "paid")
        kw.setdefault("channel", "tmall")
        return self.send(type="order", at=at, amount=amount, **kw)

    def refund(self, at: str, order_id: str, amount: str, **kw: Any) -> str:
        return self.order(at, amount, order_id=order_id, status="refunded", **kw)

    def chat(self, at: str, direction: str = "inbound", **kw: Any) -> str:
        kw.setdefault("channel", "wecom")
        return self.send(type="chat", at=at, direction=direction, **kw)

    def join(self, at: str, carrier: str = "wecom", action: str = "join", **kw: Any) -> str:
        return self.send(type="join", at=at, action=action, carrier=carrier, **kw)

    def leave(self, at: str, carrier: str = "wecom", **kw: Any) -> str:
        return self.join(at, carrier, action="leave", **kw)

    def until(self, at: str) -> None:
        self.engine.advance(t(at))

    # ---- output
    @property
    def actions(self) -> list[Action]:
        return self.sink.actions

    def state(self, customer_id: str = "c1") -> CustomerState:
        state = self.store.get(customer_id)
        assert state is not None
        return state

    def of(
        self, kind: str | None = None, customer: str | None = None, **detail: Any
    ) -> list[Action]:
        return [
            a
            for a in self.actions
            if (kind is None or a.kind == kind)
            and (customer is None or a.customer_id == customer)
            and all(a.detail.get(k) == v for k, v in detail.items())
        ]

    def gifts(self, customer: str = "c1") -> list[str]:
        return [str(a.detail["code"]) for a in self.of("gift", customer)]

    def reminders(self, template: str, customer: str = "c1") -> list[Action]:
        return self.of("reminder", customer, template=template)

    def suppressed(self, customer: str = "c1") -> list[Action]:
        return self.of("suppressed", customer)

    def changes(self, field: str, customer: str = "c1") -> list[tuple[Any, Any]]:
        return [
            (a.detail["from"], a.detail["to"]) for a in self.of("change", customer, field=field)
        ]
