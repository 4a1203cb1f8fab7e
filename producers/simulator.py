"""A reproducible simulated province, generated as a stream (one million enterprises fit).

Cities and districts, sectors, an above-designated-size share, supplier chains around key
enterprises, a resumption curve over weeks (filed, then resumed, with relapses), daily reports
(zero reports when nothing runs, missing ones, corrections), appeals opened and resolved (a
resolution sometimes arrives first), and, on request, a share of bad, duplicate, too-late and
out-of-order messages.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import orjson

from producers.events import (
    CATEGORIES,
    AnyEvent,
    AppealOpened,
    AppealResolved,
    DailyReport,
    EnterpriseRegistered,
    StatusChanged,
    encode,
)

SECTORS = (
    "manufacturing",
    "oil_and_gas",
    "chemicals",
    "construction",
    "retail",
    "logistics",
    "food_processing",
    "electronics",
)
CITY_NAMES = (
    "Wuhan",
    "Huangshi",
    "Shiyan",
    "Yichang",
    "Xiangyang",
    "Ezhou",
    "Jingmen",
    "Xiaogan",
    "Jingzhou",
    "Huanggang",
    "Xianning",
    "Suizhou",
)
DISTRICT_NAMES = (
    "Jiang'an",
    "Hanyang",
    "Wuchang",
    "Qingshan",
    "Hongshan",
    "Dongxihu",
    "Caidian",
    "Jiangxia",
    "Huangpi",
    "Xinzhou",
)
Kind = Literal["valid", "duplicate", "bad", "late"]


@dataclass(frozen=True)
class SimConfig:
    enterprises: int = 3000
    days: int = 21
    seed: int = 7
    start: date = date(2020, 2, 10)
    province: str = "Hubei"
    cities: int = 6
    districts_per_city: int = 4
    tz: str = "Asia/Shanghai"
    above_scale_share: float = 0.25
    key_share: float = 0.03
    report_share: float = 0.85  # chance an enterprise reports on a given day
    appeal_rate: float = 0.01  # appeals per enterprise and day
    bad_share: float = 0.0  # messages that break the contract
    duplicate_share: float = 0.0  # messages sent again
    late_share: float = 0.0  # reports too late: beyond the grace behind their own newest
    disorder: int = 200  # events are shuffled within windows of this many
    source: str = "simulator"


@dataclass(frozen=True, slots=True)
class Record:
    """One message as it goes to Kafka: key, value bytes, and what the simulator meant."""

    key: bytes
    value: bytes
    kind: Kind
    event: AnyEvent | None = None


@dataclass
class Summary:
    """What the simulated province looks like on its last day, computed by the simulator."""

    days: list[date] = field(default_factory=list)
    counts: dict[Kind, int] = field(default_factory=dict)
    # (city, district) -> [enterprises, resumed] on the last day
    final_district: dict[tuple[str, str], list[int]] = field(default_factory=dict)


@dataclass
class Simulation:
    """A small simulation held in memory (tests and the demo)."""

    records: list[Record]
    summary: Summary

    @property
    def events(self) -> list[AnyEvent]:
        return [r.event for r in self.records if r.kind == "valid" and r.event is not None]

    @property
    def days(self) -> list[date]:
        return self.summary.days

    @property
    def final_district(self) -> dict[tuple[str, str], list[int]]:
        return self.summary.final_district


def simulate(
    enterprises: int = 300, days: int = 5, seed: int = 7, tz: str = "Asia/Shanghai", **kw: object
) -> Simulation:
    cfg = SimConfig(enterprises=enterprises, days=days, seed=seed, tz=tz, **kw)  # type: ignore[arg-type]
    summary = Summary()
    return Simulation(list(stream(cfg, summary)), summary)


@dataclass(slots=True)
class _Ent:
    eid: str
    city: str
    district: str
    sector: str
    above: bool
    key: bool
    employees: int
    capacity: float
    reg_day: int
    file_day: int
    status: str = "suspended"
    suppliers: tuple[str, ...] = ()
    n_appeals: int = 0


def stream(cfg: SimConfig, summary: Summary | None = None) -> Iterator[Record]:
    """Generate the province day by day; memory grows with enterprises, not with events."""
    rng = random.Random(cfg.seed)
    zone = ZoneInfo(cfg.tz)
    summary = summary if summary is not None else Summary()
    summary.days = [cfg.start + timedelta(days=i) for i in range(cfg.days)]
    summary.counts = {"valid": 0, "duplicate": 0, "bad": 0, "late": 0}
    regions: list[tuple[str, str]] = []
    for c in range(cfg.cities):
        city = CITY_NAMES[c % len(CITY_NAMES)] + (f"-{c}" if c >= len(CITY_NAMES) else "")
        for d in range(cfg.districts_per_city):
            name = DISTRICT_NAMES[d % len(DISTRICT_NAMES)] + (
                f"-{d}" if d >= len(DISTRICT_NAMES) else ""
            )
            regions.append((city, f"{city}-{name}"))
    ents: list[_Ent] = []
    for i in range(cfg.enterprises):
        city, district = regions[rng.randrange(len(regions))]
        above = rng.random() < cfg.above_scale_share
        key = rng.random() < cfg.key_share
        # Bigger and key enterprises file earlier: a resumption curve over weeks.
        mean = 4 if key else (7 if above else 12)
        ents.append(
            _Ent(
                eid=f"E{cfg.seed}-{i:07d}",
                city=city,
                district=district,
                sector=SECTORS[rng.randrange(len(SECTORS))],
                above=above,
                key=key,
                employees=rng.randrange(200, 5000) if above else rng.randrange(3, 200),
                capacity=float(
                    rng.randrange(500_000, 20_000_000) if above else rng.randrange(2_000, 500_000)
                ),
                reg_day=0 if rng.random() < 0.85 else rng.randrange(max(1, cfg.days)),
                file_day=max(0, int(rng.expovariate(1 / mean))),
            )
        )
    ids = [e.eid for e in ents]
    for e in ents:
        if e.key and len(ids) > 1:
            e.suppliers = tuple(
                sorted({rng.choice(ids) for _ in range(rng.randrange(3, 9))} - {e.eid})
            )

    def at(day: int, minute: int) -> datetime:
        return datetime.combine(cfg.start + timedelta(days=day), time(7, 0), zone) + timedelta(
            minutes=minute
        )

    def registered(e: _Ent, day: int, suffix: str) -> EnterpriseRegistered:
        return EnterpriseRegistered(
            event_id=f"{e.eid}-reg{suffix}",
            enterprise_id=e.eid,
            occurred_at=at(day, rng.randrange(600)),
            source=cfg.source,
            name=f"Enterprise {e.eid}",
            province=cfg.province,
            city=e.city,
            district=e.district,
            sector=e.sector,
            above_scale=e.above,
            key_enterprise=e.key,
            employees=e.employees,
            normal_daily_output_value=e.capacity,
            suppliers=e.suppliers,
        )

    window: list[Record] = []
    sent_before: list[Record] = []
    late: list[Record] = []

    def emit(ev: AnyEvent) -> Iterator[Record]:
        rec = Record(ev.enterprise_id.encode(), encode(ev), "valid", ev)
        out = [rec]
        if cfg.bad_share and rng.random() < cfg.bad_share:
            out.append(_bad(rng, ev))
        if cfg.duplicate_share and sent_before and rng.random() < cfg.duplicate_share:
            prev = sent_before[rng.randrange(len(sent_before))]
            out.append(Record(prev.key, prev.value, "duplicate", prev.event))
        if cfg.late_share and isinstance(ev, DailyReport) and rng.random() < cfg.late_share:
            # Sent after everything else: by then ev is accepted, so this one is too late.
            late.append(_late(rng, ev))
        if len(sent_before) < 10_000:
            sent_before.append(rec)
        else:
            sent_before[rng.randrange(10_000)] = rec
        for r in out:
            window.append(r)
            if len(window) >= max(1, cfg.disorder):
                rng.shuffle(window)
                yield from _count(summary, window)
                window.clear()

    open_appeals: list[tuple[_Ent, str]] = []
    for day in range(cfg.days):
        for e in ents:
            if e.reg_day == day:
                yield from emit(registered(e, day, ""))
            elif day > e.reg_day and rng.random() < 0.0005:
                # A profile change: the enterprise moves to another district of its city.
                e.district = rng.choice([d for c, d in regions if c == e.city])
                yield from emit(registered(e, day, f"-{day}"))
            new = e.status
            if e.status == "suspended" and day >= e.file_day:
                new = "filed"
            elif e.status == "filed" and rng.random() < 0.5:
                new = "resumed"
            elif e.status == "resumed" and rng.random() < 0.01:
                new = "suspended"
                e.file_day = day + 1 + rng.randrange(5)
            if new != e.status:
                e.status = new
                yield from emit(
                    StatusChanged(
                        event_id=f"{e.eid}-st-{day}",
                        enterprise_id=e.eid,
                        occurred_at=at(day, 60 + rng.randrange(600)),
                        source=cfg.source,
                        status=new,
                    )
                )
            if day >= e.reg_day and rng.random() < cfg.report_share:
                running = e.status == "resumed"
                attain = rng.uniform(0.3, 1.05) if running else 0.0
                # The report for a day is sent that evening or the next morning.
                sent = (
                    at(day, 660 + rng.randrange(180))
                    if rng.random() < 0.7
                    else at(day + 1, rng.randrange(120))
                )
                report = DailyReport(
                    event_id=f"{e.eid}-rep-{day}",
                    enterprise_id=e.eid,
                    occurred_at=min(sent, at(cfg.days - 1, 900)),
                    source=cfg.source,
                    report_date=cfg.start + timedelta(days=day),
                    staff_on_duty=int(e.employees * attain * rng.uniform(0.8, 1.0)),
                    output_value=round(e.capacity * attain, 2),
                    planned_output_value=round(e.capacity * 0.9, 2) if running else None,
                    masks_in_stock=rng.randrange(0, 5000) if running else None,
                    zero_report=not running,
                )
                yield from emit(report)
                if rng.random() < 0.02:  # a correction of the same day
                    yield from emit(
                        DailyReport(
                            event_id=f"{e.eid}-rep-{day}-fix",
                            enterprise_id=e.eid,
                            occurred_at=report.occurred_at + timedelta(minutes=30),
                            source=cfg.source,
                            report_date=report.report_date,
                            staff_on_duty=report.staff_on_duty,
                            output_value=round(report.output_value * 1.1, 2),
                            zero_report=report.zero_report,
                        )
                    )
            if day >= e.reg_day and rng.random() < cfg.appeal_rate:
                e.n_appeals += 1
                appeal_id = f"{e.eid}-ap{e.n_appeals}"
                yield from emit(
                    AppealOpened(
                        event_id=f"{appeal_id}-open",
                        enterprise_id=e.eid,
                        occurred_at=at(day, rng.randrange(600)),
                        source=cfg.source,
                        appeal_id=appeal_id,
                        category=CATEGORIES[rng.randrange(len(CATEGORIES))],
                        summary="Need help to restart production",
                    )
                )
                open_appeals.append((e, appeal_id))
        still_open = []
        for e, appeal_id in open_appeals:
            if rng.random() < 0.35:
                yield from emit(
                    AppealResolved(
                        event_id=f"{appeal_id}-done",
                        enterprise_id=e.eid,
                        occurred_at=at(day, 600 + rng.randrange(200)),
                        source=cfg.source,
                        appeal_id=appeal_id,
                    )
                )
            else:
                still_open.append((e, appeal_id))
        open_appeals = still_open
    rng.shuffle(window)
    yield from _count(summary, window)
    yield from _count(summary, late)
    final: dict[tuple[str, str], list[int]] = {}
    for e in ents:
        counts = final.setdefault((e.city, e.district), [0, 0])
        counts[0] += 1
        counts[1] += e.status == "resumed"
    summary.final_district = final


def _count(summary: Summary, records: list[Record]) -> Iterator[Record]:
    for r in records:
        summary.counts[r.kind] += 1
        yield r


def _bad(rng: random.Random, ev: AnyEvent) -> Record:
    d = orjson.loads(encode(ev))
    d["event_id"] = d["event_id"] + "-bad"
    choice = rng.randrange(5)
    if choice == 0:
        value = encode(ev)[: rng.randrange(1, 20)]  # truncated JSON
    elif choice == 1:
        d["occurred_at"] = "yesterday"
        value = orjson.dumps(d)
    elif choice == 2:
        d.pop("source")
        value = orjson.dumps(d)
    elif choice == 3:
        d["type"] = "status_changed"
        d["status"] = "half_open"
        value = orjson.dumps(d)
    else:
        d["schema_version"] = 2
        value = orjson.dumps(d)
    return Record(ev.enterprise_id.encode(), value, "bad", None)


def _late(rng: random.Random, ev: DailyReport) -> Record:
    """A report for a day 45 to 74 days before ``ev``'s: too late once ``ev`` is accepted
    (CONTRACT §3, with the default grace of 31 days)."""
    late = replace(
        ev,
        event_id=f"{ev.event_id}-late",
        report_date=ev.report_date - timedelta(days=45 + rng.randrange(30)),
    )
    return Record(late.enterprise_id.encode(), encode(late), "late", late)
