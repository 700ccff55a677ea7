"""Integration fixtures: no worker process outlives its test, whatever the test did."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live import WorkerProcess


@pytest.fixture(autouse=True)
def _reap_workers() -> Iterator[None]:
    yield
    for worker in WorkerProcess.started:
        if worker.alive():
            worker.kill()
    WorkerProcess.started.clear()
