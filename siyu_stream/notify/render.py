"""What to send: the signed webhook request and the WeCom robot message. Pure.

A webhook gets the action record's bytes exactly as they are on the topic, so that the
receiver can verify the signature over what it parses and the contract stays the topic
schema. A WeCom robot gets a short human message in the brand's language, within the
robot's byte limits, @-mentioning the assignee of a staff task.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from zoneinfo import ZoneInfo

from siyu_stream.core.actions import yuan
from siyu_stream.core.clock import Millis, to_datetime
from siyu_stream.notify.config import STAFF_TASKS
from siyu_stream.notify.schedule import Parsed

MARKDOWN_MAX_BYTES = 4_096
TEXT_MAX_BYTES = 2_048
"""WeCom group robots refuse longer `content` (UTF-8 bytes)."""
ELLIPSIS = "…"

TITLES = {
    "welcome_survey": "新好友欢迎问卷",
    "reply_overdue": "客户消息超时未回复",
    "invite_join": "邀请入群/加好友",
    "repurchase_followup": "复购跟进",
    "vip_call": "VIP 电话回访",
    "reengage": "沉默客户唤醒",
    "winback": "流失挽回",
    "membership_renewal": "会员续费提醒",
}


def signature(secret: bytes, body: bytes) -> str:
    """`X-Siyu-Signature`: HMAC-SHA256 of the raw body, hex, with its algorithm named."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does (tests and docs/notify.md): constant-time comparison."""
    return hmac.compare_digest(signature(secret, body), header)


def webhook_headers(action: Parsed, secret: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": action.action_id,
        "X-Siyu-Signature": signature(secret, action.raw),
    }


def truncate_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes on a character boundary, with an ellipsis
    when cut (a cut inside a multi-byte character would make the robot refuse it)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    room = limit - len(ELLIPSIS.encode())
    if room < 0:
        return data[:limit].decode("utf-8", "ignore")
    # decoding with "ignore" drops only the incomplete last character
    return data[:room].decode("utf-8", "ignore") + ELLIPSIS


def _local(ms: Millis, zone: ZoneInfo) -> str:
    return to_datetime(ms).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _lines(action: Parsed, zone: ZoneInfo) -> list[str]:
    detail = action.data["detail"]
    if action.kind == "gift":
        return [
            f"礼品发放: {detail['code']} (价值 {yuan(int(detail['value']))} 元)",
            f"客户: {action.customer_id}",
            f"原因: {action.data['because']}",
        ]
    template = str(action.template)
    lines = [
        f"{TITLES.get(template, template)} ({template})",
        f"客户: {action.customer_id}  渠道: {detail['channel']}  优先级: {detail['priority']}",
    ]
    if action.deadline is not None:
        lines.append(f"截止: {_local(action.deadline, zone)}")
    lines.append(f"原因: {action.data['because']}")
    return lines


def wecom_message(
    action: Parsed, msgtype: str, staff: dict[str, str] | Any, zone: ZoneInfo
) -> dict[str, Any]:
    """The robot's JSON body. Staff tasks mention their assignee by WeCom userid (the
    staff map); an unmapped assignee is named in plain text instead."""
    assignee = action.data["detail"].get("assignee") if action.kind == "reminder" else None
    userid = staff.get(assignee) if assignee is not None else None
    mention = action.template in STAFF_TASKS and assignee is not None
    lines = _lines(action, zone)
    if mention and userid is None:
        lines.append(f"负责人: {assignee}")
    if msgtype == "markdown":
        head, *rest = lines
        text = "\n".join([f"**{head}**", *(f"> {line}" for line in rest)])
        if mention and userid is not None:
            text = f"<@{userid}>\n{text}"
        return {
            "msgtype": "markdown",
            "markdown": {"content": truncate_utf8(text, MARKDOWN_MAX_BYTES)},
        }
    body: dict[str, Any] = {"content": truncate_utf8("\n".join(lines), TEXT_MAX_BYTES)}
    if mention and userid is not None:
        body["mentioned_list"] = [userid]
    return {"msgtype": "text", "text": body}
