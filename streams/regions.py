"""Region aggregates, maintained by replacement so that replays cannot double count.

DistrictAgg keeps, per district, the latest contribution of each member enterprise and the
daily sums it implies; replacing a member's contribution subtracts exactly what it added
before. RollupAgg keeps, per city or province, the latest row of each child district and
their sums. Everything is integer arithmetic, so subtract-then-add is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from streams.core import CARRIED, REPORTED, WIDTH, RegionRow, scopes

Vec = list[int]


class DistrictAgg:
    def __init__(self, key: str) -> None:
        self.key = key
        self.members: dict[str, tuple[int, dict[str, Any]]] = {}
        # scope -> day -> deltas of the carried values (a difference array over days)
        self.carried: dict[str, dict[int, Vec]] = {}
        # scope -> day -> sums of the reported values of that day
        self.reported: dict[str, dict[int, Vec]] = {}
        # scope -> first day it ever had a member; a scope keeps its rows (zeros included)
        self.first: dict[str, int] = {}

    def replace(self, eid: str, seq: int, contrib: dict[str, Any]) -> bool:
        """Make ``contrib`` the member's contribution; False if ``seq`` is older than held."""
        old = self.members.get(eid)
        if old is not None and old[0] > seq:
            return False
        if old is not None:
            self._apply(old[1], -1)
        self._apply(contrib, 1)
        if contrib["s"] or contrib["r"]:
            self.members[eid] = (seq, contrib)
        else:
            self.members[eid] = (seq, {"s": [], "r": []})  # remember the version
        return True

    def _apply(self, contrib: dict[str, Any], sign: int) -> None:
        for a, b, sector, above, status, opened, resolved in contrib["s"]:
            for scope in scopes(sector, above):
                diff = self.carried.setdefault(scope, {})
                if sign > 0:
                    self.first[scope] = min(self.first.get(scope, a), a)
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
        for day, sector, above, staff, employees, output, capacity in contrib["r"]:
            for scope in scopes(sector, above):
                v = self.reported.setdefault(scope, {}).setdefault(day, [0] * REPORTED)
                v[0] += sign
                v[1] += sign * staff
                v[2] += sign * employees
                v[3] += sign * output
                v[4] += sign * capacity

    def rows(self, from_day: int, newest: int) -> Iterator[RegionRow]:
        """Rows of every scope for the days from ``from_day`` to ``newest``."""
        for scope, first in self.first.items():
            diff = self.carried.get(scope, {})
            reported = self.reported.get(scope, {})
            acc = [0] * CARRIED
            changes = sorted(d for d in diff if d <= newest)
            i = 0
            start = max(first, from_day)
            for day in range(start, newest + 1):
                while i < len(changes) and changes[i] <= day:
                    delta = diff[changes[i]]
                    for j in range(CARRIED):
                        acc[j] += delta[j]
                    i += 1
                rep = reported.get(day)
                yield RegionRow(day, self.key, scope, (*acc, *(rep or (0,) * REPORTED)))


class RollupAgg:
    """A city or province: the sum of its districts' rows."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.children: dict[tuple[str, int, str], tuple[int, ...]] = {}
        self.sums: dict[tuple[int, str], Vec] = {}

    def replace(self, child: str, day: int, scope: str, v: tuple[int, ...]) -> bool:
        k = (child, day, scope)
        old = self.children.get(k)
        if old == v:
            return False
        s = self.sums.setdefault((day, scope), [0] * WIDTH)
        if old is not None:
            for j in range(WIDTH):
                s[j] -= old[j]
        for j in range(WIDTH):
            s[j] += v[j]
        self.children[k] = v
        return True

    def row(self, day: int, scope: str) -> RegionRow:
        return RegionRow(day, self.key, scope, tuple(self.sums[(day, scope)]))
