"""`siyu-stream worker`: what the command sets up around the worker it runs."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from siyu_stream.cli import running
from siyu_stream.live import worker


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


class _Worker:
    """Runs nothing: the command's own setup is what is checked."""

    seen: tuple[int, int, int] = (0, 0, 0)

    def __init__(self, *args: Any) -> None:
        pass

    def stop(self) -> None:
        pass

    async def run(self) -> None:
        _Worker.seen = gc.get_threshold()


def test_the_worker_runs_with_a_larger_young_generation(
    thresholds: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    gc.set_threshold(50_000, 20, 100)  # what `tune_gc` sets for every command
    monkeypatch.setattr(worker, "Worker", _Worker)
    monkeypatch.setenv("SIYU_API_AUTH", "false")
    assert running.cmd_worker(argparse.Namespace(broker=None)) == 0
    assert _Worker.seen == (running.WORKER_YOUNG_OBJECTS, 20, 100)
