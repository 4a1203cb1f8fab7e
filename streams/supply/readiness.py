"""Supplier readiness per enterprise and day: a join of each enterprise's supplier list with
its suppliers' statuses, for the supplier_readiness alert rules.

Pure functions over plain data; the supply agent keeps, per enterprise, its own status
timeline, its supplier-list timeline and the latest status timeline of each supplier.
"""

from __future__ import annotations

from typing import Any


def _at(rows: list[list[Any]], day: int) -> list[Any] | None:
    best = None
    for r in rows:
        if r[0] <= day:
            best = r
        else:
            break
    return best


def readiness_series(
    suppliers_tl: list[list[Any]], statuses: dict[str, list[list[int]]], newest: int
) -> list[tuple[int, int, int, list[Any]]]:
    """[(day, suppliers, suppliers_resumed, profile row)] for every day from the first day the
    enterprise lists suppliers to the newest event day (or its last change, if later)."""
    if not suppliers_tl:
        return []
    days = {r[0] for r in suppliers_tl}
    for tl in statuses.values():
        days |= {r[0] for r in tl}
    first = next((r[0] for r in suppliers_tl if r[1]), None)
    if first is None:
        return []
    last = max(max(days), newest)
    out = []
    for day in range(first, last + 1):
        row = _at(suppliers_tl, day)
        assert row is not None
        ids = row[1]
        resumed = 0
        for s in ids:
            st = _at(statuses.get(s, []), day)
            resumed += bool(st is not None and st[1])
        out.append((day, len(ids), resumed, row))
    return out
