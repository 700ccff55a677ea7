"""The simulator: deterministic, contract-shaped, and covering every rule's trigger."""

from __future__ import annotations

import io
import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from siyu_stream.cli import main
from siyu_stream.core.ruleset import Rules
from siyu_stream.replay.run import replay
from siyu_stream.simulate import (
    DAY,
    DEFAULT_START,
    TOPIC_OF_TYPE,
    SimConfig,
    SimRecord,
    _World,
    generate,
    history,
    natural_rate,
    write_jsonl,
)

CUSTOMERS = 500
EVENTS = 20_000
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
AMOUNT = re.compile(r"^\d+\.\d{2}$")
Msg = dict[str, Any]


def _cfg(**overrides: Any) -> SimConfig:
    return SimConfig(customers=CUSTOMERS, rate=natural_rate(CUSTOMERS), **overrides)


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    return list(generate(_cfg(), limit=EVENTS))


@pytest.fixture(scope="module")
def good(records: list[SimRecord]) -> list[Msg]:
    """First sends of valid messages, parsed, in stream order."""
    return [orjson.loads(r.value) for r in records if not r.bad and not r.duplicate]


def _fen(amount: object) -> int:
    return int(Decimal(str(amount)) * 100)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = list(generate(_cfg(seed=3), limit=3000))
    assert first == list(generate(_cfg(seed=3), limit=3000))
    assert [r.value for r in first] != [r.value for r in generate(_cfg(seed=4), limit=3000)]


def test_good_records_follow_the_contract(records: list[SimRecord]) -> None:
    for record in records:
        if record.bad:
            continue
        msg = orjson.loads(record.value)
        assert record.topic == TOPIC_OF_TYPE[msg["type"]]
        assert record.key == msg["customer_id"]
        assert re.fullmatch(r"c\d{6}", msg["customer_id"])
        assert isinstance(msg["event_id"], str)
        assert STAMP.match(msg["occurred_at"])
        _check_fields(msg)


def _check_fields(msg: Msg) -> None:
    envelope = {"event_id", "type", "customer_id", "occurred_at"}
    if msg["type"] == "order":
        assert set(msg) <= envelope | {"order_id", "status", "amount", "channel", "kind", "items"}
        assert msg["status"] in {"paid", "refunded"}
        amount = msg["amount"]
        assert AMOUNT.match(amount) if isinstance(amount, str) else isinstance(amount, int | float)
        assert 0 <= _fen(amount) <= 300_000 and Decimal(str(amount)) * 100 % 1 == 0
        assert msg["channel"] in {"tmall", "jd", "douyin", "miniprogram", "store"}
        assert msg.get("kind", "purchase") in {"purchase", "membership"}
        if msg.get("kind") == "membership":
            assert msg["amount"] == "1000.00"
        for item in msg.get("items", []):
            assert isinstance(item["sku"], str) and isinstance(item["qty"], int) and item["qty"] > 0
    elif msg["type"] == "chat":
        assert set(msg) <= envelope | {"direction", "channel", "staff_id", "message_id"}
        assert msg["channel"] in {"wecom", "wechat", "group", "sms", "phone"}
        assert ("staff_id" in msg) == (msg["direction"] == "outbound")
        assert isinstance(msg["message_id"], str)
    else:
        assert msg["type"] == "join"
        assert set(msg) <= envelope | {"action", "carrier", "source", "staff_id", "referrer_id"}
        assert msg["action"] in {"join", "leave"}
        carriers = {"wecom", "wechat", "group", "official_account", "app", "miniprogram"}
        assert msg["carrier"] in carriers
        sources = {"package_card", "sms", "live", "referral", "store", "customer_service"}
        assert msg["action"] == "leave" or msg["source"] in sources
        assert ("referrer_id" in msg) == (msg.get("source") == "referral")


def test_good_records_pass_the_topic_schemas(good: list[Msg]) -> None:
    schemas = pytest.importorskip("siyu_stream.core.schemas")
    if not (schemas.topics_dir() / "siyu.orders.schema.json").is_file():
        pytest.skip("topic schemas not written yet")
    for msg in good:
        schemas.validator(schemas.SCHEMA_OF_TYPE[msg["type"]])(msg)


def test_ids_are_unique_and_refunds_name_a_paid_order(good: list[Msg]) -> None:
    assert len({m["event_id"] for m in good}) == len(good)
    paid: dict[str, tuple[str, int]] = {}
    for msg in good:
        if msg["type"] == "order" and msg["status"] == "paid":
            assert msg["order_id"] not in paid
            paid[msg["order_id"]] = (msg["customer_id"], _fen(msg["amount"]))
        elif msg["type"] == "order":
            customer, fen = paid[msg["order_id"]]
            assert customer == msg["customer_id"] and 0 < _fen(msg["amount"]) <= fen


