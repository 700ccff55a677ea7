"""Partition state stores: a dict (memory://) or RocksDB (rocksdb://), one per partition.

Both are `MutableMapping[str, bytes]` (customer id -> serialized state). The compacted
changelog topic is the source of truth; a store is a cache of one partition of it.
A RocksDB store survives restarts and remembers the changelog offset it has applied,
so a restarted worker reads only the changelog records written since (warm restart).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path

from rocksdict import Rdict

from siyu_stream.settings import Settings


class DictStore(dict[str, bytes]):
    """The default: nothing survives the process; a new store reads the whole changelog."""

    checkpoint: int | None = None

    def save_checkpoint(self, offset: int) -> None:
        # lives as long as the process: what lets a standby copy be taken over warm
        self.checkpoint = offset

    def close(self) -> None:
        """Nothing to release."""


class RocksStore(MutableMapping[str, bytes]):
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._offset_file = path / "changelog.offset"
        self._db = Rdict(str(path / "db"))
        self.checkpoint: int | None = None
        """Offset of the last changelog record applied to this store, if known."""
        if self._offset_file.exists():
            self.checkpoint = int(self._offset_file.read_text())

    def save_checkpoint(self, offset: int) -> None:
        # written after the batch's state is in RocksDB: a crash in between only means the
        # next start re-reads a few changelog records it already has (idempotent)
        tmp = self._offset_file.with_suffix(".tmp")
        tmp.write_text(str(offset))
        tmp.replace(self._offset_file)
        self.checkpoint = offset

    def __getitem__(self, key: str) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def __setitem__(self, key: str, value: bytes) -> None:
        self._db[key] = value

    def __delitem__(self, key: str) -> None:
        del self._db[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._db.keys()

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def clear(self) -> None:
        for key in list(self):
            del self._db[key]
        self._offset_file.unlink(missing_ok=True)
        self.checkpoint = None

    def close(self) -> None:
        self._db.close()


Store = DictStore | RocksStore


def open_store(settings: Settings, partition: int) -> Store:
    if settings.store == "rocksdb://":
        return RocksStore(settings.data_dir / settings.app_id / f"partition-{partition}")
    return DictStore()
