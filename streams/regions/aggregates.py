"""Region aggregates, maintained by replacement so that replays cannot double count.

DistrictAgg keeps, per district, the sums of the cells (``streams.wire``) of every source
partition: replacing a partition's cell adds the difference between its new and old values.
The cells themselves are held by the caller (the region table). It also keeps each row as
last emitted, which is what its city and province count: RollupAgg keeps, per city or
province, only the sums of its districts' rows, and is told a row's old value when it
changes. Everything is integer arithmetic, so subtract-then-add is exact.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from streams.core import CARRIED, REPORTED, WIDTH, RegionRow
from streams.wire import STARTS

Vec = list[int]


class DistrictAgg:
    def __init__(self, key: str) -> None:
        self.key = key
        # scope -> day -> changes of the carried values (a difference array over days)
        self.carried: dict[str, dict[int, Vec]] = {}
        # scope -> day -> sums of the reported values of that day
        self.reported: dict[str, dict[int, Vec]] = {}
        # scope -> day -> how many member segments start that day; the smallest such day is
        # the scope's first day (its rows run from there to the newest day)
        self.starts: dict[str, dict[int, int]] = {}
        # scope -> first day of the rows emitted so far (to retract rows that vanish)
        self.emitted: dict[str, int] = {}
        # scope -> day -> the row's values as last emitted, and as its city and province
        # count them (``_pack``ed); unchanged rows are not sent again. After a rebuild from
        # the table: the rebuilt values (the rows downstream, as those are sent before the
        # table's writes).
        self.sent: dict[str, dict[int, Packed]] = {}

    def apply(self, scope: str, day: int, old: list[int] | None, new: list[int]) -> None:
        """Replace a cell's values (``streams.wire``'s layout) ``old`` by ``new``."""
        d = new if old is None else [n - o for n, o in zip(new, old, strict=True)]
        if any(d[:CARRIED]):
            _add(self.carried.setdefault(scope, {}), day, d[:CARRIED])
        if any(d[CARRIED:WIDTH]):
            _add(self.reported.setdefault(scope, {}), day, d[CARRIED:WIDTH])
        if d[STARTS]:
            starts = self.starts.setdefault(scope, {})
            n = starts.get(day, 0) + d[STARTS]
            if n:
                starts[day] = n
            else:
                del starts[day]

    def first(self, scope: str) -> int | None:
        starts = self.starts.get(scope)
        return min(starts) if starts else None

    def scopes(self) -> set[str]:
        return {s for s, starts in self.starts.items() if starts}

    def mark_emitted(self, newest: int) -> Iterator[tuple[str, int, tuple[int, ...]]]:
        """After a rebuild from the table: the rows downstream are those of this state, up
        to ``newest``. Yields them (scope, day, values), for the parents to count."""
        self.emitted = {s: f for s in self.starts if (f := self.first(s)) is not None}
        self.sent = {}
        for scope, first in self.emitted.items():
            sent = self.sent[scope] = {}
            for day, v in self.values(scope, first, newest):
                sent[day] = _pack(v)
                yield scope, day, v

    def values(self, scope: str, start: int, newest: int) -> Iterator[tuple[int, tuple[int, ...]]]:
        """(day, metric vector) of the scope for the days from ``start`` to ``newest``."""
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
            yield day, (*acc, *(rep or (0,) * REPORTED))

    def rows(
        self, from_day: int, newest: int
    ) -> Iterator[tuple[RegionRow, tuple[int, ...] | None]]:
        """Rows of every scope for the days from ``from_day`` to ``newest`` that changed,
        and retractions (``RegionRow.deleted``) of rows that no longer exist because a scope
        now starts later or has no member left; each with the values it had before (None:
        it had none)."""
        for scope in sorted(self.starts.keys() | self.emitted.keys()):
            first = self.first(scope)
            before = self.emitted.get(scope)
            sent = self.sent.setdefault(scope, {})
            if before is not None and (first is None or first > before):
                end = newest if first is None else min(first - 1, newest)
                for day in range(before, end + 1):
                    old = sent.pop(day, None)
                    row = RegionRow(day, self.key, scope, (0,) * WIDTH, deleted=True)
                    yield row, None if old is None else _unpack(old)
            if first is None:
                self.emitted.pop(scope, None)
                self.sent.pop(scope, None)
                continue
            start = first if before is None or first < before else max(first, from_day)
            self.emitted[scope] = first
            for day, v in self.values(scope, start, newest):
                old = sent.get(day)
                packed = _pack(v)
                if old != packed:
                    sent[day] = packed
                    yield RegionRow(day, self.key, scope, v), None if old is None else _unpack(old)


# A row's values as ``DistrictAgg.sent`` holds them: an int32 array's bytes, an int64
# array's when a value outgrows int32, the tuple itself beyond int64. Equal values always
# pack alike, so packed values compare as the values do.
Packed = bytes | tuple[int, ...]


def _pack(v: tuple[int, ...]) -> Packed:
    for code in "iq":
        try:
            return array(code, v).tobytes()
        except OverflowError:
            pass
    return v


def _unpack(p: Packed) -> tuple[int, ...]:
    if isinstance(p, tuple):
        return p
    return tuple(array("i" if len(p) == 4 * WIDTH else "q", p))


def _add(days: dict[int, Vec], day: int, delta: list[int]) -> None:
    v = days.get(day)
    if v is None:
        days[day] = list(delta)
        return
    for j, x in enumerate(delta):
        v[j] += x
    if not any(v):
        del days[day]


class RollupAgg:
    """A city or province: the sum of its districts' rows."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.sums: dict[str, dict[int, Vec]] = {}  # scope -> day -> sum of the children's rows
        self.count: dict[tuple[int, str], int] = {}  # children with a row for (day, scope)

    def replace(
        self, day: int, scope: str, old: tuple[int, ...] | None, v: tuple[int, ...] | None
    ) -> bool:
        """Replace a child's row for (day, scope), ``old`` (None: it had none) by ``v``
        (None: it has none now); True if it changed."""
        if old == v:
            return False
        ds = (day, scope)
        days = self.sums.setdefault(scope, {})
        s = days.setdefault(day, [0] * WIDTH)
        if old is not None:
            for j in range(WIDTH):
                s[j] -= old[j]
            self.count[ds] -= 1
        if v is not None:
            for j in range(WIDTH):
                s[j] += v[j]
            self.count[ds] = self.count.get(ds, 0) + 1
        if not self.count.get(ds):
            self.count.pop(ds, None)
            del days[day]
        return True

    def row(self, day: int, scope: str) -> RegionRow:
        """The parent's row, or its retraction when no child has a row for (day, scope)."""
        s = self.sums.get(scope, {}).get(day)
        if s is None:
            return RegionRow(day, self.key, scope, (0,) * WIDTH, deleted=True)
        return RegionRow(day, self.key, scope, tuple(s))

    def scopes(self) -> set[str]:
        return {s for s, days in self.sums.items() if days}

    def values(self, scope: str) -> list[tuple[int, tuple[int, ...]]]:
        """(day, metric vector) of the scope's rows, in day order."""
        days = self.sums.get(scope, {})
        return [(d, tuple(days[d])) for d in sorted(days)]
