"""A sliding-window limit per sink, exact as the receiver counts it. Pure (`now` passed in).

A WeCom robot takes at most 20 messages a minute and answers errcode 45009 past it. The
receiver counts arrivals, which lie between a request's start and its response: so a
message occupies the window from its start until `window` after its response. Starting
the (limit+1)-th only once the oldest response is a whole window old guarantees, for any
network delay, that no window of the receiver's own clock sees more than `limit`.
Memory is bounded by `limit` (the times kept).
"""

from __future__ import annotations

from collections import deque

from siyu_stream.core.clock import Millis


class SlidingWindow:
    def __init__(self, limit: int, window_ms: Millis) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.finished: deque[Millis] = deque()
        """Response times of the messages still inside the window, oldest first."""
        self.in_flight = 0
        self.blocked_until: Millis = 0

    def wait_ms(self, now: Millis) -> Millis | None:
        """0: a message may start now; n > 0: not for n ms; None: not until a message in
        flight is answered (then ask again)."""
        while self.finished and self.finished[0] + self.window_ms <= now:
            self.finished.popleft()
        if now < self.blocked_until:
            return self.blocked_until - now
        if len(self.finished) + self.in_flight < self.limit:
            return 0
        if self.finished:
            return self.finished[0] + self.window_ms - now
        return None

    def start(self) -> None:
        self.in_flight += 1

    def finish(self, now: Millis) -> None:
        self.in_flight -= 1
        self.finished.append(now)
        while len(self.finished) > self.limit:  # cannot happen; the bound is stated here
            self.finished.popleft()

    def block(self, until: Millis) -> None:
        """The receiver said it is over its limit (45009): nothing starts before `until`."""
        self.blocked_until = max(self.blocked_until, until)
