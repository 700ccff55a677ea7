"""Topic names and partition counts, derived from the settings (docs/design.md §2).

Every topic the worker reads or writes is created up front with the same partition
count: inputs, the internal command topic and the table changelog are co-partitioned
by customer id, so one worker owns a customer's input, commands and state together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from siyu_stream.settings import Settings

INPUT_TYPES = {"orders": "order", "chats": "chat", "joins": "join"}
OUTPUT_BY_KIND = {
    "gift": "actions.gifts",
    "reminder": "actions.reminders",
    "change": "customers.changes",
    "suppressed": "actions.suppressed",
}


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: `admin.ensure_topics` makes the broker hold it."""

    name: str
    partitions: int
    replication: int = 1
    # hash=False keeps the spec hashable although the dict is not.
    config: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Topology:
    settings: Settings

    @property
    def inputs(self) -> list[str]:
        return [self.settings.topic(name) for name in INPUT_TYPES]

    def output(self, kind: str) -> str:
        return self.settings.topic(OUTPUT_BY_KIND[kind])

    @property
    def outputs(self) -> list[str]:
        return [self.output(kind) for kind in OUTPUT_BY_KIND]

    @property
    def deadletter(self) -> str:
        return self.settings.topic("deadletter")

    @property
    def commands(self) -> str:
        """Internal: referral credits and re-keyed events, keyed by customer."""
        return f"{self.settings.app_id}-commands"

    @property
    def changelog(self) -> str:
        """Compacted: each customer's latest state (key: customer id) and the partition clock
        (key: empty), written with every batch; a new owner restores the partition from it."""
        return f"{self.settings.app_id}-customers-changelog"

    @property
    def members(self) -> str:
        """Internal: which worker (HTTP URL) owns which partitions, for API routing."""
        return f"{self.settings.app_id}-members"

    @property
    def notify_inputs(self) -> list[str]:
        """What `siyu-stream notify` delivers: gifts and reminders (not changes, not
        suppressed reminders)."""
        return [self.output("gift"), self.output("reminder")]

    @property
    def notify_group(self) -> str:
        """The notifiers' consumer group: its own offsets, apart from the workers'."""
        return f"{self.settings.app_id}-notify"

    @property
    def deliveries(self) -> str:
        """Compacted: one receipt per action and sink (key `<action_id>/<sink>`), on the
        partition number of the action's own partition; a notifier taking a partition over
        reads it back so that what was delivered is not sent again."""
        return self.settings.topic("actions.deliveries")

    @property
    def notify_deadletter(self) -> str:
        """Actions the notifier could not read, and those a sink rejected (with its answer)."""
        return self.settings.topic("notify.deadletter")

    def specs(self) -> list[TopicSpec]:
        s = self.settings
        plain = [*self.inputs, *self.outputs, self.deadletter, self.commands]
        plain.append(self.notify_deadletter)
        specs = [TopicSpec(name, s.partitions, s.replication) for name in plain]
        # the changelog only needs each customer's latest state: compaction keeps it bounded
        compacted = {"cleanup.policy": "compact"}
        specs.append(TopicSpec(self.changelog, s.partitions, s.replication, compacted))
        specs.append(TopicSpec(self.members, 1, s.replication, compacted))
        # receipts: only the latest per action and sink matters, and only for as long as
        # the longest staleness limit (the notifier reads from that far back)
        specs.append(TopicSpec(self.deliveries, s.partitions, s.replication, compacted))
        return specs
