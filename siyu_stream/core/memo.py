"""Bounded memos for the per-event path, in place of `functools.lru_cache`.

Compiled, an `lru_cache` hit is a generic call that builds a key tuple (~800
instructions); a plain dict's hit is ~150. The memos here are plain dicts that a caller
reads itself (`memo.get(key)`) and fills through `remember`, which empties a full one:
what it held is computed again, and nothing grows without a bound.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")
W = TypeVar("W")


def remember(memo: dict[K, V], key: K, value: V, bound: int) -> V:
    """`memo[key] = value`, after emptying `memo` if it holds `bound` entries; `value`."""
    if len(memo) >= bound:
        memo.clear()
    memo[key] = value
    return value


def table(memos: dict[K, dict[V, W]], key: K, bound: int) -> dict[V, W]:
    """The memo `memos` keeps for `key` (a zone, a partition count), made empty if it has
    none yet; `memos` holds at most `bound` of them."""
    known = memos.get(key)
    return known if known is not None else remember(memos, key, {}, bound)
