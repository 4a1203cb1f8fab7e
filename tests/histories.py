"""Random event histories for property tests: registrations, profile moves across districts,
cities, sectors and size, status changes (some before registration), reports with
corrections, appeals (resolved before opened too), duplicates, and any order. Two sources
number their events alike (an event is (source, event_id)), and some events are weeks older
than the rest: a backfill, and reports that may be too late for their enterprise."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import orjson

REGIONS = [
    ("Wuhan", "Hanyang"),
    ("Wuhan", "Wuchang"),
    ("Yichang", "Xiling"),
    ("Yichang", "Wujiagang"),
]
SECTORS = ["steel", "retail", "oil"]


def random_history(seed: int, enterprises: int = 25, days: int = 8) -> list[bytes]:
    rng = random.Random(seed)
    tz = ZoneInfo("Asia/Shanghai")
    start = date(2020, 2, 10)
    out: list[dict[str, object]] = []
    numbers = {"portal": 0, "hotline": 0}

    def at(day: int) -> str:
        moment = datetime.combine(start + timedelta(days=day), time(0), tz) + timedelta(
            minutes=rng.randrange(24 * 60)
        )
        return moment.isoformat()

    def ev(eid: str, etype: str, day: int, **kw: object) -> None:
        source = rng.choice(sorted(numbers))
        numbers[source] += 1
        out.append(
            {
                "event_id": f"h{seed}-{numbers[source]}",
                "type": etype,
                "enterprise_id": eid,
                "occurred_at": at(day),
                "source": source,
                **kw,
            }
        )

    ids = [f"X{seed}-{i}" for i in range(enterprises)]
    for eid in ids:
        old = rng.random() < 0.05  # a registration weeks before the rest: a backfill
        for i in range(rng.choice([1, 1, 1, 2, 3])):
            city, district = rng.choice(REGIONS)
            ev(
                eid,
                "enterprise_registered",
                -rng.randrange(30, 50) if old and i == 0 else rng.randrange(days),
                name=eid,
                province="Hubei",
                city=city,
                district=district,
                sector=rng.choice(SECTORS),
                above_scale=rng.random() < 0.4,
                key_enterprise=rng.random() < 0.2,
                employees=rng.randrange(0, 500),
                normal_daily_output_value=round(rng.uniform(0, 10_000), 2),
                suppliers=rng.sample(ids, rng.randrange(0, 4)),
            )
        for _ in range(rng.randrange(0, 5)):
            ev(
                eid,
                "status_changed",
                -rng.randrange(30, 50) if rng.random() < 0.05 else rng.randrange(-2, days),
                status=rng.choice(["suspended", "filed", "resumed"]),
            )
        for _ in range(rng.randrange(0, 6)):
            # Now and then weeks old: too late once a report of this week is in.
            report_day = -rng.randrange(35, 50) if rng.random() < 0.05 else rng.randrange(-1, days)
            ev(
                eid,
                "daily_report",
                min(days - 1, max(0, report_day + rng.randrange(0, 2))),
                report_date=(start + timedelta(days=report_day)).isoformat(),
                staff_on_duty=rng.randrange(0, 400),
                output_value=round(rng.uniform(0, 9_000), 2),
                zero_report=rng.random() < 0.2,
            )
        for k in range(rng.randrange(0, 3)):
            appeal = f"{eid}-a{k}"
            ev(
                eid,
                "appeal_opened",
                rng.randrange(days),
                appeal_id=appeal,
                category="funding",
                summary="s",
            )
            if rng.random() < 0.6:
                ev(eid, "appeal_resolved", rng.randrange(days), appeal_id=appeal)
    raws = [orjson.dumps(d) for d in out]
    raws += rng.sample(raws, len(raws) // 10)  # duplicates
    rng.shuffle(raws)
    return raws
