from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from producers.events import (
    DailyReport,
    EnterpriseRegistered,
    InvalidEvent,
    StatusChanged,
    decode,
    encode,
    from_dict,
)
from producers.simulator import simulate

NOW = datetime(2020, 2, 10, 12, 0, tzinfo=UTC)


def base(**kw: object) -> dict[str, object]:
    d: dict[str, object] = {
        "event_id": "ev-1",
        "type": "status_changed",
        "enterprise_id": "E-1",
        "occurred_at": "2020-02-10T08:00:00+08:00",
        "source": "portal",
        "status": "resumed",
    }
    d.update(kw)
    return d


def test_valid_status_event_round_trips() -> None:
    ev = from_dict(base(), NOW)
    assert isinstance(ev, StatusChanged)
    assert ev.status == "resumed"
    assert decode(encode(ev), NOW) == ev


def test_registration_defaults() -> None:
    ev = from_dict(
        base(
            type="enterprise_registered",
            name="Steel",
            province="P",
            city="C",
            district="D",
            sector="steel",
            above_scale=True,
            employees=5,
            normal_daily_output_value=10,
        ),
        NOW,
    )
    assert isinstance(ev, EnterpriseRegistered)
    assert ev.key_enterprise is False and ev.suppliers == ()


def test_daily_report_parses_date() -> None:
    ev = from_dict(
        base(type="daily_report", report_date="2020-02-09", staff_on_duty=3, output_value=1.5),
        NOW,
    )
    assert isinstance(ev, DailyReport)
    assert ev.report_date == date(2020, 2, 9) and ev.zero_report is False


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        (
            {"status": "open"},
            'status_changed.status must be one of suspended, filed, resumed, got "open"',
        ),
        ({"enterprise_id": "bad id"}, "status_changed.enterprise_id may only contain"),
        ({"occurred_at": "2020-02-10 08:00"}, "status_changed.occurred_at must be an RFC 3339"),
        ({"occurred_at": "2020-02-10T08:00:00"}, "status_changed.occurred_at must be an RFC 3339"),
        ({"occurred_at": "2020-02-10T12:11:00Z"}, "status_changed.occurred_at is more than 10"),
        ({"schema_version": 2}, "status_changed.schema_version must be the integer 1"),
        ({"type": "party"}, "type must be one of"),
        ({"event_id": ""}, "status_changed.event_id must be 1-128 characters long, got 0"),
        ({"source": 5}, "status_changed.source must be a string, got 5"),
    ],
)
def test_rule_breaks_name_the_field(override: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        from_dict(base(**override), NOW)
    assert str(exc.value).startswith(reason)


def test_negative_staff_is_rejected_with_value() -> None:
    d = base(type="daily_report", report_date="2020-02-09", staff_on_duty=-3, output_value=1)
    with pytest.raises(
        InvalidEvent,
        match=r"daily_report.staff_on_duty must be an integer between 0 and 10000000, got -3",
    ):
        from_dict(d, NOW)


def test_missing_field() -> None:
    d = base()
    del d["source"]
    with pytest.raises(InvalidEvent, match="status_changed.source is required but missing"):
        from_dict(d, NOW)


def test_not_json() -> None:
    with pytest.raises(InvalidEvent, match="not valid UTF-8 JSON"):
        decode(b"\xff", NOW)
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        decode(orjson.dumps([1]), NOW)


# What the simulator's bad share breaks: one reason per kind of damage it does.
INTENDED_BAD = {
    "truncated": r"message is not valid UTF-8 JSON: ",
    "timestamp": r"\w+\.occurred_at must be an RFC 3339 timestamp .*, got \"yesterday\"$",
    "no source": r"\w+\.source is required but missing$",
    "status": r"status_changed\.status must be one of suspended, filed, resumed, got \"half_open",
    "version": r"\w+\.schema_version must be the integer 1 \(the only supported version\), got 2$",
}


@pytest.mark.parametrize(
    ("tz", "enterprises", "days"),
    [
        ("Asia/Shanghai", 2000, 10),
        ("Pacific/Kiritimati", 300, 5),  # UTC+14:00
        ("Etc/GMT+12", 300, 5),  # UTC-12:00
    ],
)
def test_simulator_output_passes_and_its_bad_share_fails_as_meant(
    tz: str, enterprises: int, days: int
) -> None:
    sim = simulate(enterprises, days, tz=tz, bad_share=0.05, duplicate_share=0.02, late_share=0.02)
    now = datetime.combine(sim.days[-1] + timedelta(days=2), datetime.min.time(), UTC)
    seen: set[str] = set()
    for r in sim.records:
        if r.kind == "bad":
            with pytest.raises(InvalidEvent) as exc:
                decode(r.value, now)
            kinds = {k for k, rx in INTENDED_BAD.items() if re.match(rx, str(exc.value))}
            assert len(kinds) == 1, str(exc.value)
            seen |= kinds
        else:  # valid, duplicate and late ones (too late is for the worker's clock to judge)
            ev = decode(r.value, now)
            assert r.event is None or ev == r.event
    assert sum(r.kind == "valid" for r in sim.records) > enterprises * days // 2
    assert seen == set(INTENDED_BAD)
