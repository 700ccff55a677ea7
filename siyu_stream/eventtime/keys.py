"""Which partition a customer lives on: Kafka's default partitioner for keyed records.

Written out (murmur2, as the Java client and aiokafka compute it) so that replay splits
customers exactly as the live topics do without loading a Kafka client.
"""

from __future__ import annotations

from typing import Final

from siyu_stream.core.memo import remember, table

_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


_M_HIGH: Final = _M >> 16
_M_LOW: Final = _M & 0xFFFF


def _times_m(k: int) -> int:
    """(k * _M) mod 2**32 for a 32-bit k, from 16-bit halves of both. Compiled, a product
    is one machine multiply only while both factors lie below 2**30 (mypyc's check); _M
    lies above, and the general multiply took ~800 instructions, 2.5 % of a replay."""
    low, high = k & 0xFFFF, k >> 16
    return (low * _M_LOW + (((high * _M_LOW + low * _M_HIGH) & 0xFFFF) << 16)) & _MASK


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` (seed 0x9747b28c), as an unsigned 32-bit integer."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = data[i] | data[i + 1] << 8 | data[i + 2] << 16 | data[i + 3] << 24
        k = _times_m(k)
        k ^= k >> 24
        k = _times_m(k)
        h = _times_m(h) ^ k
    rest = length % 4
    if rest:
        h ^= int.from_bytes(data[whole:], "little")  # under 2**24: stays unboxed
        h = _times_m(h)
    h ^= h >> 13
    h = _times_m(h)
    h ^= h >> 15
    return h


CACHED_KEYS: Final = 65_536
"""Keys whose partition `partition_for` remembers, per partition count."""
_partitions: Final[dict[int, dict[bytes, int]]] = {}
COUNTS: Final = 64
"""Partition counts each memo below keeps a memo for (a run has a few)."""


def _default_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for a keyed record: murmur2, made positive, modulo."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner puts `key` on (murmur2 takes ~3,000
    instructions a key even compiled; the worker asks ~3 times an event)."""
    known = table(_partitions, partitions, COUNTS)
    found = known.get(key)
    if found is None:
        found = remember(known, key, _default_partition(key, partitions), CACHED_KEYS)
    return found


CACHED_CUSTOMERS: Final = 262_144
"""Customer ids whose partition `customer_partition` remembers, per partition count: more
than `CACHED_KEYS`, because a replay asks for every record and a year's history holds
more customers than that (a miss costs a murmur2 and an encoding; an entry ~100 bytes)."""
_customers: Final[dict[int, dict[str, int]]] = {}


def customer_partition(customer_id: str, partitions: int) -> int:
    """The partition of a customer: its id (UTF-8) is the records' key. With one
    partition, 0 without hashing (replay, backtest and bootstrap ask once per record).
    Remembered by the id itself: a str caches its hash, which the store's lookup of the
    same id then reuses, where `partition_for` hashes a new bytes object every time."""
    if partitions <= 1:
        return 0
    known = table(_customers, partitions, COUNTS)
    found = known.get(customer_id)
    if found is None:
        p = _default_partition(customer_id.encode(), partitions)
        found = remember(known, customer_id, p, CACHED_CUSTOMERS)
    return found
