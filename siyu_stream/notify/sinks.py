"""The sinks' I/O: one request per attempt (`SinkRunner.attempt`), and the attempts of one
action at one sink until it is delivered, rejected, expired or out of attempts (`deliver`).

Which answer means what (`receipts.classify_*`), when to retry (`schedule.retry_delay`)
and whether an action is still worth sending (`schedule.decide`, asked before every
attempt) are pure functions; this module only does what they say.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Awaitable, Callable
from typing import NamedTuple, TextIO

import aiohttp
import orjson

from siyu_stream.core.clock import SECOND, Millis
from siyu_stream.notify.config import NotifyConfig, Sink
from siyu_stream.notify.metrics import NotifyMetrics
from siyu_stream.notify.ratelimit import SlidingWindow
from siyu_stream.notify.receipts import Answer, Outcome, classify_http, classify_wecom
from siyu_stream.notify.render import webhook_headers, wecom_message
from siyu_stream.notify.schedule import (
    Expire,
    Hold,
    Parsed,
    decide,
    parse_retry_after,
    retry_delay,
)

MAX_RESPONSE_BYTES = 65_536
"""Read at most this much of an answer: a sink answering garbage cannot fill memory."""
WAIT_FOR_SLOT = 0.05

Clock = Callable[[], Millis]
Sleep = Callable[[float], Awaitable[None]]


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < MAX_RESPONSE_BYTES:
        chunk = await response.content.read(MAX_RESPONSE_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class SinkRunner:
    """One configured sink: its HTTP session, its concurrency slots and its rate limit."""

    def __init__(
        self,
        sink: Sink,
        config: NotifyConfig,
        session: aiohttp.ClientSession | None,
        clock: Clock,
        out: TextIO | None = None,
    ) -> None:
        self.sink = sink
        self.config = config
        self.session = session
        self.clock = clock
        self.out = out or sys.stdout
        self.slots = asyncio.Semaphore(sink.concurrency)
        window = int(sink.rate_window_seconds * SECOND)
        self.limiter = SlidingWindow(sink.rate, window) if sink.rate is not None else None

    async def _acquire(self) -> None:
        if self.limiter is None:
            return
        while (wait := self.limiter.wait_ms(self.clock())) != 0:
            await asyncio.sleep(WAIT_FOR_SLOT if wait is None else wait / SECOND)
        self.limiter.start()

    async def attempt(self, action: Parsed) -> Answer:
        """One request; never raises for what the sink or the network does."""
        async with self.slots:
            if self.sink.type == "stdout":
                self.out.write(f"notify {self.sink.name}: {action.raw.decode()}\n")
                self.out.flush()
                return Answer("ok", "2xx")
            await self._acquire()
            try:
                return await self._post(action)
            finally:
                if self.limiter is not None:
                    self.limiter.finish(self.clock())

    async def _post(self, action: Parsed) -> Answer:
        assert self.session is not None
        if self.sink.type == "webhook":
            body, headers = action.raw, webhook_headers(action, self.sink.secret)
        else:
            message = wecom_message(action, self.sink.msgtype, self.config.staff, self.config.zone)
            body, headers = orjson.dumps(message), {"Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self.sink.timeout_seconds)
        try:
            async with self.session.post(
                self.sink.url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                answer_body = await _read_bounded(response)
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), self.clock())
        except TimeoutError:
            return Answer("retry", "timeout")
        except (aiohttp.ClientError, OSError, ValueError):
            # refused, reset, a malformed answer (aiohttp raises ClientError subclasses;
            # ValueError for what its parser does not wrap): all worth another try
            return Answer("retry", "network")
        if self.sink.type == "webhook":
            return classify_http(status, answer_body, retry_after)
        return classify_wecom(status, answer_body)


class Final(NamedTuple):
    outcome: Outcome
    attempts: int
    answer: Answer | None


async def deliver(
    runner: SinkRunner,
    action: Parsed,
    metrics: NotifyMetrics,
    *,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> Final:
    """Attempts until the sink takes `action`, rejects it, it expires or the sink's
    `max_attempts` are spent."""
    sink, clock = runner.sink, runner.clock
    rng = rng or random.Random()  # jitter, not a secret
    staleness = runner.config.staleness_ms(action.kind, action.template)
    attempts, answer = 0, None
    while True:
        decision = decide(action, clock(), staleness)
        if isinstance(decision, Expire):
            return Final("expired", attempts, answer)
        if isinstance(decision, Hold):  # only if the clock went back: wait again
            await sleep((decision.until - clock()) / SECOND)
            continue
        attempts += 1
        answer = await runner.attempt(action)
        metrics.attempts.labels(sink.name, answer.reason).inc()
        if answer.verdict == "ok":
            return Final("delivered", attempts, answer)
        if answer.verdict == "reject":
            return Final("dead", attempts, answer)
        if attempts >= sink.max_attempts:
            return Final("failed", attempts, answer)
        delay = retry_delay(
            attempts,
            answer.retry_after_ms,
            int(sink.backoff_base_seconds * SECOND),
            int(sink.backoff_max_seconds * SECOND),
            rng.random(),
        )
        if answer.reason == "errcode_45009" and runner.limiter is not None:
            # the robot counts differently from us (another sender shares it): the whole
            # sink backs off, not only this action
            runner.limiter.block(clock() + delay)
        metrics.retries.labels(sink.name, answer.reason).inc()
        await sleep(delay / SECOND)
