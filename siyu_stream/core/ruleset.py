"""The rule numbers: a TOML rules file over built-in defaults (docs/design.md §4).

Every number the rules use lives here, nowhere else. `load_rules(path)` reads a
file that may override any subset of keys; an unknown key, a wrong type or an
impossible value raises `RulesError` naming the file, the line and the key.

Every number also carries its allowed range in its field's metadata (`_within`), the one
place it is written: loading enforces it, `rules.example.toml` states it in a comment
(tests/test_ruleset.py checks both against the metadata). The ranges are business limits
chosen so that no accepted file can, by itself, push a due time out of what the engine
can represent, and so that the collections a customer's state holds (dedup_window,
recent_orders, max_carriers, gaps, max_per_window) at their maxima still serialize below
the smallest max_state_bytes (tests/test_ruleset.py checks it with `rules.largest_state`).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from hashlib import blake2b
from pathlib import Path
from typing import Any, Final, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from siyu_stream.core.errors import RulesError
from siyu_stream.core.golive import GoLive
from siyu_stream.core.memo import remember

# of any length, as `clock._MONTH_DAYS`: `tier_of` indexes it for every order
TIERS: Final[tuple[str, ...]] = ("none", "silver", "gold", "platinum", "diamond")
WEEK_MINUTES: Final = 7 * 24 * 60
TEN_YEARS_DAYS: Final = 3_650
MAX_YUAN: Final = 1_000_000_000
"""The largest amount of money a rules file may name (10^9 yuan)."""


Number = int | float
"""A bound of a range. Not `float`: compiled (mypyc), a `float` variable turns an int into
a float, and an int field's range must stay ints (its error text, the tests' draws)."""


def _within(low: Number, high: Number) -> dict[str, tuple[Number, Number]]:
    """Field metadata: the value (or each element of a list or table) lies in [low, high]."""
    return {"range": (low, high)}


def range_of(f: dataclasses.Field[Any]) -> tuple[Number, Number] | None:
    """The (low, high) allowed for a rules field, both included; None for a non-number."""
    bounds: tuple[Number, Number] | None = f.metadata.get("range")
    return bounds


def _show(number: Number) -> str:
    if isinstance(number, float):
        return f"{number:g}"
    # grouped from five digits on: 10_080 and 1_000_000 read at a glance, years stay 1970
    return f"{number:_}" if abs(number) >= 10_000 else str(number)


def range_text(low: Number, high: Number) -> str:
    """A range as the rules file comments write it: `1..10_080`."""
    return f"{_show(low)}..{_show(high)}"


@dataclass(frozen=True, slots=True)
class Engine:
    timezone: str = "Asia/Shanghai"
    """The brand's time zone: quiet hours are read in it."""
    dedup_window: int = field(default=32, metadata=_within(1, 256))
    """How many recent event ids each customer remembers for de-duplication."""
    recent_orders: int = field(default=20, metadata=_within(1, 100))
    """How many recent orders each customer remembers (refund matching, order-id de-duplication)."""
    max_carriers: int = field(default=16, metadata=_within(1, 32))
    """Most carriers one customer is in at once: a join to a new carrier beyond it is
    rejected (outcome `rejected`, dead-lettered, state unchanged; docs/design.md §3)."""
    max_member_ahead_days: int = field(default=3_650, metadata=_within(7, 36_500))
    """Most days a membership may run past the payment that extends it: a payment that
    would extend it further is rejected (outcome `rejected`, dead-lettered, state
    unchanged; docs/design.md §3). Ten years of prepaid renewals is not a customer."""
    max_state_bytes: int = field(default=32_768, metadata=_within(32_768, 262_144))
    """Ceiling on one customer's serialized state, its changelog record (the producer's
    default limit is about 1 MB). Not checked per event: `rules.largest_state` under the
    other bounds must serialize below it (tests/test_state.py)."""


@dataclass(frozen=True, slots=True)
class Input:
    max_message_bytes: int = field(default=65_536, metadata=_within(1_024, 1_048_576))
    """Larger messages go to the dead-letter topic."""
    max_order_yuan: int = field(default=10_000_000, metadata=_within(1, MAX_YUAN))
    """An order or refund above this is an absurd value and is rejected."""
    max_age_days: int = field(default=366, metadata=_within(1, TEN_YEARS_DAYS))
    """Events older than this behind their partition clock are rejected."""
    max_future_minutes: int = field(default=1_440, metadata=_within(1, WEEK_MINUTES))
    """Events further ahead of now (live: the wall clock; replay: `--now`) are rejected."""
    earliest_year: int = field(default=2000, metadata=_within(1970, 2100))
    """Events dated before 1 January of this year (UTC) are rejected: a floor for event time."""


