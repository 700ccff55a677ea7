"""The difference between two runs' actions, in memory bounded by a chunk, not by the runs.

Each run's actions are spilled to disk as lines sorted by their diff key (`Spill`: sorted
chunks, merged when read), then the two sorted streams are joined (`diff`): a key in one
run only is `added` or `removed`, a key in both with different bytes is `changed`.

The key is the action id, except for a `suppressed` action: its key is the id of the
reminder it holds back. A rule change that makes the contact policy hold a reminder back
(or let one through) is then one `changed` action with both versions, not an unrelated
removal and addition (a suppressed action's own id is a digest of the reminder's).

`Differences` groups what the join finds for the report. All of it runs once per action
of each run, so it is in the compiled build with the tallies.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from heapq import heapify, heappop, heapreplace
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson

from siyu_stream.core.actions import Action

Change = Literal["added", "removed", "changed"]
EXAMPLES = 3
"""Sample actions (of distinct customers) shown per group of differences."""
_ENCODE: Final = orjson.dumps  # compiled, a C static: not an attribute lookup per action
_NL: Final = orjson.OPT_APPEND_NEWLINE
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
        self.pending.append(b"".join((diff_key(action).encode(), b"\t", _ENCODE(body, option=_NL))))
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
        for line in _merged(handles):
            key, _, body = line.rstrip(b"\n").partition(b"\t")
            yield key.decode(), body


def _merged(handles: list[IO[bytes]]) -> Iterator[bytes]:
    """The lines of sorted files, in order; equal lines in file order, as `heapq.merge`
    gives them. (That one is interpreted code, a generator step per line even in the
    compiled build: a year's backtest diffs every action of both runs.)"""
    if len(handles) == 1:
        yield from handles[0]
        return
    heads = [(line, i) for i, handle in enumerate(handles) if (line := handle.readline())]
    heapify(heads)
    while heads:
        line, i = heads[0]
        yield line
        after = handles[i].readline()
        if after:
            heapreplace(heads, (after, i))
        else:
            heappop(heads)


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
                    out.write(_ENCODE(record, option=_NL))
                told(key, change, before, after)


def spill_dir() -> tempfile.TemporaryDirectory[str]:
    """Where both runs spill their actions; removed when the backtest ends."""
    return tempfile.TemporaryDirectory(prefix="siyu-backtest-")


class Differences:
    """What the diff found, per (rule, kind) and per group of like differences."""

    def __init__(self) -> None:
        self.by_row: Counter[tuple[str, str, Change]] = Counter()
        self.groups: dict[tuple[str, Change, str], dict[str, Any]] = {}
        self.customers: set[str] = set()

    def told(
        self, key: str, change: Change, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        one = old if old is not None else new
        assert one is not None
        # a changed action counts under its baseline rule and kind
        self.by_row[(one["rule"], one["kind"], change)] += 1
        what = _what(old, new)
        group = self.groups.setdefault(
            (one["rule"], change, what), {"actions": 0, "customers": set(), "examples": []}
        )
        group["actions"] += 1
        customer = one["customer_id"]
        if customer not in group["customers"] and len(group["examples"]) < EXAMPLES:
            group["examples"].append(
                {
                    "action_id": key,
                    "customer_id": customer,
                    "occurred_at": one["occurred_at"],
                    "baseline_because": old["because"] if old else None,
                    "new_because": new["because"] if new else None,
                }
            )
        group["customers"].add(customer)
        self.customers.add(customer)


def _label(action: dict[str, Any]) -> str:
    detail = action["detail"]
    if action["kind"] == "gift":
        return f"gift {detail['code']}"
    if action["kind"] == "reminder":
        return f"reminder {detail['template']}"
    if action["kind"] == "suppressed":
        return f"held back {detail['action']['detail']['template']} ({detail['reason']})"
    return f"{detail['field']} change → {detail['to']}"


def _what(old: dict[str, Any] | None, new: dict[str, Any] | None) -> str:
    """A group's name: the action, or for a changed one what changed in it."""
    if old is None or new is None:
        one = old or new
        assert one is not None
        return _label(one)
    if old["kind"] != new["kind"]:  # a reminder held back or let through
        return f"{_label(old)} → {_label(new)}"
    keys = sorted({*old["detail"], *new["detail"]})
    fields = [f"detail.{k}" for k in keys if old["detail"].get(k) != new["detail"].get(k)]
    fields += [k for k in ("occurred_at", "cause_event_id", "because") if old[k] != new[k]]
    return f"{_label(new)}: {', '.join(fields)} differ{'s' if len(fields) == 1 else ''}"
