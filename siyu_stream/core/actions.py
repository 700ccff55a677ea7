"""Output actions (docs/design.md §2): what the rules decide, as data.

`action_id` is a digest of (rule, kind, customer, the fact that fired it): the same
input history always yields the same ids, live or in replay, so downstream systems
can drop repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Final, Literal, NamedTuple

import orjson

from siyu_stream.core.clock import Millis, format_rfc3339

Kind = Literal["gift", "reminder", "change", "suppressed"]


_BLANK: Final = blake2b(digest_size=16)
_ENCODE: Final = orjson.dumps
"""Read as a C static compiled (`orjson.dumps` is two lookups by name a call)."""
_NEWLINE: Final = orjson.OPT_APPEND_NEWLINE


_COPY: Final = _BLANK.copy
_UPDATE: Final = blake2b.update
_HEX: Final = blake2b.hexdigest
"""Taken once, as in `state.digest`."""


def action_id(*parts: str) -> str:
    """Deterministic id from the parts that identify one firing."""
    h = _COPY()  # cheaper than the constructor (see `state.digest`)
    _UPDATE(h, "\x1f".join(parts).encode())
    return _HEX(h)


_CENTS: Final = tuple(f"{cents:02d}" for cents in range(100))


def yuan(fen: int) -> str:
    """Fen as a yuan amount for humans: 530000 -> '5,300.00'."""
    # grouped by slicing: format specs (`,` and `02d`) cost ~3,000 instructions a call
    # compiled, and a step that crosses a tier writes four amounts
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    digits = str(whole)
    if len(digits) > 3:
        head = len(digits) % 3 or 3
        rest = [digits[i : i + 3] for i in range(head, len(digits), 3)]
        digits = ",".join([digits[:head], *rest])
    return f"{sign}{digits}.{_CENTS[cents]}"


@dataclass(slots=True, init=False, unsafe_hash=True)
class Action:
    """One decision of the rules, never changed once built (a native class compiled, built
    and read as a C struct: the core builds about two per input event)."""

    action_id: Final[str]
    kind: Final[Kind]
    rule: Final[str]
    customer_id: Final[str]
    occurred_at: Final[Millis]
    cause_event_id: Final[str]
    detail: Final[dict[str, Any]]
    because: Final[str]
    rules_version: Final[str]
    """Digest of the rules that produced it (`Rules.version`)."""

    def __init__(  # noqa: PLR0917 - a record's fields, by position as a tuple's
        self,
        action_id: str,
        kind: Kind,
        rule: str,
        customer_id: str,
        occurred_at: Millis,
        cause_event_id: str,
        detail: dict[str, Any],
        because: str,
        rules_version: str,
    ) -> None:
        self.action_id = action_id
        self.kind = kind
        self.rule = rule
        self.customer_id = customer_id
        self.occurred_at = occurred_at
        self.cause_event_id = cause_event_id
        self.detail = detail
        self.because = because
        self.rules_version = rules_version

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "kind": self.kind,
            "rule": self.rule,
            "customer_id": self.customer_id,
            "occurred_at": format_rfc3339(self.occurred_at),
            "cause_event_id": self.cause_event_id,
            "detail": self.detail,
            "because": self.because,
            "rules_version": self.rules_version,
        }

    def to_json(self) -> bytes:
        """For a writer that passes the bytes on at once: what is kept goes through
        `jsonout.dumps` (orjson's output holds 4 KiB whatever its length)."""
        return _ENCODE(self.to_dict())

    def to_line(self) -> bytes:
        """`to_json` and a newline, written by orjson: a JSONL writer appends it in one."""
        return _ENCODE(self.to_dict(), option=_NEWLINE)


class ReferralCredit(NamedTuple):
    """From the referred customer's step to the referrer's state (maybe on another partition)."""

    referrer_id: str
    referred_id: str
    at: Millis
    cause_event_id: str

    @property
    def event_id(self) -> str:
        # one credit per referred customer: the id de-duplicates re-sent credits
        return f"referral-credit:{self.referred_id}"
