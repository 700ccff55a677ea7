"""The exception hierarchy: one base, one branch per area.

Failures of *input* never escape the stream as exceptions: the adapters turn an
`InvalidEvent` into a dead-letter record. Exceptions that escape are bugs or
misconfiguration (bad rules file, broker unreachable).
"""

from __future__ import annotations


class SiyuError(Exception):
    """Base of every siyu-stream error."""


class InvalidEvent(SiyuError):  # noqa: N818 - reads as a verdict on the input, like ValueError
    """An input message that the engine rejects; `reason` goes to the dead-letter record."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)

    @property
    def full_reason(self) -> str:
        return str(self)


class OutputTooLarge(InvalidEvent):
    """A step whose outputs would not fit a Kafka record: the live worker dead-letters
    the event that caused it (here, not in the worker's module: the compiled build cannot
    subclass this module's classes in a compiled module)."""


class RulesError(SiyuError):
    """A rules file that cannot be used; the message names file, line and key."""


class StateError(SiyuError):
    """A serialized customer state that this version cannot read."""


class SettingsError(SiyuError):
    """An environment variable with a value the worker cannot use."""


class BrokerError(SiyuError):
    """The local broker could not be started, reached or stopped; the message says why."""


class KafkaAccessError(BrokerError):
    """Kafka refused this client or could not be reached: a wrong password, an untrusted
    certificate, a listener of another protocol; the message names the broker and the
    settings to check, never a secret."""


class TopicError(SiyuError):
    """Topics could not be created or described, or exist with the wrong partition count."""


class BootstrapError(SiyuError):
    """A bootstrap that must not run or could not finish: a worker of the app is running,
    another producer took a partition over, Kafka could not be read or written."""


class BacktestError(SiyuError):
    """A backtest that could not finish: one of its processes failed (`--jobs 2`)."""


class NotifyError(SiyuError):
    """The notifier (`siyu-stream notify`) cannot run as configured."""


class NotifyConfigError(NotifyError):
    """A notify TOML file that cannot be used; the message names file, line and field."""


class InvalidAction(NotifyError):  # noqa: N818 - a verdict on the input, like InvalidEvent
    """An action record the notifier cannot deliver (not JSON, not its topic's schema);
    it goes to the notify dead-letter topic, never stops the notifier."""
