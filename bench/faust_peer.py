"""The peer: siyu-stream's rule core in a faust-streaming agent over a Faust table.

    FAUST_PEER_BROKER=127.0.0.1:P FAUST_PEER_APP_ID=ID FAUST_PEER_PREFIX=siyu \\
    FAUST_PEER_OUT=TOPIC FAUST_PEER_READY=FILE python bench/faust_peer.py worker --without-web

One agent reads the worker's input topics, keeps each customer's `stored.dumps` bytes in a
Faust table (memory store, changelog `<app id>-customers-changelog`, as the worker's), applies
the pure rule core (`rules.apply_event`) and sends each action's JSON to FAUST_PEER_OUT;
invalid events go to `<prefix>.faust-deadletter`. At-least-once. Touches FAUST_PEER_READY
once a rebalance ends with partitions assigned. A peer for throughput and restart loss, not a
second runtime: no merge by stream time, timers (none is due in a run), referral credits,
metrics or API; it shares decoding, schema checks, the wall-clock bound on event times,
de-duplication by event id in the state, the contact policy and action ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import faust
from faust.sensors import Sensor

from siyu_stream.core import rules as core
from siyu_stream.core import stored
from siyu_stream.core.errors import InvalidEvent
from siyu_stream.core.events import decode
from siyu_stream.core.ruleset import Rules
from siyu_stream.eventtime.partition import check_time
from siyu_stream.observe.wall import wall_clock
from siyu_stream.topology import INPUT_TYPES

PARTITIONS = 4
BROKER = os.environ.get("FAUST_PEER_BROKER", "127.0.0.1:9092")
APP_ID = os.environ.get("FAUST_PEER_APP_ID", "faust-peer")
PREFIX = os.environ.get("FAUST_PEER_PREFIX", "siyu")
OUT = os.environ.get("FAUST_PEER_OUT", f"{PREFIX}.faust-out")
READY = os.environ.get("FAUST_PEER_READY")
RULES = Rules()

app = faust.App(
    APP_ID,
    broker=f"kafka://{BROKER}",
    store="memory://",
    topic_partitions=PARTITIONS,
    processing_guarantee="at_least_once",
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    # the worker commits after every batch; Faust's default is every 2.8 s, which would
    # add up to that much to a timed run (committed offsets mark the end of a run)
    broker_commit_interval=0.5,
    # Faust's default linger of 0 sends a produce request for every few records (a table
    # write and the actions per event); 20 ms took ~25 % less CPU per event (10k events)
    producer_linger=0.02,
    web_enabled=False,
    # beside the bench's other files, not "{id}-data" in whatever directory it runs from
    datadir=str(Path(__file__).resolve().parent / ".cache" / f"faust-{APP_ID}-data"),
)
inputs = app.topic(
    *(f"{PREFIX}.{name}" for name in INPUT_TYPES),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
out = app.topic(OUT, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
deadletter = app.topic(f"{PREFIX}.faust-deadletter", key_serializer="raw", value_serializer="raw")
customers = app.Table(  # bytes keys and values: the raw codec, as `dumps` wrote them
    "customers", key_type=bytes, value_type=bytes, partitions=PARTITIONS
)


class Ready(Sensor):
    """Touches FAUST_PEER_READY when a rebalance ends with partitions to work on."""

    def on_rebalance_end(self, app: Any, state: dict[str, Any]) -> None:
        if READY and app.assignor.assigned_actives():
            Path(READY).touch()


app.sensors.add(Ready())


@app.agent(inputs)
async def apply(stream: faust.StreamT[bytes]) -> None:
    async for event in stream.events():
        key: bytes = event.key if isinstance(event.key, bytes) else b""
        value: bytes = event.value
        try:
            parsed = decode(value, RULES.input)
            check_time(parsed.at, wall_clock(), "the wall clock", RULES)
        except InvalidEvent as exc:
            await deadletter.send(key=key, value=str(exc).encode() + b"\n" + value)
            continue
        raw = customers.get(key)
        before = stored.loads(raw) if raw is not None else None
        step = core.apply_event(before, parsed, parsed.at, RULES)
        if step.outcome == "rejected":
            await deadletter.send(key=key, value=(step.reason or "rejected").encode())
        elif step.outcome == "ok":
            customers[key] = stored.dumps(step.state)
            for action in step.actions:
                await out.send(key=key, value=action.to_json())


if __name__ == "__main__":
    app.main()