@dataclass(frozen=True, slots=True)
class Welcome:
    due_minutes: int = field(default=5, metadata=_within(1, WEEK_MINUTES))
    """The welcome survey reminder is due this long after the join."""


@dataclass(frozen=True, slots=True)
class ReplySla:
    minutes: int = field(default=30, metadata=_within(1, WEEK_MINUTES))
    """An inbound message with no outbound reply within this long raises `reply_overdue`."""


@dataclass(frozen=True, slots=True)
class SpendTier:
    thresholds_yuan: tuple[int, ...] = field(
        default=(5_000, 10_000, 50_000, 100_000), metadata=_within(1, MAX_YUAN)
    )
    """Net spend for silver, gold, platinum and diamond; each gifts `tier_<n>` once, ever."""


@dataclass(frozen=True, slots=True)
class Membership:
    days: int = field(default=365, metadata=_within(7, TEN_YEARS_DAYS))
    """A paid membership lasts this long; renewals extend from max(now, expiry)."""
    renewal_notice_days: int = field(default=30, metadata=_within(1, 365))
    """The renewal reminder is due this long before expiry (shorter than `days`)."""


@dataclass(frozen=True, slots=True)
class ThirdOrder:
    order_number: int = field(default=3, metadata=_within(1, 100))
    """The paid purchase that earns `third_order_reward` (once)."""


@dataclass(frozen=True, slots=True)
class InviteToJoin:
    max_order_age_days: int = field(default=7, metadata=_within(1, 365))
    """Only orders this fresh on the engine clock get an invite."""
    every_days: int = field(default=30, metadata=_within(1, 365))
    """At most one invite per customer in this many days."""
    channel: str = "package_card"


@dataclass(frozen=True, slots=True)
class RepurchaseDue:
    gaps: int = field(default=5, metadata=_within(1, 50))
    """The cycle is the median of the last this-many inter-order gaps."""
    floor_days: int = field(default=7, metadata=_within(1, 365))
    """The cycle is never shorter than this."""
    default_days: int = field(default=30, metadata=_within(1, 365))
    """The cycle while the customer has fewer than 2 orders."""
    at_risk_multiple: int = field(default=2, metadata=_within(1, 10))
    """At last order + multiple x cycle: health at_risk and, for VIPs, a phone call."""
    vip_min_tier: str = "gold"


@dataclass(frozen=True, slots=True)
class Silence:
    streak: int = field(default=5, metadata=_within(1, 1_000))
    """Outbound messages in a row without inbound that mark a customer at risk."""


@dataclass(frozen=True, slots=True)
class Leave:
    winback_min_spend_yuan: int = field(default=1_000, metadata=_within(1, MAX_YUAN))
    """Leaving customers with at least this net spend get a winback phone call."""


@dataclass(frozen=True, slots=True)
class Dormant:
    days: int = field(default=180, metadata=_within(1, TEN_YEARS_DAYS))
    """Days with neither order nor inbound chat before health turns dormant."""


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    quiet_start: str = "22:00"
    quiet_end: str = "08:00"
    """Customer-facing reminders due inside quiet hours move to the next quiet_end."""
    max_per_window: int = field(default=2, metadata=_within(1, 20))
    window_days: int = field(default=7, metadata=_within(1, 365))
    """At most max_per_window customer-facing reminders per customer per rolling window."""
    holdout_percent: float = field(default=0.0, metadata=_within(0.0, 100.0))
    """Share (0-100) of customers in the control group, whose customer-facing reminders are held."""
    holdout_salt: str = "siyu"
    """Changing the salt reshuffles who is in the holdout group."""
    default_channel: str = "wecom"
    """Channel of customer-facing reminders when the customer has no carrier in the pool."""


def _default_gifts() -> dict[str, int]:
    return {
        "tier_5000": 200,
        "tier_10000": 500,
        "tier_50000": 2_000,
        "tier_100000": 5_000,
        "member_welcome_pack": 1_500,
        "third_order_reward": 50,
        "referral_reward": 100,
    }


