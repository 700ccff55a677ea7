"""`siyu-stream notify` on a real broker against real local HTTP servers: failures,
rate limits, stalls, quiet hours, a SIGKILL, two instances, expiry and bad input."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from live import read_topics, settings_for
from notifyhelp import (
    SECRET,
    Stand,
    as_records,
    gift,
    ok,
    produce,
    receipts_until,
    reminder,
    until,
)
from scenario import Scenario

from siyu_stream.core.clock import DAY, HOUR, MINUTE, SECOND, Millis, format_rfc3339, parse_rfc3339
from siyu_stream.core.ruleset import ContactPolicy, Engine, Rules
from siyu_stream.kafka.admin import ensure_topics
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.kafka.embedded import free_port
from siyu_stream.notify.config import parse_config
from siyu_stream.notify.loop import Notifier
from siyu_stream.notify.render import verify
from siyu_stream.observe.wall import wall_clock
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

pytestmark = pytest.mark.integration
ENV = {"HOOK_SECRET": SECRET}


def webhook_toml(url: str, *, name: str = "crm", extra: str = "") -> str:
    return f"""
[notify]
metrics_port = 0
commit_interval_seconds = 0.2

[[sink]]
name = "{name}"
type = "webhook"
url = "{url}"
secret_env = "HOOK_SECRET"
kinds = ["gift", "reminder"]
timeout_seconds = 0.5
backoff_base_seconds = 0.05
backoff_max_seconds = 0.4
{extra}
"""


async def ready(settings: Settings) -> Settings:
    await ensure_topics(settings.kafka, Topology(settings).specs())
    return settings


@contextlib.asynccontextmanager
async def running(
    settings: Settings, toml: str, clock: Any = wall_clock
) -> AsyncIterator[Notifier]:
    notifier = Notifier(
        settings, parse_config(toml, "test.toml", ENV), clock=clock, out=io.StringIO()
    )
    task = asyncio.create_task(notifier.run())
    try:
        await until(lambda: bool(notifier.books) or task.done(), "partitions assigned")
        yield notifier
    finally:
        notifier.stop()
        await task


def body_id(body: bytes) -> str:
    return str(orjson.loads(body)["action_id"])


# ---------------------------------------------------------------- failures, 429, stalls


async def flaky(stand: Stand, request: web.Request, body: bytes) -> web.StreamResponse:
    """Per action, by its number: 500 first, or 429 with Retry-After: 1, or a stall past
    the client's timeout, then 200."""
    key = request.headers["Idempotency-Key"]
    n, tries = int(key[-4:]), stand.attempts(key)
    script = ["500", "429", "stall", "ok"][n % 4 :] if n % 4 != 3 else ["ok"]
    step = script[min(tries - 1, len(script) - 1)]
    if step == "500":
        return web.Response(status=500, text="boom")
    if step == "429":
        return web.Response(status=429, headers={"Retry-After": "1"})
    if step == "stall":
        await asyncio.sleep(3)
    return web.Response(status=200, text="ok")


async def test_every_action_arrives_signed_through_failures_rate_limits_and_stalls(
    broker: KafkaCluster,
) -> None:
    settings = await ready(settings_for(broker.bootstrap))
    stand = await Stand({"/crm": flaky}).start()
    actions = [gift(n) for n in range(12)] + [
        reminder(n, "welcome_survey" if n % 2 else "invite_join") for n in range(12, 24)
    ]
    port = free_port()
    toml = webhook_toml(stand.url("/crm")).replace("metrics_port = 0", f"metrics_port = {port}")
    try:
        async with running(settings, toml), aiohttp.ClientSession() as http:
            await produce(settings, as_records(actions))
            wanted = {f"{a['action_id']}/crm" for a in actions}
            receipts = await receipts_until(settings, wanted)
            await asyncio.sleep(0.5)  # counters move after the receipt is acknowledged
            async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
                metrics = await answer.text()
    finally:
        await stand.stop()
    assert {k: r["outcome"] for k, r in receipts.items()} == dict.fromkeys(wanted, "delivered")
    assert (
        f'siyu_notify_deliveries_total{{outcome="delivered",sink="crm"}} {len(actions)}.0'
        in metrics
    )
    assert 'siyu_notify_retries_total{reason="429",sink="crm"}' in metrics
    sent = {a["action_id"]: orjson.dumps(a) for a in actions}
    delivered = stand.delivered("/crm")
    assert {body_id(r.body) for r in delivered} == set(sent)
    for r in stand.requests:  # every attempt: the topic's bytes, signed, keyed by the id
        assert r.body == sent[body_id(r.body)]
        assert r.headers["Idempotency-Key"] == body_id(r.body)
        assert verify(SECRET.encode(), r.body, r.headers["X-Siyu-Signature"])
    statuses = Counter(r.status for r in stand.requests)
    assert statuses[500] >= 1 and statuses[429] >= 1, statuses
    # a 429 with Retry-After: 1 s is retried no sooner (server's own clock)
    for key in {r.headers["Idempotency-Key"] for r in stand.requests if r.status == 429}:
        mine = [r for r in stand.requests if r.headers["Idempotency-Key"] == key]
        after = [b.at - a.at for a, b in itertools.pairwise(mine) if a.status == 429]
        assert all(gap >= SECOND - 50 for gap in after), after
    assert max(receipts[f"{a}/crm"]["attempts"] for a in sent) >= 3


