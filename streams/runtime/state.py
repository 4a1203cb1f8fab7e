"""What every stage's batch handler shares: the records it returns, its tables, and the
bookkeeping keys it keeps in them.

A handler takes a batch of fetched messages and returns a ``Result``: the records to
produce (changelog writes included), the alert transitions and its counts. It reads and writes
its table through ``TableState`` and sends nothing itself: ``streams.runtime.checkpoint`` sends
the records in phases and only then lets the batch's source offsets be committed.
"""

from __future__ import annotations

import functools
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

META = b"\x00"  # prefix of the bookkeeping keys in the agents' tables (not aggregates)
CLOCK = META + b"clock"
VERSION = META + b"version"
OFFSET = META + b"offset\x1f"
KEY_SEP = "\x1e"  # joins the parts of a table key (region names never contain it)


def _clock_key(partition: int) -> bytes:
    return CLOCK + str(partition).encode()


def _version_key(partition: int) -> bytes:
    return VERSION + str(partition).encode()


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics the stages write to, by role (from the settings, once)."""

    dead_letters: str
    alerts: str
    partials: str
    region_rows: str
    enterprise_rows: str
    supply: str

    @classmethod
    def of(cls, settings: Any) -> Topics:
        return cls(
            dead_letters=settings.dlq_topic,
            alerts=settings.alerts_topic,
            partials=settings.partials_topic,
            region_rows=settings.region_rows_topic,
            enterprise_rows=settings.enterprise_rows_topic,
            supply=settings.supply_topic,
        )

    @property
    def packed(self) -> frozenset[str]:
        """The internal topics whose messages are packed (``pack``)."""
        return frozenset((self.partials, self.region_rows, self.enterprise_rows, self.supply))


@dataclass(slots=True)  # not frozen: a frozen dataclass takes four times as long to build
class Out:
    """One record to produce. Changelog records are sent only after every other record of
    the batch was acknowledged: if a crash comes in between, the replayed batch finds the old
    state and produces all the derived records again."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None
    changelog: bool = False
    early: bool = False  # a changelog record sent before the batch's derived records


# A packed message holds many records of one internal topic partition as a JSON array of
# [key, value]: Faust and the Kafka clients cost time per message, not per byte.


@dataclass(slots=True)
class Result:
    """What a handler returns for a batch: the same shape from every stage."""

    records: list[Out]
    transitions: list[dict[str, Any]] = field(default_factory=list)  # alerts, for webhooks
    counts: Counter[str] = field(default_factory=Counter)  # for the worker's metrics


PACK_BYTES = 256 * 1024


def pack(out: list[Out], topics: frozenset[str], partitions: int) -> list[Out]:
    """Group the records for ``topics`` into packed messages per partition, in their order;
    everything else passes as it is."""
    result: list[Out] = []
    groups: dict[tuple[str, int], list[Out]] = {}
    for r in out:
        if r.changelog or r.topic not in topics:
            result.append(r)
            continue
        assert r.key is not None and r.value is not None
        p = r.partition
        if p is None:
            p = zlib.crc32(r.key) % partitions  # stable_partition of the decoded key
        groups.setdefault((r.topic, p), []).append(r)
    for (topic, p), records in groups.items():
        chunk: list[Any] = []
        size = 0
        for r in records:
            assert r.key is not None and r.value is not None
            chunk.append((r.key.decode(), orjson.Fragment(r.value)))
            size += len(r.key) + len(r.value) + 8
            if size >= PACK_BYTES:
                result.append(Out(topic, None, orjson.dumps(chunk), p))
                chunk, size = [], 0
        if chunk:
            result.append(Out(topic, None, orjson.dumps(chunk), p))
    return result


def unpack(events: Sequence[Any]) -> Iterator[tuple[int, str, Any]]:
    """(partition, key, value) of every record in a batch of packed messages."""
    for event in events:
        msg = event.message
        for key, value in orjson.loads(msg.value):
            yield msg.partition, key, value


class TableState:
    """A Faust table used as a changelog-backed dict of orjson values, written once a batch."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: bytes) -> Any | None:
        raw = self.table.data.get(key)
        return orjson.loads(raw) if raw is not None else None

    def get_raw(self, key: bytes) -> bytes | None:
        return self.table.data.get(key)  # type: ignore[no-any-return]

    def put(
        self, partition: int, key: bytes, value: Any, out: list[Out], early: bool = False
    ) -> None:
        # orjson's result keeps the capacity of its output buffer (about 4 KB even for a
        # 60-byte value): a table holding it would need ~50 times the memory. Keep a copy.
        self.put_raw(partition, key, memoryview(orjson.dumps(value)).tobytes(), out, early)

    def put_raw(
        self, partition: int, key: bytes, raw: bytes, out: list[Out], early: bool = False
    ) -> None:
        """Like ``put``, of a value already encoded."""
        store = self.table.data
        store[key] = raw
        # Lets the store drop the key when the partition moves to another worker.
        place = getattr(store, "place", None)
        if place is not None:
            place(key, partition)
        out.append(Out(self.changelog, key, raw, partition, changelog=True, early=early))

    def delete(self, partition: int, key: bytes, out: list[Out]) -> None:
        self.table.data.pop(key, None)
        out.append(Out(self.changelog, key, None, partition, changelog=True))

    @functools.cached_property
    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        yield from list(self.table.data.items())

    def items_in(self, partition: int) -> Iterator[tuple[bytes, Any]]:
        """The keys and values written to ``partition`` of the changelog (as the store
        remembers it per group of keys: ``streams.runtime.store``); values as the store holds
        them (bytes, or what a store of its own keeps)."""
        store = self.table.data
        for key, raw in list(store.items()):
            if store.partition_of(key) == partition:
                yield key, raw


class Clocks:
    """The newest event day per partition, persisted in the partition's own table."""

    def __init__(self, state: TableState) -> None:
        self.state = state
        self.values: dict[int, int] = {}
        self.advanced: dict[int, int] = {}  # partition -> value before this batch

    def get(self, p: int) -> int:
        if p not in self.values:
            self.values[p] = self.state.get(_clock_key(p)) or 0
        return self.values[p]

    def advance(self, p: int, day: int) -> None:
        before = self.get(p)
        if day > before:
            self.advanced.setdefault(p, before)
            self.values[p] = day

    def save(self, out: list[Out]) -> None:
        for p in self.advanced:
            self.state.put(p, _clock_key(p), self.values[p], out)


class Versions:
    """Versions of the region rows a partition emits: the wall clock, but always above the
    partition's previous one (persisted before the rows are sent), so that after the
    partition moves to a host whose clock is behind, its new rows still supersede the old
    ones in ClickHouse."""

    def __init__(self, state: TableState) -> None:
        self.state = state
        self.now = time.time_ns()
        self.used: dict[int, int] = {}

    def of(self, p: int) -> int:
        v = self.used.get(p)
        if v is None:
            last = self.state.get(_version_key(p)) or 0
            v = self.used[p] = max(self.now, last + 1)
        return v

    def take(self, p: int) -> int:
        """A version above every one the partition used before (one per record)."""
        v = self.of(p)
        self.used[p] = v + 1
        return v

    def save(self, out: list[Out]) -> None:
        # Early: once a row with a version is out, a replay elsewhere must start above it.
        for p, v in self.used.items():
            self.state.put(p, _version_key(p), v, out, early=True)
