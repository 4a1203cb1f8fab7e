"""Brute-force reference of region status metrics: all events in, every expected row out.

Written straight from CONTRACT §3, day by day and enterprise by enterprise, sharing no code
with streams/. Used by unit and integration tests as the ground truth.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

Key = tuple[date, str, str, str, str, str, int]


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The events the pipeline accepts (tests only feed valid ones or obvious garbage)."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(d, dict) or d.get("type") not in (
        "enterprise_registered",
        "status_changed",
        "daily_report",
        "appeal_opened",
        "appeal_resolved",
    ):
        return None
    return d


def expected_rows(raws: list[bytes], tz_name: str = "Asia/Shanghai") -> dict[Key, tuple[int, ...]]:
    """(day, level, province, city, district, sector, above_only) -> (enterprises, resumed,
    filed, suspended)."""
    tz = ZoneInfo(tz_name)
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    for raw in raws:
        d = _parse(raw)
        if d is None or d["event_id"] in seen:
            continue
        seen.add(d["event_id"])
        d["_ts"] = datetime.fromisoformat(d["occurred_at"].replace("Z", "+00:00"))
        events.append(d)
    if not events:
        return {}

    def first_day(d: dict[str, Any]) -> date:
        if d["type"] == "daily_report":
            return date.fromisoformat(d["report_date"])
        return d["_ts"].astimezone(tz).date()

    newest = max(first_day(d) for d in events)
    oldest = min(first_day(d) for d in events)
    by_ent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in events:
        by_ent[d["enterprise_id"]].append(d)

    out: dict[Key, list[int]] = {}
    day = oldest
    while day <= newest:
        end = datetime.combine(day + timedelta(days=1), time(0), tz)
        for evs in by_ent.values():
            upto = sorted(
                (d for d in evs if d["_ts"] < end), key=lambda d: (d["_ts"], d["event_id"])
            )
            profile = None
            status = "suspended"
            for d in upto:
                if d["type"] == "enterprise_registered":
                    profile = d
                elif d["type"] == "status_changed":
                    status = d["status"]
            if profile is None:
                continue
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
                        v = out.setdefault((day, level, *region, sector, above), [0, 0, 0, 0])
                        v[0] += 1
                        v[1 + ("resumed", "filed", "suspended").index(status)] += 1
        day += timedelta(days=1)
    # A scope has rows from its first day with an enterprise to the newest day, zeros included.
    first: dict[tuple[Any, ...], date] = {}
    for key in out:
        scope = key[1:]
        first[scope] = min(first.get(scope, key[0]), key[0])
    for scope, d0 in first.items():
        day = d0
        while day <= newest:
            out.setdefault((day, *scope), [0, 0, 0, 0])
            day += timedelta(days=1)
    return {k: tuple(v) for k, v in out.items()}
