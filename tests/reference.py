"""Brute-force reference of region_metrics: all events in, every expected row out.

Written straight from CONTRACT §3, day by day and enterprise by enterprise, sharing no code
with streams/. Unit and integration tests use it as the ground truth.

A row's value is the tuple METRICS below; money is in fen (0.01 CNY) so sums are exact.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

Key = tuple[date, str, str, str, str, str, int]
METRICS = (
    "enterprises",
    "resumed",
    "filed",
    "suspended",
    "reports_received",
    "staff_on_duty",
    "staff_normal",
    "output_fen",
    "capacity_fen",
    "appeals_opened",
    "appeals_resolved",
)
GRACE = 31  # RESUMEWATCH_GRACE_DAYS' default
TYPES = (
    "enterprise_registered",
    "status_changed",
    "daily_report",
    "appeal_opened",
    "appeal_resolved",
)


def fen(x: float) -> int:
    return int(round(x * 100))


def region_row_key(d: dict[str, Any]) -> tuple[Any, ...]:
    """The key of a region_metrics row given as a dict: (day, level, province, city,
    district, sector, above_scale_only)."""
    return (
        d["day"],
        d["level"],
        d["province"],
        d["city"],
        d["district"],
        d["sector"],
        d["above_scale_only"],
    )


def row_metrics(d: dict[str, Any]) -> tuple[int, ...]:
    """The METRICS tuple of a region_metrics row given as a dict (from Kafka or ClickHouse)."""
    return (
        d["enterprises"],
        d["resumed"],
        d["filed"],
        d["suspended"],
        d["reports_received"],
        d["staff_on_duty"],
        d["staff_normal"],
        fen(d["output_value"]),
        fen(d["capacity_value"]),
        d["appeals_opened"],
        d["appeals_resolved"],
    )


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The events the pipeline accepts (tests feed valid events, duplicates and garbage)."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict) or d.get("type") not in TYPES:
        return None
    return d


def _order(d: dict[str, Any]) -> tuple[Any, ...]:
    """Events of one enterprise in time; at the same instant by (source, event_id)."""
    return (d["_ts"], d["source"], d["event_id"])


def judge(raws: list[bytes], grace: int = GRACE) -> tuple[list[dict[str, Any]], list[bytes]]:
    """In arrival order: the events that count, each (source, event_id) once; and the
    messages that go to dead_letters as too late, a daily report more than ``grace`` days
    behind the newest report_date accepted before it for the same enterprise (CONTRACT
    §1, §3)."""
    seen: set[tuple[str, str]] = set()
    newest_report: dict[str, date] = {}
    events: list[dict[str, Any]] = []
    late: list[bytes] = []
    for raw in raws:
        d = _parse(raw)
        if d is None:
            continue
        if d["type"] == "daily_report":
            day = date.fromisoformat(d["report_date"])
            newest = newest_report.get(d["enterprise_id"])
            if newest is not None and day < newest - timedelta(days=grace):
                late.append(raw)
                continue
            newest_report[d["enterprise_id"]] = max(day, newest or day)
        if (d["source"], d["event_id"]) in seen:
            continue
        seen.add((d["source"], d["event_id"]))
        d["_ts"] = datetime.fromisoformat(d["occurred_at"].replace("Z", "+00:00"))
        events.append(d)
    return events, late


def too_late(raws: list[bytes], grace: int = GRACE) -> list[bytes]:
    """The messages that go to dead_letters as too late, in arrival order."""
    return judge(raws, grace)[1]


def enterprise_days(
    raws: list[bytes], tz_name: str = "Asia/Shanghai", grace: int = GRACE
) -> tuple[dict[tuple[str, date], dict[str, Any]], date | None]:
    """(enterprise_id, day) -> what holds for it that day, from its registration to the newest
    event day; and the newest event day. ``raws`` in the order they were published (which
    decides what is too late)."""
    tz = ZoneInfo(tz_name)
    events, _ = judge(raws, grace)
    if not events:
        return {}, None

    def first_day(d: dict[str, Any]) -> date:
        if d["type"] == "daily_report":
            return date.fromisoformat(d["report_date"])
        return d["_ts"].astimezone(tz).date()

    newest = max(first_day(d) for d in events)
    oldest = min(first_day(d) for d in events)
    by_ent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in events:
        by_ent[d["enterprise_id"]].append(d)

    out: dict[tuple[str, date], dict[str, Any]] = {}
    day = oldest
    while day <= newest:
        end = datetime.combine(day + timedelta(days=1), time(0), tz)
        for eid, evs in by_ent.items():
            in_time = sorted((d for d in evs if d["_ts"] < end), key=_order)
            profile = None
            status = "suspended"
            opened: set[str] = set()
            resolved: set[str] = set()
            for d in in_time:
                if d["type"] == "enterprise_registered":
                    profile = d
                elif d["type"] == "status_changed":
                    status = d["status"]
                elif d["type"] == "appeal_opened":
                    opened.add(d["appeal_id"])
                elif d["type"] == "appeal_resolved":
                    resolved.add(d["appeal_id"])
            if profile is None:
                continue
            reports = sorted(
                (
                    d
                    for d in evs
                    if d["type"] == "daily_report" and date.fromisoformat(d["report_date"]) == day
                ),
                key=_order,
            )
            out[(eid, day)] = {
                "profile": profile,
                "status": status,
                "report": reports[-1] if reports else None,
                "opened": len(opened),
                "resolved": len(opened & resolved),
            }
        day += timedelta(days=1)
    return out, newest


def expected_enterprise_daily(raws: list[bytes]) -> dict[tuple[str, date], tuple[Any, ...]]:
    """(enterprise_id, day) -> (district, status, reported, staff_on_duty, output_fen,
    appeals_opened, appeals_resolved)."""
    days, _ = enterprise_days(raws)
    return {
        k: (
            v["profile"]["district"],
            v["status"],
            int(v["report"] is not None),
            v["report"]["staff_on_duty"] if v["report"] else 0,
            fen(v["report"]["output_value"]) if v["report"] else 0,
            v["opened"],
            v["resolved"],
        )
        for k, v in days.items()
    }


def expected_supply_chain(raws: list[bytes]) -> dict[tuple[str, date], tuple[int, int]]:
    """(enterprise_id, day) -> (suppliers, suppliers_resumed) for enterprises with suppliers."""
    days, _ = enterprise_days(raws)
    out = {}
    for (eid, day), v in days.items():
        suppliers = sorted(set(v["profile"].get("suppliers", [])))
        if not suppliers:
            continue
        resumed = sum(
            1 for s in suppliers if (s, day) in days and days[(s, day)]["status"] == "resumed"
        )
        out[(eid, day)] = (len(suppliers), resumed)
    return out


def expected_rows(
    raws: list[bytes], tz_name: str = "Asia/Shanghai", grace: int = GRACE
) -> dict[Key, tuple[int, ...]]:
    days, newest = enterprise_days(raws, tz_name, grace)
    out: dict[Key, list[int]] = {}
    for (_eid, day), v in days.items():
        profile, report = v["profile"], v["report"]
        status = v["status"]
        vec = [
            1,
            int(status == "resumed"),
            int(status == "filed"),
            int(status == "suspended"),
            int(report is not None),
            report["staff_on_duty"] if report else 0,
            profile["employees"] if report else 0,
            fen(report["output_value"]) if report else 0,
            fen(profile["normal_daily_output_value"]) if report else 0,
            v["opened"],
            v["resolved"],
        ]
        p, c, dist = profile["province"], profile["city"], profile["district"]
        for level, region in (
            ("province", (p, "", "")),
            ("city", (p, c, "")),
            ("district", (p, c, dist)),
        ):
            for sector in (profile["sector"], "*"):
                for above in (0, 1):
                    if above and not profile["above_scale"]:
                        continue
                    acc = out.setdefault((day, level, *region, sector, above), [0] * len(vec))
                    for i, x in enumerate(vec):
                        acc[i] += x
    # A scope has rows from its first day with an enterprise to the newest day, zeros included.
    first: dict[tuple[Any, ...], date] = {}
    for key in out:
        first[key[1:]] = min(first.get(key[1:], key[0]), key[0])
    for scope, d0 in first.items():
        day = d0
        assert newest is not None
        while day <= newest:
            out.setdefault((day, *scope), [0] * len(METRICS))
            day += timedelta(days=1)
    return {k: tuple(v) for k, v in out.items()}


RATES = {  # metric -> (numerator, denominator) indexes into METRICS
    "resumption_rate": (1, 0),
    "report_compliance": (4, 0),
    "workforce_rate": (5, 6),
    "capacity_attainment": (7, 8),
    "appeal_resolution_rate": (10, 9),
}


def _value(metric: str, m: tuple[int, ...]) -> float | None:
    if metric in RATES:
        num, den = RATES[metric]
        return m[num] / m[den] if m[den] else None
    if metric in ("output_value", "capacity_value"):
        return m[METRICS.index(metric.replace("value", "fen"))] / 100
    return float(m[METRICS.index(metric)])


def _firing_since(rule: Any, series: list[tuple[date, float | None, int]]) -> date | None:
    """CONTRACT §5 over one scope's days in order: the day the alert firing at the end fired."""
    since = None
    previous = None
    for day, value, enterprises in sorted(series, key=lambda x: x[0]):
        if value is None or enterprises < rule.min_enterprises:
            previous = value
            continue
        if rule.below is not None:
            clear = rule.clear if rule.clear is not None else rule.below
            if since is None and value < rule.below:
                since = day
            elif since is not None and value >= clear:
                since = None
        else:
            fell = previous is not None and previous - value >= rule.drop - 1e-9
            if since is None and fell:
                since = day
            elif since is not None and not fell:
                since = None
        previous = value
    return since


def expected_firing(
    rows: dict[Key, tuple[int, ...]],
    supply: dict[tuple[str, date], tuple[int, int]],
    rules: list[Any],
) -> set[tuple[str, str, str, str, str, str, int, str, date]]:
    """The alerts firing after all the data: (rule, level, province, city, district, sector,
    above_scale_only, enterprise_id, day it fired); supplier alerts by enterprise only (their
    region columns ''), for rules on every sector and size."""
    out = set()
    for rule in rules:
        series: dict[tuple[Any, ...], list[tuple[date, float | None, int]]] = defaultdict(list)
        if rule.metric == "supplier_readiness":
            assert rule.sector == "*" and not rule.above_scale_only
            for (eid, day), (n, resumed) in supply.items():
                series[("", "", "", "", "*", 0, eid)].append((day, resumed / n, n))
        else:
            for (day, level, *region, sector, above), m in rows.items():
                if (level, sector, above) == (rule.level, rule.sector, rule.above_scale_only):
                    series[(level, *region, sector, above, "")].append(
                        (day, _value(rule.metric, m), m[0])
                    )
        for scope, days in series.items():
            since = _firing_since(rule, days)
            if since is not None:
                out.add((rule.name, *scope, since))
    return out
