"""The read side of a worker (`observe.view.WorkerView`) over the partitions it owns:
what the web, metrics and demo layers see. Only reads; the worker processes."""

from __future__ import annotations

from collections import Counter
from typing import Any

from siyu_stream.eventtime.keys import partition_for
from siyu_stream.live.commit import Owned
from siyu_stream.live.members import Members
from siyu_stream.observe.view import Customer
from siyu_stream.settings import Settings


class OwnedView:
    settings: Settings
    owned: dict[int, Owned]
    members: Members
    _consumer: Any
    running: bool

    @property
    def alive(self) -> bool:
        return self.running

    def partitions(self) -> list[int]:
        return sorted(self.owned)

    def customer(self, customer_id: str) -> Customer | None:
        partition = partition_for(customer_id.encode(), self.settings.partitions)
        owned = self.owned.get(partition)
        if owned is None:
            return None
        task = owned.task
        timeline = task.observer.timeline_of(customer_id)
        return Customer(partition, task.committed_state(customer_id), timeline)

    def owner(self, partition: int) -> str | None:
        return self.members.directory.get(partition)

    def population(self) -> Counter[tuple[str, str]]:
        total: Counter[tuple[str, str]] = Counter()
        for owned in self.owned.values():
            total.update(owned.task.observer.population)
        return total

    def timers(self) -> dict[int, int]:
        return {p: len(owned.task.events.timers) for p, owned in self.owned.items()}

    def clocks(self) -> dict[int, int | None]:
        return {p: owned.task.clock for p, owned in self.owned.items()}

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the broker's high watermark, per owned input partition."""
        if self._consumer is None:
            return {}
        behind = {}
        for owned in self.owned.values():
            for tp, committed in owned.committed.items():
                high = self._consumer.highwater(tp)
                if high is not None:
                    behind[(tp.topic, tp.partition)] = max(0, high - committed)
        return behind
