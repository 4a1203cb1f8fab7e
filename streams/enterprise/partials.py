"""Partial sums of a source partition's enterprises, per (district, scope, day) cell.

Every change of an enterprise subtracts what its old state contributed and adds what its new
one does: day segments of carried values (as a difference array: + on the first day, - on
the day after the last) and reports (on their day). The sums are never persisted: they are
derived from the enterprise table, and rebuilt from it when a partition is (re)assigned.

A province holds cells for every district, scope and day, for every source partition: in
memory they are blocks of ``BLOCK`` consecutive days, one int32 array per (district, scope,
block), instead of a list of integer objects per cell. A block whose sums outgrow int32 (an
output sum above 21 M CNY, say) becomes an int64 array, and one that outgrows int64 (above
9.2e18 fen) a list of Python integers: nothing overflows.
"""

from __future__ import annotations

from array import array
from typing import Any, TypeAlias

from streams.core import scopes
from streams.wire import CELL, STARTS

Cell = tuple[str, str, int]  # district key, scope, day
BLOCK = 8  # days per block
_SHIFT = 3  # log2(BLOCK)
_ZEROS = array("i", bytes(4 * CELL * BLOCK))
Block: TypeAlias = "array[int] | list[int]"  # BLOCK cells of CELL values, day by day


class Partials:
    def __init__(self) -> None:
        # partition -> (district, scope, day >> _SHIFT) -> the block's values
        self.sums: dict[int, dict[Cell, Block]] = {}
        self.touched: dict[int, set[Cell]] = {}
        # One object per district name for every key that holds it: a new block's key
        # takes it from here, instead of keeping the copy it was made from.
        self._names: dict[str, str] = {}

    def _block(self, sums: dict[Cell, Block], district: str, scope: str, day: int) -> Block:
        key = (district, scope, day >> _SHIFT)
        v = sums.get(key)
        if v is None:
            v = sums[(self._names.setdefault(district, district), scope, key[2])] = array(
                "i", _ZEROS
            )
        return v

    def _widen(self, sums: dict[Cell, Block], district: str, scope: str, day: int) -> Block:
        """The block of ``day`` one step wider from now on: int32 to int64 to a list of
        Python integers."""
        key = (district, scope, day >> _SHIFT)
        v = sums[key]
        w = sums[key] = array("q", v) if isinstance(v, array) and v.typecode == "i" else list(v)
        return w

    def drop(self, partition: int) -> None:
        self.sums.pop(partition, None)
        self.touched.pop(partition, None)

    def touch_all(self, partition: int) -> None:
        """Send every cell of the partition that holds a value with the next batch."""
        touched = self.touched.setdefault(partition, set())
        for (district, scope, b), v in self.sums.get(partition, {}).items():
            for i in range(BLOCK):
                if any(v[i * CELL : (i + 1) * CELL]):
                    touched.add((district, scope, (b << _SHIFT) + i))

    def _cells(self, partition: int) -> tuple[dict[Cell, Block], set[Cell]]:
        sums = self.sums.get(partition)
        if sums is None:
            sums = self.sums[partition] = {}
        touched = self.touched.get(partition)
        if touched is None:
            touched = self.touched[partition] = set()
        return sums, touched

    def _carried(
        self,
        sums: dict[Cell, Block],
        district: str,
        scope: str,
        day: int,
        changes: tuple[int, int, int, int, int, int],
    ) -> None:
        """Add (enterprises, status index, opened, resolved, sign of the status, starts)."""
        n, status, opened, resolved, sign, starts = changes
        v = self._block(sums, district, scope, day)
        o = (day & (BLOCK - 1)) * CELL
        # New values first, then assignments: after an overflow, assigning them all again
        # to the widened block is exact.
        a, b, c, d, e = v[o] + n, v[o + status] + sign, v[o + 4] + opened, v[o + 5], v[o + STARTS]
        d += resolved
        e += starts
        while True:
            try:
                v[o], v[o + status], v[o + 4], v[o + 5], v[o + STARTS] = a, b, c, d, e
                return
            except OverflowError:
                v = self._widen(sums, district, scope, day)

    def segments(self, partition: int, district: str, segs: list[list[Any]], sign: int) -> None:
        """Add (``sign`` 1) or subtract (-1) an enterprise's day segments in a district:
        [from, to, sector, above, status, opened, resolved], ``to`` None when open-ended."""
        sums, touched = self._cells(partition)
        for a, b, sector, above, status, opened, resolved in segs:
            start = (sign, 1 + status, sign * opened, sign * resolved, sign, sign)
            end = (-sign, 1 + status, -sign * opened, -sign * resolved, -sign, 0)
            for scope in scopes(sector, above):
                touched.add((district, scope, a))
                self._carried(sums, district, scope, a, start)
                if b is not None:
                    touched.add((district, scope, b))
                    self._carried(sums, district, scope, b, end)

    def report(self, partition: int, district: str, day: int, vec: list[Any], sign: int) -> None:
        """Add or subtract a report's contribution [sector, above, staff, employees,
        output_fen, capacity_fen] on its day."""
        sums, touched = self._cells(partition)
        sector, above, staff, employees, output, capacity = vec
        o = (day & (BLOCK - 1)) * CELL + 6
        b = day >> _SHIFT
        for scope in scopes(sector, above):
            touched.add((district, scope, day))
            v = sums.get((district, scope, b))
            if v is None:
                v = self._block(sums, district, scope, day)
            r, s, e, out, cap = (
                v[o] + sign,
                v[o + 1] + sign * staff,
                v[o + 2] + sign * employees,
                v[o + 3] + sign * output,
                v[o + 4] + sign * capacity,
            )
            while True:
                try:
                    v[o], v[o + 1], v[o + 2], v[o + 3], v[o + 4] = r, s, e, out, cap
                    break
                except OverflowError:
                    v = self._widen(sums, district, scope, day)

    def take(self) -> dict[int, dict[str, list[tuple[str, int, list[int]]]]]:
        """The touched cells' values per partition and district, and forget the touches.
        A block whose values all went to zero is dropped (its cells are sent as zeros)."""
        out: dict[int, dict[str, list[tuple[str, int, list[int]]]]] = {}
        for partition, touched in self.touched.items():
            if not touched:
                continue
            sums = self.sums.get(partition, {})
            by_district: dict[str, list[tuple[str, int, list[int]]]] = {}
            emptied: set[Cell] = set()
            for key in sorted(touched):
                district, scope, day = key
                bkey = (district, scope, day >> _SHIFT)
                block = sums.get(bkey)
                if block is None:
                    v = [0] * CELL
                else:
                    o = (day & (BLOCK - 1)) * CELL
                    v = list(block[o : o + CELL])
                    if not any(v):
                        emptied.add(bkey)
                by_district.setdefault(district, []).append((scope, day, v))
            for bkey in emptied:
                if not any(sums[bkey]):
                    del sums[bkey]
            out[partition] = by_district
            touched.clear()
        return out
