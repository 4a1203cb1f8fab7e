"""Pure shared vocabulary of the aggregation: days, region keys, scopes and metric rows.

No Faust, Kafka or ClickHouse here (nor in the stages' logic: only their ``store`` modules
adapt Faust's in-memory store). Days are
``date.toordinal()`` integers in the configured time zone; money is kept in integer fen (0.01
CNY) so that sums, and their corrections, are exact.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import orjson

from producers.events import AnyEvent, DailyReport

SEP = "\x1f"
LEVELS = ("province", "city", "district")

# A metric vector, all integers:
#   0 enterprises, 1 suspended, 2 filed, 3 resumed, 4 appeals_opened, 5 appeals_resolved  (carried)
#   6 reports_received, 7 staff_on_duty, 8 staff_normal, 9 output_fen, 10 capacity_fen (per day)
CARRIED = 6
REPORTED = 5
WIDTH = CARRIED + REPORTED


def local_day(ts: datetime, tz: ZoneInfo) -> int:
    return ts.astimezone(tz).date().toordinal()


def event_day(ev: AnyEvent, tz: ZoneInfo) -> int:
    """The first day an event affects: its local occurred_at day, a report's report_date."""
    if isinstance(ev, DailyReport):
        return ev.report_date.toordinal()
    return local_day(ev.occurred_at, tz)


def day_text(day: int) -> str:
    return date.fromordinal(day).isoformat()


def fen(value: float) -> int:
    return int(round(value * 100))


def identity(ev: AnyEvent) -> str:
    """An event's identity (CONTRACT §1: source and event_id) as one string. Sources hold
    no control character (``producers.events``), so the separator cannot be part of one;
    string order is (source, event_id) order."""
    return f"{ev.source}{SEP}{ev.event_id}"


def split_identity(ident: str) -> tuple[str, str]:
    """(source, event_id) of an ``identity``."""
    source, _, event_id = ident.partition(SEP)
    return source, event_id


def ts_us(ev: AnyEvent) -> int:
    """An event's occurred_at in microseconds since the epoch."""
    return int(ev.occurred_at.timestamp() * 1_000_000)


def region_key(level: str, province: str, city: str = "", district: str = "") -> str:
    return SEP.join((level, province, city, district))


def split_region_key(key: str) -> tuple[str, str, str, str]:
    level, province, city, district = key.split(SEP)
    return level, province, city, district


def parents(district_key: str) -> tuple[str, str]:
    _, province, city, _ = split_region_key(district_key)
    return region_key("city", province, city), region_key("province", province)


def stable_partition(key: str, partitions: int) -> int:
    """Partition of an internal key: stable across processes (unlike ``hash``)."""
    return zlib.crc32(key.encode()) % partitions


_SCOPES: dict[tuple[str, int], tuple[str, ...]] = {}
_SCOPES_HELD = 4096  # (sector, above) pairs whose scopes are kept, one string each


def scopes(sector: str, above: int) -> tuple[str, ...]:
    """The (sector, above_scale_only) scopes an enterprise counts in, as "sector<SEP>0|1".
    The same strings every time for a pair (up to ``_SCOPES_HELD`` pairs): the keys of the
    partial sums share them instead of holding a copy each."""
    got = _SCOPES.get((sector, above))
    if got is None:
        got = (f"{sector}{SEP}0", f"*{SEP}0")
        if above:
            got += (f"{sector}{SEP}1", f"*{SEP}1")
        if len(_SCOPES) < _SCOPES_HELD:
            _SCOPES[(sector, above)] = got
    return got


@dataclass(frozen=True, slots=True)
class RegionRow:
    """One row of region_metrics (CONTRACT §3)."""

    day: int
    region: str  # region key
    scope: str  # "sector<SEP>above_only"
    v: tuple[int, ...]  # the metric vector
    deleted: bool = False  # a retraction: this row no longer exists

    def as_dict(self, version: int) -> dict[str, object]:
        row: dict[str, object] = {
            "day": day_text(self.day),
            **scope_columns(self.region, self.scope),
        }
        if self.deleted:
            return {"deleted": 1, **row, "version": version}
        return {**row, **metric_values(self.v), "version": version}

    def to_json(self, version: int) -> bytes:
        return orjson.dumps(self.as_dict(version))


def scope_columns(region: str, scope: str) -> dict[str, str | int]:
    """The scope columns of a region key and a scope ("sector<SEP>above_only")."""
    level, province, city, district = split_region_key(region)
    sector, above = scope.split(SEP)
    return {
        "level": level,
        "province": province,
        "city": city,
        "district": district,
        "sector": sector,
        "above_scale_only": int(above),
    }


Metric = Callable[[Sequence[int]], int | float | None]

# The §3 columns, each a function of a metric vector.
METRICS: dict[str, Metric] = {
    "enterprises": lambda v: v[0],
    "resumed": lambda v: v[3],
    "filed": lambda v: v[2],
    "suspended": lambda v: v[1],
    "resumption_rate": lambda v: _rate(v[3], v[0]),
    "reports_received": lambda v: v[6],
    "report_compliance": lambda v: _rate(v[6], v[0]),
    "staff_on_duty": lambda v: v[7],
    "staff_normal": lambda v: v[8],
    "workforce_rate": lambda v: _rate(v[7], v[8]),
    "output_value": lambda v: v[9] / 100,
    "capacity_value": lambda v: v[10] / 100,
    "capacity_attainment": lambda v: _rate(v[9], v[10]),
    "appeals_opened": lambda v: v[4],
    "appeals_resolved": lambda v: v[5],
    "appeal_resolution_rate": lambda v: _rate(v[5], v[4]),
}


def metric_values(v: Sequence[int]) -> dict[str, int | float | None]:
    """The §3 columns of a metric vector."""
    return {name: f(v) for name, f in METRICS.items()}


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def escape_line(text: str) -> str:
    """``text`` without line feeds or "|", to be one field of a line of held values:
    backslash, line feed and "|" become \\1, \\2 and \\3."""
    if "\\" in text or "\n" in text or "|" in text:
        return text.replace("\\", "\\1").replace("\n", "\\2").replace("|", "\\3")
    return text


def unescape_line(text: str) -> str:
    """The text that ``escape_line`` gave ``text`` for."""
    if "\\" in text:  # every backslash starts an escape
        return text.replace("\\2", "\n").replace("\\3", "|").replace("\\1", "\\")
    return text
