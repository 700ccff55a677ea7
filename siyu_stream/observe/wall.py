"""The wall clock: where the live side reads the time of day (the rule core never does;
the adapters pass time in)."""

from __future__ import annotations

import time

from siyu_stream.core.clock import Millis


def wall_clock() -> Millis:
    """Now, in epoch milliseconds (UTC)."""
    return time.time_ns() // 1_000_000