@dataclass(frozen=True, slots=True)
class Rules:
    """All rule numbers; `Rules()` is the docs/design.md §4 default."""

    engine: Engine = field(default_factory=Engine)
    input: Input = field(default_factory=Input)
    welcome: Welcome = field(default_factory=Welcome)
    reply_sla: ReplySla = field(default_factory=ReplySla)
    spend_tier: SpendTier = field(default_factory=SpendTier)
    membership: Membership = field(default_factory=Membership)
    third_order: ThirdOrder = field(default_factory=ThirdOrder)
    invite_to_join: InviteToJoin = field(default_factory=InviteToJoin)
    repurchase_due: RepurchaseDue = field(default_factory=RepurchaseDue)
    silence: Silence = field(default_factory=Silence)
    leave: Leave = field(default_factory=Leave)
    dormant: Dormant = field(default_factory=Dormant)
    contact_policy: ContactPolicy = field(default_factory=ContactPolicy)
    gifts_yuan: dict[str, int] = field(
        default_factory=_default_gifts, metadata=_within(0, 1_000_000)
    )
    """Value of each gift code in yuan (emitted as integer fen)."""
    go_live: GoLive | None = None
    """The run's go-live instant, if any (not from the rules file: see `GoLive`)."""

    def going_live(self, go_live: GoLive | None) -> Rules:
        """These rules for a run that goes live at `go_live` (None: emit everything)."""
        return dataclasses.replace(self, go_live=go_live)

    def tier_code(self, threshold_yuan: int) -> str:
        return f"tier_{threshold_yuan}"

    def gift_fen(self, code: str) -> int:
        return self.gifts_yuan.get(code, 0) * 100

    @property
    def version(self) -> str:
        """A short digest of the effective rules: every action carries it, so that anyone
        can tell which rules produced an action (ids stay as they are)."""
        return rules_version(self)

    @property
    def zone(self) -> ZoneInfo:
        # memoized: every customer-facing reminder asks (ZoneInfo() is a generic call)
        found = _zones.get(self.engine.timezone)
        if found is None:
            found = remember(_zones, self.engine.timezone, ZoneInfo(self.engine.timezone), 64)
        return found


_zones: Final[dict[str, ZoneInfo]] = {}


RULE_SECTIONS: Final = tuple(f.name for f in dataclasses.fields(Rules) if f.name != "go_live")
"""The sections of a rules file (every field of `Rules` but the run's go-live)."""

_HHMM: Final = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_HEADER: Final = re.compile(r"^\[\s*([^\[\]]+?)\s*\]")


def _line_of(text: str, section: str, key: str) -> int | None:
    """Best-effort line number of `key` in `[section]` (tomllib reports no positions)."""
    current = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            current = header.group(1)  # a comment may follow the header
            if not key and current == section:
                return number
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            return number
    return None


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, section: str, key: str, problem: str) -> NoReturn:
        line = _line_of(self.text, section, key)
        where = f"{self.path}:{line}" if line else self.path
        name = f"{section}.{key}" if key else section
        msg = f"{where}: {name}: {problem}"
        raise RulesError(msg)


