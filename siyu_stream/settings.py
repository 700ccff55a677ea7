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
from typing import Any, Final, Literal, get_args

from siyu_stream.core.errors import SettingsError
from siyu_stream.core.golive import GRANT_SINCE_DAYS, GoLive, parse_go_live

StoreKind = Literal["memory://", "rocksdb://"]
Guarantee = Literal["exactly_once", "at_least_once"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


_TOKEN_CHARS = re.compile(r"[!-~]+")
"""Visible ASCII (0x21-0x7e): what an `Authorization: Bearer` header can carry as is."""


_MASK = "***"
"""What a repr shows instead of a secret that is set."""

MAX_REORDER_MS: Final = 60_000
"""The largest `SIYU_REORDER_MS`."""


def _env(name: str) -> dict[str, str]:
    return {"env": name}


def _secret(name: str) -> dict[str, str | bool]:
    """A field whose value no repr, log line or message may show."""
    return {"env": name, "secret": True}


def _masked_repr(obj: Any) -> str:
    """A dataclass's repr with its secrets masked: settings end up in logs and tracebacks."""
    shown = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        masked = f.metadata.get("secret") and value is not None
        shown.append(f"{f.name}={_MASK if masked else repr(value)}")
    return f"{type(obj).__name__}({', '.join(shown)})"


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where Kafka is and how to log in: what every Kafka client the project starts needs,
    so that the security travels with the address (`kafka.client.client_options` turns it
    into aiokafka's arguments). From settings: `Settings.kafka`; a local plaintext broker:
    `KafkaConnection(bootstrap)`."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, metadata={"secret": True})
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: str | None = field(default=None, metadata={"secret": True})

    @property
    def sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def __str__(self) -> str:
        """The brokers and how this client logs in, no secret: for log lines and errors."""
        how: str = self.security_protocol
        if self.sasl:
            how += f" {self.sasl_mechanism} as {self.sasl_username}"
        if self.ssl_certfile is not None:
            how += " with a client certificate"
        return f"{self.bootstrap} ({how})"

    def __repr__(self) -> str:
        return _masked_repr(self)


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = field(default="127.0.0.1:9092", metadata=_env("SIYU_BROKER"))
    """Kafka bootstrap servers, comma separated."""
    security_protocol: SecurityProtocol = field(
        default="PLAINTEXT", metadata=_env("SIYU_SECURITY_PROTOCOL")
    )
    """`PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL` (TLS and a user name and
    password: what managed Kafka services ask for). Every Kafka client of the worker and
    the commands uses it."""
    sasl_mechanism: SaslMechanism = field(default="PLAIN", metadata=_env("SIYU_SASL_MECHANISM"))
    """With a `SASL_*` protocol: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, as the
    cluster's listener is configured."""
    sasl_username: str | None = field(default=None, metadata=_env("SIYU_SASL_USERNAME"))
    """SASL user name; required with a `SASL_*` protocol."""
    sasl_password: str | None = field(default=None, metadata=_secret("SIYU_SASL_PASSWORD"))
    """SASL password; required with a `SASL_*` protocol. Never printed or logged."""
    ssl_cafile: Path | None = field(default=None, metadata=_env("SIYU_SSL_CAFILE"))
    """With `SSL` or `SASL_SSL`: PEM file of the CA that signed the brokers' certificates;
    unset = the system's CAs (enough for most managed services)."""
    ssl_certfile: Path | None = field(default=None, metadata=_env("SIYU_SSL_CERTFILE"))
    """Client certificate (PEM) for mutual TLS, when the cluster asks for one."""
    ssl_keyfile: Path | None = field(default=None, metadata=_env("SIYU_SSL_KEYFILE"))
    """Private key (PEM) of `SIYU_SSL_CERTFILE`; unset = the key is in that file."""
    ssl_key_password: str | None = field(default=None, metadata=_secret("SIYU_SSL_KEY_PASSWORD"))
    """Password of an encrypted client key. Never printed or logged."""
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
    api_token: str | None = field(default=None, metadata=_secret("SIYU_API_TOKEN"))
    """Bearer token for `/customers/{id}` (customer data). Required unless auth is disabled."""
    api_auth: bool = field(default=True, metadata=_env("SIYU_API_AUTH"))
    """`false` disables the API token check: a local run on loopback only."""
    timer_interval: float = field(default=1.0, metadata=_env("SIYU_TIMER_INTERVAL"))
    """Seconds between polls when idle: a caught-up partition fires due timers this often."""
    timer_grace_ms: int = field(default=2_000, metadata=_env("SIYU_TIMER_GRACE_MS"))
    """A caught-up partition fires a timer on the wall clock this long after it is due, so
    that a record already in flight with an earlier event time is taken first."""
    reorder_ms: int = field(default=500, metadata=_env("SIYU_REORDER_MS"))
    """A caught-up partition takes a record once it has been in Kafka this long, so that
    a record of another input topic sent just before it, still on its way from another
    broker, is taken first (live = replay under live traffic). 0: at once, for lower
    latency; the order across topics is then best effort."""
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
    def heartbeat_interval_ms(self) -> int:
        """How often a group member says it is alive: well inside its session timeout."""
        return min(1_000, self.session_timeout_ms // 3)

    @property
    def launch(self) -> GoLive | None:
        """The go-live instant the rules apply (validated with the settings)."""
        if self.go_live is None:
            return None
        return parse_go_live(self.go_live, self.grant_since_days)

    def __repr__(self) -> str:
        return _masked_repr(self)

    @property
    def kafka(self) -> KafkaConnection:
        """How every Kafka client reaches the cluster: the brokers and the security."""
        return KafkaConnection(
            self.broker,
            self.security_protocol,
            self.sasl_mechanism,
            self.sasl_username,
            self.sasl_password,
            self.ssl_cafile,
            self.ssl_certfile,
            self.ssl_keyfile,
            self.ssl_key_password,
        )

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
                values[f.name] = _parse(f, env[name])
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
        if not 0 <= self.reorder_ms <= MAX_REORDER_MS:
            _fail("SIYU_REORDER_MS", str(self.reorder_ms), f"milliseconds in [0, {MAX_REORDER_MS}]")
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
        _validate_security(self)


def _validate_security(s: Settings) -> None:
    """The Kafka security settings fit together, and the files they name are there. A
    setting the protocol would ignore is refused: credentials or a CA file given with the
    wrong protocol are a mistake that would otherwise show only as a refused connection."""
    protocol = s.security_protocol
    if protocol not in get_args(SecurityProtocol):
        _fail("SIYU_SECURITY_PROTOCOL", protocol, " or ".join(get_args(SecurityProtocol)))
    if s.sasl_mechanism not in get_args(SaslMechanism):
        _fail("SIYU_SASL_MECHANISM", s.sasl_mechanism, " or ".join(get_args(SaslMechanism)))
    connection = s.kafka
    if connection.sasl:
        if not (s.sasl_username or "").strip():
            msg = f"SIYU_SASL_USERNAME: required with SIYU_SECURITY_PROTOCOL={protocol}"
            raise SettingsError(msg)
        if not s.sasl_password:
            msg = f"SIYU_SASL_PASSWORD: required with SIYU_SECURITY_PROTOCOL={protocol}"
            raise SettingsError(msg)
    elif s.sasl_username or s.sasl_password:
        msg = (
            f"SIYU_SASL_USERNAME and SIYU_SASL_PASSWORD: SIYU_SECURITY_PROTOCOL={protocol} "
            "sends no credentials (SASL_SSL does)"
        )
        raise SettingsError(msg)
    files = {
        "SIYU_SSL_CAFILE": s.ssl_cafile,
        "SIYU_SSL_CERTFILE": s.ssl_certfile,
        "SIYU_SSL_KEYFILE": s.ssl_keyfile,
    }
    for name, path in files.items():
        if path is None:
            continue
        if not connection.tls:
            msg = f"{name}: SIYU_SECURITY_PROTOCOL={protocol} uses no TLS (SSL or SASL_SSL do)"
            raise SettingsError(msg)
        if not path.is_file() or not os.access(path, os.R_OK):
            msg = f"{name}={str(path)!r}: no such readable file"
            raise SettingsError(msg)
    if s.ssl_keyfile is not None and s.ssl_certfile is None:
        msg = "SIYU_SSL_KEYFILE: set without SIYU_SSL_CERTFILE, the certificate it belongs to"
        raise SettingsError(msg)
    if s.ssl_key_password and s.ssl_certfile is None:
        msg = "SIYU_SSL_KEY_PASSWORD: set without a client certificate (SIYU_SSL_CERTFILE)"
        raise SettingsError(msg)


def _fail(name: str, value: str, expected: str) -> None:
    msg = f"{name}={value!r}: expected {expected}"
    raise SettingsError(msg)


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    name, default = f.metadata["env"], f.default
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            _fail(name, raw, "true or false")
        return raw.lower() in ("true", "1", "yes")
    if isinstance(default, int | float):
        try:
            return type(default)(raw)
        except ValueError:
            _fail(name, raw, f"a number ({type(default).__name__})")
    if isinstance(default, Path) or str(f.type).startswith("Path"):  # `Path | None`
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
