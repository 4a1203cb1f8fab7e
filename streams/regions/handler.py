"""The region stage's batch handler: partial sums (key province) -> district sums
(``streams.regions.aggregates``) -> district, city and province rows -> region alerts
(``streams.alerts.handler``), all in one agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.alerts.handler import RegionAlerts, Series
from streams.alerts.rules import Rule
from streams.core import parents, region_key, split_region_key, stable_partition
from streams.regions.aggregates import DistrictAgg, RollupAgg
from streams.regions.store import CellState
from streams.runtime.state import (
    KEY_SEP,
    META,
    Clocks,
    Out,
    Result,
    Topics,
    Versions,
    pack,
    unpack,
)
from streams.wire import PartialSums


class RegionProcessor:
    """partials (key province) -> rows of the province's districts, cities and itself.

    The table holds, per district, source partition and day, the newest version of the
    partition's partial sums of each scope (the cells); a district's sums are those of every
    partition added up. The sums of cities and provinces, and the district sums themselves, live in
    memory and are rebuilt from the table once per partition after (re)assignment.
    """

    def __init__(
        self,
        topics: Topics,
        table: Any,
        alert_table: Any,
        rules: Sequence[Rule],
        *,
        partitions: int,
    ) -> None:
        self.topics = topics
        self.state = CellState(table)
        self.alerts = RegionAlerts(topics, alert_table, rules)
        self.partitions = partitions
        self.built: set[int] = set()
        self.districts: dict[str, DistrictAgg] = {}
        self.rollups: dict[str, RollupAgg] = {}
        self.homes: dict[str, int] = {}  # region key -> its partition (its province's)
        # One object per district, scope and day for all the sums that keep one in a key
        # (each message decodes its own copies).
        self.names: dict[str, str] = {}
        self.days: dict[int, int] = {}

    def reset(self) -> None:
        """Partitions moved: rebuild the sums from the (recovered) table on next use."""
        self.built.clear()

    def home(self, region: str) -> int:
        q = self.homes.get(region)
        if q is None:
            province = region_key("province", split_region_key(region)[1])
            q = self.homes[region] = stable_partition(province, self.partitions)
        return q

    def _day(self, day: int) -> int:
        return self.days.setdefault(day, day)

    def _district(self, key: str) -> DistrictAgg:
        agg = self.districts.get(key)
        if agg is None:
            agg = self.districts[key] = DistrictAgg(key)
        return agg

    def _rollup(self, key: str) -> RollupAgg:
        agg = self.rollups.get(key)
        if agg is None:
            agg = self.rollups[key] = RollupAgg(key)
        return agg

    def ensure(self, q: int, clocks: Clocks, review: set[tuple[str, str]]) -> None:
        """The sums of partition ``q`` from its table; every alert scope is reviewed (the
        alert table may not have seen the last rows)."""
        if q in self.built:
            return
        for aggs in (self.districts, self.rollups):
            for key in [k for k in aggs if self.home(k) == q]:
                del aggs[key]
        for raw_key, raw in self.state.items():
            if raw_key.startswith(META):
                continue
            district, _p, cell_day, scope = raw_key.decode().split(KEY_SEP)
            if self.home(district) == q:
                _version, values = _cell(raw)
                scope = self.names.setdefault(scope, scope)
                day = self._day(int(cell_day))
                self._district(district).apply(scope, day, None, values)
        newest = clocks.get(q)
        for key, agg in list(self.districts.items()):
            if self.home(key) != q:
                continue
            city_key, province_key = parents(key)
            city, province = self._rollup(city_key), self._rollup(province_key)
            review.update((key, scope) for scope in agg.scopes())
            for scope, day, v in agg.mark_emitted(newest):
                day = self._day(day)  # noqa: PLW2901
                city.replace(day, scope, None, v)
                province.replace(day, scope, None, v)
        for key, roll in self.rollups.items():
            if self.home(key) == q:
                review.update((key, scope) for scope in roll.scopes())
        self.built.add(q)

    def _series(self, region: str, scope: str, newest: int) -> Series:
        agg = self.districts.get(region)
        if agg is not None:
            first = agg.first(scope)
            return [] if first is None else list(agg.values(scope, first, newest))
        return self.rollups[region].values(scope)

    def process(self, events: Sequence[Any]) -> Result:
        out: list[Out] = []
        clocks = Clocks(self.state)
        changed: dict[str, int] = {}  # district -> first day to emit
        review: set[tuple[str, str]] = set()  # (region, scope) whose alerts to evaluate
        written: dict[bytes, tuple[int, int, list[int]]] = {}  # key -> partition, version, cell
        for q, _province, body in unpack(events):
            self.ensure(q, clocks, review)
            sums = PartialSums.of(body)
            clocks.advance(q, sums.clock)
            if not sums.district:
                continue
            names = self.names
            district = names.setdefault(sums.district, sums.district)
            agg = self._district(district)
            prefix = f"{district}{KEY_SEP}{sums.partition}{KEY_SEP}"
            for scope, day, values in sums.cells:
                scope = names.setdefault(scope, scope)  # noqa: PLW2901
                day = self._day(day)  # noqa: PLW2901
                key = f"{prefix}{day}{KEY_SEP}{scope}".encode()
                held = written.get(key)
                old: list[int] | None = None
                if held is not None:
                    version, old = held[1], held[2]
                elif (raw := self.state.get_raw(key)) is not None:
                    version, old = _cell(raw)
                else:
                    version = -1
                if version > sums.version:
                    continue  # an older version (a replay): the held one is newer
                if old != values:
                    agg.apply(scope, day, old, values)
                    changed[district] = min(changed.get(district, day), day)
                written[key] = (q, sums.version, values)
        for q, before in clocks.advanced.items():
            for region in self.districts:
                if self.home(region) == q:
                    changed[region] = min(changed.get(region, before + 1), before + 1)
        clocks.save(out)
        versions = Versions(self.state)
        rows_topic = self.topics.region_rows
        parents_changed: dict[tuple[str, int, str], int] = {}
        for district, from_day in changed.items():
            q = self.home(district)
            version = versions.of(q)
            city, province = parents(district)
            for row, was in self.districts[district].rows(from_day, clocks.get(q)):
                out.append(Out(rows_topic, district.encode(), row.to_json(version), q))
                review.add((district, row.scope))
                v = None if row.deleted else row.v
                day = self._day(row.day)
                for parent in (city, province):
                    if self._rollup(parent).replace(day, row.scope, was, v):
                        parents_changed[(parent, day, row.scope)] = q
        for (parent, day, scope), q in parents_changed.items():
            row = self.rollups[parent].row(day, scope)
            out.append(Out(rows_topic, parent.encode(), row.to_json(versions.of(q)), q))
            review.add((parent, scope))
        transitions: list[dict[str, Any]] = []
        for region, scope in sorted(review):
            if not self.alerts.rules(region, scope):
                continue
            q = self.home(region)
            series = self._series(region, scope, clocks.get(q))
            transitions += self.alerts.evaluate(q, region, scope, series, versions, out)
        for cell_key, (q, version, cell) in written.items():
            self.state.put_raw(q, cell_key, _cell_bytes(version, cell), out)
        versions.save(out)
        return Result(pack(out, self.topics.packed, self.partitions), transitions)


def _cell_bytes(version: int, values: list[int]) -> bytes:
    """A cell as the table holds it: its version and values, comma-separated."""
    return ",".join(map(str, (version, *values))).encode()


def _cell(raw: bytes) -> tuple[int, list[int]]:
    version, *values = map(int, raw.split(b","))
    return version, values
