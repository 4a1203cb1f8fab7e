"""The tables' store: Faust's in-memory store, with the partitions of keys remembered per
group instead of per key.

Faust's memory store remembers the partition of every key, to drop the keys of partitions
that moved to another worker: a second dict as large as the table. The agents' keys come
in groups that always share a partition (a district and its members; a region and its
rows): the part of the key before the first KEY_SEP. One entry per group is enough.
``register()`` makes it Faust's ``grouped://`` store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from faust.stores import STORES, memory

from streams.runtime.state import KEY_SEP

SEP = KEY_SEP.encode()
URL = "grouped://"


def group_of(key: bytes) -> bytes:
    i = key.find(SEP)
    return key if i < 0 else key[:i]


class GroupedStore(memory.Store[bytes, bytes]):
    """``memory://`` with ``groups`` (group -> partition) in place of a partition per key."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.groups: dict[bytes, int] = {}

    def place(self, key: bytes, partition: int) -> None:
        """``key`` was written to ``partition`` of the changelog."""
        self.groups[group_of(key)] = partition

    def partition_of(self, key: bytes) -> int | None:
        """The changelog partition ``key`` was last written to (None: not known here)."""
        return self.groups.get(group_of(key))

    def apply_changelog_batch(
        self,
        batch: Iterable[Any],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        records = []
        for event in batch:
            key = to_key(event.key)
            self.place(key, event.message.partition)
            value = None if event.message.value is None else to_value(event.value)
            records.append((key, value, event.message.partition))
        self.fold(records)

    def fold(self, records: list[tuple[bytes, Any, int]]) -> None:
        """Apply changelog records (key, value or None for a deletion, partition), in their
        order; a store that holds its keys in a shape of its own folds them into it."""
        data = self.data
        for key, value, _partition in records:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    async def on_recovery_completed(self, active_tps: set[Any], standby_tps: set[Any]) -> None:
        partitions = {tp.partition for tp in active_tps}
        gone = {g for g, p in self.groups.items() if p not in partitions}
        if not gone:
            return
        for key in [k for k in self.data if group_of(k) in gone]:
            del self.data[key]
        for g in gone:
            del self.groups[g]


def register() -> None:
    """Let Faust build a GroupedStore for tables whose store is ``URL``."""
    STORES.aliases.setdefault(URL.split(":")[0], f"{__name__}:GroupedStore")
