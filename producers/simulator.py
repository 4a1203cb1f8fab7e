"""A reproducible simulated province: registrations and a resumption curve over days."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from producers.events import AnyEvent, EnterpriseRegistered, StatusChanged

SECTORS = ("manufacturing", "energy", "construction", "retail", "logistics", "services")
CITY_NAMES = ("Wuhan", "Huangshi", "Shiyan", "Yichang", "Xiangyang", "Ezhou", "Jingmen")
DISTRICT_SUFFIXES = ("Jiang'an", "Hanyang", "Wuchang", "Qingshan", "Hongshan", "Dongxihu")


@dataclass
class Simulation:
    events: list[AnyEvent]
    enterprises: int
    days: list[date]
    # (city, district) -> [enterprises, resumed] on the last day, computed from the generated
    # statuses, independently of the pipeline.
    final_district: dict[tuple[str, str], list[int]] = field(default_factory=dict)


def simulate(
    enterprises: int = 300,
    days: int = 5,
    seed: int = 7,
    start: date = date(2020, 2, 10),
    province: str = "Hubei",
    tz: str = "Asia/Shanghai",
    cities: int = 3,
    districts_per_city: int = 3,
) -> Simulation:
    rng = random.Random(seed)
    zone = ZoneInfo(tz)
    regions = [
        (
            CITY_NAMES[c % len(CITY_NAMES)],
            f"{CITY_NAMES[c % len(CITY_NAMES)]}-{DISTRICT_SUFFIXES[d % len(DISTRICT_SUFFIXES)]}",
        )
        for c in range(cities)
        for d in range(districts_per_city)
    ]
    day_list = [start + timedelta(days=i) for i in range(days)]
    events: list[AnyEvent] = []
    final: dict[tuple[str, str], list[int]] = {}
    status_last: dict[str, str] = {}
    where: dict[str, tuple[str, str]] = {}

    def at(day: date, minute: int) -> datetime:
        return datetime.combine(day, time(8, 0), zone) + timedelta(minutes=minute)

    for i in range(enterprises):
        eid = f"E{seed}-{i:06d}"
        city, district = rng.choice(regions)
        where[eid] = (city, district)
        reg_day = 0 if rng.random() < 0.8 else rng.randrange(days)
        events.append(
            EnterpriseRegistered(
                event_id=f"{eid}-reg",
                enterprise_id=eid,
                occurred_at=at(day_list[reg_day], i % 600),
                source="simulator",
                name=f"Enterprise {i}",
                province=province,
                city=city,
                district=district,
                sector=rng.choice(SECTORS),
                above_scale=rng.random() < 0.3,
                key_enterprise=rng.random() < 0.05,
                employees=rng.randrange(5, 2000),
                normal_daily_output_value=float(rng.randrange(1_000, 5_000_000)),
            )
        )
        # A resumption curve: filed on one day, resumed a day or two later, some relapse.
        status = "suspended"
        file_day = rng.randrange(days + 2)
        for d in range(days):
            new = status
            if status == "suspended" and d >= file_day:
                new = "filed"
            elif status == "filed" and rng.random() < 0.6:
                new = "resumed"
            elif status == "resumed" and rng.random() < 0.03:
                new = "suspended"
                file_day = d + 1 + rng.randrange(3)
            if new != status:
                status = new
                events.append(
                    StatusChanged(
                        event_id=f"{eid}-st-{d}",
                        enterprise_id=eid,
                        occurred_at=at(day_list[d], 60 + rng.randrange(600)),
                        source="simulator",
                        status=status,
                    )
                )
        status_last[eid] = status
    for eid, (city, district) in where.items():
        counts = final.setdefault((city, district), [0, 0])
        counts[0] += 1
        counts[1] += status_last[eid] == "resumed"
    rng.shuffle(events)  # systems report out of order; the pipeline must not care
    return Simulation(events, enterprises, day_list, final)


def status_summary(sim: Simulation) -> Counter[str]:
    return Counter(e.type for e in sim.events)
