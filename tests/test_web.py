"""The customer API without a broker: bearer-token checks and percent-encoded ids.

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

from siyu_stream.core.state import CustomerState
from siyu_stream.demo import _first_customer, api_lines
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.observe.view import Customer, WorkerView
from siyu_stream.observe.web import make_app
from siyu_stream.settings import Settings
from siyu_stream.simulate import SimRecord

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
    """A worker owning every partition, with customers whose ids need percent-encoding."""
    customers = ["c1", "a/b", "客户", "a%2Fb", "x y?z#"]
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


@pytest.mark.parametrize(
    ("path", "customer_id"),
    [
        (b"/customers/a%2Fb", "a/b"),
        (b"/customers/a%2fb", "a/b"),
        (b"/customers/%E5%AE%A2%E6%88%B7", "客户"),
        (b"/customers/a%252Fb", "a%2Fb"),  # decoded once: %25 is the percent sign itself
        (b"/customers/x%20y%3Fz%23", "x y?z#"),
    ],
)
async def test_percent_encoded_ids_are_decoded_exactly_once(
    server: TestServer, path: bytes, customer_id: str
) -> None:
    status, _, body = await raw_get(server, path)
    assert status == 200, body
    assert body["customer_id"] == customer_id
    assert body["partition"] == partition_for(customer_id.encode(), PARTITIONS)
    assert body["state"]["tier"] == "gold"


async def test_an_id_that_is_not_utf8_is_a_400(server: TestServer) -> None:
    status, _, body = await raw_get(server, b"/customers/%ff")
    assert status == 400
    assert "UTF-8" in body["error"]


async def test_unknown_decoded_id_is_a_404(server: TestServer) -> None:
    status, _, body = await raw_get(server, b"/customers/a%2Fc")
    assert status == 404
    assert body == {"error": "unknown customer a/c"}


async def test_proxy_re_encodes_the_id_for_the_owner() -> None:
    customer_id = "a/b"
    partition = partition_for(customer_id.encode(), PARTITIONS)
    others = set(range(PARTITIONS)) - {partition}
    owner = TestServer(app_of(StandIn({partition}, [customer_id], {})))
    async with owner:
        owner_url = str(owner.make_url("")).rstrip("/")
        router = TestServer(app_of(StandIn(others, [], {partition: owner_url}, "http://router")))
        async with router:
            status, _, body = await raw_get(router, b"/customers/a%2Fb")
    assert status == 200, body
    assert body["customer_id"] == customer_id
    assert body["served_by"] == "http://owner"  # answered by the owner, through the router


def test_demo_prints_a_ready_curl_line_with_the_token() -> None:
    lines = api_lines(Settings(api_token=TOKEN), "http://127.0.0.1:6066", "c000645")
    assert f'curl -H "Authorization: Bearer {TOKEN}" http://127.0.0.1:6066/customers/c000645' in (
        "\n".join(lines)
    )
    open_lines = api_lines(Settings(api_auth=False), "http://127.0.0.1:6066", "c000645")
    assert "SIYU_API_AUTH=false" in open_lines[0]
    assert "Bearer" not in "\n".join(open_lines)


def test_demo_example_customer_is_the_first_good_record_and_nothing_is_lost() -> None:
    records = [
        SimRecord("orders", "broken", b"{", bad=True),
        SimRecord("joins", "c000645", b"{}"),
        SimRecord("chats", "c000001", b"{}"),
    ]
    customer_id, rest = _first_customer(iter(records))
    assert customer_id == "c000645"
    assert list(rest) == records
