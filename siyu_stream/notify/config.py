"""The notify TOML file: sinks, staleness limits, the staff map (docs/notify.md).

Read once into frozen objects. Like the rules file (`core/ruleset.py`), an unknown key,
a wrong type or an impossible value raises `NotifyConfigError` naming the file, the
line and the field (`notify.toml:14: sink[2].rate: ...`), before anything connects.
Secrets (webhook keys, a robot's URL with its key) are named by environment variable,
never written in the file, and are read here, so a missing one fails at start-up.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, cast
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from siyu_stream.core.clock import MINUTE, Millis
from siyu_stream.core.errors import NotifyConfigError
from siyu_stream.core.policy import CUSTOMER_FACING

SinkType = Literal["webhook", "wecom_robot", "stdout"]
KINDS = ("gift", "reminder")
TEMPLATES = (
    "welcome_survey",
    "reply_overdue",
    *sorted(CUSTOMER_FACING),
)
STAFF_TASKS = frozenset({"welcome_survey", "reply_overdue"})
WECOM_MAX_PER_MINUTE = 20
"""WeCom's documented limit for one group robot: 20 messages a minute."""
WECOM_HOST = "qyapi.weixin.qq.com"


@dataclass(frozen=True, slots=True)
class Sink:
    name: str
    type: SinkType
    kinds: tuple[str, ...]
    """Action kinds (`gift`, `reminder`) it takes."""
    templates: tuple[str, ...] = ()
    """Reminder templates it takes (empty: every template); routing by template."""
    url: str = ""
    secret: bytes = b""
    """webhook: the HMAC key (read from the variable named by `secret_env`)."""
    rate: int | None = None
    """Most messages per `rate_window_seconds` (default 60); None: no limit."""
    rate_window_seconds: float = 60.0
    msgtype: Literal["markdown", "text"] = "markdown"
    timeout_seconds: float = 10.0
    max_attempts: int = 12
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    concurrency: int = 4

    def takes(self, kind: str, template: str | None) -> bool:
        if kind not in self.kinds:
            return False
        return kind != "reminder" or not self.templates or template in self.templates


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    sinks: tuple[Sink, ...]
    staff: Mapping[str, str] = field(default_factory=dict)
    """Staff id (as in an action's `assignee`) -> WeCom userid, for @-mentions."""
    staleness_minutes: Mapping[str, int] = field(default_factory=dict)
    """Per template (reminders) or `gift`; `default` for the rest."""
    timezone: str = "Asia/Shanghai"
    """Times in WeCom messages are shown in this zone."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 6067
    max_pending_per_partition: int = 10_000
    """Held plus in-flight actions per partition; past it the partition is paused."""
    max_delivered_ids: int = 1_000_000
    """Receipts remembered (the delivered-ids record read on assignment)."""
    commit_interval_seconds: float = 1.0

    def staleness_ms(self, kind: str, template: str | None) -> Millis:
        table = self.staleness_minutes
        key = template if kind == "reminder" and template else kind
        return table.get(key, table.get("default", DEFAULT_STALENESS_MINUTES)) * MINUTE

    @property
    def horizon_ms(self) -> Millis:
        """The longest staleness: a receipt older than this can no longer stop a re-send
        (an action that old is expired, not sent), so only newer ones are read back."""
        values = [*self.staleness_minutes.values(), DEFAULT_STALENESS_MINUTES]
        return max(values) * MINUTE

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


DEFAULT_STALENESS_MINUTES = 24 * 60


_HEADER = re.compile(r"^\[\[?\s*([^\[\]]+?)\s*\]\]?")


def _line_of(text: str, table: str, index: int | None, key: str) -> int | None:
    """Best-effort line of `key` in `[table]`, or in the `index`-th `[[table]]` (tomllib
    reports no positions; the rules file is read the same way)."""
    current, seen = "", -1
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = _HEADER.match(line)
        if header:
            current = header.group(1)
            if current == table and line.startswith("[["):
                seen += 1
            here = current == table and (index is None or seen == index)
            if not key and here:
                return number
        elif (
            current == table
            and (index is None or seen == index)
            and re.match(rf'^"?{re.escape(key)}"?\s*=', line)
        ):
            return number
    return None


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, table: str, key: str, problem: str, index: int | None = None) -> NoReturn:
        line = _line_of(self.text, table, index, key)
        if line is None and key:  # the key is missing: point at its table
            line = _line_of(self.text, table, index, "")
        where = f"{self.path}:{line}" if line else self.path
        name = f"{table}[{index + 1}]" if index is not None else table
        name = f"{name}.{key}" if key else name
        msg = f"{where}: {name}: {problem}"
        raise NotifyConfigError(msg)


_SINK_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "type": str,
    "kinds": list,
    "templates": list,
    "url": str,
    "url_env": str,
    "secret_env": str,
    "rate": int,
    "rate_window_seconds": (int, float),
    "msgtype": str,
    "timeout_seconds": (int, float),
    "max_attempts": int,
    "backoff_base_seconds": (int, float),
    "backoff_max_seconds": (int, float),
    "concurrency": int,
}
_NOTIFY_KEYS: dict[str, type | tuple[type, ...]] = {
    "timezone": str,
    "metrics_host": str,
    "metrics_port": int,
    "max_pending_per_partition": int,
    "max_delivered_ids": int,
    "commit_interval_seconds": (int, float),
}
_RANGES: dict[str, tuple[float, float]] = {
    "rate": (1, 100_000),
    "rate_window_seconds": (0.1, 3_600),
    "timeout_seconds": (0.1, 300),
    "max_attempts": (1, 1_000),
    "backoff_base_seconds": (0.001, 3_600),
    "backoff_max_seconds": (0.001, 86_400),
    "concurrency": (1, 256),
    "metrics_port": (0, 65_535),
    "max_pending_per_partition": (1, 1_000_000),
    "max_delivered_ids": (1_000, 100_000_000),
    "commit_interval_seconds": (0.05, 60),
}


def _typed(
    check: _Checker,
    table: str,
    index: int | None,
    data: Mapping[str, Any],
    known: Mapping[str, type | tuple[type, ...]],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    value: Any
    for key, value in data.items():
        if key not in known:
            check.fail(table, key, f"unknown key (known: {', '.join(sorted(known))})", index)
        expected = known[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            names = expected.__name__ if isinstance(expected, type) else "number"
            check.fail(table, key, f"expected {names}, got {value!r}", index)
        if key in _RANGES:
            low, high = _RANGES[key]
            number = cast(float, value)  # its type was checked above
            if not low <= number <= high:
                check.fail(
                    table, key, f"must be between {low:g} and {high:g}, got {value!r}", index
                )
        out[key] = float(cast(float, value)) if isinstance(expected, tuple) else value
    return out


def _strings(
    check: _Checker, index: int, key: str, value: list[Any], allowed: tuple[str, ...]
) -> tuple[str, ...]:
    for item in value:
        if item not in allowed:
            check.fail("sink", key, f"{item!r} is not one of {', '.join(allowed)}", index)
    return tuple(value)


def _sink(check: _Checker, index: int, data: Mapping[str, Any], env: Mapping[str, str]) -> Sink:
    values = _typed(check, "sink", index, data, _SINK_KEYS)
    for required in ("name", "type", "kinds"):
        if required not in values:
            check.fail("sink", required, "missing", index)
    kind = values.pop("type")
    if kind not in ("webhook", "wecom_robot", "stdout"):
        check.fail("sink", "type", f"{kind!r} is not one of webhook, wecom_robot, stdout", index)
    values["kinds"] = _strings(check, index, "kinds", values["kinds"], KINDS)
    if not values["kinds"]:
        check.fail("sink", "kinds", "names no kind: the sink would receive nothing", index)
    if "templates" in values:
        values["templates"] = _strings(check, index, "templates", values["templates"], TEMPLATES)
    if values.get("msgtype", "markdown") not in ("markdown", "text"):
        check.fail("sink", "msgtype", "must be markdown or text", index)
    url_env = values.pop("url_env", None)
    if url_env is not None:
        if not env.get(url_env):
            check.fail("sink", "url_env", f"environment variable {url_env} is not set", index)
        values["url"] = env[url_env]
    if kind != "stdout" and not values.get("url", "").startswith(("http://", "https://")):
        check.fail("sink", "url", "needs an http(s) URL (url, or url_env naming one)", index)
    secret_env = values.pop("secret_env", None)
    if kind == "webhook":
        if secret_env is None:
            check.fail("sink", "secret_env", "missing: webhooks are signed", index)
        if not env.get(secret_env):
            check.fail("sink", "secret_env", f"environment variable {secret_env} is not set", index)
        values["secret"] = env[secret_env].encode()
    if kind == "wecom_robot":
        rate = values.setdefault("rate", WECOM_MAX_PER_MINUTE)
        window = values.get("rate_window_seconds", 60.0)
        # WeCom's own limit binds the real service; a relay or a stand-in in front of it
        # (tests) may count over another window
        real = urlsplit(values["url"]).hostname == WECOM_HOST
        if real and rate / window > WECOM_MAX_PER_MINUTE / 60:
            problem = f"a WeCom robot takes at most {WECOM_MAX_PER_MINUTE} messages a minute"
            check.fail("sink", "rate", problem, index)
    if values.get("backoff_max_seconds", 300.0) < values.get("backoff_base_seconds", 1.0):
        check.fail("sink", "backoff_max_seconds", "must be >= backoff_base_seconds", index)
    return Sink(type=kind, **values)


def parse_config(
    text: str, path: str = "<notify>", env: Mapping[str, str] | None = None
) -> NotifyConfig:
    """The notifier's configuration from TOML text; `env` (default os.environ) holds the
    secrets the file names."""
    env = os.environ if env is None else env
    check = _Checker(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: invalid TOML: {exc}"
        raise NotifyConfigError(msg) from exc
    for name in data:
        if name not in ("notify", "sink", "staff", "staleness_minutes"):
            check.fail(name, "", "unknown table (known: notify, sink, staff, staleness_minutes)")
    raw_sinks = data.get("sink", [])
    if not isinstance(raw_sinks, list) or not raw_sinks:
        check.fail("sink", "", "at least one [[sink]] table is needed")
    sinks: list[Sink] = []
    for index, table in enumerate(raw_sinks):
        sink = _sink(check, index, table, env)
        if sink.name in {s.name for s in sinks}:
            check.fail("sink", "name", f"{sink.name!r} names two sinks", index)
        sinks.append(sink)
    notify = _typed(check, "notify", None, data.get("notify", {}), _NOTIFY_KEYS)
    if "timezone" in notify:
        try:
            ZoneInfo(notify["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            check.fail("notify", "timezone", f"unknown time zone ({exc})")
    staff = data.get("staff", {})
    for key, value in staff.items():
        if not isinstance(value, str) or not value:
            check.fail("staff", key, f"expected a WeCom userid (string), got {value!r}")
    staleness = data.get("staleness_minutes", {})
    for key, value in staleness.items():
        if key not in (*TEMPLATES, "gift", "default"):
            known = ", ".join((*TEMPLATES, "gift", "default"))
            check.fail("staleness_minutes", key, f"unknown template (known: {known})")
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 525_600:
            check.fail("staleness_minutes", key, f"expected minutes in 1..525_600, got {value!r}")
    return NotifyConfig(
        sinks=tuple(sinks), staff=dict(staff), staleness_minutes=dict(staleness), **notify
    )


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> NotifyConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read notify config: {exc}"
        raise NotifyConfigError(msg) from exc
    return parse_config(text, str(path), env)
