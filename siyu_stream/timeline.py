"""The operator's timeline of a partition: recent events and actions of recently active
customers, in memory, for `GET /customers/{id}`. Not part of the state: a restart
starts it empty.

Bounded in entries per customer and in bytes per partition (least recently active
customers go first). Inputs are kept as one-line summaries, never their raw bytes, and
every entry as JSON bytes: the garbage collector never scans them (hundreds of
thousands of long-lived objects made its passes the worker's longest pauses).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

import orjson

from siyu_stream.actions import yuan
from siyu_stream.clock import format_rfc3339
from siyu_stream.events import Chat, Event, Order

ENTRIES = 20
"""Entries kept per customer."""
MAX_BYTES = 16 * 1024 * 1024
"""Bytes kept per partition (entries are ~100-600 bytes: tens of thousands of customers)."""


def describe(event: Event) -> str:
    """One line about an event (no PII: the contract carries none)."""
    if isinstance(event, Order):
        kind = "membership" if event.membership else "order"
        return f"{kind} {event.order_id} {event.status} {yuan(event.amount_fen)} on {event.channel}"
    if isinstance(event, Chat):
        return f"{'inbound' if event.inbound else 'outbound'} chat on {event.channel}"
    return f"{'left' if event.leave else 'joined'} {event.carrier}"


def _entry(data: dict[str, Any]) -> dict[str, Any]:
    if "action_id" not in data:
        return data  # an event, kept in its final shape
    return {
        "at": data["occurred_at"],
        "action": data["kind"],
        "rule": data["rule"],
        "detail": data["detail"],
        "because": data["because"],
        "rules_version": data["rules_version"],
    }


class Timeline:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, deque[bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def event(self, event: Event) -> None:
        entry = {"at": format_rfc3339(event.at), "event": describe(event)}
        self._add(event.customer_id, orjson.dumps(entry))

    def action(self, customer_id: str, raw: bytes) -> None:
        """An action, as the JSON bytes already produced for its topic (shaped on read)."""
        self._add(customer_id, raw)

    def of(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's recent events and actions, newest first."""
        return [_entry(orjson.loads(raw)) for raw in reversed(self._entries.get(customer_id, ()))]

    def _add(self, customer_id: str, entry: bytes) -> None:
        entries = self._entries.pop(customer_id, None) or deque()
        if len(entries) == ENTRIES:
            self.size -= len(entries.popleft())
        entries.append(entry)
        self.size += len(entry)
        self._entries[customer_id] = entries  # most recently active last
        while self.size > self.max_bytes and self._entries:
            _, oldest = self._entries.popitem(last=False)
            self.size -= sum(len(e) for e in oldest)
