"""Per-customer state (docs/design.md §3); its stored form is `stored`.

The state is a plain mutable record; the rule core works on a copy (`clone`) so that
its callers can treat `(state, event, clock) -> (state, actions)` as pure. An offline
run, which keeps no state but the latest, lets it change the state itself instead.

Bounds. The serialized state is the customer's changelog record, and a record over
the producer's size limit (about 1 MB by default) crash-loops the live worker. So
every collection and every string in the state has a bound, and what happens at the
bound is a rule of the core, the same live and in replay (what: bound (default);
at the bound):

- carriers: `Engine.max_carriers` (16); a join to a carrier not yet held is rejected
  (outcome `rejected`, state unchanged). Leaves, and joins to a held carrier, apply.
- order_times: `RepurchaseDue.gaps` + 1 (6); oldest dropped (the cycle reads no more).
- recent_orders: `Engine.recent_orders` (20); oldest dropped. A later refund of a
  dropped order matches no record (it takes off at most its own amount), and a re-send
  of it under a new event id counts again.
- seen: `Engine.dedup_window` (32) digests; oldest dropped, so a retry arriving after
  that many newer events of the customer is applied again.
- gifts: the once-ever codes, one per spend tier + 2 (6); nothing happens at it: each
  code is added once and no other code is ever added.
- touches: `ContactPolicy.max_per_window` (2); nothing happens at it: a touch is kept
  only while inside the window and added only below the cap (`policy.apply`).
- timers: one per name in `step.TIMER_NAMES` (6); scheduling a name replaces it.
- member_until: at most `Engine.max_member_ahead_days` (3650) after the payment that
  set it; a membership payment that would run it further is rejected.
- ids (Timer.cause, referrer_id, owner_staff, last_staff): `ID_CHARS` (128); carrier
  keys, join_source, Timer.note: `NAME_CHARS` (64). The input schemas (topics/) reject
  a longer value at the edge, before the core sees it.
- integers: 64 bits (the JSON readers' range); sums of orders of at most 10^7 yuan never reach it.

`rules.largest_state` builds the state with every bound reached and every string in
its most expensive JSON encoding; tests/test_state.py proves it serializes below
`Engine.max_state_bytes`, so no per-event size check is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

from siyu_stream.core.clock import Millis

DIGEST_BYTES: Final = 6
"""Event ids and order ids are remembered as 48-bit digests: a collision inside one
customer's short window is ~1e-12 likely, and the state stays small."""

LAYERS: Final = ("A1", "A2", "A3", "A4", "A5")

ID_CHARS: Final = 128
"""Longest id the input schemas allow (event_id, staff_id, referrer_id): the bound of
Timer.cause, referrer_id, owner_staff and last_staff."""
NAME_CHARS: Final = 64
"""Longest carrier, channel or source the input schemas allow: the bound of the carrier
keys, join_source and Timer.note."""


_BLANK: Final = blake2b(digest_size=DIGEST_BYTES)
# methods of C objects taken once: compiled, a method called by name is looked up in its
# type at every call (a digest makes three calls, and an event one or two digests)
_COPY: Final = _BLANK.copy
_UPDATE: Final = blake2b.update
_DIGEST: Final = blake2b.digest
_FIND: Final = bytes.find


def digest(text: str) -> bytes:
    # a copy of a blank hash: the constructor parses its keyword and sets up the parameter
    # block every call, a third of a digest's cost
    h = _COPY()
    _UPDATE(h, text.encode())
    return _DIGEST(h)


# Records, never changed once built (clone() shares them between states): dataclasses
# with their constructors written out, not NamedTuples. Compiled, a NamedTuple is built by
# interpreted code and its fields read by a generic lookup; these are native classes, built
# and read as C structs. Interpreted, they build faster than NamedTuples too.
@dataclass(slots=True, init=False, unsafe_hash=True)
class Timer:
    due: Final[Millis]
    cause: Final[str]
    """Event id that scheduled it; becomes the action's cause_event_id. At most ID_CHARS."""
    note: Final[str]
    """Small per-timer detail (e.g. the channel the customer wrote on); at most NAME_CHARS."""

    def __init__(self, due: Millis, cause: str, note: str = "") -> None:
        self.due = due
        self.cause = cause
        self.note = note


@dataclass(slots=True, init=False, unsafe_hash=True)
class OrderRecord:
    key: Final[bytes]
    """digest(order_id)"""
    remaining_fen: Final[int]
    membership: Final[bool]

    def __init__(self, key: bytes, remaining_fen: int, membership: bool) -> None:
        self.key = key
        self.remaining_fen = remaining_fen
        self.membership = membership


