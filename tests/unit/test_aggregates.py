"""District rows remember what they last emitted (packed), and tell their parents the old
values of every row that changes."""

from __future__ import annotations

from streams.core import WIDTH
from streams.regions.aggregates import DistrictAgg, RollupAgg
from streams.wire import CELL, STARTS

SCOPE = "*\x1f0"
DAY = 739_000


def _cell(output: int, enterprises: int = 1) -> list[int]:
    v = [0] * CELL
    v[0] = enterprises  # carried from this day on
    v[6], v[9] = 1, output  # one report, its output
    v[STARTS] = 1
    return v


def test_rows_carry_their_old_values_at_any_size() -> None:
    agg, city = DistrictAgg("district\x1fP\x1fC\x1fD"), RollupAgg("city\x1fP\x1fC")
    old: list[int] | None = None
    seen: list[tuple[int, ...] | None] = []
    for output in (500, 2**40, 2**70, 7):  # int32, int64, beyond, and back
        new = _cell(output)
        agg.apply(SCOPE, DAY, old, new)
        old = new
        rows = list(agg.rows(DAY, DAY))
        assert [r.v[9] for r, _ in rows] == [output]
        (row, was) = rows[0]
        seen.append(None if was is None else was[9])
        assert city.replace(DAY, SCOPE, was, row.v)
        assert city.row(DAY, SCOPE).v == row.v
        assert list(agg.rows(DAY, DAY)) == []  # unchanged: not sent again
    assert seen == [None, 500, 2**40, 2**70]
    assert len(row.v) == WIDTH


def test_a_rebuilt_district_counts_its_rows_as_emitted() -> None:
    agg = DistrictAgg("district\x1fP\x1fC\x1fD")
    agg.apply(SCOPE, DAY, None, _cell(100))
    rebuilt = list(agg.mark_emitted(DAY + 2))
    assert [(s, d) for s, d, _v in rebuilt] == [(SCOPE, DAY), (SCOPE, DAY + 1), (SCOPE, DAY + 2)]
    assert list(agg.rows(DAY, DAY + 2)) == []
    # The scope loses its member: its rows are retracted, each with the values it had.
    agg.apply(SCOPE, DAY, _cell(100), [0] * CELL)
    gone = list(agg.rows(DAY, DAY + 2))
    assert [(r.day, r.deleted, was) for r, was in gone] == [(d, True, v) for _s, d, v in rebuilt]
