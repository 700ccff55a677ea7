"""A synchronous Kafka Metadata request, for the launcher's readiness check and fault tests.

Hand-encoded (as `embedded.metadata_probe` is for noida-db) so that it runs from synchronous
code and inside an event loop alike. Version 4 because Kafka 4.0 removed Metadata v0-v3
(KIP-896) and v4 is the newest version without the "flexible" (tagged-field) encoding.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

from siyu_stream.core.errors import BrokerError

_METADATA = 3
_VERSION = 4
_CORRELATION_ID = 0x51F4


class Partition(NamedTuple):
    leader: int  # node id, -1 while the partition has no leader
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class Metadata(NamedTuple):
    brokers: dict[int, tuple[str, int]]  # node id -> (host, port), live brokers only
    controller_id: int  # -1 when none is known; in KRaft a live broker, not the controller
    topics: dict[str, dict[int, Partition]]  # topics without error only


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[int, ...]:
        values = struct.unpack_from(fmt, self.body, self.pos)
        self.pos += struct.calcsize(fmt)
        return values

    def int16(self) -> int:
        return self.unpack(">h")[0]

    def int32(self) -> int:
        return self.unpack(">i")[0]

    def string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        text = self.body[self.pos : self.pos + length].decode()
        self.pos += length
        return text

    def int32s(self) -> tuple[int, ...]:
        return tuple(self.int32() for _ in range(self.int32()))


def _request(topics: list[str] | None) -> bytes:
    client_id = b"siyu-stream-probe"
    head = struct.pack(">hhih", _METADATA, _VERSION, _CORRELATION_ID, len(client_id)) + client_id
    if topics is None:
        body = struct.pack(">i", -1)  # null array: all topics
    else:
        body = struct.pack(">i", len(topics))
        for name in topics:
            encoded = name.encode()
            body += struct.pack(">h", len(encoded)) + encoded
    body += b"\x00"  # allow_auto_topic_creation = false: a probe must not create topics
    return head + body


def _parse(body: bytes) -> Metadata:
    reader = _Reader(body)
    (correlation_id,) = reader.unpack(">i")
    if correlation_id != _CORRELATION_ID:
        msg = f"metadata response has correlation id {correlation_id}, expected {_CORRELATION_ID}"
        raise BrokerError(msg)
    reader.int32()  # throttle_time_ms
    brokers: dict[int, tuple[str, int]] = {}
    for _ in range(reader.int32()):
        node_id = reader.int32()
        host = reader.string() or ""
        port = reader.int32()
        reader.string()  # rack
        brokers[node_id] = (host, port)
    reader.string()  # cluster_id
    controller_id = reader.int32()
    topics: dict[str, dict[int, Partition]] = {}
    for _ in range(reader.int32()):
        error = reader.int16()
        name = reader.string() or ""
        reader.unpack(">?")  # is_internal
        partitions: dict[int, Partition] = {}
        for _ in range(reader.int32()):
            reader.int16()  # partition error: e.g. LEADER_NOT_AVAILABLE, still worth reporting
            index = reader.int32()
            leader = reader.int32()
            partitions[index] = Partition(leader, reader.int32s(), reader.int32s())
        if error == 0:
            topics[name] = partitions
    return Metadata(brokers, controller_id, topics)


def metadata(port: int, topics: list[str] | None = None, timeout: float = 2.0) -> Metadata:
    """Ask the broker on 127.0.0.1:`port` for cluster metadata (all topics when None).

    Raises OSError when nothing listens or the connection drops, BrokerError on a response
    that does not parse.
    """
    payload = _request(topics)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        with sock.makefile("rb") as stream:
            head = stream.read(4)
            if len(head) < 4:
                msg = "broker closed the connection before answering"
                raise BrokerError(msg)
            body = stream.read(struct.unpack(">i", head)[0])
    try:
        return _parse(body)
    except struct.error as exc:
        msg = f"metadata response cut short: {exc}"
        raise BrokerError(msg) from exc
