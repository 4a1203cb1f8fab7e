"""Worker memory with many registered enterprises: peak RSS (VmHWM) of one worker that
processed a registration, a status change and ``report_days`` daily reports (the days
before today) of each of them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from benchmarks import kafka_util
from benchmarks.bench import Run, rss_peak, step, wait_drained


def events(enterprises: int, tz: str, report_days: int = 1) -> Iterator[bytes]:
    """Day by day, as reports come in: every registration and status first, then each
    day's reports of every enterprise."""
    zone = ZoneInfo(tz)
    t0 = datetime.now(zone) - timedelta(days=report_days - 1, hours=2)
    for i in range(enterprises):
        eid = f"M{i:07d}"
        common = {"enterprise_id": eid, "source": "bench"}
        yield orjson.dumps(
            {
                **common,
                "event_id": f"{eid}-r",
                "type": "enterprise_registered",
                "occurred_at": t0.isoformat(),
                "name": eid,
                "province": "Bench",
                "city": f"C{i % 17}",
                "district": f"D{i % 120}",
                "sector": ("steel", "textiles", "food", "chemicals", "machinery")[i % 5],
                "above_scale": i % 4 == 0,
                "employees": 50 + i % 200,
                "normal_daily_output_value": 1000.0 + i % 5000,
            }
        )
        yield orjson.dumps(
            {
                **common,
                "event_id": f"{eid}-s",
                "type": "status_changed",
                "occurred_at": (t0 + timedelta(minutes=30)).isoformat(),
                "status": "resumed" if i % 3 else "filed",
            }
        )
    for d in range(report_days):
        at = t0 + timedelta(days=d, hours=1)
        day = at.date().isoformat()
        for i in range(enterprises):
            eid = f"M{i:07d}"
            yield orjson.dumps(
                {
                    "enterprise_id": eid,
                    "source": "bench",
                    "event_id": f"{eid}-d{d}",
                    "type": "daily_report",
                    "occurred_at": at.isoformat(),
                    "report_date": day,
                    "staff_on_duty": 10 + (i + d) % 90,
                    "output_value": float(500 + (i * 7 + d) % 3000),
                }
            )


def measure_memory(run: Run, enterprises: int = 1_000_000, report_days: int = 31) -> dict[str, Any]:
    s = run.settings
    n = (2 + report_days) * enterprises
    with step(f"publishing {n:,} events of {enterprises:,} enterprises"):
        total = kafka_util.send_lines(
            s.kafka_bootstrap, s.input_topic, events(enterprises, s.timezone, report_days)
        )
    worker = run.start("worker", "--loglevel", "warning")
    with step("draining them through one worker"):
        wait_drained(run, run.worker_groups(), timeout=3600)
    peak = rss_peak(worker.pid)
    run.stop()
    return {
        "enterprises": enterprises,
        "report_days": report_days,
        "events": total,
        "peak_rss_bytes": peak,
    }
