"""The rule numbers: a TOML rules file over built-in defaults (docs/design.md §4).

Every number the rules use lives here, nowhere else. `load_rules(path)` reads a
file that may override any subset of keys; an unknown key, a wrong type or an
impossible value raises `RulesError` naming the file, the line and the key.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from siyu_stream.errors import RulesError

TIERS = ("none", "silver", "gold", "platinum", "diamond")


@dataclass(frozen=True, slots=True)
class Engine:
    timezone: str = "Asia/Shanghai"
    """The brand's time zone: quiet hours are read in it."""
    dedup_window: int = 32
    """How many recent event ids each customer remembers for de-duplication."""
    recent_orders: int = 20
    """How many recent orders each customer remembers (refund matching, order-id de-duplication)."""
    max_carriers: int = 16
    """Most carriers one customer is in at once: a join to a new carrier beyond it is
    rejected (outcome `rejected`, dead-lettered, state unchanged; docs/design.md §3)."""
    max_member_ahead_days: int = 3_650
    """Most days a membership may run past the payment that extends it: a payment that
    would extend it further is rejected (outcome `rejected`, dead-lettered, state
    unchanged; docs/design.md §3). Ten years of prepaid renewals is not a customer."""
    max_state_bytes: int = 32_768
    """Ceiling on one customer's serialized state, its changelog record (the producer's
    default limit is about 1 MB). Not checked per event: `rules.largest_state` under the
    other bounds must serialize below it (tests/test_state.py)."""


@dataclass(frozen=True, slots=True)
class Input:
    max_message_bytes: int = 65_536
    """Larger messages go to the dead-letter topic."""
    max_order_yuan: int = 10_000_000
    """An order or refund above this is an absurd value and is rejected."""
    max_age_days: int = 366
    """Events older than this behind their partition clock are rejected."""
    max_future_minutes: int = 1_440
    """Events further ahead of now (live: the wall clock; replay: `--now`) are rejected."""
    earliest_year: int = 2000
    """Events dated before 1 January of this year (UTC) are rejected: a floor for event time."""


@dataclass(frozen=True, slots=True)
class Welcome:
    due_minutes: int = 5
    """The welcome survey reminder is due this long after the join."""


@dataclass(frozen=True, slots=True)
class ReplySla:
    minutes: int = 30
    """An inbound message with no outbound reply within this long raises `reply_overdue`."""


@dataclass(frozen=True, slots=True)
class SpendTier:
    thresholds_yuan: tuple[int, ...] = (5_000, 10_000, 50_000, 100_000)
    """Net spend for silver, gold, platinum and diamond; each gifts `tier_<n>` once, ever."""


@dataclass(frozen=True, slots=True)
class Membership:
    days: int = 365
    """A paid membership lasts this long; renewals extend from max(now, expiry)."""
    renewal_notice_days: int = 30
    """The renewal reminder is due this long before expiry."""


@dataclass(frozen=True, slots=True)
class ThirdOrder:
    order_number: int = 3
    """The paid purchase that earns `third_order_reward` (once)."""


@dataclass(frozen=True, slots=True)
class InviteToJoin:
    max_order_age_days: int = 7
    """Only orders this fresh on the engine clock get an invite."""
    every_days: int = 30
    """At most one invite per customer in this many days."""
    channel: str = "package_card"


@dataclass(frozen=True, slots=True)
class RepurchaseDue:
    gaps: int = 5
    """The cycle is the median of the last this-many inter-order gaps."""
    floor_days: int = 7
    default_days: int = 30
    """The cycle while the customer has fewer than 2 orders."""
    at_risk_multiple: int = 2
    """At last order + multiple x cycle: health at_risk and, for VIPs, a phone call."""
    vip_min_tier: str = "gold"


@dataclass(frozen=True, slots=True)
class Silence:
    streak: int = 5
    """Outbound messages in a row without inbound that mark a customer at risk."""


@dataclass(frozen=True, slots=True)
class Leave:
    winback_min_spend_yuan: int = 1_000
    """Leaving customers with at least this net spend get a winback phone call."""


@dataclass(frozen=True, slots=True)
class Dormant:
    days: int = 180
    """Days with neither order nor inbound chat before health turns dormant."""


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    quiet_start: str = "22:00"
    quiet_end: str = "08:00"
    """Customer-facing reminders due inside quiet hours move to the next quiet_end."""
    max_per_window: int = 2
    window_days: int = 7
    """At most max_per_window customer-facing reminders per customer per rolling window."""
    holdout_percent: float = 0.0
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
    gifts_yuan: dict[str, int] = field(default_factory=_default_gifts)
    """Value of each gift code in yuan (emitted as integer fen)."""

    def tier_code(self, threshold_yuan: int) -> str:
        return f"tier_{threshold_yuan}"

    def gift_fen(self, code: str) -> int:
        return self.gifts_yuan.get(code, 0) * 100

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.engine.timezone)


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_HEADER = re.compile(r"^\[\s*([^\[\]]+?)\s*\]")


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


def _validate(check: _Checker, rules: Rules) -> None:
    def positive(section: str, key: str, value: float) -> None:
        if value <= 0:
            check.fail(section, key, f"must be > 0, got {value}")

    for section_field in dataclasses.fields(rules):
        section = getattr(rules, section_field.name)
        if not dataclasses.is_dataclass(section):
            continue
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if numeric and f.name != "holdout_percent":
                positive(section_field.name, f.name, value)
    thresholds = rules.spend_tier.thresholds_yuan
    if len(thresholds) != len(TIERS) - 1:
        check.fail("spend_tier", "thresholds_yuan", f"needs {len(TIERS) - 1} values")
    if any(b <= a for a, b in itertools.pairwise(thresholds)) or thresholds[0] <= 0:
        check.fail("spend_tier", "thresholds_yuan", "must be positive and increasing")
    if rules.membership.renewal_notice_days >= rules.membership.days:
        check.fail("membership", "renewal_notice_days", "must be shorter than days")
    if rules.repurchase_due.vip_min_tier not in TIERS:
        check.fail("repurchase_due", "vip_min_tier", f"must be one of {', '.join(TIERS)}")
    policy = rules.contact_policy
    for key in ("quiet_start", "quiet_end"):
        if not _HHMM.match(getattr(policy, key)):
            check.fail("contact_policy", key, "must be HH:MM (24 h)")
    if not 0 <= policy.holdout_percent <= 100:
        check.fail("contact_policy", "holdout_percent", "must be between 0 and 100")
    try:
        ZoneInfo(rules.engine.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        check.fail("engine", "timezone", f"unknown time zone ({exc})")
    for code in [rules.tier_code(t) for t in thresholds]:
        if code not in rules.gifts_yuan:
            check.fail("gifts_yuan", code, "missing value for a tier gift")
    for code, value in rules.gifts_yuan.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            check.fail("gifts_yuan", code, f"must be a whole number of yuan >= 0, got {value!r}")


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
            sections[name] = {**defaults.gifts_yuan, **table}
            continue
        default_section = getattr(defaults, name, None)
        if default_section is None or not dataclasses.is_dataclass(default_section):
            known = ", ".join(f.name for f in dataclasses.fields(Rules))
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