@dataclass(slots=True, init=False)
class CustomerState:
    layer: str | None
    """5A layer, monotone; None until the customer is first seen."""
    tier: str
    health: str
    membership: str
    spend_fen: int
    """Net spend on purchases (refunds subtracted, never below 0), integer fen."""
    orders: int
    """Paid purchase orders (membership fees excluded)."""
    first_order_at: Millis | None
    last_order_at: Millis | None
    order_times: list[Millis]
    """Most recent paid purchase times, ascending, for the repurchase cycle; at most
    RepurchaseDue.gaps + 1, oldest dropped."""
    recent_orders: list[OrderRecord]
    """At most Engine.recent_orders, oldest dropped."""
    carriers: dict[str, Millis]
    """Carriers the customer is in now, with the time they joined each; at most
    Engine.max_carriers (a join to one more is rejected), keys at most NAME_CHARS."""
    join_source: str | None
    """At most NAME_CHARS."""
    referrer_id: str | None
    """At most ID_CHARS."""
    owner_staff: str | None
    """Staff of the latest join that named one; at most ID_CHARS."""
    last_staff: str | None
    """Staff who last wrote to the customer; at most ID_CHARS."""
    last_inbound_at: Millis | None
    last_outbound_at: Millis | None
    pending_reply_since: Millis | None
    outbound_streak: int
    last_activity_at: Millis | None
    """Latest order or inbound chat (for `dormant`)."""
    referrals: int
    member_until: Millis | None
    """At most Engine.max_member_ahead_days after the payment that set it."""
    gifts: list[str]
    """Once-ever gift codes already granted (each at most once: as many as there are)."""
    touches: list[Millis]
    """Due times of recent customer-facing reminders (frequency cap); at most
    ContactPolicy.max_per_window."""
    last_invite_at: Millis | None
    seen: bytes
    """Digests of recent event ids, oldest first, DIGEST_BYTES each; at most
    Engine.dedup_window of them, oldest dropped."""
    timers: dict[str, Timer]
    """At most one per name in step.TIMER_NAMES."""

    # The constructor written out, not the dataclass one: compiled, a generated __init__
    # runs as interpreted code (~5x the cost), and a state is built for every event and
    # timer (clone). The defaults live here; the stored keys live in `stored`.
    def __init__(  # noqa: PLR0917 - one parameter per field, as the dataclass's
        self,
        layer: str | None = None,
        tier: str = "none",
        health: str = "active",
        membership: str = "none",
        spend_fen: int = 0,
        orders: int = 0,
        first_order_at: Millis | None = None,
        last_order_at: Millis | None = None,
        order_times: list[Millis] | None = None,
        recent_orders: list[OrderRecord] | None = None,
        carriers: dict[str, Millis] | None = None,
        join_source: str | None = None,
        referrer_id: str | None = None,
        owner_staff: str | None = None,
        last_staff: str | None = None,
        last_inbound_at: Millis | None = None,
        last_outbound_at: Millis | None = None,
        pending_reply_since: Millis | None = None,
        outbound_streak: int = 0,
        last_activity_at: Millis | None = None,
        referrals: int = 0,
        member_until: Millis | None = None,
        gifts: list[str] | None = None,
        touches: list[Millis] | None = None,
        last_invite_at: Millis | None = None,
        seen: bytes = b"",
        timers: dict[str, Timer] | None = None,
    ) -> None:
        self.layer = layer
        self.tier = tier
        self.health = health
        self.membership = membership
        self.spend_fen = spend_fen
        self.orders = orders
        self.first_order_at = first_order_at
        self.last_order_at = last_order_at
        self.order_times = [] if order_times is None else order_times
        self.recent_orders = [] if recent_orders is None else recent_orders
        self.carriers = {} if carriers is None else carriers
        self.join_source = join_source
        self.referrer_id = referrer_id
        self.owner_staff = owner_staff
        self.last_staff = last_staff
        self.last_inbound_at = last_inbound_at
        self.last_outbound_at = last_outbound_at
        self.pending_reply_since = pending_reply_since
        self.outbound_streak = outbound_streak
        self.last_activity_at = last_activity_at
        self.referrals = referrals
        self.member_until = member_until
        self.gifts = [] if gifts is None else gifts
        self.touches = [] if touches is None else touches
        self.last_invite_at = last_invite_at
        self.seen = seen
        self.timers = {} if timers is None else timers

    def clone(self) -> CustomerState:
        """A copy the core may change: `timers` copied (most steps change it), the other
        containers shared, which the core replaces and never changes in place (copying
        each on every step was a tenth of replay's allocations; test_properties checks
        that a step leaves the state it was given as it was)."""
        # every field by position, in field order (by keyword cost 3x as much; compiled, each
        # read is a struct field and the call a direct one): this runs for every event and
        # timer. tests/test_state.py fails for a field left out or out of order.
        return CustomerState(
            self.layer,
            self.tier,
            self.health,
            self.membership,
            self.spend_fen,
            self.orders,
            self.first_order_at,
            self.last_order_at,
            self.order_times,
            self.recent_orders,
            self.carriers,
            self.join_source,
            self.referrer_id,
            self.owner_staff,
            self.last_staff,
            self.last_inbound_at,
            self.last_outbound_at,
            self.pending_reply_since,
            self.outbound_streak,
            self.last_activity_at,
            self.referrals,
            self.member_until,
            self.gifts,
            self.touches,
            self.last_invite_at,
            self.seen,
            dict(self.timers),
        )

    def has_seen(self, key: bytes) -> bool:
        start = _FIND(self.seen, key)
        while start != -1:
            if start % DIGEST_BYTES == 0:  # aligned: a whole digest, not a straddle of two
                return True
            start = _FIND(self.seen, key, start + 1)
        return False

    def remember(self, key: bytes, window: int) -> None:
        self.seen = (self.seen + key)[-window * DIGEST_BYTES :]

    def find_order(self, order_key: bytes) -> OrderRecord | None:
        for record in self.recent_orders:
            if record.key == order_key:
                return record
        return None
