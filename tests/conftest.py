"""Shared fixtures. `embedded_broker` starts a fresh noida-db per test (it starts in well under
0.1 s), for the tests of the embedded broker itself; every guarantee is tested on Apache Kafka
(`broker` and `cluster3` in tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from siyu_stream.kafka.embedded import LocalBroker

# No property test asserts how long an example takes (speed is `make bench`'s): without a
# deadline, an example slowed by a busy machine (`make test` runs most tests under nice 19
# beside the broker tests) is not reported as a failure.
settings.register_profile("siyu", deadline=None)
settings.load_profile("siyu")


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A running local broker on a free port, its data and log in the test's tmp_path."""
    local = LocalBroker(tmp_path / "noida-db")
    local.start()
    try:
        yield local
    finally:
        # Shown only when the test fails: where to read what the broker said.
        print(f"noida-db log: {local.log_path}")
        local.stop()
