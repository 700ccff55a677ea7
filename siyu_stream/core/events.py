"""Input events: bytes in, a typed event out, or `InvalidEvent` with the reason.

Validation is the schema in `topics/` (structure) plus what JSON Schema cannot say
(amounts in fen with at most 2 decimals, absurd values, real timestamps). Only the
fields the rules need are kept: message text, phone numbers and other PII are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any, Final, Literal

import fastjsonschema
import msgspec
import orjson

from siyu_stream.core.clock import Millis, parse_common, parse_rfc3339
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.ruleset import Input
from siyu_stream.core.schemas import SCHEMA_OF_TYPE, input_decoder, input_pattern, validator

# One is built per input record, and never changed: dataclasses with constructors written
# out, neither NamedTuples (compiled, built by interpreted code and read by a generic
# lookup) nor frozen dataclasses (an object.__setattr__ per field, 3x the cost).


@dataclass(slots=True, init=False, unsafe_hash=True)
class Order:
    event_id: Final[str]
    customer_id: Final[str]
    at: Final[Millis]
    order_id: Final[str]
    status: Final[Literal["paid", "refunded"]]
    amount_fen: Final[int]
    channel: Final[str]
    membership: Final[bool]
    """kind == membership: a fee, not a purchase; never counts toward spend or tiers."""

    def __init__(  # noqa: PLR0917 - a record's fields, by position as a tuple's
        self,
        event_id: str,
        customer_id: str,
        at: Millis,
        order_id: str,
        status: Literal["paid", "refunded"],
        amount_fen: int,
        channel: str,
        membership: bool,
    ) -> None:
        self.event_id = event_id
        self.customer_id = customer_id
        self.at = at
        self.order_id = order_id
        self.status = status
        self.amount_fen = amount_fen
        self.channel = channel
        self.membership = membership


@dataclass(slots=True, init=False, unsafe_hash=True)
class Chat:
    event_id: Final[str]
    customer_id: Final[str]
    at: Final[Millis]
    inbound: Final[bool]
    channel: Final[str]
    staff_id: Final[str | None]

    def __init__(  # noqa: PLR0917 - a record's fields, by position as a tuple's
        self,
        event_id: str,
        customer_id: str,
        at: Millis,
        inbound: bool,
        channel: str,
        staff_id: str | None,
    ) -> None:
        self.event_id = event_id
        self.customer_id = customer_id
        self.at = at
        self.inbound = inbound
        self.channel = channel
        self.staff_id = staff_id


@dataclass(slots=True, init=False, unsafe_hash=True)
class Join:
    event_id: Final[str]
    customer_id: Final[str]
    at: Final[Millis]
    leave: Final[bool]
    carrier: Final[str]
    source: Final[str | None]
    staff_id: Final[str | None]
    referrer_id: Final[str | None]

    def __init__(  # noqa: PLR0917 - a record's fields, by position as a tuple's
        self,
        event_id: str,
        customer_id: str,
        at: Millis,
        leave: bool,
        carrier: str,
        source: str | None,
        staff_id: str | None,
        referrer_id: str | None,
    ) -> None:
        self.event_id = event_id
        self.customer_id = customer_id
        self.at = at
        self.leave = leave
        self.carrier = carrier
        self.source = source
        self.staff_id = staff_id
        self.referrer_id = referrer_id


Event = Order | Chat | Join
KIND: dict[type[Event], str] = {Order: "order", Chat: "chat", Join: "join"}
"""The input type of an event, as the `type` field names it."""


def parse_amount_fen(value: Any) -> int:
    """Yuan (decimal string or JSON number, >= 0, at most 2 decimals) as integer fen."""
    if type(value) is int and value >= 0:  # not bool (a subclass), not a float
        return value * 100
    if type(value) is str and value.isascii():
        # "12", "12.3", "12.34": the common forms, without building a Decimal
        whole, dot, cents = value.partition(".")
        if whole.isdigit() and (not dot or (cents.isdigit() and len(cents) <= 2)):
            return int(whole) * 100 + int(cents.ljust(2, "0") if dot else 0)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        msg = "must be a decimal string or number of yuan"
        raise InvalidEvent(msg, "amount")
    try:
        # str() of a float is its shortest repr, so 12.3 stays 12.3 and not 12.2999...
        amount = Decimal(value if isinstance(value, str) else str(value))
    except InvalidOperation as exc:
        msg = f"not a decimal amount: {value!r}"
        raise InvalidEvent(msg, "amount") from exc
    if not amount.is_finite() or amount < 0:
        msg = f"must be a finite amount >= 0 yuan, got {value!r}"
        raise InvalidEvent(msg, "amount")
    fen = amount * 100
    if fen != fen.to_integral_value():
        msg = f"at most 2 decimals, got {value!r}"
        raise InvalidEvent(msg, "amount")
    return int(fen)


def amount_form(text: str) -> bool:
    """Whether `text` matches the schema pattern of a string amount (1-12 digits, then
    optionally a point and 1-2 digits), checked without `re` (schemas.DEFERRED)."""
    whole, dot, cents = text.partition(".")
    return (
        text.isascii()
        and whole.isdigit()
        and len(whole) <= 12
        and (not dot or (cents.isdigit() and len(cents) <= 2))
    )


def _reason(exc: fastjsonschema.JsonSchemaValueException) -> InvalidEvent:
    name = exc.name or "data"
    field = name.removeprefix("data").lstrip(".") or None
    message = str(exc.message).removeprefix(name).strip()
    if field == "amount":
        # the schema says only "no oneOf branch matched"; the amount parser says why
        try:
            parse_amount_fen(exc.value)
        except InvalidEvent as precise:
            return precise
        message = f"must be a decimal string or number of yuan >= 0, got {exc.value!r}"
    elif exc.rule == "required" and isinstance(exc.value, dict):
        missing = [k for k in exc.rule_definition if k not in exc.value]
        prefix = f"{field}." if field else ""
        return InvalidEvent("required field is missing", prefix + ", ".join(missing))
    elif exc.rule == "pattern" and field == "occurred_at":
        message = f"must be RFC 3339 with offset, got {exc.value!r}"
    return InvalidEvent(message, field)


_HEAD: Final = ("occurred_at", "event_id", "customer_id")
FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "order": (*_HEAD, "order_id", "status", "amount", "channel", "kind"),
    "chat": (*_HEAD, "direction", "channel", "staff_id"),
    "join": (*_HEAD, "action", "carrier", "source", "staff_id", "referrer_id"),
}
"""The fields of each input type that the event keeps, in the order `_build` reads them."""
_pickers: Final[dict[type, tuple[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]]] = {}
"""Per decoded struct type, its input type and what takes its FIELDS out of
`msgspec.structs.astuple` (the type's name read once: a generic attribute lookup)."""
_ASTUPLE: Final = msgspec.structs.astuple
"""Read as a C static compiled (`msgspec.structs.astuple` is three lookups by name)."""
_decode_input: Final[list[Callable[[bytes], Any]]] = []
"""`input_decoder().decode`, bound at the first decode: compiled, the cached call and the
method's lookup by name cost ~500 instructions an event."""


def _picked(message: Any) -> tuple[str, tuple[Any, ...]]:
    """A decoded struct's type and its FIELDS, by position: two C calls for all the values
    (compiled, a generic getattr per field cost ~4,000 instructions an event)."""
    struct = type(message)
    known = _pickers.get(struct)
    if known is None:
        kind = struct.__name__
        where = {f.encode_name: i for i, f in enumerate(msgspec.structs.fields(struct))}
        known = _pickers[struct] = kind, itemgetter(*(where[name] for name in FIELDS[kind]))
    kind, picker = known
    return kind, picker(_ASTUPLE(message))


def decode(value: bytes, limits: Input) -> Event:
    """Decode and validate one input message. Raises InvalidEvent with the reason.

    msgspec decodes straight into structs built from the schemas (no dict, no second
    pass); a message it refuses takes the slow path, whose validator words the reason."""
    if len(value) > limits.max_message_bytes:
        msg = f"message of {len(value)} bytes exceeds {limits.max_message_bytes}"
        raise InvalidEvent(msg)
    try:
        if not _decode_input:
            _decode_input.append(input_decoder().decode)
        message = _decode_input[0](value)
    except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
        pass  # not an error yet: the slow path below says what is wrong, or accepts it
    else:
        kind, fields = _picked(message)
        # the patterns the decoder leaves to us (schemas.DEFERRED): a field out of its
        # pattern takes the slow path too, whose validator words the reason
        stamp = fields[0]
        at = parse_common(stamp)
        amount = fields[5] if kind == "order" else None
        if (at is not None or input_pattern("occurred_at").search(stamp)) and (
            type(amount) is not str or amount_form(amount)
        ):
            return _build(kind, fields, limits, at)
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        msg = f"invalid JSON: {exc}"
        raise InvalidEvent(msg) from exc
    return from_dict(data, limits)


def from_dict(data: Any, limits: Input) -> Event:
    """Validate an already parsed message (see `decode`)."""
    if not isinstance(data, dict):
        msg = f"expected a JSON object, got {type(data).__name__}"
        raise InvalidEvent(msg)
    kind = data.get("type")
    schema = SCHEMA_OF_TYPE.get(kind) if isinstance(kind, str) else None
    if schema is None or not isinstance(kind, str):
        msg = f"must be one of order, chat, join; got {kind!r}"
        raise InvalidEvent(msg, "type")
    try:
        validator(schema)(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise _reason(exc) from exc
    return _build(kind, tuple(data.get(name) for name in FIELDS[kind]), limits, None)


def _build(kind: str, fields: tuple[Any, ...], limits: Input, at: Millis | None) -> Event:
    """The typed event of a schema-valid message of `kind` from its FIELDS (an absent
    optional field reads as None or msgspec.UNSET, both falsy); `at`, its time if
    already parsed."""
    if at is None:
        try:
            at = parse_rfc3339(fields[0])
        except ValueError as exc:
            raise InvalidEvent(str(exc), "occurred_at") from exc
    event_id, customer_id = fields[1], fields[2]
    if kind == "order":
        fen = parse_amount_fen(fields[5])
        if fen > limits.max_order_yuan * 100:
            msg = f"{fen / 100:.2f} yuan exceeds {limits.max_order_yuan}"
            raise InvalidEvent(msg, "amount")
        return Order(
            event_id,
            customer_id,
            at,
            order_id=fields[3],
            status=fields[4],
            amount_fen=fen,
            channel=fields[6],
            membership=fields[7] == "membership",
        )
    if kind == "chat":
        return Chat(
            event_id,
            customer_id,
            at,
            inbound=fields[3] == "inbound",
            channel=fields[4],
            staff_id=fields[5] or None,
        )
    referrer = fields[7] or None
    return Join(
        event_id,
        customer_id,
        at,
        leave=fields[3] == "leave",
        carrier=fields[4],
        source=fields[5] or None,
        staff_id=fields[6] or None,
        # self-referral is ignored (docs/design.md §4 referral): drop it at the edge
        referrer_id=None if referrer == customer_id else referrer,
    )
