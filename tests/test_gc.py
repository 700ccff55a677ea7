"""Offline runs pause the cycle collector (`replay.run.collector_paused`). That is safe
only while the rule core and the merge loop build no reference cycle per event: a cycle
per event would then never be freed, and a year's replay would grow without bound.

These tests run the collector by hand *during* a run, from its output, and require it to
find nothing: the run's own structures are still alive then, so whatever it finds was
dropped by the run in a cycle."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from siyu_stream.core.actions import Action
from siyu_stream.core.clock import DAY, parse_rfc3339
from siyu_stream.core.ruleset import Rules
from siyu_stream.replay.engine import Engine, MemoryStore
from siyu_stream.replay.run import Line, Merge, collector_paused, merged, replay
from siyu_stream.simulate import generate, history, write_jsonl

PROBE_EVERY = 200
"""Writes between two collections: several dozen per run."""


@pytest.fixture(autouse=True)
def _collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated year with late, duplicate and bad lines (dead-lettered): every path
    of the core, timers firing between events."""
    path = tmp_path_factory.mktemp("gc") / "year.jsonl"
    config = dataclasses.replace(history(6_000, 365, seed=5), bad_ratio=0.02)
    write_jsonl(generate(config, 6_000), path)
    # once, unprobed: what a process builds once and keeps (the schema validators, built
    # at the first invalid line of each type) leaves cycles behind the first time
    replay([path], io.BytesIO(), Rules(), now=_last(path), deadletters=io.BytesIO())
    return path


class Probe:
    """Collects every `PROBE_EVERY` calls; remembers what it found and whether the
    collector was paused."""

    def __init__(self) -> None:
        self.calls = 0
        self.found: list[int] = []
        self.paused: set[bool] = set()

    def tick(self) -> None:
        self.calls += 1
        self.paused.add(not gc.isenabled())
        if self.calls % PROBE_EVERY == 0:
            self.found.append(gc.collect())


class ProbedOut(io.BytesIO):
    def __init__(self, probe: Probe) -> None:
        super().__init__()
        self.probe = probe

    def write(self, data: bytes) -> int:  # type: ignore[override]  # BytesIO takes a buffer
        self.probe.tick()
        return super().write(data)


def _check(probe: Probe) -> None:
    assert len(probe.found) >= 10, "too few collections to tell"
    assert probe.found == [0] * len(probe.found)


@pytest.mark.parametrize("partitions", [1, 4])
def test_replay_builds_no_cycle_per_event(year: Path, partitions: int) -> None:
    probe = Probe()
    out = ProbedOut(probe)
    gc.collect()
    stats = replay(
        [year],
        out,
        Rules(),
        now=_last(year),
        until=_last(year) + 90 * DAY,
        partitions=partitions,
        deadletters=io.BytesIO(),
    )
    assert stats.timers_fired > 1_000  # timers fired, their steps are probed too
    assert stats.by_outcome()["rejected"] > 0
    assert probe.paused == {True}  # the run paused the collector...
    assert gc.isenabled()  # ...and resumed it
    _check(probe)
    # and the run's states went with its engine, freed by reference counting: in a cycle,
    # they would all wait for a collection of the whole heap when the collector resumes
    assert gc.collect() == 0


def test_backtest_loop_builds_no_cycle_per_event(year: Path) -> None:
    """Backtest's merge (`Merge`) with an engine whose sink probes."""
    probe = Probe()

    class Sink:
        def send(self, action: Action) -> None:
            probe.tick()

    def rejected(line: Line, reason: str) -> None:
        probe.tick()

    rules = Rules()
    engine = Engine(rules, MemoryStore(), Sink(), partitions=4, now=_last(year))
    gc.collect()
    with collector_paused():
        for _ in Merge(engine, merged([year], rules), rejected).run():
            pass
        engine.advance(_last(year) + 90 * DAY)
    assert engine.timers_fired > 1_000
    _check(probe)
    del engine
    assert gc.collect() == 0  # the engine, its partitions and states were no cycle


def test_what_a_run_leaves_alive_is_not_scanned_when_the_collector_resumes() -> None:
    """Survivors go to the oldest generation: left in the youngest, resuming would scan
    them all at once (the states a bootstrap keeps to write them out)."""
    gc.collect()
    with collector_paused():
        kept = [[n] for n in range(5_000)]
    young = {id(o) for o in gc.get_objects(generation=0)}
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert not any(id(o) in young for o in kept)
    assert all(id(o) in oldest for o in kept)
    assert gc.get_freeze_count() == 0  # nothing left frozen on the way


def test_collector_paused_leaves_what_the_caller_froze_frozen() -> None:
    gc.collect()
    frozen = [[n] for n in range(100)]
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        with collector_paused():
            kept = [[n] for n in range(100)]
        assert gc.get_freeze_count() == before  # not unfrozen by the run
        assert frozen and kept
    finally:
        gc.unfreeze()


def test_collector_paused_restores_a_disabled_collector() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def _last(path: Path) -> int:
    """The last event time of a simulated file (bad lines skipped)."""
    last = 0
    for raw in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            last = max(last, parse_rfc3339(orjson.loads(raw)["occurred_at"]))
    return last