def test_mix_covers_every_rule_trigger(good: list[Msg]) -> None:
    seen: set[str] = set()
    counts: defaultdict[str, int] = defaultdict(int)
    spend: defaultdict[str, int] = defaultdict(int)
    purchases: defaultdict[str, int] = defaultdict(int)
    streak: defaultdict[str, int] = defaultdict(int)
    left: set[str] = set()
    for msg in good:
        cid, kind = msg["customer_id"], msg["type"]
        if kind == "order" and msg.get("kind") == "membership":
            counts["membership"] += 1
        elif kind == "order":
            sign = 1 if msg["status"] == "paid" else -1
            spend[cid] += sign * _fen(msg["amount"])
            purchases[cid] += sign == 1
            counts[msg["status"]] += 1
            counts["crossed_5000"] += sign == 1 and spend[cid] >= 500_000 > spend[cid] - _fen(
                msg["amount"]
            )
            counts["third_order"] += sign == 1 and purchases[cid] == 3
        elif kind == "chat" and msg["direction"] == "outbound":
            streak[cid] += 1
            counts["streak_5"] += streak[cid] == 5
        elif kind == "chat":
            streak[cid] = 0
        elif msg["action"] == "leave":
            left.add(cid)
            counts["leave"] += 1
        else:
            counts["rejoin"] += cid in left
            if "referrer_id" in msg:
                assert msg["referrer_id"] in seen and msg["referrer_id"] != cid
                counts["referral"] += 1
            if purchases[cid] and msg["source"] in {"package_card", "sms", "live"}:
                counts["joined_after_buying"] += 1
        seen.add(cid)
    counts["unanswered"] = _unanswered_inbound(good)
    for needed in (
        "membership", "paid", "refunded", "crossed_5000", "third_order", "streak_5",
        "leave", "rejoin", "referral", "joined_after_buying", "unanswered",
    ):  # fmt: skip
        assert counts[needed] > 0, needed
    assert 0.03 < counts["refunded"] / counts["paid"] < 0.08


def _unanswered_inbound(good: list[Msg]) -> int:
    """Inbound chats with no outbound to that customer within 30 minutes."""
    waiting: dict[str, datetime] = {}
    overdue = 0
    for msg in good:
        if msg["type"] != "chat":
            continue
        at = datetime.fromisoformat(msg["occurred_at"])
        cid = msg["customer_id"]
        if msg["direction"] == "inbound":
            waiting.setdefault(cid, at)
        elif cid in waiting:
            overdue += at - waiting.pop(cid) > timedelta(minutes=30)
    return overdue + len(waiting)


def test_bad_and_duplicate_ratios_and_shapes(records: list[SimRecord]) -> None:
    bad = [r for r in records if r.bad]
    duplicates = [r for r in records if r.duplicate]
    assert 0.5 * 0.002 < len(bad) / len(records) < 1.5 * 0.002
    assert 0.7 * 0.005 < len(duplicates) / len(records) < 1.3 * 0.005
    assert {r.defect for r in bad} == {
        "invalid_json", "missing_field", "negative_amount", "bad_timestamp", "unknown_type",
    }  # fmt: skip
    sent = {r.value for r in records if not r.duplicate}
    assert all(d.value in sent and not d.bad for d in duplicates)
    for record in bad:
        if record.defect == "invalid_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(record.value)
            continue
        msg = orjson.loads(record.value)
        if record.defect == "missing_field":
            assert not {"event_id", "customer_id", "occurred_at", "type"} <= set(msg)
        elif record.defect == "negative_amount":
            assert _fen(msg["amount"]) < 0
        elif record.defect == "bad_timestamp":
            assert _absurd_time(msg["occurred_at"])
        else:
            assert msg["type"] not in TOPIC_OF_TYPE


def _absurd_time(stamp: str) -> bool:
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return True
    return at.tzinfo is None or at.year < 2000


def test_event_time_runs_at_rate_with_small_jitter(records: list[SimRecord]) -> None:
    cfg = _cfg()
    times = [
        datetime.fromisoformat(orjson.loads(r.value)["occurred_at"])
        for r in records
        if not r.bad and not r.duplicate
    ]
    assert times[0] >= cfg.start
    elapsed = (times[-1] - cfg.start).total_seconds()
    assert elapsed == pytest.approx(len(records) / cfg.rate, rel=0.05)
    newest, behind = times[0], []
    for at in times:
        if at < newest:
            behind.append((newest - at).total_seconds())
        newest = max(newest, at)
    assert 0.003 * len(times) < len(behind) < 0.03 * len(times)
    assert max(behind) <= 6  # a few seconds, plus rounding to whole seconds


def test_memory_stays_bounded_by_customers() -> None:
    world = _World(SimConfig(customers=200, rate=10.0))
    for _ in range(30_000):  # ~150 events per customer: years of story time
        world.next_record()
    assert len(world.heap) < 3 * 200


