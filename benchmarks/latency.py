"""Publish-to-queryable latency at a steady publish rate.

Load: daily reports of registered enterprises at ``rate`` events/s. Probes, ten a second
among them: a daily report of one of a few probe enterprises, each alone in its own
district, city and province, whose ``staff_on_duty`` counts up. A probe is queryable once
its district's, its city's and its province's rows in ``region_metrics FINAL`` all show its
count (or a later one of the same enterprise). A probe never seen counts as infinitely late.
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
RATE = 5000  # events/s


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


def _registration(
    eid: str, district: str, city: str, now: datetime, province: str = "Bench"
) -> bytes:
    return _event(
        "enterprise_registered",
        eid,
        0,
        now,
        name=eid,
        province=province,
        city=city,
        district=district,
        sector="steel",
        above_scale=False,
        employees=100,
        normal_daily_output_value=1000.0,
    )


def measure_latency(
    run: Run, workers: int = 2, rate: int = RATE, seconds: float = 60.0, enterprises: int = 5000
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
        reg = _registration(eid, f"ProbeD-{i}", f"ProbeC-{i}", start, province=f"Probe-{i}")
        pub.send_raw(eid.encode(), reg)
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
                "SELECT province, min(staff_on_duty), count() FROM region_metrics FINAL "
                "WHERE startsWith(province, 'Probe-') AND sector = '*' "
                "AND above_scale_only = 0 AND day = %(day)s GROUP BY province",
                {"day": start.date()},
            )
            now = time.monotonic()
            for province, staff, levels in rows:
                if levels < 3:
                    continue  # the district's, the city's and the province's rows
                k = int(province.split("-")[1])
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
    lat = sorted(seen[k] - sent[k] if k in seen else float("inf") for k in sent)
    if not sent:
        raise RuntimeError("no probe was sent; see the logs in " + str(run.logs))
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return {
        "publish_rate": published,
        "workers": workers,
        "probes": len(sent),
        "probes_seen": sum(1 for k in sent if k in seen),
        "p50": q[49],
        "p95": q[94],
        "p99": q[98],
        "max": lat[-1],
    }
