"""Prints what the engine makes of the random histories (the property tests' `histories`)
in a file, one JSON list of events a line: each history's outcomes, actions and final
states, as bytes. Run under each build by tests/test_builds.py, which draws the histories
once (hypothesis draws differently from one process to the next) and compares the
outputs byte for byte."""

from __future__ import annotations

import sys
from typing import Any

import orjson
from scenario import START, ListSink

from siyu_stream.build import build
from siyu_stream.core import stored
from siyu_stream.core.clock import HOUR
from siyu_stream.core.events import from_dict
from siyu_stream.core.ruleset import Rules
from siyu_stream.replay.engine import Engine, MemoryStore

RULES = Rules()


def main(path: str) -> None:
    out = sys.stdout.buffer
    sys.stderr.write(f"{build()} build\n")

    def dump(events: list[dict[str, Any]]) -> None:
        sink, store = ListSink(), MemoryStore()
        engine = Engine(RULES, store, sink, partitions=2)
        out.write(b"history\n")
        for event in events:
            out.write(orjson.dumps(event) + b"\n")
        for event in events:
            out.write(engine.handle(from_dict(event, RULES.input)).encode() + b"\n")
        engine.advance(engine.clock + 400 * 24 * HOUR if engine.clock else START)
        for action in sink.actions:
            out.write(action.to_json() + b"\n")
        for customer, state in sorted(store.items()):
            out.write(customer.encode() + b"\t" + stored.dumps(state) + b"\n")

    with open(path, "rb") as lines:
        for line in lines:
            dump(orjson.loads(line))


if __name__ == "__main__":
    main(sys.argv[1])
