"""Which partition a customer lives on: Kafka's default partitioner for keyed records.

Written out (murmur2, as the Java client and aiokafka compute it) so that replay splits
customers exactly as the live topics do without loading a Kafka client.
"""

from __future__ import annotations

from functools import lru_cache

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` (seed 0x9747b28c), as an unsigned 32-bit integer."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length % 4
    if rest:
        tail = int.from_bytes(data[whole:], "little")
        h ^= tail
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


@lru_cache(maxsize=65_536)  # ~3 µs a key in pure Python, once per event
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner puts `key` on."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
