"""The difference between two runs' actions, in memory bounded by a chunk, not by the runs.

Each run's actions are spilled to disk as lines sorted by their diff key (`Spill`: sorted
chunks, merged when read), then the two sorted streams are joined (`diff`): a key in one
run only is `added` or `removed`, a key in both with different bytes is `changed`.

The key is the action id, except for a `suppressed` action: its key is the id of the
reminder it holds back. A rule change that makes the contact policy hold a reminder back
(or let one through) is then one `changed` action with both versions, not an unrelated
removal and addition (a suppressed action's own id is a digest of the reminder's).
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson

from siyu_stream.core.actions import Action

Change = Literal["added", "removed", "changed"]
CHUNK_LINES: Final = 50_000
"""Lines sorted in memory at a time; a run's actions beyond it go to more chunk files."""


def diff_key(action: Action) -> str:
    """The id of the firing: the reminder's id for a suppressed action, else its own."""
    if action.kind == "suppressed":
        return str(action.detail["action"]["action_id"])
    return action.action_id


class Spill:
    """Lines `key<TAB>json`, sorted by bytes on read, holding at most a chunk in memory."""

    def __init__(self, directory: Path, name: str, chunk: int | None = None) -> None:
        self.directory = directory
        self.name = name
        self.chunk = chunk or CHUNK_LINES
        self.pending: list[bytes] = []
        self.files: list[Path] = []

    def add(self, action: Action) -> None:
        body = _without_version(action.to_dict())  # a new dict: changed in place
        self.pending.append(diff_key(action).encode() + b"\t" + orjson.dumps(body) + b"\n")
        if len(self.pending) >= self.chunk:
            self._flush()

    @classmethod
    def of(cls, directory: Path, name: str, files: list[Path]) -> Spill:
        """The spill of a finished run (`finish`), maybe made by another process."""
        spill = cls(directory, name)
        spill.files = list(files)
        return spill

    def finish(self) -> None:
        """Every action added is in `files` (sorted per file)."""
        self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        self.pending.sort()
        path = self.directory / f"{self.name}-{len(self.files):05d}.jsonl"
        with path.open("wb") as handle:
            handle.writelines(self.pending)
        self.files.append(path)
        self.pending = []

    def sorted(self, stack: ExitStack) -> Iterator[tuple[str, bytes]]:
        """(key, action JSON) in key order; files stay open until `stack` closes."""
        self._flush()
        handles: list[IO[bytes]] = [stack.enter_context(p.open("rb")) for p in self.files]
        for line in heapq.merge(*handles):
            key, _, body = line.rstrip(b"\n").partition(b"\t")
            yield key.decode(), body


def _without_version(action: dict[str, Any]) -> dict[str, Any]:
    """The action as compared: the rules version differs between the runs by design
    (summary.json names both), also on the reminder a suppressed action holds. Changes
    `action` (not the dicts it holds): copying it cost more than writing it out."""
    del action["rules_version"]
    held = action["detail"].get("action") if action["kind"] == "suppressed" else None
    if isinstance(held, dict):
        action["detail"] = {**action["detail"], "action": _without_version(dict(held))}
    return action


def _grouped(lines: Iterator[tuple[str, bytes]]) -> Iterator[tuple[str, list[bytes]]]:
    """Consecutive lines of one key together (ids are unique per run; a repeat pairs in order)."""
    key: str | None = None
    bodies: list[bytes] = []
    for line_key, body in lines:
        if line_key != key:
            if key is not None:
                yield key, bodies
            key, bodies = line_key, []
        bodies.append(body)
    if key is not None:
        yield key, bodies


Differs = Callable[[str, Change, dict[str, Any] | None, dict[str, Any] | None], None]
"""Told of each difference: key, change, baseline version, new version."""


def diff(baseline: Spill, new: Spill, out: IO[bytes] | None, told: Differs) -> None:
    """Join the two runs by key; write each difference to `out` as one JSON line
    (`{"action_id", "change", "baseline", "new"}`, in key order) and tell `told`."""
    # sorts after every hex key; compared by key, not by identity: compiled, a tuple is
    # unboxed, and `a is not end` would never be false again (the loop would not end)
    end: tuple[str, list[bytes]] = ("\U0010ffff", [])
    with ExitStack() as stack:
        left, right = _grouped(baseline.sorted(stack)), _grouped(new.sorted(stack))
        a, b = next(left, end), next(right, end)
        while a[0] != end[0] or b[0] != end[0]:
            if a[0] == b[0]:
                key, olds, news = a[0], a[1], b[1]
                a, b = next(left, end), next(right, end)
            elif a[0] < b[0]:
                key, olds, news = a[0], a[1], []
                a = next(left, end)
            else:
                key, olds, news = b[0], [], b[1]
                b = next(right, end)
            for i in range(max(len(olds), len(news))):
                old = olds[i] if i < len(olds) else None
                now = news[i] if i < len(news) else None
                if old == now:
                    continue
                change: Change = "added" if old is None else "removed" if now is None else "changed"
                before = orjson.loads(old) if old is not None else None
                after = orjson.loads(now) if now is not None else None
                if out is not None:
                    record = {"action_id": key, "change": change, "baseline": before, "new": after}
                    out.write(orjson.dumps(record) + b"\n")
                told(key, change, before, after)


def spill_dir() -> tempfile.TemporaryDirectory[str]:
    """Where both runs spill their actions; removed when the backtest ends."""
    return tempfile.TemporaryDirectory(prefix="siyu-backtest-")
