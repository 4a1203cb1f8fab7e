"""Publish-to-queryable latency at a steady publish rate.

Load: daily reports of registered enterprises at ``rate`` events/s. Probes, ten a second
among them: a daily report of one of a few probe enterprises, each alone in its own district,
whose ``staff_on_duty`` counts up. A probe is queryable once its district's row in
``region_metrics FINAL`` shows its count (or a later one of the same enterprise).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from benchmarks.bench import Run, wait_drained

PROBES = 4


def _event(kind: str, eid: str, n: int, now: datetime, **fields: Any) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{eid}-{kind}-{n}",
            "type": kind,
            "enterprise_id": eid,
            "occurred_at": now.isoformat(),
            "source": "bench",
            **fields,
        }
    )


def _registration(eid: str, district: str, city: str, now: datetime) -> bytes:
    return _event(
        "enterprise_registered",
        eid,
        0,
        now,
        name=eid,
        province="Bench",
        city=city,
        district=district,
        sector="steel",
        above_scale=False,
        employees=100,
        normal_daily_output_value=1000.0,
    )


def measure_latency(
    run: Run, workers: int = 2, rate: int = 2000, seconds: float = 60.0, enterprises: int = 5000
) -> dict[str, Any]:
    from producers.publisher import Publisher
    from sinks.runner import clickhouse_client

    s = run.settings
    zone = ZoneInfo(s.timezone)
    start = datetime.now(zone) - timedelta(minutes=1)
    today = start.date().isoformat()
    for i in range(workers):
        run.start("worker", "--loglevel", "warning", name=f"worker-{i}")
    run.start("sink")
    pub = Publisher(s.kafka_bootstrap, s.input_topic, linger_ms=5)
    load = [f"L{i:06d}" for i in range(enterprises)]
    probes = [f"P{i}" for i in range(PROBES)]
    for i, eid in enumerate(load):
        pub.send_raw(eid.encode(), _registration(eid, f"D{i % 24}", f"C{i % 6}", start))
    for i, eid in enumerate(probes):
        pub.send_raw(eid.encode(), _registration(eid, f"Probe-{i}", "Probe", start))
    pub.flush()
    wait_drained(run, {**run.worker_groups(), **run.sink_groups()}, timeout=600)

    client = clickhouse_client(s, s.clickhouse_database)
    sent: dict[tuple[int, int], float] = {}  # (probe, count) -> monotonic send time
    seen: dict[tuple[int, int], float] = {}
    stop = threading.Event()

    def poll() -> None:
        held = dict.fromkeys(range(PROBES), 0)
        while not stop.is_set():
            rows = client.execute(
                "SELECT district, staff_on_duty FROM region_metrics FINAL "
                "WHERE level = 'district' AND city = 'Probe' AND sector = '*' "
                "AND above_scale_only = 0 AND day = %(day)s",
                {"day": start.date()},
            )
            now = time.monotonic()
            for district, staff in rows:
                k = int(district.split("-")[1])
                for n in range(held[k] + 1, int(staff) + 1):
                    seen[(k, n)] = now  # visible now (a later count superseded it)
                held[k] = max(held[k], int(staff))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    rng = random.Random(1)
    counts = [0] * PROBES
    per_tick = max(1, rate // 100)  # sends every 10 ms
    started = time.monotonic()
    tick = 0
    n = 0
    while time.monotonic() - started < seconds:
        now_dt = datetime.now(zone)
        for _ in range(per_tick):
            n += 1
            if n % (rate // 10) == 0:  # ten probes a second
                k = (n // (rate // 10)) % PROBES
                counts[k] += 1
                value = _event(
                    "daily_report",
                    probes[k],
                    counts[k],
                    now_dt,
                    report_date=today,
                    staff_on_duty=counts[k],
                    output_value=1.0,
                )
                sent[(k, counts[k])] = time.monotonic()
                pub.send_raw(probes[k].encode(), value)
                continue
            eid = rng.choice(load)
            value = _event(
                "daily_report",
                eid,
                n,
                now_dt,
                report_date=today,
                staff_on_duty=rng.randint(0, 100),
                output_value=float(rng.randint(0, 1000)),
            )
            pub.send_raw(eid.encode(), value)
        tick += 1
        pause = started + tick * 0.01 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    published = n / (time.monotonic() - started)
    pub.flush()
    deadline = time.monotonic() + 60
    while len(seen) < len(sent) and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    poller.join()
    pub.close()
    client.disconnect()
    run.stop()
    lat = sorted(seen[k] - sent[k] for k in sent if k in seen)
    if not lat:
        raise RuntimeError("no probe became visible; see the logs in " + str(run.logs))
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return {
        "publish_rate": published,
        "workers": workers,
        "probes": len(sent),
        "probes_seen": len(lat),
        "p50": q[49],
        "p95": q[94],
        "p99": q[98],
        "max": lat[-1],
    }
