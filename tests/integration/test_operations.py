"""Operations surface on a real broker: metrics move, the customer API answers and routes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from live import Traffic, WorkerProcess, quiesce, share
from test_runtime import ALL, scenario, send_in_rounds, settings_for
from yarl import URL

from siyu_stream.build import build
from siyu_stream.eventtime.keys import partition_for
from siyu_stream.kafka.apache import KafkaCluster

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token"
# ids a URL must percent-encode: `/`, `%`, `?`, `#`, a space, non-ASCII
ODD_IDS = [f"shop/{n}" for n in range(6)] + ["客户 a%2Fb?#"]


async def get(url: str, token: str | None = TOKEN) -> tuple[int, dict[str, object] | str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    target = URL(url, encoded=True)  # sent exactly as written: `%2F` stays encoded
    async with aiohttp.ClientSession() as session, session.get(target, headers=headers) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def get_when_routed(url: str) -> tuple[int, dict[str, object] | str]:
    """GET, asked again while the answer is 503: the members topic may lag a rebalance."""
    for _ in range(50):
        status, body = await get(url)
        if status != 503:
            break
        await asyncio.sleep(0.2)
    return status, body


def join(customer_id: str) -> dict[str, Any]:
    return {
        "event_id": f"{customer_id}-j",
        "customer_id": customer_id,
        "type": "join",
        "action": "join",
        "carrier": "wecom",
        "source": "package_card",
    }


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_move_after_traffic(broker: KafkaCluster, tmp_path: Path) -> None:
    settings = settings_for(broker)
    worker = WorkerProcess(settings, tmp_path / "w.log", token=TOKEN)
    worker.start()
    worker.wait_owns(ALL)
    status, before = await get(f"{worker.url}/metrics", token=None)  # metrics need no token
    assert status == 200 and isinstance(before, str)
    assert sample(before, "siyu_partitions_owned") == 4
    assert sample(before, "siyu_events_total", type="order", outcome="ok") == 0
    async with Traffic(settings) as traffic:
        await send_in_rounds(traffic, range(3))
        await traffic.raw("orders", b"x", b"{broken")
        await quiesce(settings)
    _, after = await get(f"{worker.url}/metrics", token=None)
    worker.terminate()
    assert isinstance(after, str)
    # per scenario: 4 paid orders, 1 refund, the newcomer's and the leaver's orders
    assert sample(after, "siyu_events_total", type="order", outcome="ok") == 3 * 7
    assert sample(after, "siyu_events_total", type="order", outcome="duplicate") == 3
    assert sample(after, "siyu_deadletters_total", topic=settings.topic("orders")) == 1
    assert sample(after, "siyu_actions_total", kind="gift", rule="referral") == 3
    assert sample(after, "siyu_gift_value_fen_total", code="tier_5000") == 3 * 20_000
    assert sample(after, "siyu_customers", dimension="layer", value="A5") == 3
    assert sample(after, "siyu_processing_latency_seconds_count") > 0
    # measured from the input record's timestamp, so never exactly zero over many actions
    assert sample(after, "siyu_processing_latency_seconds_sum") > 0
    assert sample(after, "siyu_buyers_outside_pool_total") >= 3
    assert (
        sum(
            sample(
                after, "siyu_consumer_lag_records", topic=settings.topic("orders"), partition=str(p)
            )
            for p in range(4)
        )
        == 0
    )


async def test_customer_api_auth_404_and_routing(broker: KafkaCluster, tmp_path: Path) -> None:
    settings = settings_for(broker)
    first = WorkerProcess(settings, tmp_path / "a.log", token=TOKEN)
    second = WorkerProcess(settings, tmp_path / "b.log", token=TOKEN)
    first.start()
    first.wait_owns(ALL)
    second.start()
    await share(first, second)
    async with Traffic(settings) as traffic:
        await traffic.send([e for n in range(8) for h in scenario(n)[:1] for e in h if e])
        await traffic.send([join(c) for c in ODD_IDS])
        await quiesce(settings)
    customers = [f"cust{n}" for n in range(8)]
    owner_of = {
        c: first if partition_for(c.encode(), 4) in first.owned() else second
        for c in customers + ODD_IDS
    }
    assert {id(w) for w in owner_of.values()} == {id(first), id(second)}
    assert {id(owner_of[c]) for c in ODD_IDS} == {id(first), id(second)}  # served and routed
    try:
        status, body = await get(f"{first.url}/customers/cust0", token=None)
        assert status == 401
        status, body = await get(f"{first.url}/customers/cust0", token="wrong")
        assert status == 401
        for c in customers:
            for asked in (first, second):  # ask both: one answers, the other routes
                status, body = await get_when_routed(f"{asked.url}/customers/{c}")
                assert status == 200, body
                assert isinstance(body, dict)
                assert body["served_by"].endswith(f":{owner_of[c].port}")
                state = body["state"]
                assert isinstance(state, dict)
                assert state["gifts_granted"] == [
                    "tier_5000",
                    "tier_10000",
                    "third_order_reward",
                    "member_welcome_pack",
                ]
                assert state["tier"] == "silver" and state["membership"] == "active"
                timeline = body["timeline"]
                assert isinstance(timeline, list) and any("because" in e for e in timeline)
        for c in ODD_IDS:
            for asked in (first, second):
                status, body = await get_when_routed(f"{asked.url}/customers/{quote(c, safe='')}")
                assert status == 200, body
                assert isinstance(body, dict)
                assert body["customer_id"] == c  # decoded exactly once, on both hops
                assert body["served_by"].endswith(f":{owner_of[c].port}")
        status, body = await get(f"{second.url}/customers/nobody-here")
        assert status == 404
        status, body = await get(f"{first.url}/customers/shop%2F999")
        assert (status, body) == (404, {"error": "unknown customer shop/999"})
        status, body = await get(f"{first.url}/readyz", token=None)
        assert status == 200
        status, body = await get(f"{first.url}/healthz", token=None)
        assert status == 200
        # the worker runs the build the suite runs (make test: the compiled one)
        assert isinstance(body, dict)
        assert body["build"] == build()
    finally:
        first.terminate()
        second.terminate()
