"""The notifier's pure parts: config errors, schedule decisions, backoff, signature,
truncation, answers, the rate limit, and the actions the real rule core emits."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import orjson
import pytest

from siyu_stream.core.clock import MINUTE, SECOND, format_rfc3339, parse_rfc3339
from siyu_stream.core.errors import InvalidAction, NotifyConfigError, SiyuError
from siyu_stream.notify.config import NotifyConfig, Sink, load_config, parse_config
from siyu_stream.notify.ratelimit import SlidingWindow
from siyu_stream.notify.receipts import classify_http, classify_wecom, dead_letter, receipt
from siyu_stream.notify.render import (
    MARKDOWN_MAX_BYTES,
    TEXT_MAX_BYTES,
    signature,
    truncate_utf8,
    verify,
    wecom_message,
)
from siyu_stream.notify.schedule import (
    MAX_RETRY_AFTER_MS,
    Expire,
    Hold,
    Send,
    decide,
    parse_action,
    parse_retry_after,
    retry_delay,
)

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "CRM_SECRET": "s3cret",
    "ROBOT_URL": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k",
}
T0 = parse_rfc3339("2026-03-02T00:00:00Z")  # 08:00 in Shanghai


def reminder(template: str = "invite_join", **detail: Any) -> dict[str, Any]:
    facing = template not in ("welcome_survey", "reply_overdue")
    at = format_rfc3339(T0)
    return {
        "action_id": f"a-{template}",
        "kind": "reminder",
        "rule": "invite_to_join" if facing else "welcome",
        "customer_id": "c1",
        "occurred_at": at,
        "cause_event_id": "e1",
        "detail": {
            "template": template,
            "assignee": "s7",
            "channel": "wecom",
            "not_before": at if facing else None,
            "deadline": None if facing else format_rfc3339(T0 + 5 * MINUTE),
            "priority": "normal",
            **detail,
        },
        "because": "paid order O1 from a customer outside the pool",
        "rules_version": "0123abcd",
    }


def gift() -> dict[str, Any]:
    return {
        "action_id": "g1",
        "kind": "gift",
        "rule": "spend_tier",
        "customer_id": "c1",
        "occurred_at": format_rfc3339(T0),
        "cause_event_id": "e1",
        "detail": {"code": "tier_5000", "value": 20000},
        "because": "net spend 5,300.00 yuan crossed 5,000",
        "rules_version": "0123abcd",
    }


def parsed(record: dict[str, Any]) -> Any:
    return parse_action(orjson.dumps(record), record["kind"])


# ---------------------------------------------------------------- config


GOOD = """\
[notify]
metrics_port = 0

[staleness_minutes]
default = 60
invite_join = 720

[staff]
s7 = "zhangsan"

[[sink]]
name = "crm"
type = "webhook"
url = "https://crm.example.com/hook"
secret_env = "CRM_SECRET"
kinds = ["gift", "reminder"]

