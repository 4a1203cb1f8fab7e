"""Worker memory with many registered enterprises: peak RSS (VmHWM) of one worker that
processed a registration, a status change and a daily report of each of them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from benchmarks import kafka_util
from benchmarks.bench import Run, rss_peak, step, wait_drained


def events(enterprises: int, tz: str) -> Iterator[bytes]:
    zone = ZoneInfo(tz)
    t0 = datetime.now(zone) - timedelta(hours=2)
    day = t0.date().isoformat()
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
        yield orjson.dumps(
            {
                **common,
                "event_id": f"{eid}-d",
                "type": "daily_report",
                "occurred_at": (t0 + timedelta(hours=1)).isoformat(),
                "report_date": day,
                "staff_on_duty": 10 + i % 90,
                "output_value": float(500 + i % 3000),
            }
        )


def measure_memory(run: Run, enterprises: int = 1_000_000) -> dict[str, Any]:
    s = run.settings
    with step(f"publishing {3 * enterprises:,} events of {enterprises:,} enterprises"):
        total = kafka_util.send_lines(
            s.kafka_bootstrap, s.input_topic, events(enterprises, s.timezone)
        )
    worker = run.start("worker", "--loglevel", "warning")
    with step("draining them through one worker"):
        wait_drained(run, run.worker_groups(), timeout=3600)
    peak = rss_peak(worker.pid)
    run.stop()
    return {"enterprises": enterprises, "events": total, "peak_rss_bytes": peak}
