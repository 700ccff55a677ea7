"""The dead-letter record: one builder for replay and the live worker.

A dead letter says where the input came from, why it was rejected, how big it was and
its SHA-256, and carries at most `PREFIX_BYTES` of the value: the record always fits
the producer's limit, however large or strange the input (a 900 KB binary blob, a
tombstone), so that writing it can never stop a partition.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

PREFIX_BYTES: Final = 4_096
"""How much of a rejected value the dead letter keeps (the digest identifies the rest)."""
REASON_CHARS: Final = 1_000
"""Reasons quote the offending value; a huge value must not make a huge reason."""


def _text(raw: bytes, *, cut: bool) -> tuple[str, str]:
    """`raw` as UTF-8 when it is, else base64. A prefix `cut` from a longer value may end
    inside a character: that incomplete last character alone is dropped."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        if cut and exc.reason == "unexpected end of data" and exc.start >= len(raw) - 3:
            return raw[: exc.start].decode("utf-8"), "utf-8"
    return base64.b64encode(raw).decode(), "base64"


def encode_bytes(raw: bytes | None) -> str | None:
    """A key or similar small field: UTF-8 text if it is, else base64; None stays None."""
    return None if raw is None else _text(raw[:PREFIX_BYTES], cut=len(raw) > PREFIX_BYTES)[0]


def record(where: dict[str, Any], value: bytes | None, reason: str) -> dict[str, Any]:
    """The dead letter for `value` (None: a record with a null value), rejected for `reason`;
    `where` names its source (topic, partition, offset, key / file, line)."""
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 1] + "…"
    if value is None:
        return {**where, "reason": reason, "value": None, "encoding": None, "size": 0}
    text, encoding = _text(value[:PREFIX_BYTES], cut=len(value) > PREFIX_BYTES)
    out = {
        **where,
        "reason": reason,
        "value": text,
        "encoding": encoding,
        "size": len(value),
        "sha256": hashlib.sha256(value).hexdigest(),
    }
    if len(value) > PREFIX_BYTES:
        out["truncated"] = True
    return out
