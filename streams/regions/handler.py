"""The region stages' batch handlers: district contributions -> district sums
(``streams.regions.aggregates``) -> district rows and rollup updates; rollup updates -> city
and province rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import orjson

from streams.core import parents, stable_partition
from streams.enterprise.state import segments_changed_from
from streams.regions.aggregates import DistrictAgg, RollupAgg
from streams.runtime.state import (
    KEY_SEP,
    META,
    Clocks,
    Out,
    Result,
    TableState,
    Topics,
    Versions,
    pack,
    unpack,
)

A = TypeVar("A", DistrictAgg, RollupAgg)


class _Lazy(Generic[A]):
    """In-memory aggregates per region key, rebuilt from the table once per partition after
    (re)assignment."""

    def __init__(self, topics: Topics, table: Any, *, partitions: int) -> None:
        self.topics = topics
        self.state = TableState(table)
        self.partitions = partitions
        self.built: set[int] = set()
        self.aggs: dict[str, A] = {}

    def reset(self) -> None:
        self.built.clear()

    def ensure(self, p: int) -> None:
        if p in self.built:
            return
        self.drop(p)
        for raw_key, raw in self.state.items():
            if raw_key.startswith(META):
                continue
            parts = raw_key.decode().split(KEY_SEP)
            if stable_partition(parts[0], self.partitions) == p:
                self.load(parts, orjson.loads(raw))
        self.loaded(p)
        self.built.add(p)

    def loaded(self, p: int) -> None:
        """Called when partition ``p`` was rebuilt from the table."""

    def drop(self, p: int) -> None:
        for key in [k for k in self.aggs if stable_partition(k, self.partitions) == p]:
            del self.aggs[key]

    def load(self, parts: list[str], value: Any) -> None:
        raise NotImplementedError


class DistrictProcessor(_Lazy[DistrictAgg]):
    """contributions (key district) -> DistrictAgg -> district rows and rollup updates."""

    def load(self, parts: list[str], value: Any) -> None:
        agg = self.aggs.setdefault(parts[0], DistrictAgg(parts[0]))
        segments, reports = value
        if segments is not None:
            agg.replace_segments(None, segments[0], segments[1])
        for day, held in reports.items():
            agg.replace_report(None, int(day), held[0], held[1])

    def loaded(self, p: int) -> None:
        for key, agg in self.aggs.items():
            if stable_partition(key, self.partitions) == p:
                agg.mark_emitted()

    def process(self, events: Sequence[Any]) -> Result:
        out: list[Out] = []
        clocks = Clocks(self.state)
        changed: dict[str, int] = {}  # district -> first day to emit
        # A member's value: [[seq, segments] or None, {day: [version, report]}], one key per
        # district and enterprise; the table's copy is the only one. Written once a batch.
        members: dict[bytes, tuple[int, list[Any]]] = {}
        dirty: set[bytes] = set()
        for p, key, body in unpack(events):
            self.ensure(p)
            if "tick" in body:
                clocks.advance(p, body["tick"])
                continue
            agg = self.aggs.get(key)
            if agg is None:
                agg = self.aggs[key] = DistrictAgg(key)
            eid, seq = body["e"], body["q"]
            skey = f"{key}{KEY_SEP}{eid}".encode()
            held = members.get(skey)
            if held is None:
                held = members[skey] = (p, self.state.get(skey) or [None, {}])
            member = held[1]
            if "s" in body:
                old = member[0]
                if not agg.replace_segments(old, seq, body["s"]):
                    continue  # a stale copy of an older version
                first = segments_changed_from(old[1] if old else None, body["s"])
                if first is not None:
                    changed[key] = min(changed.get(key, first), first)
                member[0] = [seq, body["s"]]
                dirty.add(skey)
                continue
            day, vec = body["d"], body["r"]
            reports = member[1]
            if not agg.replace_report(reports.get(str(day)), day, seq, vec):
                continue
            changed[key] = min(changed.get(key, day), day)
            if vec is None:
                reports.pop(str(day), None)
            else:
                reports[str(day)] = [seq, vec]
            dirty.add(skey)
        for skey in dirty:
            p, member = members[skey]
            if member[0] is None and not member[1]:
                self.state.delete(p, skey, out)
            else:
                self.state.put(p, skey, member, out)
        for p, before in clocks.advanced.items():
            for key in self.aggs:
                if stable_partition(key, self.partitions) == p:
                    changed[key] = min(changed.get(key, before + 1), before + 1)
        clocks.save(out)
        versions = Versions(self.state)
        n = self.partitions
        for key, from_day in changed.items():
            p = stable_partition(key, n)
            newest = clocks.get(p)
            city, province = parents(key)
            version = versions.of(p)
            for row in self.aggs[key].rows(from_day, newest):
                out.append(Out(self.topics.region_rows, key.encode(), row.to_json(version), p))
                v = None if row.deleted else row.v
                update = orjson.dumps({"c": key, "d": row.day, "s": row.scope, "v": v})
                for parent in (city, province):
                    out.append(Out(self.topics.rollup, parent.encode(), update))
        versions.save(out)
        return Result(pack(out, self.topics.packed, n))


class RollupProcessor(_Lazy[RollupAgg]):
    """rollup (key city or province) -> RollupAgg -> city and province rows."""

    def load(self, parts: list[str], value: Any) -> None:
        parent, child, day, scope = parts
        agg = self.aggs.setdefault(parent, RollupAgg(parent))
        agg.replace(child, int(day), scope, tuple(value))

    def process(self, events: Sequence[Any]) -> Result:
        out: list[Out] = []
        changed: dict[tuple[str, int, str], int] = {}
        for p, parent, body in unpack(events):
            self.ensure(p)
            agg = self.aggs.get(parent)
            if agg is None:
                agg = self.aggs[parent] = RollupAgg(parent)
            child, day, scope = body["c"], body["d"], body["s"]
            v = None if body["v"] is None else tuple(body["v"])
            if agg.replace(child, day, scope, v):
                changed[(parent, day, scope)] = p
                key = KEY_SEP.join((parent, child, str(day), scope)).encode()
                if v is None:
                    self.state.delete(p, key, out)
                else:
                    self.state.put(p, key, v, out)
        versions = Versions(self.state)
        for (parent, day, scope), p in changed.items():
            row = self.aggs[parent].row(day, scope)
            out.append(
                Out(self.topics.region_rows, parent.encode(), row.to_json(versions.of(p)), p)
            )
        versions.save(out)
        return Result(pack(out, self.topics.packed, self.partitions))