def _coerce(check: _Checker, section: str, key: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool) or isinstance(value, bool):
        ok = type(value) is type(default)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, list) and all(type(v) is type(default[0]) for v in value)
        value = tuple(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        check.fail(section, key, f"expected {type(default).__name__}, got {value!r}")
    return value


def _check_ranges(check: _Checker, section: str, obj: Any) -> None:
    """Every number of `obj` (the Rules itself or one section) inside its field's range."""
    for f in dataclasses.fields(obj):
        bounds = range_of(f)
        if bounds is None:
            continue
        low, high = bounds
        value = getattr(obj, f.name)
        if isinstance(value, dict):
            # a table of numbers (gifts_yuan): each key is its own line in the file
            for key, item in value.items():
                if not low <= item <= high:  # their type is checked before
                    problem = f"must be between {_show(low)} and {_show(high)}, got {item!r}"
                    check.fail(f.name, key, problem)
            continue
        items = value if isinstance(value, tuple) else (value,)
        # `not low <= x <= high` also rejects NaN, which compares false with everything
        bad = [item for item in items if not low <= item <= high]
        if bad:
            each = "each " if isinstance(value, tuple) else ""
            problem = f"{each}must be between {_show(low)} and {_show(high)}, got {bad[0]!r}"
            check.fail(section, f.name, problem)


def _is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(check: _Checker, rules: Rules) -> None:
    _check_ranges(check, "", rules)
    for section_field in dataclasses.fields(rules):
        section = getattr(rules, section_field.name)
        if dataclasses.is_dataclass(section):
            _check_ranges(check, section_field.name, section)
    thresholds = rules.spend_tier.thresholds_yuan
    if len(thresholds) != len(TIERS) - 1:
        check.fail("spend_tier", "thresholds_yuan", f"needs {len(TIERS) - 1} values")
    if any(b <= a for a, b in itertools.pairwise(thresholds)):
        check.fail("spend_tier", "thresholds_yuan", "must be increasing")
    if rules.membership.renewal_notice_days >= rules.membership.days:
        check.fail("membership", "renewal_notice_days", "must be shorter than days")
    if rules.membership.days > rules.engine.max_member_ahead_days:
        days = rules.membership.days
        problem = f"must be at least [membership] days ({days}): every payment would be rejected"
        check.fail("engine", "max_member_ahead_days", problem)
    if rules.repurchase_due.vip_min_tier not in TIERS:
        check.fail("repurchase_due", "vip_min_tier", f"must be one of {', '.join(TIERS)}")
    policy = rules.contact_policy
    for key in ("quiet_start", "quiet_end"):
        if not _HHMM.match(getattr(policy, key)):
            check.fail("contact_policy", key, "must be HH:MM (24 h)")
    try:
        ZoneInfo(rules.engine.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        check.fail("engine", "timezone", f"unknown time zone ({exc})")
    for code in [rules.tier_code(t) for t in thresholds]:
        if code not in rules.gifts_yuan:
            check.fail("gifts_yuan", code, "missing value for a tier gift")


def parse_rules(text: str, path: str = "<rules>") -> Rules:
    """Rules from TOML text, over the defaults."""
    check = _Checker(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: invalid TOML: {exc}"
        raise RulesError(msg) from exc
    defaults = Rules()
    sections: dict[str, Any] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            check.fail(name, "", "expected a [table]")
        if name == "gifts_yuan":
            # checked before the table is a Rules field: compiled, reading a value of a
            # dict[str, int] that holds a float fails with a TypeError, not our message
            for code, value in table.items():
                if not _is_number(value):
                    check.fail(name, code, f"must be a whole number of yuan, got {value!r}")
            sections[name] = {**defaults.gifts_yuan, **table}
            continue
        default_section = getattr(defaults, name, None)
        if default_section is None or not dataclasses.is_dataclass(default_section):
            known = ", ".join(RULE_SECTIONS)
            check.fail(name, "", f"unknown section (known: {known})")
        values = {}
        known_keys = {f.name for f in dataclasses.fields(default_section)}
        for key, value in table.items():
            if key not in known_keys:
                check.fail(name, key, f"unknown key (known: {', '.join(sorted(known_keys))})")
            values[key] = _coerce(check, name, key, value, getattr(default_section, key))
        sections[name] = dataclasses.replace(default_section, **values)  # type: ignore[type-var]  # is_dataclass narrows to the instance
    rules = dataclasses.replace(defaults, **sections)
    _validate(check, rules)
    return rules


def load_rules(path: Path | str | None) -> Rules:
    """The rules of `path`, or the defaults when path is None."""
    if path is None:
        return Rules()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read rules file: {exc}"
        raise RulesError(msg) from exc
    return parse_rules(text, str(path))


_NO_GO_LIVE: Final = b',"go_live":null}'
_VERSIONS: OrderedDict[int, tuple[Rules, str]] = OrderedDict()
"""The digests of the last few Rules objects (computing one serializes every number)."""


def _canonical(value: Any) -> Any:
    """`value` as orjson wrote the dataclasses themselves with OPT_SORT_KEYS: a dataclass
    as an object in field order, a dict with sorted keys. Built by hand: orjson reads a
    dataclass through its __dict__ or __slots__, which a mypyc-compiled class lacks."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    return value


def rules_version(rules: Rules) -> str:
    hit = _VERSIONS.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1]
    # The go-live instant is a run parameter, not a rule: the digest is over the rule
    # fields alone, byte for byte as before the field existed (it is the last field, so
    # dropping it from the bytes keeps every version, and every action, as it was).
    plain = rules if rules.go_live is None else dataclasses.replace(rules, go_live=None)
    canonical = orjson.dumps(_canonical(plain))
    canonical = canonical.removesuffix(_NO_GO_LIVE) + b"}"
    digest = blake2b(canonical, digest_size=4).hexdigest()
    _VERSIONS[id(rules)] = (rules, digest)
    while len(_VERSIONS) > 32:
        _VERSIONS.popitem(last=False)
    return digest
