"""Pure day/scope maths: per-enterprise timelines and per-region daily counts.

No Faust, Kafka or ClickHouse here. State is kept in plain JSON-able lists and dicts so the
agents can store it in changelog-backed tables, and every update is a *replacement* derived
from the full set of events seen (never ``+= 1``), so replaying an event changes nothing.

Days are ``date.toordinal()`` integers in the configured time zone.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from producers.events import AnyEvent, DailyReport, EnterpriseRegistered, StatusChanged

STATUS_CODE = {"suspended": 0, "filed": 1, "resumed": 2}
LEVELS = ("province", "city", "district")
SEP = "\x1f"

# A segment of an enterprise's timeline: from_day (inclusive), to_day (exclusive, or None for
# "still so today"), sector, above_scale (0/1), status code.
Segment = list[Any]


def local_day(ts: datetime, tz: ZoneInfo) -> int:
    return ts.astimezone(tz).date().toordinal()


def event_day(ev: AnyEvent, tz: ZoneInfo) -> int:
    """The first day an event affects: its local occurred_at day, a report's report_date."""
    if isinstance(ev, DailyReport):
        return ev.report_date.toordinal()
    return local_day(ev.occurred_at, tz)


def region_key(level: str, province: str, city: str = "", district: str = "") -> str:
    return SEP.join((level, province, city, district))


def split_region_key(key: str) -> tuple[str, str, str, str]:
    level, province, city, district = key.split(SEP)
    return level, province, city, district


def stable_partition(key: str, partitions: int) -> int:
    """Partition of a region key: stable across processes (unlike ``hash``)."""
    return zlib.crc32(key.encode()) % partitions


# ---------------------------------------------------------------------------------------
# Per enterprise
# ---------------------------------------------------------------------------------------
def new_enterprise_state() -> dict[str, Any]:
    # ids: event ids applied; prof: [ts_us, event_id, day, province, city, district, sector,
    # above]; st: [ts_us, event_id, day, status_code]; seq: number of applied events, a
    # monotonic version for downstream replacement; regions: region keys last sent to.
    return {"ids": [], "prof": [], "st": [], "seq": 0, "regions": []}


