"""The operator's timeline of a partition: recent events and actions of recently active
customers, in memory, for `GET /customers/{id}`. Not part of the state: a restart
starts it empty.

Bounded in entries per customer and in bytes per partition (least recently active
customers go first). Inputs are kept as the few fields of a one-line summary (formatted
on read), never their raw bytes, and every entry as JSON bytes: the garbage collector
never scans them (hundreds of thousands of long-lived objects made its passes the
worker's longest pauses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from siyu_stream.core import jsonout
from siyu_stream.core.actions import yuan
from siyu_stream.core.clock import format_rfc3339
from siyu_stream.core.events import Chat, Event, Order

ENTRIES = 20
"""Entries kept per customer."""
MAX_BYTES = 16 * 1024 * 1024
"""Bytes kept per partition (entries are ~100-600 bytes: tens of thousands of customers)."""


def describe(event: Event) -> str:
    """One line about an event (no PII: the contract carries none)."""
    return _describe(_summary(event)[1:])


Summary = tuple[int, str, bool, str, str, str, int] | tuple[int, str, bool, str]
"""What the timeline keeps of an event: its time, type, a flag and the fields of its line
(one tuple built at once: compiled, a tuple spliced into another went through a list)."""


def _summary(event: Event) -> Summary:
    if isinstance(event, Order):
        return (
            event.at,
            "o",
            event.membership,
            event.order_id,
            event.status,
            event.channel,
            event.amount_fen,
        )
    if isinstance(event, Chat):
        return (event.at, "c", event.inbound, event.channel)
    return (event.at, "j", event.leave, event.carrier)


def _describe(summary: Sequence[Any]) -> str:
    kind, flag, *rest = summary
    if kind == "o":
        order_id, status, channel, amount_fen = rest
        kind = "membership" if flag else "order"
        return f"{kind} {order_id} {status} {yuan(amount_fen)} on {channel}"
    if kind == "c":
        return f"{'inbound' if flag else 'outbound'} chat on {rest[0]}"
    return f"{'left' if flag else 'joined'} {rest[0]}"


def _entry(data: Any) -> dict[str, Any]:
    if isinstance(data, list):  # an event: [occurred_at (ms), *its summary]
        return {"at": format_rfc3339(data[0]), "event": _describe(data[1:])}
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
        # a plain dict (insertion-ordered: least recently active first) of plain lists:
        # compiled, their operations are direct C calls, where OrderedDict.move_to_end and
        # deque's methods were generic ones, twice an event
        self._entries: dict[str, list[bytes]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def event(self, event: Event) -> None:
        # its fields, formatted on read: a timeline is written per event, read rarely
        self._add(event.customer_id, jsonout.dumps(_summary(event)))

    def action(self, customer_id: str, raw: bytes) -> None:
        """An action, as the JSON bytes already produced for its topic (shaped on read)."""
        self._add(customer_id, raw)

    def of(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's recent events and actions, newest first."""
        return [_entry(orjson.loads(raw)) for raw in reversed(self._entries.get(customer_id, []))]

    def _add(self, customer_id: str, entry: bytes) -> None:
        all_entries = self._entries
        entries = all_entries.pop(customer_id, None)
        if entries is None:
            entries = []
        elif len(entries) == ENTRIES:
            self.size -= len(entries.pop(0))
        all_entries[customer_id] = entries  # (again) the most recently active, last
        entries.append(entry)
        self.size += len(entry)
        while self.size > self.max_bytes and all_entries:
            oldest = all_entries.pop(next(iter(all_entries)))
            self.size -= sum(len(e) for e in oldest)
