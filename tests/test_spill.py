"""What replay holds before it can use it stays bounded (`replay/spill.py`), and gives
back the same lines in the same order."""

from __future__ import annotations

import random
import tempfile
from collections import deque
from typing import IO, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siyu_stream.replay import spill
from siyu_stream.replay.lines import Line
from siyu_stream.replay.spill import Backlog, Runs


def revive(path: str, number: int, raw: bytes) -> Line:
    return Line(path, number, raw, None, None)


@settings(max_examples=200)
@given(ops=st.lists(st.tuples(st.booleans(), st.booleans()), max_size=200))
def test_a_backlog_is_a_fifo_whatever_it_spills(ops: list[tuple[bool, bool]]) -> None:
    """Appends (spilled or not) and pops in any order give the lines back in order, and
    past the spill point no more than two chunks are in memory."""
    chunk = spill.CHUNK
    backlog, expected = Backlog(revive), deque[tuple[int, bytes]]()
    kept = 0  # lines appended to memory (not told to spill)
    n = 0
    try:
        for push, spilled in ops:
            if push or not expected:
                n += 1
                backlog.append(n, Line("f", n, b"x%d" % n, None, None), spill=spilled)
                expected.append((n, b"x%d" % n))
                kept += not spilled
            else:
                ordinal, line = backlog.popleft()
                assert (ordinal, line.raw) == expected.popleft()
                assert (line.path, line.number) == ("f", ordinal)
            assert len(backlog) == len(expected)
            assert len(backlog.tail) < chunk
            assert len(backlog.head) <= kept + chunk
        while expected:
            ordinal, line = backlog.popleft()
            assert (ordinal, line.raw) == expected.popleft()
    finally:
        backlog.close()


def test_a_backlog_told_to_spill_holds_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "CHUNK", 3)
    files: list[IO[bytes]] = []
    real = tempfile.TemporaryFile

    def temporary() -> IO[bytes]:
        files.append(real())
        return files[-1]

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary)
    backlog = Backlog(revive)
    for n in range(100):
        backlog.append(n, Line("f", n, b"%d" % n, None, None), spill=True)
        assert len(backlog.head) + len(backlog.tail) < 3
    assert len(files) == 1
    assert [backlog.popleft()[0] for _ in range(100)] == list(range(100))
    assert len(backlog) == 0
    backlog.close()
    assert files[0].closed


@settings(max_examples=100)
@given(items=st.lists(st.integers(0, 50), max_size=120), limit=st.integers(1, 9))
def test_runs_give_everything_back_sorted(items: list[int], limit: int) -> None:
    runs = Runs(limit)
    for item in items:
        runs.add((item, b"d"))
        assert len(runs.items) < limit
    assert list(runs.sorted()) == sorted((i, b"d") for i in items)
    assert runs.file is None


def test_runs_merge_runs_read_a_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "CHUNK", 2)
    rng = random.Random(3)
    items: list[Any] = [(0, ("k", rng.randrange(10**6)), rng.randbytes(5)) for _ in range(500)]
    runs = Runs(7)
    for item in items:
        runs.add(item)
    assert len(runs.runs) == 500 // 7
    assert list(runs.sorted()) == sorted(items)