[[sink]]
name = "robot"
type = "wecom_robot"
url_env = "ROBOT_URL"
kinds = ["reminder"]
templates = ["welcome_survey"]
"""


def test_the_documented_example_config_loads(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "notify.md").read_text()
    toml = text.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "notify.toml"
    path.write_text(toml)
    config = load_config(
        path, {"SIYU_CRM_WEBHOOK_SECRET": "x", "SIYU_WECOM_ROBOT_URL": ENV["ROBOT_URL"]}
    )
    assert {s.type for s in config.sinks} == {"webhook", "wecom_robot"}


def test_config_reads_sinks_staff_and_staleness() -> None:
    config = parse_config(GOOD, "n.toml", ENV)
    crm, robot = config.sinks
    assert crm.secret == b"s3cret" and crm.url == "https://crm.example.com/hook"
    assert robot.url == ENV["ROBOT_URL"] and robot.rate == 20  # WeCom's limit by default
    assert robot.takes("reminder", "welcome_survey") and not robot.takes("reminder", "invite_join")
    assert not robot.takes("gift", None) and crm.takes("gift", None)
    assert config.staleness_ms("reminder", "invite_join") == 720 * MINUTE
    assert config.staleness_ms("gift", None) == 60 * MINUTE
    assert config.staff == {"s7": "zhangsan"} and config.metrics_port == 0


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (
            ('kinds = ["reminder"]\ntemplates', 'kinds = ["reminder"]\nnope = 1\ntemplates'),
            "n.toml:23: sink[2].nope: unknown key",
        ),
        (
            ('type = "wecom_robot"', 'type = "pager"'),
            "n.toml:20: sink[2].type: 'pager' is not one of",
        ),
        (
            ('kinds = ["gift", "reminder"]', 'kinds = ["gift", "refund"]'),
            "n.toml:16: sink[1].kinds: 'refund'",
        ),
        (
            ('url_env = "ROBOT_URL"', 'url_env = "MISSING"'),
            "n.toml:21: sink[2].url_env: environment variable MISSING",
        ),
        (('secret_env = "CRM_SECRET"', 'secret_env = "NOPE"'), "n.toml:15: sink[1].secret_env"),
        (
            ('templates = ["welcome_survey"]', 'templates = ["welcome_survey"]\nrate = 30'),
            "n.toml:24: sink[2].rate: a WeCom robot takes at most 20",
        ),
        (
            ("invite_join = 720", "invite_jion = 720"),
            "n.toml:6: staleness_minutes.invite_jion: unknown template",
        ),
        (
            ("metrics_port = 0", "metrics_port = 70000"),
            "n.toml:2: notify.metrics_port: must be between",
        ),
        (
            ("metrics_port = 0", 'metrics_port = "80"'),
            "n.toml:2: notify.metrics_port: expected int",
        ),
        (('name = "robot"', 'name = "crm"'), "n.toml:19: sink[2].name: 'crm' names two sinks"),
        (
            ('url = "https://crm.example.com/hook"\n', ""),
            "n.toml:11: sink[1].url: needs an http(s) URL",
        ),
    ],
)
def test_config_errors_name_file_line_and_field(change: tuple[str, str], where: str) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(NotifyConfigError) as caught:
        parse_config(GOOD.replace(old, new, 1), "n.toml", ENV)
    assert str(caught.value).startswith(where), str(caught.value)
    assert isinstance(caught.value, SiyuError)


def test_config_needs_a_sink_and_valid_toml() -> None:
    with pytest.raises(NotifyConfigError, match="at least one"):
        parse_config("[notify]\nmetrics_port = 0\n", "n.toml", ENV)
    with pytest.raises(NotifyConfigError, match=r"n\.toml: invalid TOML"):
        parse_config("[[sink]\n", "n.toml", ENV)


# ---------------------------------------------------------------- when to send


def test_customer_facing_reminder_is_held_until_not_before_then_sent_then_expired() -> None:
    action = parsed(reminder(not_before=format_rfc3339(T0 + MINUTE)))
    limit = 10 * MINUTE
    assert decide(action, T0, limit) == Hold(T0 + MINUTE)
    assert decide(action, T0 + MINUTE - 1, limit) == Hold(T0 + MINUTE)
    assert decide(action, T0 + MINUTE, limit) == Send()
    # staleness counts from when it could first go out (not_before), not from occurred_at
    assert decide(action, T0 + 11 * MINUTE, limit) == Send()
    assert decide(action, T0 + 11 * MINUTE + 1, limit) == Expire(10 * MINUTE + 1)


def test_staff_task_goes_out_at_once_whatever_its_deadline() -> None:
    action = parsed(reminder("welcome_survey"))
    assert action.not_before is None and action.deadline == T0 + 5 * MINUTE
    assert decide(action, T0, 10 * MINUTE) == Send()  # before its deadline: not held
    assert decide(action, T0 + 11 * MINUTE, 10 * MINUTE) == Expire(11 * MINUTE)


def test_the_rule_core_emits_what_the_notifier_reads() -> None:
    # quiet hours: an order at 23:30 Shanghai gives an invite not before 08:00
    from scenario import Scenario, t

    s = Scenario()
    s.order("2026-03-01 23:30", "99")
    s.join("2026-03-01 23:40", "wecom", staff_id="s7", customer_id="c9")
    [invite] = s.reminders("invite_join")
    [welcome] = s.reminders("welcome_survey", "c9")
    held = parse_action(invite.to_json(), "reminder")
    assert decide(held, t("2026-03-02 07:59"), DAY_MS) == Hold(t("2026-03-02 08:00"))
    assert decide(held, t("2026-03-02 08:00"), DAY_MS) == Send()
    now = parse_action(welcome.to_json(), "reminder")
    assert decide(now, t("2026-03-01 23:40"), DAY_MS) == Send()  # quiet hours do not hold it
    assert now.deadline == t("2026-03-01 23:45")


DAY_MS = 24 * 60 * MINUTE


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"not json",
        b"[]",
        orjson.dumps({**gift(), "kind": "reminder"}),
        orjson.dumps(reminder(not_before=None)),  # neither not_before nor deadline
        orjson.dumps(reminder(deadline=format_rfc3339(T0))),  # both
        orjson.dumps(reminder(not_before="2026-02-30T00:00:00Z")),
        b"{" + b" " * 70_000 + b"}",
    ],
)
def test_malformed_actions_are_refused_with_a_reason(raw: bytes | None) -> None:
    with pytest.raises(InvalidAction) as caught:
        parse_action(raw, "reminder")
    assert str(caught.value)


# ---------------------------------------------------------------- retry delay


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    delays = [retry_delay(n, None, 1_000, 60_000, 0.0) for n in range(1, 10)]
    assert delays == [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
    assert retry_delay(3, None, 1_000, 60_000, 0.999) == 3_998
    assert retry_delay(1000, None, 1_000, 60_000, 0.5) == 45_000  # no overflow


def test_backoff_honours_retry_after_within_a_bound() -> None:
    assert retry_delay(1, 7_000, 1_000, 60_000, 0.0) == 7_000
    assert retry_delay(8, 1_000, 1_000, 60_000, 0.0) == 30_000  # the backoff is longer
    assert retry_delay(1, 10**12, 1_000, 60_000, 0.0) == MAX_RETRY_AFTER_MS


def test_retry_after_header_forms() -> None:
    now = parse_rfc3339("2026-03-02T00:00:00Z")
    assert parse_retry_after("3", now) == 3 * SECOND
    assert parse_retry_after("Mon, 02 Mar 2026 00:00:10 GMT", now) == 10 * SECOND
    assert parse_retry_after("Mon, 02 Mar 2026 00:00:00 GMT", now + SECOND) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None
    assert parse_retry_after("999999999", now) == MAX_RETRY_AFTER_MS


# ---------------------------------------------------------------- what to send


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = orjson.dumps(gift())
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature(b"k", body) == f"sha256={expected}"
    assert verify(b"k", body, signature(b"k", body))
    assert not verify(b"k", body + b" ", signature(b"k", body))


@pytest.mark.parametrize("limit", range(1, 14))
def test_truncation_stays_on_utf8_boundaries(limit: int) -> None:
    text = "客户消息超时a"  # 3-byte characters, then ASCII
    cut = truncate_utf8(text, limit)
    data = cut.encode()  # would raise on a broken character
    assert len(data) <= limit
    if len(text.encode()) > limit:
        assert text.startswith(cut.removesuffix("…")) and len(data) > limit - 3
        assert cut.endswith("…") or limit < 3
    else:
        assert cut == text


def test_wecom_messages_fit_the_limits_and_mention_the_assignee() -> None:
    config = parse_config(GOOD, "n.toml", ENV)
    long = reminder("welcome_survey")
    long["because"] = "很长的原因" * 2_000
    action = parsed(long)
    markdown = wecom_message(action, "markdown", config.staff, config.zone)
    content = markdown["markdown"]["content"]
    assert len(content.encode()) <= MARKDOWN_MAX_BYTES and content.startswith("<@zhangsan>")
    assert "截止: 2026-03-02 08:05" in content  # the deadline in the brand's zone
    text = wecom_message(action, "text", config.staff, config.zone)
    assert len(text["text"]["content"].encode()) <= TEXT_MAX_BYTES
    assert text["text"]["mentioned_list"] == ["zhangsan"]
    # a customer-facing reminder mentions nobody; an unmapped staff id is named
    facing = wecom_message(parsed(reminder()), "text", config.staff, config.zone)
    assert "mentioned_list" not in facing["text"]
    other = wecom_message(
        parsed(reminder("reply_overdue", assignee="s99")), "text", {}, config.zone
    )
    assert "负责人: s99" in other["text"]["content"]
    assert "200.00" in wecom_message(parsed(gift()), "text", {}, config.zone)["text"]["content"]


# ---------------------------------------------------------------- answers and records


def test_http_answers() -> None:
    assert classify_http(204, b"", None).verdict == "ok"
    assert classify_http(429, b"", 5_000) == ("retry", "429", 429, b"", 5_000)
    assert classify_http(503, b"", None).verdict == "retry"
    assert classify_http(404, b"no", None).verdict == "reject"
    assert classify_http(302, b"", None).verdict == "reject"


def test_wecom_answers() -> None:
    assert classify_wecom(200, b'{"errcode":0,"errmsg":"ok"}').verdict == "ok"
    assert classify_wecom(200, b'{"errcode":45009}').reason == "errcode_45009"
    assert classify_wecom(200, b'{"errcode":45009}').verdict == "retry"
    assert classify_wecom(200, b'{"errcode":93000}').verdict == "reject"
    assert classify_wecom(200, b"<html>").reason == "garbage"
    assert classify_wecom(200, b"[1]").reason == "garbage"
    assert classify_wecom(502, b"").verdict == "retry"


def test_receipt_and_dead_letter_records() -> None:
    action = parsed(reminder(not_before=format_rfc3339(T0 + MINUTE)))
    done = receipt(action, "crm", "delivered", attempts=3, now=T0 + 3 * MINUTE)
    assert done["latency_ms"] == 2 * MINUTE and done["attempts"] == 3
    answer = classify_http(400, b"x" * 10_000, None)
    dead = dead_letter(
        {"topic": "t", "partition": 0, "offset": 1},
        action.raw,
        "rejected",
        now=T0,
        sink="crm",
        answer=answer,
    )
    assert dead["response"]["status"] == 400 and len(dead["response"]["body"]) == 512
    assert dead["response"]["truncated"] is True and dead["sink"] == "crm"


# ---------------------------------------------------------------- rate limit


def test_sliding_window_counts_from_responses() -> None:
    window = SlidingWindow(2, 1_000)
    assert window.wait_ms(0) == 0
    window.start()
    window.start()
    assert window.wait_ms(10) is None  # both in flight: wait for an answer
    window.finish(100)
    assert window.wait_ms(200) == 900  # a whole window after the answer
    window.finish(150)
    assert window.wait_ms(1_100) == 0
    window.block(5_000)
    assert window.wait_ms(1_200) == 3_800


def test_sink_defaults() -> None:
    sink = Sink("x", "stdout", ("gift",))
    assert NotifyConfig((sink,)).horizon_ms == 24 * 60 * MINUTE


def test_receipts_and_dead_letters_match_their_schemas() -> None:
    from siyu_stream.core.schemas import validator

    action = parsed(gift())
    for outcome in ("delivered", "expired", "dead", "failed"):
        answer = None if outcome in ("delivered", "expired") else classify_http(500, b"x", None)
        record = receipt(action, "crm", outcome, attempts=1, now=T0, answer=answer)  # type: ignore[arg-type]
        validator("siyu.actions.deliveries")(orjson.loads(orjson.dumps(record)))
    where = {"topic": "siyu.actions.gifts", "partition": 0, "offset": 3, "key": "c1"}
    for value, answer in [(None, None), (b"\xff" * 5_000, classify_http(400, b"no", None))]:
        record = dead_letter(where, value, "why", now=T0, sink=None, answer=answer)
        validator("siyu.notify.deadletter")(orjson.loads(orjson.dumps(record)))


def test_partition_book_commits_only_up_to_the_first_unfinished_action() -> None:
    from siyu_stream.notify.book import PartitionBook

    book = PartitionBook("siyu.actions.reminders", 0)
    assert book.position() is None
    book.take(10, 1)  # held
    book.take(11, 0)  # nothing to do (already receipted)
    book.take(12, 2)  # two sinks
    book.hold(T0 + MINUTE, 10, T0, "held")
    assert book.position() == 10 and book.pending == 2
    book.finish(12)
    assert book.position() == 10 and book.pending == 2  # one sink of 12 still out
    assert book.due(T0) == [] and book.oldest_held_since() == T0
    [due] = book.due(T0 + MINUTE)
    assert due.offset == 10 and due.payload == "held" and book.held == []
    book.finish(10)
    assert book.position() == 12
    book.finish(12)
    assert book.position() == 13 and book.pending == 0
    book.finish(12)  # a repeat changes nothing
    assert book.position() == 13