def test_write_jsonl_one_line_per_message(tmp_path: Path, records: list[SimRecord]) -> None:
    path = tmp_path / "sim.jsonl"
    counts = write_jsonl(records, path)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and lines[:-1] == [r.value for r in records]
    assert counts.total == len(records) == EVENTS
    assert counts.bad == sum(r.bad for r in records)
    assert counts.duplicates == sum(r.duplicate for r in records)
    assert counts.orders == sum(r.topic == "orders" and not (r.bad or r.duplicate) for r in records)
    assert min(counts.orders, counts.chats, counts.joins) > 0


def test_config_rejects_naive_or_non_utc_start() -> None:
    with pytest.raises(ValueError, match="aware UTC"):
        SimConfig(customers=1, rate=1.0, start=datetime(2026, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="aware UTC"):
        SimConfig(customers=1, rate=1.0, start=datetime.now(timezone(timedelta(hours=8))))
    with pytest.raises(ValueError, match="rate"):
        SimConfig(customers=1, rate=0.0)
    with pytest.raises(ValueError, match="days"):
        SimConfig(customers=1, rate=1.0, days=0)
    with pytest.raises(ValueError, match="days"):
        history(100, -1)


# -- history mode (--days) ---------------------------------------------------------------

HISTORY_DAYS = 60
HISTORY_EVENTS = 4_000


@pytest.fixture(scope="module")
def history_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("history") / "history.jsonl"
    argv = ["simulate", "--days", str(HISTORY_DAYS), "--events", str(HISTORY_EVENTS)]
    assert main([*argv, "--out", str(path)]) == 0
    return path


def _event_times(path: Path) -> list[datetime]:
    """occurred_at of the valid lines (bad ones may carry no time or an absurd one)."""
    times = []
    for line in path.read_bytes().splitlines():
        try:
            at = datetime.fromisoformat(orjson.loads(line)["occurred_at"])
        except (orjson.JSONDecodeError, KeyError, ValueError):
            continue
        if at.tzinfo is not None and at.year >= 2000:
            times.append(at)
    return times


def test_days_spread_the_events_over_n_days(history_file: Path) -> None:
    times = _event_times(history_file)
    assert len(history_file.read_bytes().splitlines()) == HISTORY_EVENTS
    first, last = min(times), max(times)
    assert DEFAULT_START <= first < DEFAULT_START + timedelta(hours=6)
    # as exact as the steady stream's rate (the time scale adapts over ~2,000 events)
    assert (last - first) / timedelta(days=1) == pytest.approx(HISTORY_DAYS, rel=0.05)
    # Not a burst at one end: each third of the history holds a fair share of the events.
    thirds = [min(int(3 * (t - first) / (last - first)), 2) for t in times]
    assert min(thirds.count(i) for i in range(3)) > 0.2 * len(times)


def test_history_customers_live_at_their_own_pace() -> None:
    # history() picks the customer count from HISTORY_YIELD so that story time runs at
    # about event time; a stale calibration would squeeze or stretch every story.
    world = _World(history(HISTORY_EVENTS, HISTORY_DAYS))
    for _ in range(HISTORY_EVENTS):
        world.next_record()
    assert world.story / DAY == pytest.approx(HISTORY_DAYS, rel=0.15)


def test_history_follows_the_day_in_shanghai(history_file: Path) -> None:
    hours = [t.astimezone(ZoneInfo("Asia/Shanghai")).hour for t in _event_times(history_file)]
    night = sum(1 <= h < 6 for h in hours) / len(hours)
    evening = sum(19 <= h < 23 for h in hours) / len(hours)
    assert night < 0.4 * 5 / 24  # 01:00-06:00 is 21 % of the day
    assert evening > 1.2 * 4 / 24


def test_history_same_seed_same_bytes() -> None:
    first = [r.value for r in generate(history(3000, 30, seed=5), limit=3000)]
    assert first == [r.value for r in generate(history(3000, 30, seed=5), limit=3000)]
    assert first != [r.value for r in generate(history(3000, 30, seed=6), limit=3000)]


def test_history_fires_timers_like_a_purchase_history(history_file: Path) -> None:
    end = max(_event_times(history_file))
    now = int(end.timestamp() * 1000)
    stats = replay(
        [history_file],
        io.BytesIO(),
        Rules(),
        now=now,
        until=now + 400 * 86_400_000,
        partitions=4,
        deadletters=io.BytesIO(),
    )
    events = sum(stats.by_outcome().values())
    assert events == HISTORY_EVENTS
    # Many short stories: each one-time buyer leaves repurchase, at-risk and dormant
    # timers behind, so a history fires more timers than it has records.
    assert stats.timers_fired / events >= 1
    assert 1.5 < sum(stats.by_kind().values()) / events < 3
