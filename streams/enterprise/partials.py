"""Partial sums of a source partition's enterprises, per (district, scope, day) cell.

Every change of an enterprise subtracts what its old state contributed and adds what its new
one does: day segments of carried values (as a difference array: + on the first day, - on
the day after the last) and reports (on their day). The sums are never persisted: they are
derived from the enterprise table, and rebuilt from it when a partition is (re)assigned.
"""

from __future__ import annotations

from typing import Any

from streams.core import scopes
from streams.wire import CELL, STARTS

Cell = tuple[str, str, int]  # district key, scope, day


class Partials:
    def __init__(self) -> None:
        self.sums: dict[int, dict[Cell, list[int]]] = {}
        self.touched: dict[int, set[Cell]] = {}
        # One object per district name and per day for every key that holds it: a new
        # cell's key takes them from here, instead of keeping the copy it was made from.
        self._names: dict[str, str] = {}
        self._days: dict[int, int] = {}

    def _key(self, district: str, scope: str, day: int) -> Cell:
        return (self._names.setdefault(district, district), scope, self._days.setdefault(day, day))

    def drop(self, partition: int) -> None:
        self.sums.pop(partition, None)
        self.touched.pop(partition, None)

    def touch_all(self, partition: int) -> None:
        """Send every cell of the partition with the next batch."""
        self.touched.setdefault(partition, set()).update(self.sums.get(partition, ()))

    def _cells(self, partition: int) -> tuple[dict[Cell, list[int]], set[Cell]]:
        sums = self.sums.get(partition)
        if sums is None:
            sums = self.sums[partition] = {}
        touched = self.touched.get(partition)
        if touched is None:
            touched = self.touched[partition] = set()
        return sums, touched

    def segments(self, partition: int, district: str, segs: list[list[Any]], sign: int) -> None:
        """Add (``sign`` 1) or subtract (-1) an enterprise's day segments in a district:
        [from, to, sector, above, status, opened, resolved], ``to`` None when open-ended."""
        sums, touched = self._cells(partition)
        for a, b, sector, above, status, opened, resolved in segs:
            for scope in scopes(sector, above):
                key = (district, scope, a)
                v = sums.get(key)
                if v is None:
                    v = sums[self._key(district, scope, a)] = [0] * CELL
                touched.add(key)
                v[0] += sign
                v[1 + status] += sign
                v[4] += sign * opened
                v[5] += sign * resolved
                v[STARTS] += sign
                if b is None:
                    continue
                key = (district, scope, b)
                w = sums.get(key)
                if w is None:
                    w = sums[self._key(district, scope, b)] = [0] * CELL
                touched.add(key)
                w[0] -= sign
                w[1 + status] -= sign
                w[4] -= sign * opened
                w[5] -= sign * resolved

    def report(self, partition: int, district: str, day: int, vec: list[Any], sign: int) -> None:
        """Add or subtract a report's contribution [sector, above, staff, employees,
        output_fen, capacity_fen] on its day."""
        sums, touched = self._cells(partition)
        sector, above, staff, employees, output, capacity = vec
        for scope in scopes(sector, above):
            key = (district, scope, day)
            v = sums.get(key)
            if v is None:
                v = sums[self._key(district, scope, day)] = [0] * CELL
            touched.add(key)
            v[6] += sign
            v[7] += sign * staff
            v[8] += sign * employees
            v[9] += sign * output
            v[10] += sign * capacity

    def take(self) -> dict[int, dict[str, list[tuple[str, int, list[int]]]]]:
        """The touched cells' values per partition and district, and forget the touches.
        A cell whose values all went to zero is sent as zeros, then dropped."""
        out: dict[int, dict[str, list[tuple[str, int, list[int]]]]] = {}
        for partition, touched in self.touched.items():
            if not touched:
                continue
            sums = self.sums.get(partition, {})
            by_district: dict[str, list[tuple[str, int, list[int]]]] = {}
            for key in sorted(touched):
                district, scope, day = key
                v = sums.get(key)
                if v is None:
                    v = [0] * CELL
                elif not any(v):
                    del sums[key]
                else:
                    v = list(v)
                by_district.setdefault(district, []).append((scope, day, v))
            out[partition] = by_district
            touched.clear()
        return out
