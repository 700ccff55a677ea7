"""Worker settings: one frozen object, each field read from its environment variable.

`Settings.from_env()` is the only place the environment is read. Each field's
metadata names its variable; the docstring under it says what it does. The README's
settings table is generated from this class (`siyu-stream settings`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from siyu_stream.core.errors import SettingsError
from siyu_stream.core.golive import GRANT_SINCE_DAYS, GoLive, parse_go_live

StoreKind = Literal["memory://", "rocksdb://"]
Guarantee = Literal["exactly_once", "at_least_once"]


_TOKEN_CHARS = re.compile(r"[!-~]+")
"""Visible ASCII (0x21-0x7e): what an `Authorization: Bearer` header can carry as is."""


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = field(default="127.0.0.1:9092", metadata=_env("SIYU_BROKER"))
    """Kafka bootstrap servers, comma separated."""
    app_id: str = field(default="siyu-stream", metadata=_env("SIYU_APP_ID"))
    """Consumer group and prefix of internal topics; workers with the same id share the work."""
    topic_prefix: str = field(default="siyu", metadata=_env("SIYU_TOPIC_PREFIX"))
    """Prefix of every topic name: `<prefix>.orders`, `<prefix>.actions.gifts`, ..."""
    partitions: int = field(default=4, metadata=_env("SIYU_PARTITIONS"))
    """Partitions of every topic (inputs must be co-partitioned by customer id)."""
    replication: int = field(default=1, metadata=_env("SIYU_REPLICATION"))
    """Replication factor of the topics the worker creates (3 on a production cluster)."""
    store: StoreKind = field(default="memory://", metadata=_env("SIYU_STORE"))
    """State store: `memory://` (tests, demo) or `rocksdb://` (production)."""
    data_dir: Path = field(default=Path(".siyu/worker"), metadata=_env("SIYU_DATA_DIR"))
    """Where the worker keeps RocksDB files and its local data."""
    guarantee: Guarantee = field(default="exactly_once", metadata=_env("SIYU_GUARANTEE"))
    """`at_least_once` or `exactly_once` (Kafka transactions; needs a broker that has them)."""
    standby_replicas: int = field(default=0, metadata=_env("SIYU_STANDBY_REPLICAS"))
    """0 or 1: with 1, every worker keeps a warm copy of each partition it does not own, for
    fast fail-over (a higher value acts as 1)."""
    rules: Path | None = field(default=None, metadata=_env("SIYU_RULES"))
    """Rules TOML file; unset = the built-in docs/design.md §4 defaults."""
    web_host: str = field(default="127.0.0.1", metadata=_env("SIYU_WEB_HOST"))
    """Address of the HTTP server (`/metrics`, `/customers/{id}`); 0.0.0.0 in containers."""
    web_port: int = field(default=6066, metadata=_env("SIYU_WEB_PORT"))
    """Port of the HTTP server; each worker on one machine needs its own. 0 disables HTTP."""
    web_url: str | None = field(default=None, metadata=_env("SIYU_WEB_URL"))
    """URL other workers reach this one at (API routing); default http://<host>:<port>."""
    api_token: str | None = field(default=None, metadata=_env("SIYU_API_TOKEN"))
    """Bearer token for `/customers/{id}` (customer data). Required unless auth is disabled."""
    api_auth: bool = field(default=True, metadata=_env("SIYU_API_AUTH"))
    """`false` disables the API token check: a local run on loopback only."""
    timer_interval: float = field(default=1.0, metadata=_env("SIYU_TIMER_INTERVAL"))
    """Seconds between polls when idle: a caught-up partition fires due timers this often."""
    timer_grace_ms: int = field(default=2_000, metadata=_env("SIYU_TIMER_GRACE_MS"))
    """A caught-up partition fires a timer on the wall clock this long after it is due, so
    that a record already in flight with an earlier event time is taken first."""
    max_task_idle_ms: int = field(default=2_000, metadata=_env("SIYU_MAX_TASK_IDLE_MS"))
    """How long a partition waits for a lagging input topic that has nothing buffered before
    it goes on without it (the merge by event time then treats what comes later as late)."""
    session_timeout_ms: int = field(default=10_000, metadata=_env("SIYU_SESSION_TIMEOUT_MS"))
    """How long a worker that stopped answering (crashed, paused, cut off) keeps its
    partitions before the group gives them to the others. Shorter fails over sooner; too
    short evicts a worker in a long GC pause or restore. The broker bounds it
    (group.min.session.timeout.ms, 6 s by default)."""
    log_level: str = field(default="info", metadata=_env("SIYU_LOG_LEVEL"))
    """debug, info, warning or error."""
    go_live: str | None = field(default=None, metadata=_env("SIYU_GO_LIVE"))
    """Go-live instant (RFC 3339) after a bootstrap: a gift or reminder due before it goes to
    the suppressed topic (`before_go_live`), not to customers or staff. Unset: none held."""
    grant_since_days: int = field(default=GRANT_SINCE_DAYS, metadata=_env("SIYU_GRANT_SINCE_DAYS"))
    """With SIYU_GO_LIVE: gifts earned this many days before go-live are still granted."""

    @property
    def launch(self) -> GoLive | None:
        """The go-live instant the rules apply (validated with the settings)."""
        if self.go_live is None:
            return None
        return parse_go_live(self.go_live, self.grant_since_days)

    @property
    def advertised_url(self) -> str:
        if self.web_url:
            return self.web_url.rstrip("/")
        host = socket.gethostname() if self.web_host in ("0.0.0.0", "::") else self.web_host
        return f"http://{host}:{self.web_port}"

    def topic(self, name: str) -> str:
        """Full name of topic `name` (`orders`, `actions.gifts`, ...)."""
        return f"{self.topic_prefix}.{name}"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        /,  # positional, so that no keyword in **overrides can be mistaken for them
        **overrides: Any,
    ) -> Settings:
        """Settings from `environ` (default: os.environ), then validated.

        `defaults` (field name -> value) stand in for variables the environment leaves
        unset, like the demo's generated API token; `overrides` win over the environment.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = dict(defaults or {})
        for f in dataclasses.fields(cls):
            name = f.metadata["env"]
            if name in env and env[name] != "":
                values[f.name] = _parse(name, env[name], f.default)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.grant_since_days <= 366:
            _fail("SIYU_GRANT_SINCE_DAYS", str(self.grant_since_days), "days in [0, 366]")
        if self.go_live is not None:
            try:
                parse_go_live(self.go_live)
            except ValueError:
                _fail("SIYU_GO_LIVE", self.go_live, "an RFC 3339 instant with offset")
        if self.store not in get_args(StoreKind):
            _fail("SIYU_STORE", self.store, " or ".join(get_args(StoreKind)))
        if self.guarantee not in get_args(Guarantee):
            _fail("SIYU_GUARANTEE", self.guarantee, " or ".join(get_args(Guarantee)))
        if self.partitions < 1:
            _fail("SIYU_PARTITIONS", str(self.partitions), "an integer >= 1")
        if self.replication < 1:
            _fail("SIYU_REPLICATION", str(self.replication), "an integer >= 1")
        if self.standby_replicas < 0:
            _fail("SIYU_STANDBY_REPLICAS", str(self.standby_replicas), "0 or 1")
        if self.timer_interval <= 0 or self.timer_interval > 1:
            _fail("SIYU_TIMER_INTERVAL", str(self.timer_interval), "a number of seconds in (0, 1]")
        if not 0 <= self.timer_grace_ms <= 3_600_000:
            _fail("SIYU_TIMER_GRACE_MS", str(self.timer_grace_ms), "milliseconds in [0, 3600000]")
        if not 0 <= self.max_task_idle_ms <= 600_000:
            _fail(
                "SIYU_MAX_TASK_IDLE_MS", str(self.max_task_idle_ms), "milliseconds in [0, 600000]"
            )
        if not 1_000 <= self.session_timeout_ms <= 300_000:
            _fail(
                "SIYU_SESSION_TIMEOUT_MS",
                str(self.session_timeout_ms),
                "milliseconds in [1000, 300000]",
            )
        if self.api_auth:
            token = self.api_token or ""
            if not token.strip():  # a blank token would be a password everyone knows
                _fail("SIYU_API_TOKEN", token, "a token (or SIYU_API_AUTH=false for a local demo)")
            if not _TOKEN_CHARS.fullmatch(token):
                # clients send it in an HTTP header, where such a token never matches; the
                # value is a secret, so the message does not echo it
                msg = (
                    "SIYU_API_TOKEN: expected visible ASCII characters only, no spaces "
                    "(e.g. `openssl rand -hex 32`)"
                )
                raise SettingsError(msg)


def _fail(name: str, value: str, expected: str) -> None:
    msg = f"{name}={value!r}: expected {expected}"
    raise SettingsError(msg)


def _parse(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            _fail(name, raw, "true or false")
        return raw.lower() in ("true", "1", "yes")
    if isinstance(default, int | float):
        try:
            return type(default)(raw)
        except ValueError:
            _fail(name, raw, f"a number ({type(default).__name__})")
    if isinstance(default, Path) or name == "SIYU_RULES":
        return Path(raw)
    return raw


def describe() -> list[tuple[str, str, str]]:
    """(env name, default, doc) per setting, for the README and `siyu-stream settings`."""
    import inspect  # noqa: PLC0415 - only for documentation output

    source = inspect.getsource(Settings)
    rows = []
    for f in dataclasses.fields(Settings):
        marker = f"    {f.name}: "
        after = source[source.index(marker) :].split('"""')
        rows.append((f.metadata["env"], str(f.default), " ".join(after[1].split())))
    return rows