def _ts_us(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def apply_event(state: dict[str, Any], ev: AnyEvent, tz: ZoneInfo) -> bool:
    """Apply one event to an enterprise's state; False if it was already applied."""
    ids = state["ids"]
    if ev.event_id in ids:
        return False
    ids.append(ev.event_id)
    state["seq"] += 1
    day = event_day(ev, tz)
    if isinstance(ev, EnterpriseRegistered):
        state["prof"].append(
            [
                _ts_us(ev.occurred_at),
                ev.event_id,
                day,
                ev.province,
                ev.city,
                ev.district,
                ev.sector,
                int(ev.above_scale),
            ]
        )
        state["prof"].sort(key=lambda r: (r[0], r[1]))
    elif isinstance(ev, StatusChanged):
        state["st"].append([_ts_us(ev.occurred_at), ev.event_id, day, STATUS_CODE[ev.status]])
        state["st"].sort(key=lambda r: (r[0], r[1]))
    return True


def timeline(state: dict[str, Any]) -> list[list[Any]]:
    """Day segments of (province, city, district, sector, above, status) from registration on.

    Within a day the latest event by (occurred_at, event_id) wins, so the value of a day is
    what holds at its end. Returns [[from_day, province, city, district, sector, above,
    status], ...], each lasting until the next one's from_day.
    """
    prof, st = state["prof"], state["st"]
    if not prof:
        return []
    change_days = sorted({r[2] for r in prof} | {r[2] for r in st if r[2] >= prof[0][2]})
    first = min(r[2] for r in prof)
    out: list[list[Any]] = []
    for d in change_days:
        if d < first:
            continue
        p = _latest_upto(prof, d)
        s = _latest_upto(st, d)
        if p is None:
            continue
        row = [d, p[3], p[4], p[5], p[6], p[7], s[3] if s is not None else 0]
        if not out or out[-1][1:] != row[1:]:
            out.append(row)
    return out


def _latest_upto(rows: list[list[Any]], day: int) -> list[Any] | None:
    # rows are sorted by time; the last one whose day <= ``day`` holds at the end of ``day``.
    best = None
    for r in rows:
        if r[2] <= day and (best is None or (r[0], r[1]) > (best[0], best[1])):
            best = r
    return best


def contributions(tl: list[list[Any]]) -> dict[str, list[Segment]]:
    """Split a timeline into the segments each region (at every level) receives."""
    out: dict[str, list[Segment]] = {}
    for i, (d, province, city, district, sector, above, status) in enumerate(tl):
        to = tl[i + 1][0] if i + 1 < len(tl) else None
        for key in (
            region_key("province", province),
            region_key("city", province, city),
            region_key("district", province, city, district),
        ):
            segs = out.setdefault(key, [])
            if segs and segs[-1][1] == d and segs[-1][2:] == [sector, above, status]:
                segs[-1][1] = to  # the region saw no change: extend the previous segment
            else:
                segs.append([d, to, sector, above, status])
    return out


# ---------------------------------------------------------------------------------------
# Per region
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RegionRow:
    """One row of region_metrics (the status part of CONTRACT §3)."""

    day: date
    level: str
    province: str
    city: str
    district: str
    sector: str
    above_scale_only: int
    enterprises: int
    resumed: int
    filed: int
    suspended: int

    @property
    def resumption_rate(self) -> float | None:
        return self.resumed / self.enterprises if self.enterprises else None


def new_region_state() -> dict[str, Any]:
    # members: enterprise_id -> [seq, segments]; newest: newest event day seen (ordinal);
    # scopes: "sector<SEP>above_only" -> first day the scope ever had a member. A scope keeps
    # its rows (with zeros) once it existed, so a retraction never leaves stale rows behind.
    return {"members": {}, "newest": 0, "scopes": {}}


def merge_contribution(
    region: dict[str, Any], enterprise_id: str, seq: int, segments: list[Segment]
) -> int | None:
    """Replace one enterprise's segments; the first day whose counts may change, or None."""
    members = region["members"]
    old = members.get(enterprise_id)
    if old is not None and old[0] > seq:
        return None  # a stale copy of an older version
    old_segs = old[1] if old is not None else []
    if old is not None and old[0] == seq and old_segs == segments:
        return None
    if segments:
        members[enterprise_id] = [seq, segments]
    else:
        members[enterprise_id] = [seq, []]  # keep the version so a stale copy stays ignored
    changed = [s[0] for s in old_segs if s not in segments] + [
        s[0] for s in segments if s not in old_segs
    ]
    if not changed:
        return None
    return int(min(changed))


def region_rows(region_key_: str, region: dict[str, Any], from_day: int) -> Iterator[RegionRow]:
    """Rows for every scope of this region and every day from ``from_day`` to newest."""
    level, province, city, district = split_region_key(region_key_)
    newest = region["newest"]
    # diff[scope][day] = [enterprises, suspended, filed, resumed] deltas
    diff: dict[tuple[str, int], dict[int, list[int]]] = {}
    first: dict[tuple[str, int], int] = {}
    for _seq, segs in region["members"].values():
        for a, b, sector, above, status in segs:
            for scope in _scopes(sector, above):
                dd = diff.setdefault(scope, {})
                first[scope] = min(first.get(scope, a), a)
                v = dd.setdefault(a, [0, 0, 0, 0])
                v[0] += 1
                v[1 + status] += 1
                if b is not None:
                    w = dd.setdefault(b, [0, 0, 0, 0])
                    w[0] -= 1
                    w[1 + status] -= 1
    known = region.setdefault("scopes", {})
    for scope, day in first.items():
        name = f"{scope[0]}{SEP}{scope[1]}"
        known[name] = min(known.get(name, day), day)
    for name, scope_first in known.items():
        sector, above_text = name.split(SEP)
        above_only = int(above_text)
        dd = diff.get((sector, above_only), {})
        acc = [0, 0, 0, 0]
        changes = sorted(dd.items())
        i = 0
        for day in range(max(scope_first, from_day), newest + 1):
            while i < len(changes) and changes[i][0] <= day:
                for j in range(4):
                    acc[j] += changes[i][1][j]
                i += 1
            if day >= from_day:
                yield RegionRow(
                    date.fromordinal(day),
                    level,
                    province,
                    city if level != "province" else "",
                    district if level == "district" else "",
                    sector,
                    above_only,
                    acc[0],
                    acc[3],
                    acc[2],
                    acc[1],
                )


def _scopes(sector: str, above: int) -> Iterable[tuple[str, int]]:
    yield (sector, 0)
    yield ("*", 0)
    if above:
        yield (sector, 1)
        yield ("*", 1)


def day_text(day: int) -> str:
    return date.fromordinal(day).isoformat()


def row_json(row: RegionRow, version: int) -> bytes:
    return orjson.dumps(
        {
            "day": row.day.isoformat(),
            "level": row.level,
            "province": row.province,
            "city": row.city,
            "district": row.district,
            "sector": row.sector,
            "above_scale_only": row.above_scale_only,
            "enterprises": row.enterprises,
            "resumed": row.resumed,
            "filed": row.filed,
            "suspended": row.suspended,
            "resumption_rate": row.resumption_rate,
            "version": version,
        }
    )
