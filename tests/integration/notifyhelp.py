"""Helpers for the notifier's broker tests: a stand-in HTTP sink, actions, receipts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from live import GIVE_UP_AFTER, read_topics

from siyu_stream.core.clock import MINUTE, Millis, format_rfc3339
from siyu_stream.kafka.client import client_options
from siyu_stream.kafka.embedded import free_port
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

SECRET = "test-secret"


@dataclass
class Request:
    path: str
    at: Millis
    """Receive time on the server's clock (the test clock when one is given)."""
    headers: dict[str, str]
    body: bytes
    status: int
    answer: bytes = b""


Behaviour = Callable[["Stand", web.Request, bytes], Awaitable[web.StreamResponse]]


async def ok(stand: Stand, request: web.Request, body: bytes) -> web.StreamResponse:
    return web.Response(status=200, text="ok")


@dataclass
class Stand:
    """A real local HTTP server; each path answers by its behaviour; every request is kept."""

    routes: dict[str, Behaviour]
    clock: Callable[[], Millis] = wall_clock
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> Stand:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        entry = Request(request.path, self.clock(), dict(request.headers), body, 0)
        self.requests.append(entry)
        response = await self.routes[request.path](self, request, body)
        entry.status = response.status
        entry.answer = getattr(response, "body", b"") or b""
        return response

    def attempts(self, key: str) -> int:
        """Requests so far carrying Idempotency-Key `key`."""
        return sum(1 for r in self.requests if r.headers.get("Idempotency-Key") == key)

    def delivered(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path and r.status == 200]


def gift(n: int, *, at: Millis | None = None) -> dict[str, Any]:
    return {
        "action_id": f"gift-{n:04d}",
        "kind": "gift",
        "rule": "spend_tier",
        "customer_id": f"c{n:04d}",
        "occurred_at": format_rfc3339(wall_clock() if at is None else at),
        "cause_event_id": f"e{n}",
        "detail": {"code": "tier_5000", "value": 20_000},
        "because": "net spend 5,300.00 yuan crossed 5,000",
        "rules_version": "0123abcd",
    }


def reminder(n: int, template: str, *, not_before: Millis | None = None) -> dict[str, Any]:
    now = wall_clock()
    staff = template in ("welcome_survey", "reply_overdue")
    return {
        "action_id": f"rem-{n:04d}",
        "kind": "reminder",
        "rule": "welcome" if staff else "invite_to_join",
        "customer_id": f"c{n:04d}",
        "occurred_at": format_rfc3339(now),
        "cause_event_id": f"e{n}",
        "detail": {
            "template": template,
            "assignee": "s7",
            "channel": "wecom",
            "not_before": None if staff else format_rfc3339(not_before or now),
            "deadline": format_rfc3339(now + 5 * MINUTE) if staff else None,
            "priority": "normal",
        },
        "because": "a test",
        "rules_version": "0123abcd",
    }


async def produce(
    settings: Settings, records: list[tuple[str, bytes | None, bytes | None]]
) -> None:
    """(kind gift / reminder, key, value) to the action topics, acknowledged."""
    topology = Topology(settings)
    producer = AIOKafkaProducer(**client_options(settings.kafka), acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topology.output(kind), value, key=key)
            for kind, key, value in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def as_records(actions: list[dict[str, Any]]) -> list[tuple[str, bytes | None, bytes | None]]:
    return [(a["kind"], a["customer_id"].encode(), orjson.dumps(a)) for a in actions]


async def receipts_until(
    settings: Settings, keys: set[str], topic: str | None = None
) -> dict[str, dict[str, Any]]:
    """The receipts (key -> record) once every key in `keys` has one."""
    topic = topic or Topology(settings).deliveries
    deadline = time.monotonic() + GIVE_UP_AFTER
    while True:
        found = {f"{r['action_id']}/{r['sink']}": r for r in await read_topics(settings, [topic])}
        if keys <= set(found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.5)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GIVE_UP_AFTER
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.1)
