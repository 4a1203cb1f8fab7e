"""Runs the agents' batch handlers in memory: the same code paths as the Faust worker, with
plain dicts standing in for the tables and lists for the topics."""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson

from resumewatch.settings import Settings
from streams.alerts.rules import Rule
from streams.enterprise import store as enterprise_store
from streams.enterprise.handler import EnterpriseProcessor
from streams.regions import store as region_store
from streams.regions.handler import RegionProcessor
from streams.runtime.state import Out, Topics
from streams.runtime.store import group_of
from streams.supply.handler import SupplyProcessor
from tests.reference import region_row_key, row_metrics


class FakeStore(dict[bytes, bytes]):
    """A table's store: its values, and the changelog partition of each group of keys (as
    ``streams.runtime.store.GroupedStore`` keeps them)."""

    def __init__(self) -> None:
        super().__init__()
        self.partitions: dict[bytes, int] = {}

    def place(self, key: bytes, partition: int) -> None:
        self.partitions[group_of(key)] = partition

    def partition_of(self, key: bytes) -> int | None:
        return self.partitions.get(group_of(key))


class FakeTable:
    def __init__(self, changelog: str) -> None:
        self.data = FakeStore()
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: changelog)


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Ev:
    message: Msg

    @property
    def value(self) -> bytes | None:
        return self.message.value


@dataclass
class Harness:
    settings: Settings = field(default_factory=lambda: Settings(partitions=3))
    ent_table: FakeTable = field(default_factory=lambda: FakeTable("ent-changelog"))
    region_table: FakeTable = field(default_factory=lambda: FakeTable("region-changelog"))
    rows: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    dead: list[Out] = field(default_factory=list)
    changelog: list[Out] = field(default_factory=list)
    enterprise_rows: list[Out] = field(default_factory=list)
    offset: int = 0

    rules: list[Rule] = field(default_factory=list)
    supply_table: FakeTable = field(default_factory=lambda: FakeTable("supply-changelog"))
    alert_table: FakeTable = field(default_factory=lambda: FakeTable("alert-changelog"))
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        s = self.settings
        topics = Topics.of(s)
        n = s.partitions
        self.ent = EnterpriseProcessor(
            topics,
            self.ent_table,
            partitions=n,
            timezone=s.timezone,
            grace_days=s.grace_days,
            supply=any(r.metric == "supplier_readiness" for r in self.rules),
        )
        self.supply = SupplyProcessor(topics, self.supply_table, self.rules, partitions=n)
        self.regions = RegionProcessor(
            topics, self.region_table, self.alert_table, self.rules, partitions=n
        )
        self.counts: Counter[str] = Counter()  # the enterprise stage's counts, all batches

    def _events(self, topic: str, records: list[tuple[bytes | None, bytes, int]]) -> list[Ev]:
        evs = []
        for key, value, partition in records:
            self.offset += 1
            evs.append(Ev(Msg(topic, partition, self.offset, key, value)))
        return evs

    def feed(self, raws: list[tuple[bytes | None, bytes]], batch: int = 50) -> None:
        """Input messages (key, value) through both stages, in batches."""
        n = self.settings.partitions
        for i in range(0, len(raws), batch):
            chunk = [(k, v, zlib.crc32(k or b"") % n) for k, v in raws[i : i + batch]]
            result = self.ent.process(self._events(self.settings.input_topic, chunk))
            self.counts.update(result.counts)
            self._route(result.records)

    def _route(self, out: list[Out]) -> None:
        partials, supply = [], []
        for r in out:
            if r.topic == self.settings.partials_topic:
                assert r.partition is not None
                partials.append((r.key, r.value, r.partition))
            elif r.topic == self.settings.supply_topic:
                assert r.partition is not None
                supply.append((r.key, r.value, r.partition))
            elif r.topic == self.settings.alerts_topic:
                assert r.value is not None
                self.alerts.append(orjson.loads(r.value))
            elif r.topic == self.settings.dlq_topic:
                self.dead.append(r)
            elif r.topic == self.settings.enterprise_rows_topic:
                self.enterprise_rows.append(r)
            elif r.topic == self.settings.region_rows_topic:
                assert r.value is not None
                for _region, d in orjson.loads(r.value):
                    key = region_row_key(d)
                    if key not in self.rows or self.rows[key]["version"] <= d["version"]:
                        self.rows[key] = d
            else:
                self.changelog.append(r)
        if partials:
            result = self.regions.process(self._events(self.settings.partials_topic, partials))
            self._route(result.records)
        if supply:
            result = self.supply.process(self._events(self.settings.supply_topic, supply))
            self._route(result.records)

    def restore_from_changelog(self) -> None:
        """What a restarted worker does: rebuild the tables from their changelogs, and the
        in-memory sums from the tables."""
        tables = {
            "ent-changelog": self.ent_table,
            "region-changelog": self.region_table,
            "supply-changelog": self.supply_table,
            "alert-changelog": self.alert_table,
        }
        for t in tables.values():
            t.data.clear()
            t.data.partitions.clear()
        ent: list[tuple[bytes, bytes | None, int]] = []
        for r in self.changelog:
            assert r.key is not None and r.partition is not None
            store = tables[r.topic].data
            store.place(r.key, r.partition)
            if r.topic == "ent-changelog":
                ent.append((r.key, r.value, r.partition))
            elif r.topic == "region-changelog":
                region_store.apply(store, [(r.key, r.value)])
            elif r.value is None:
                store.pop(r.key, None)
            else:
                store[r.key] = r.value
        enterprise_store.apply(self.ent_table.data, ent)
        self.ent.reset()
        self.regions.reset()

    def table(self) -> dict[tuple[Any, ...], tuple[int, ...]]:
        from datetime import date

        return {
            (date.fromisoformat(k[0]), *k[1:]): row_metrics(d)
            for k, d in self.rows.items()
            if not d.get("deleted")
        }

    def crash_before_changelog(self, raws: list[tuple[bytes | None, bytes]]) -> None:
        """Process ``raws`` as one batch per stage, lose its changelog writes (the crash came
        after the derived records were sent), restart, and replay it."""
        mark = len(self.changelog)
        self.feed(raws, batch=len(raws))
        del self.changelog[mark:]
        self.restore_from_changelog()
        self.feed(raws, batch=len(raws))
