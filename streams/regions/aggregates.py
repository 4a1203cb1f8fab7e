"""Region aggregates, maintained by replacement so that replays cannot double count.

DistrictAgg keeps, per district, the daily sums implied by the latest day segments of each
member enterprise and its latest report of each day; replacing either subtracts exactly what
the old one added. The members' values themselves are held by the caller (the district
table), which passes the old one with each replacement: a second copy here would double the
worker's memory per enterprise. RollupAgg keeps, per city or province, the latest row of
each child district and their sums. Everything is integer arithmetic, so subtract-then-add is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.core import CARRIED, REPORTED, WIDTH, RegionRow, scopes

Vec = list[int]
Held = tuple[Any, Any] | list[Any]  # [seq, value] of a member, as the table holds it


class DistrictAgg:
    def __init__(self, key: str) -> None:
        self.key = key
        # scope -> day -> deltas of the carried values (a difference array over days)
        self.carried: dict[str, dict[int, Vec]] = {}
        # scope -> day -> sums of the reported values of that day
        self.reported: dict[str, dict[int, Vec]] = {}
        # scope -> day -> how many member segments start that day; the smallest such day is
        # the scope's first day (its rows run from there to the newest day)
        self.starts: dict[str, dict[int, int]] = {}
        # scope -> first day of the rows emitted so far (to retract rows that vanish)
        self.emitted: dict[str, int] = {}
        # (scope, day) -> the values last emitted; unchanged rows are not sent again. Empty
        # after a restart, so everything is sent once more then (idempotent downstream).
        self.sent: dict[tuple[str, int], tuple[int, ...]] = {}

    def replace_segments(self, old: Held | None, seq: Any, segs: list[list[Any]]) -> bool:
        """Make ``segs`` a member's segments in place of ``old`` (its [seq, segments] held
        so far, kept when empty: the version); False if ``seq`` is older than held."""
        if old is not None:
            if old[0] > seq:
                return False
            self._segments(old[1], -1)
        self._segments(segs, 1)
        return True

    def replace_report(self, old: Held | None, day: int, seq: Any, vec: list[Any] | None) -> bool:
        """Make ``vec`` (None: no report) a member's report for ``day`` in place of ``old``
        (its [seq, [sector, above, staff, employees, output_fen, capacity_fen]] held so far);
        False if ``seq`` is older than held."""
        if old is not None:
            if old[0] > seq:
                return False
            self._report(day, old[1], -1)
        if vec is not None:
            self._report(day, vec, 1)
        return True

    def _segments(self, segs: list[list[Any]], sign: int) -> None:
        for a, b, sector, above, status, opened, resolved in segs:
            for scope in scopes(sector, above):
                starts = self.starts.setdefault(scope, {})
                starts[a] = starts.get(a, 0) + sign
                if not starts[a]:
                    del starts[a]
                diff = self.carried.setdefault(scope, {})
                v = diff.setdefault(a, [0] * CARRIED)
                v[0] += sign
                v[1 + status] += sign
                v[4] += sign * opened
                v[5] += sign * resolved
                if b is not None:
                    w = diff.setdefault(b, [0] * CARRIED)
                    w[0] -= sign
                    w[1 + status] -= sign
                    w[4] -= sign * opened
                    w[5] -= sign * resolved

    def _report(self, day: int, vec: list[Any], sign: int) -> None:
        sector, above, staff, employees, output, capacity = vec
        for scope in scopes(sector, above):
            v = self.reported.setdefault(scope, {}).setdefault(day, [0] * REPORTED)
            v[0] += sign
            v[1] += sign * staff
            v[2] += sign * employees
            v[3] += sign * output
            v[4] += sign * capacity

    def first(self, scope: str) -> int | None:
        starts = self.starts.get(scope)
        return min(starts) if starts else None

    def mark_emitted(self) -> None:
        """After a rebuild from the table: the rows in ClickHouse are those of this state."""
        self.emitted = {s: f for s in self.starts if (f := self.first(s)) is not None}

    def rows(self, from_day: int, newest: int) -> Iterator[RegionRow]:
        """Rows of every scope for the days from ``from_day`` to ``newest``, and retractions
        (``RegionRow.deleted``) of rows that no longer exist because a scope now starts later
        or has no member left."""
        for scope in sorted(self.starts.keys() | self.emitted.keys()):
            first = self.first(scope)
            before = self.emitted.get(scope)
            if before is not None and (first is None or first > before):
                end = newest if first is None else min(first - 1, newest)
                for day in range(before, end + 1):
                    self.sent.pop((scope, day), None)
                    yield RegionRow(day, self.key, scope, (0,) * WIDTH, deleted=True)
            if first is None:
                self.emitted.pop(scope, None)
                continue
            start = first if before is None or first < before else max(first, from_day)
            self.emitted[scope] = first
            diff = self.carried.get(scope, {})
            reported = self.reported.get(scope, {})
            acc = [0] * CARRIED
            changes = sorted(d for d in diff if d <= newest)
            i = 0
            for day in range(start, newest + 1):
                while i < len(changes) and changes[i] <= day:
                    delta = diff[changes[i]]
                    for j in range(CARRIED):
                        acc[j] += delta[j]
                    i += 1
                rep = reported.get(day)
                v = (*acc, *(rep or (0,) * REPORTED))
                if self.sent.get((scope, day)) != v:
                    self.sent[(scope, day)] = v
                    yield RegionRow(day, self.key, scope, v)


class RollupAgg:
    """A city or province: the sum of its districts' rows."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.children: dict[tuple[str, int, str], tuple[int, ...]] = {}
        self.sums: dict[tuple[int, str], Vec] = {}
        self.count: dict[tuple[int, str], int] = {}  # children with a row for (day, scope)

    def replace(self, child: str, day: int, scope: str, v: tuple[int, ...] | None) -> bool:
        """Set (or with None: remove) a child's row for (day, scope); True if it changed."""
        k = (child, day, scope)
        old = self.children.get(k)
        if old == v:
            return False
        ds = (day, scope)
        s = self.sums.setdefault(ds, [0] * WIDTH)
        if old is not None:
            for j in range(WIDTH):
                s[j] -= old[j]
            self.count[ds] -= 1
        if v is not None:
            for j in range(WIDTH):
                s[j] += v[j]
            self.count[ds] = self.count.get(ds, 0) + 1
            self.children[k] = v
        else:
            self.children.pop(k, None)
        if not self.count.get(ds):
            self.count.pop(ds, None)
            del self.sums[ds]
        return True

    def row(self, day: int, scope: str) -> RegionRow:
        """The parent's row, or its retraction when no child has a row for (day, scope)."""
        s = self.sums.get((day, scope))
        if s is None:
            return RegionRow(day, self.key, scope, (0,) * WIDTH, deleted=True)
        return RegionRow(day, self.key, scope, tuple(s))
