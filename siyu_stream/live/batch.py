"""A partition's customer states as the batches in flight see them (`StateBatch`).

The worker processes a batch while the one before it is being made durable: the batch
being processed reads its own changes, over the sealed batches still committing, over the
store. A batch is sealed when its changelog records are cut, settled into the store when
its commit is acknowledged, and discarded when the commit fails.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import MutableMapping
from dataclasses import dataclass

from siyu_stream.core import stored
from siyu_stream.core.clock import Millis
from siyu_stream.core.state import CustomerState

CACHED = 10_000
"""Decoded committed states kept per partition: ~10 objects, ~1 KB each."""

Store = MutableMapping[str, bytes]
"""A partition's state store: customer id -> serialized state (see `stores`)."""


@dataclass(slots=True)
class _Sealed:
    """A batch's state changes, serialized for the changelog, waiting to be durable."""

    states: dict[str, CustomerState]
    serialized: dict[str, bytes]
    clock: Millis | None


class StateBatch:
    """The partition's states as the batches in flight see them: the changes of the batch
    being processed (`dirty`) over those of the sealed batches still being made durable
    (the worker processes a batch while the one before it commits), over the store.

    Decoded committed states of recently active customers are kept (`CACHED`, least
    recently used first out), so that a customer's next batch does not parse the state
    its last batch serialized. Safe because states are never changed in place: the core
    works on a `clone`, and a committed state is replaced, not edited."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.dirty: dict[str, CustomerState] = {}
        self.sealed: deque[_Sealed] = deque()
        self.cache: OrderedDict[str, CustomerState] = OrderedDict()

    def get(self, customer_id: str) -> CustomerState | None:
        state = self.dirty.get(customer_id)
        if state is not None:
            return state
        for batch in reversed(self.sealed):  # newest first
            state = batch.states.get(customer_id)
            if state is not None:
                return state
        return self.committed(customer_id)

    def committed(self, customer_id: str) -> CustomerState | None:
        """The customer's state as last made durable."""
        cache = self.cache
        state = cache.get(customer_id)
        if state is not None:
            cache.move_to_end(customer_id)
            return state
        raw = self.store.get(customer_id)
        if raw is None:
            return None
        state = stored.loads(raw)
        self._keep(customer_id, state)
        return state

    def put(self, customer_id: str, state: CustomerState) -> None:
        self.dirty[customer_id] = state

    def seal(self, serialized: dict[str, bytes], clock: Millis | None) -> None:
        """The batch's changes go in flight; later changes start the next batch."""
        self.sealed.append(_Sealed(self.dirty, serialized, clock))
        self.dirty = {}

    def settle(self) -> Millis | None:
        """The oldest sealed batch is durable: its records into the store, its states kept
        decoded. Returns the clock it carried."""
        batch = self.sealed.popleft()
        self.store.update(batch.serialized)
        for customer_id, state in batch.states.items():
            self._keep(customer_id, state)
        return batch.clock

    def discard(self) -> None:
        self.dirty = {}
        self.sealed.clear()

    def _keep(self, customer_id: str, state: CustomerState) -> None:
        cache = self.cache
        cache[customer_id] = state
        cache.move_to_end(customer_id)
        while len(cache) > CACHED:
            cache.popitem(last=False)