# ---------------------------------------------------------------- quiet hours


async def test_no_customer_facing_reminder_arrives_before_quiet_hours_end(
    broker: KafkaCluster,
) -> None:
    """Quiet hours ending "a minute from now" on a test clock: the rule core moves the
    invites to the quiet end (docs/design.md §4); the notifier holds them until then."""
    real = wall_clock()
    quiet_end = (real // MINUTE + 3) * MINUTE  # a minute boundary 2-3 minutes ahead
    # the test clock runs at real speed, 8 s before the quiet end
    offset = quiet_end - 8 * SECOND - real

    def clock() -> Millis:
        return wall_clock() + offset

    end = quiet_end % DAY
    hhmm = f"{end // HOUR:02d}:{end // MINUTE % 60:02d}"
    start = f"{(end // HOUR + 23) % 24:02d}:{end // MINUTE % 60:02d}"
    rules = Rules(engine=Engine(timezone="UTC"), contact_policy=ContactPolicy(start, hhmm))
    s = Scenario(rules)
    at = clock()
    for n in range(6):
        moment = format_rfc3339(at + n)
        s.send(
            type="order",
            customer_id=f"q{n}",
            order_id=f"o{n}",
            amount="99",
            status="paid",
            channel="tmall",
            occurred_at=moment,
        )
        s.send(
            type="join",
            customer_id=f"w{n}",
            action="join",
            carrier="wecom",
            staff_id="s7",
            occurred_at=moment,
        )
    reminders = [a for a in s.actions if a.kind == "reminder"]
    facing = [a for a in reminders if a.detail["not_before"] is not None]
    staff = [a for a in reminders if a.detail["deadline"] is not None]
    assert len(facing) == 6 and len(staff) == 6
    assert {parse_rfc3339(str(a.detail["not_before"])) for a in facing} == {quiet_end}

    settings = await ready(settings_for(broker.bootstrap))
    stand = await Stand({"/crm": ok}, clock=clock).start()
    try:
        async with running(settings, webhook_toml(stand.url("/crm")), clock):
            await produce(
                settings, [("reminder", a.customer_id.encode(), a.to_json()) for a in reminders]
            )
            wanted = {f"{a.action_id}/crm" for a in reminders}
            receipts = await receipts_until(settings, wanted)
    finally:
        await stand.stop()
    assert set(receipts) == wanted
    arrived = {body_id(r.body): r.at for r in stand.delivered("/crm")}
    assert set(arrived) == {a.action_id for a in reminders}
    for a in facing:
        assert arrived[a.action_id] >= quiet_end, "a customer-facing reminder came early"
    # staff tasks are not held: they arrived before any customer-facing reminder
    assert max(arrived[a.action_id] for a in staff) < min(arrived[a.action_id] for a in facing)


# ---------------------------------------------------------------- WeCom robot, 45009


def wecom_stand_in(limit: int, window: Millis) -> Any:
    async def robot(stand: Stand, request: web.Request, body: bytes) -> web.StreamResponse:
        now = stand.requests[-1].at
        recent = [r for r in stand.requests[:-1] if r.path == "/robot" and r.at > now - window]
        # another sender shares the robot: every 7th request is refused regardless
        if len(recent) >= limit or len(stand.requests) % 7 == 0:
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        assert orjson.loads(body)["msgtype"] == "markdown"
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    return robot


async def test_wecom_robot_stays_within_its_rate_and_delivers_everything(
    broker: KafkaCluster,
) -> None:
    limit, window = 5, SECOND
    settings = await ready(settings_for(broker.bootstrap))
    stand = await Stand({"/robot": wecom_stand_in(limit, window)}).start()
    toml = f"""
[notify]
metrics_port = 0
[staff]
s7 = "zhangsan"
[[sink]]
name = "robot"
type = "wecom_robot"
url = "{stand.url("/robot")}"
kinds = ["gift", "reminder"]
rate = {limit}
rate_window_seconds = {window / SECOND}
backoff_base_seconds = 0.1
backoff_max_seconds = 0.5
"""
    actions = [gift(n) for n in range(10)] + [reminder(n, "welcome_survey") for n in range(10, 20)]
    try:
        async with running(settings, toml):
            await produce(settings, as_records(actions))
            wanted = {f"{a['action_id']}/robot" for a in actions}
            receipts = await receipts_until(settings, wanted)
    finally:
        await stand.stop()
    assert {r["outcome"] for r in receipts.values()} == {"delivered"}
    accepted = [
        orjson.loads(r.body)["markdown"]["content"]
        for r in stand.requests
        if orjson.loads(r.answer)["errcode"] == 0
    ]
    for a in actions:
        assert sum(a["customer_id"] in text for text in accepted) >= 1, a["action_id"]
    assert all("<@zhangsan>" in t for t in accepted if "新好友" in t)
    times = sorted(r.at for r in stand.requests)
    busiest = max(sum(1 for t in times if s <= t < s + window) for s in times)
    refused = sum(1 for r in stand.requests if b"45009" in r.answer)
    assert busiest <= limit, busiest
    assert refused >= 1 and len(stand.requests) >= len(actions) + refused


# ---------------------------------------------------------------- two instances


async def test_two_notifiers_split_the_work_and_never_both_send_one_action(
    broker: KafkaCluster,
) -> None:
    settings = await ready(settings_for(broker.bootstrap))
    stand = await Stand({"/a": ok, "/b": ok}).start()
    actions = [gift(n) for n in range(40)]
    try:
        async with (
            running(settings, webhook_toml(stand.url("/a"))) as first,
            running(settings, webhook_toml(stand.url("/b"))) as second,
        ):
            await until(
                lambda: (
                    len(first.books) + len(second.books) == 8
                    and len(first.books) < 8
                    and len(second.books) < 8
                ),
                "two notifiers sharing the partitions",
            )
            await produce(settings, as_records(actions))
            await receipts_until(settings, {f"{a['action_id']}/crm" for a in actions})
    finally:
        await stand.stop()
    by_a = {body_id(r.body) for r in stand.delivered("/a")}
    by_b = {body_id(r.body) for r in stand.delivered("/b")}
    assert by_a | by_b == {a["action_id"] for a in actions}
    assert by_a and by_b and not by_a & by_b
    assert len(stand.requests) == len(actions)


# ---------------------------------------------------------------- expiry and bad input


async def rejects_some(stand: Stand, request: web.Request, body: bytes) -> web.StreamResponse:
    if body_id(body) == "gift-0003":
        return web.Response(status=422, text="unknown customer " + "x" * 2_000)
    return web.Response(status=200)


async def test_expired_actions_are_receipted_not_sent_and_bad_input_is_dead_lettered(
    broker: KafkaCluster,
) -> None:
    settings = await ready(settings_for(broker.bootstrap))
    stand = await Stand({"/crm": rejects_some}).start()
    old = wall_clock() - 2 * DAY  # the default staleness limit is one day
    fresh = [gift(n) for n in range(4)]
    stale = [gift(n, at=old) for n in range(10, 14)]
    bad: list[tuple[str, bytes | None, bytes | None]] = [
        ("gift", b"k", b"not json"),
        ("gift", b"k", None),
        ("reminder", b"k", orjson.dumps({**fresh[0], "kind": "reminder"})),
    ]
    try:
        async with running(settings, webhook_toml(stand.url("/crm"))):
            await produce(settings, [*bad, *as_records(stale + fresh)])
            wanted = {f"{a['action_id']}/crm" for a in stale + fresh}
            receipts = await receipts_until(settings, wanted)
            deadline = asyncio.get_running_loop().time() + 30
            while (
                len(dead := await read_topics(settings, [Topology(settings).notify_deadletter])) < 4
            ):
                assert asyncio.get_running_loop().time() < deadline, dead
                await asyncio.sleep(0.5)
    finally:
        await stand.stop()
    outcomes = {k: r["outcome"] for k, r in receipts.items()}
    assert outcomes == {
        **{f"{a['action_id']}/crm": "expired" for a in stale},
        **{f"{a['action_id']}/crm": "delivered" for a in fresh},
        "gift-0003/crm": "dead",
    }
    sent = {body_id(r.body) for r in stand.requests}
    assert sent == {a["action_id"] for a in fresh}  # nothing stale went out
    rejected = [d for d in dead if d["sink"] == "crm"]
    assert len(rejected) == 1 and rejected[0]["response"]["status"] == 422
    assert rejected[0]["response"]["truncated"] is True
    unreadable = [d for d in dead if d["sink"] is None]
    assert len(unreadable) == 3 and {d["value"] for d in unreadable} >= {"not json", None}


# ---------------------------------------------------------------- SIGKILL and restart


def start_notifier(settings: Settings, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SIYU_BROKER": settings.broker,
        "SIYU_APP_ID": settings.app_id,
        "SIYU_TOPIC_PREFIX": settings.topic_prefix,
        "SIYU_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "SIYU_PARTITIONS": str(settings.partitions),
        "HOOK_SECRET": SECRET,
    }
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "siyu_stream.cli", "notify", "--config", str(config)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


async def test_sigkill_mid_way_loses_nothing_and_repeats_keep_their_key(
    broker: KafkaCluster, tmp_path: Path
) -> None:
    settings = await ready(settings_for(broker.bootstrap))

    async def slow(stand: Stand, request: web.Request, body: bytes) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return web.Response(status=200)

    stand = await Stand({"/crm": slow}).start()
    config = tmp_path / "notify.toml"
    config.write_text(webhook_toml(stand.url("/crm"), extra="concurrency = 2"))
    log = tmp_path / "notify.log"
    # reminders held for 8 s on (very likely) every partition, read first: no offset is
    # committed past them before the kill, so after the restart every gift is read again
    # and only the receipts read back keep it from going out twice
    not_before = wall_clock() + 8 * SECOND
    held = [reminder(n, "invite_join", not_before=not_before) for n in range(200, 216)]
    actions = held + [gift(n) for n in range(150)]
    proc = start_notifier(settings, config, log)
    try:
        await produce(settings, as_records(actions))
        await until(
            lambda: len(stand.delivered("/crm")) >= 40 or proc.poll() is not None, "40 sent"
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(stand.delivered("/crm"))
        # the group evicts the killed member after its session timeout; then the
        # restarted notifier gets every partition
        proc = start_notifier(settings, config, log)
        wanted = {f"{a['action_id']}/crm" for a in actions}
        receipts = await receipts_until(settings, wanted)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        await stand.stop()
    assert killed_at < len(actions), "killed too late to test anything"
    missing = sorted(wanted - set(receipts))
    after = len(stand.requests) - killed_at
    assert not missing, (
        f"{len(missing)} missing, e.g. {missing[:5]}; {after} requests after the kill"
    )
    delivered = [r for r in stand.requests if r.status == 200]
    ids = Counter(body_id(r.body) for r in delivered)
    assert set(ids) == {a["action_id"] for a in actions}  # nothing lost
    for r in delivered:
        assert r.headers["Idempotency-Key"] == body_id(r.body)
    repeats = sum(n - 1 for n in ids.values())
    print(f"killed after {killed_at} of {len(actions)} delivered; {repeats} sent again")
    # only what was in flight (2 slots), or delivered but its receipt not yet
    # acknowledged, at the kill goes out again
    assert repeats <= 4, repeats
    assert killed_at < len(actions) - len(held)  # the kill came before the holds ended
    read_back = [int(n) for n in re.findall(r"(\d+) receipts read back", log.read_text())]
    assert sum(read_back) >= killed_at - 4, read_back  # the restart read them back
    for r in delivered:
        if body_id(r.body).startswith("rem-"):
            assert r.at >= not_before, "a held reminder went out early across the restart"


# ---------------------------------------------------------------- the pending bound


async def test_past_the_pending_bound_partitions_pause_and_nothing_is_lost(
    broker: KafkaCluster,
) -> None:
    settings = await ready(settings_for(broker.bootstrap))
    stand = await Stand({"/crm": ok}).start()
    not_before = wall_clock() + 4 * SECOND
    held = [reminder(n, "invite_join", not_before=not_before) for n in range(40)]
    paused: list[int] = []
    try:
        toml = webhook_toml(stand.url("/crm")).replace(
            "metrics_port = 0", "metrics_port = 0\nmax_pending_per_partition = 2"
        )
        async with running(settings, toml) as notifier:
            await produce(settings, as_records(held))
            wanted = {f"{a['action_id']}/crm" for a in held}
            waiting = asyncio.create_task(receipts_until(settings, wanted))
            while not waiting.done():
                paused.append(len(notifier.flow_paused))
                assert notifier.held <= 4 * (2 + 500)  # bound + one poll's records
                await asyncio.sleep(0.1)
            receipts = waiting.result()
            await until(lambda: not notifier.flow_paused, "resumed once the holds ended")
    finally:
        await stand.stop()
    assert max(paused) >= 1, "no partition was paused"
    assert {r["outcome"] for r in receipts.values()} == {"delivered"} and len(receipts) == 40
    assert all(r.at >= not_before for r in stand.requests)
