"""``resumewatch reconcile``: recompute region_metrics from enterprise_daily in one SQL query
and list every row where the streamed values differ."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from resumewatch.settings import Settings

KEY = ("day", "level", "province", "city", "district", "sector", "above_scale_only")
VALUES = (
    "enterprises",
    "resumed",
    "filed",
    "suspended",
    "reports_received",
    "staff_on_duty",
    "staff_normal",
    "output_value",
    "capacity_value",
    "appeals_opened",
    "appeals_resolved",
)

# Each enterprise-day counts in three regions (province, city, district), two sectors (its own
# and '*') and one or two size scopes; the arrayJoins below spell exactly that out.
RECOMPUTE_SQL = """
SELECT day, region.1 AS lvl, region.2 AS prov, region.3 AS cty, region.4 AS dist,
       sec, above_only,
       count() AS enterprises,
       toUInt64(sum(status = 'resumed')) AS resumed,
       toUInt64(sum(status = 'filed')) AS filed,
       toUInt64(sum(status = 'suspended')) AS suspended,
       toUInt64(sum(reported)) AS reports_received,
       toUInt64(sum(staff_on_duty)) AS staff_on_duty,
       toUInt64(sum(if(reported = 1, employees, 0))) AS staff_normal,
       round(sum(output_value), 2) AS output_value,
       round(sum(if(reported = 1, normal_daily_output_value, 0)), 2) AS capacity_value,
       toUInt64(sum(appeals_opened)) AS appeals_opened,
       toUInt64(sum(appeals_resolved)) AS appeals_resolved
FROM
(
    SELECT *,
           arrayJoin([('province', province, '', ''), ('city', province, city, ''),
                      ('district', province, city, district)]) AS region,
           arrayJoin([sector, '*']) AS sec,
           arrayJoin(if(above_scale = 1, [0, 1], [0])) AS above_only
    FROM {db}.enterprise_daily
)
GROUP BY day, lvl, prov, cty, dist, sec, above_only
"""
STREAMED_SQL = """
SELECT day, level, province, city, district, sector, above_scale_only,
       enterprises, resumed, filed, suspended, reports_received, staff_on_duty, staff_normal,
       round(output_value, 2), round(capacity_value, 2), appeals_opened, appeals_resolved
FROM {db}.region_metrics FINAL
"""


@dataclass
class Difference:
    key: tuple[Any, ...]
    streamed: tuple[Any, ...] | None
    recomputed: tuple[Any, ...] | None

    def describe(self) -> str:
        where = " ".join(f"{k}={v!s}" for k, v in zip(KEY, self.key, strict=True) if v != "")
        if self.streamed is None:
            return f"{where}: missing from region_metrics"
        if self.recomputed is None:
            return f"{where}: in region_metrics only"
        diffs = ", ".join(
            f"{name} streamed {a} vs {b}"
            for name, a, b in zip(VALUES, self.streamed, self.recomputed, strict=True)
            if a != b
        )
        return f"{where}: {diffs}"


@dataclass
class Report:
    rows_checked: int = 0
    differences: list[Difference] = field(default_factory=list)


def reconcile(settings: Settings, client: Any | None = None) -> Report:
    from sinks.runner import clickhouse_client

    own = client is None
    client = client or clickhouse_client(settings)
    try:
        db = settings.clickhouse_database
        recomputed = {
            tuple(r[:7]): tuple(r[7:]) for r in client.execute(RECOMPUTE_SQL.format(db=db))
        }
        streamed = {tuple(r[:7]): tuple(r[7:]) for r in client.execute(STREAMED_SQL.format(db=db))}
    finally:
        if own:
            client.disconnect()
    report = Report(rows_checked=len(streamed.keys() | recomputed.keys()))
    zero = (0,) * len(VALUES)
    for key in sorted(streamed.keys() | recomputed.keys()):
        a, b = streamed.get(key), recomputed.get(key)
        # A scope keeps zero rows on days after its enterprises moved away; enterprise_daily
        # has nothing to count there, which is the same thing.
        if a == b or (b is None and a is not None and tuple(map(float, a)) == zero):
            continue
        report.differences.append(Difference(key, a, b))
    return report
