"""The read-only view of a worker that the web, metrics and demo layers depend on.

They read; only the worker (which implements this protocol) processes. Depending on
this instead of `Worker` keeps those layers out of the runtime's internals and the
import graph free of cycles.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from siyu_stream.core.clock import Millis
from siyu_stream.core.state import CustomerState
from siyu_stream.observe.observer import Stats
from siyu_stream.settings import Settings


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer of an owned partition, as last committed."""

    partition: int
    state: CustomerState | None
    timeline: list[dict[str, Any]]
    """Recent events and actions, newest first."""


class WorkerView(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def url(self) -> str:
        """Where other workers reach this one."""

    @property
    def stats(self) -> Stats: ...

    @property
    def alive(self) -> bool: ...

    @property
    def is_ready(self) -> bool: ...

    def partitions(self) -> list[int]:
        """Partitions this worker owns."""

    def customer(self, customer_id: str) -> Customer | None:
        """The customer's committed state and timeline; None if another worker owns it."""

    def owner(self, partition: int) -> str | None:
        """URL of the worker that owns `partition`, as last announced."""

    def population(self) -> Counter[tuple[str, str]]:
        """(dimension, value) -> customers, over the owned partitions."""

    def timers(self) -> dict[int, int]:
        """Per owned partition: entries in its timer index (stale ones included)."""

    def clocks(self) -> dict[int, Millis | None]:
        """Per owned partition: its stream time (None before its first record)."""

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each owned input partition."""
