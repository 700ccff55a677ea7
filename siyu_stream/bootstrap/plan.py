"""The pure parts of writing a bootstrap: which records go to each partition, in which
transactions, and where the worker starts reading.

Per partition p, in this order (what a worker that had processed the history would have
produced on p):

1. the outputs of p's customers, as the run emitted them: actions to their topics keyed
   by customer, dead letters of p's lines;
2. the changelog: one record per customer of p (key: customer id, value: the state as
   `core/state.py dumps` serializes it, as the worker writes it), in customer id order,
   then the partition clock (key `CLOCK_KEY`, value {"clock": ms});
3. the group's offsets for p's input and command partitions, with the last of them.

A partition's records are split into transactions of at most `CHUNK_BYTES` (`chunks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import orjson

from siyu_stream.bootstrap.build import DESTINATIONS, Built
from siyu_stream.core import stored
from siyu_stream.eventtime.keys import customer_partition
from siyu_stream.live.records import CLOCK_KEY, Out
from siyu_stream.topology import Topology

CHUNK_BYTES = 8 << 20
"""Key and value bytes per transaction. A partition's records would otherwise be one
transaction of any size: it must commit within the producer's transaction timeout (60 s
by default; the broker caps it with transaction.max.timeout.ms, 15 min by default), and
until it commits, read_committed consumers of its topic partitions wait behind it. 8 MiB
commits in well under a second on the local broker and bounds what the bootstrap holds
for sending."""

Start = str
"""`end`: the worker starts after everything in the input topics at bootstrap time;
`go-live`: at the first record with a timestamp at or after the go-live instant."""
STARTS = ("end", "go-live")


def ids_by_partition(built: Built) -> list[list[str]]:
    """Every customer id, per partition, sorted (one pass over the states)."""
    parts: list[list[str]] = [[] for _ in built.engine.partitions]
    for customer_id in built.store.data:
        parts[customer_partition(customer_id, len(parts))].append(customer_id)
    for ids in parts:
        ids.sort()
    return parts


def output_records(built: Built, topology: Topology, partition: int) -> Iterator[Out]:
    """Partition `partition`'s outputs, read back from the spill in emission order."""
    topics = [
        topology.deadletter if kind == "deadletter" else topology.output(kind)
        for kind in DESTINATIONS
    ]
    for code, key, value in built.spill.read(partition):
        yield Out(topics[code], key, value, partition)


def changelog_records(
    built: Built, topology: Topology, partition: int, ids: Iterable[str]
) -> Iterator[Out]:
    """The states of `ids` (customers of `partition`) and the partition clock, as the
    worker's changelog records them. States are serialized one at a time."""
    topic = topology.changelog
    data = built.store.data
    for customer_id in ids:
        yield Out(topic, customer_id.encode(), stored.dumps(data[customer_id]), partition)
    clock = built.engine.partitions[partition].clock
    if clock is not None:  # a partition without events has no clock, as live
        yield Out(topic, CLOCK_KEY.encode(), orjson.dumps({"clock": clock}), partition)


def size(record: Out) -> int:
    return len(record.value) + (0 if record.key is None else len(record.key))


def chunks(records: Iterable[Out], limit: int = CHUNK_BYTES) -> Iterator[list[Out]]:
    """`records` in order, in lists of at most `limit` bytes (a larger record alone).
    Always at least one list, empty if there are no records: the last list carries the
    offsets."""
    chunk: list[Out] = []
    held = 0
    for record in records:
        weight = size(record)
        if chunk and held + weight > limit:
            yield chunk
            chunk, held = [], 0
        chunk.append(record)
        held += weight
    yield chunk


@dataclass(frozen=True, slots=True)
class Where:
    """A topic partition (a plain pair: the Kafka client's own type stays at the edge)."""

    topic: str
    partition: int


def start_offsets(
    start: Start,
    ends: Mapping[Where, int],
    at_go_live: Mapping[Where, int | None],
) -> dict[Where, int]:
    """Where the worker starts on each input partition: its end offset, or (`go-live`) the
    first offset whose timestamp is at or after the go-live instant (none: the end)."""
    if start not in STARTS:
        msg = f"--start: expected one of {', '.join(STARTS)}, got {start}"
        raise ValueError(msg)
    if start == "end":
        return dict(ends)
    offsets = {}
    for where, end in ends.items():
        found = at_go_live.get(where)
        offsets[where] = end if found is None else min(found, end)
    return offsets
