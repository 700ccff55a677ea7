"""`core.jsonout`: orjson's bytes, in a bytes object of their own size."""

from __future__ import annotations

import tracemalloc

import orjson

from siyu_stream.core import jsonout


def test_the_bytes_are_orjsons_and_hold_no_more_memory_than_their_length() -> None:
    value = {"action_id": "a" * 32, "kind": "gift", "detail": {"code": "g", "value": 1.5e16}}
    tracemalloc.start()
    try:
        kept = [jsonout.dumps(value) for _ in range(1_000)]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept[0] == orjson.dumps(value)
    # a bytes object's header is 33 bytes, the list 8 per item: orjson's own output
    # held 4 KiB each
    assert held < 1_000 * (len(kept[0]) + 33 + 8) + 1_000, held
