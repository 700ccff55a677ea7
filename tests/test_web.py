"""The customer API without a broker: bearer-token checks.

The worker is a stand-in WorkerView with a few customers; requests are written as raw
bytes, because an HTTP client would not send the malformed headers these tests need.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from siyu_stream.keys import partition_for
from siyu_stream.settings import Settings
from siyu_stream.state import CustomerState
from siyu_stream.view import Customer, WorkerView
from siyu_stream.web import make_app

TOKEN = "tok-123"
PARTITIONS = 4


class StandIn:
    """A WorkerView that owns some partitions and knows a few of their customers."""

    alive = True
    is_ready = True

    def __init__(
        self,
        owned: set[int],
        customers: list[str],
        directory: dict[int, str],
        url: str = "http://owner",
    ) -> None:
        self.settings = Settings(api_token=TOKEN, partitions=PARTITIONS)
        self.url = url
        self.owned = owned
        self.customers = {c: CustomerState(tier="gold") for c in customers}
        self.directory = directory

    def partitions(self) -> list[int]:
        return sorted(self.owned)

    def customer(self, customer_id: str) -> Customer | None:
        partition = partition_for(customer_id.encode(), PARTITIONS)
        if partition not in self.owned:
            return None
        state = self.customers.get(customer_id)
        return Customer(partition, state, [{"because": f"seen {customer_id}"}] if state else [])

    def owner(self, partition: int) -> str | None:
        return self.directory.get(partition)


def app_of(worker: StandIn) -> web.Application:
    return make_app(cast(WorkerView, worker), CollectorRegistry())


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    """A worker owning every partition."""
    customers = ["c1"]
    running = TestServer(app_of(StandIn(set(range(PARTITIONS)), customers, {})))
    async with running:
        yield running


async def raw_get(
    server: TestServer, path: bytes, authorization: bytes | None = b"Bearer " + TOKEN.encode()
) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    auth = b"" if authorization is None else b"Authorization: " + authorization + b"\r\n"
    writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + auth + b"\r\n")
    await writer.drain()
    answer = await reader.read()  # to the end: the server closes after one answer
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, orjson.loads(body) if body else None


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        b"",
        b"Bearer",
        b"Bearer ",
        b"Bearer wrong",
        b"Bearer \xff\xfe",  # not UTF-8: it used to be a 500 (UnicodeEncodeError)
        b"Bearer tok-12\xc3\xa9",  # UTF-8 but not ASCII
        b"Bearer " + TOKEN.encode() + b" extra",
        b"Basic " + TOKEN.encode(),
        b"Bearer" + TOKEN.encode(),
        TOKEN.encode(),
    ],
)
async def test_missing_or_malformed_token_is_401(
    server: TestServer, authorization: bytes | None
) -> None:
    status, headers, body = await raw_get(server, b"/customers/c1", authorization)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="siyu-stream"'
    assert body == {"error": "missing or wrong bearer token"}


@pytest.mark.parametrize("scheme", [b"Bearer", b"bearer", b"BEARER"])
async def test_right_token_answers_whatever_the_scheme_case(
    server: TestServer, scheme: bytes
) -> None:
    status, _, body = await raw_get(server, b"/customers/c1", scheme + b" " + TOKEN.encode())
    assert status == 200
    assert body["customer_id"] == "c1"
