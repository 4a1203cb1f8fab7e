"""Every rule of CONTRACT §1, each with a passing and a failing case, and a property test."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.events import InvalidEvent, decode, from_dict

NOW = datetime(2020, 2, 10, 12, 0, tzinfo=UTC)
COMMON = {
    "event_id": "ev-1",
    "enterprise_id": "E-1",
    "occurred_at": "2020-02-10T08:00:00+08:00",
    "source": "portal",
}
GOOD: dict[str, dict[str, Any]] = {
    "enterprise_registered": {
        "name": "Steel",
        "province": "P",
        "city": "C",
        "district": "D",
        "sector": "steel",
        "above_scale": True,
        "key_enterprise": False,
        "employees": 5,
        "normal_daily_output_value": 10.5,
        "suppliers": ["S-1", "S.2"],
    },
    "status_changed": {"status": "filed"},
    "daily_report": {
        "report_date": "2020-02-09",
        "staff_on_duty": 0,
        "output_value": 0,
        "planned_output_value": 3.0,
        "masks_in_stock": 10,
        "zero_report": True,
    },
    "appeal_opened": {"appeal_id": "A-1", "category": "raw_materials", "summary": "x" * 2000},
    "appeal_resolved": {"appeal_id": "A-1"},
}


def event(etype: str, **override: Any) -> dict[str, Any]:
    d = {**COMMON, "type": etype, **GOOD[etype]}
    for k, v in override.items():
        if v is DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return d


DROP = object()


@pytest.mark.parametrize("etype", sorted(GOOD))
def test_good_event_of_each_type(etype: str) -> None:
    ev = from_dict(event(etype), NOW)
    assert ev.type == etype


@pytest.mark.parametrize(
    ("etype", "override", "reason"),
    [
        # common fields
        ("status_changed", {"event_id": DROP}, "status_changed.event_id is required"),
        ("status_changed", {"event_id": "x" * 129}, "status_changed.event_id must be 1-128"),
        ("status_changed", {"event_id": 7}, "status_changed.event_id must be a string"),
        (
            "status_changed",
            {"enterprise_id": "x" * 65},
            "status_changed.enterprise_id must be 1-64",
        ),
        ("status_changed", {"enterprise_id": "a/b"}, "status_changed.enterprise_id may only"),
        ("status_changed", {"occurred_at": DROP}, "status_changed.occurred_at is required"),
        ("status_changed", {"occurred_at": "2020-02-10"}, "status_changed.occurred_at must be"),
        (
            "status_changed",
            {"occurred_at": "2020-02-30T08:00:00Z"},
            "status_changed.occurred_at is not a valid date",
        ),
        (
            "status_changed",
            {"occurred_at": "2020-02-10T12:10:01Z"},
            "status_changed.occurred_at is more than 10 minutes in the future",
        ),
        ("status_changed", {"source": ""}, "status_changed.source must be 1-64"),
        ("status_changed", {"source": "s" * 65}, "status_changed.source must be 1-64"),
        ("status_changed", {"schema_version": 2}, "status_changed.schema_version must be 1"),
        ("status_changed", {"schema_version": True}, "status_changed.schema_version must be 1"),
        ("status_changed", {"type": DROP}, "type is required"),
        # enterprise_registered
        ("enterprise_registered", {"province": ""}, "enterprise_registered.province must be"),
        ("enterprise_registered", {"city": DROP}, "enterprise_registered.city is required"),
        ("enterprise_registered", {"district": 3}, "enterprise_registered.district must be a"),
        ("enterprise_registered", {"sector": ""}, "enterprise_registered.sector must be"),
        (
            "enterprise_registered",
            {"above_scale": "yes"},
            "enterprise_registered.above_scale must be true or false",
        ),
        (
            "enterprise_registered",
            {"above_scale": DROP},
            "enterprise_registered.above_scale is required",
        ),
        (
            "enterprise_registered",
            {"key_enterprise": 1},
            "enterprise_registered.key_enterprise must be true or false",
        ),
        (
            "enterprise_registered",
            {"employees": -1},
            "enterprise_registered.employees must be an integer >= 0",
        ),
        (
            "enterprise_registered",
            {"employees": 2.5},
            "enterprise_registered.employees must be an integer >= 0",
        ),
        (
            "enterprise_registered",
            {"normal_daily_output_value": -0.1},
            "enterprise_registered.normal_daily_output_value must be a number >= 0",
        ),
        (
            "enterprise_registered",
            {"normal_daily_output_value": "10"},
            "enterprise_registered.normal_daily_output_value must be a number >= 0",
        ),
        (
            "enterprise_registered",
            {"suppliers": "S-1"},
            "enterprise_registered.suppliers must be an array",
        ),
        (
            "enterprise_registered",
            {"suppliers": ["ok", "not ok"]},
            "enterprise_registered.suppliers[1] must be an enterprise id",
        ),
        ("enterprise_registered", {"name": 5}, "enterprise_registered.name must be a string"),
        # status_changed
        ("status_changed", {"status": DROP}, "status_changed.status is required"),
        ("status_changed", {"status": "Resumed"}, "status_changed.status must be one of"),
        # daily_report
        ("daily_report", {"report_date": "2020-2-9"}, "daily_report.report_date must be a date"),
        ("daily_report", {"report_date": "2020-02-31"}, "daily_report.report_date is not a valid"),
        (
            "daily_report",
            {"staff_on_duty": -3},
            "daily_report.staff_on_duty must be an integer >= 0, got -3",
        ),
        ("daily_report", {"output_value": DROP}, "daily_report.output_value is required"),
        (
            "daily_report",
            {"planned_output_value": -1},
            "daily_report.planned_output_value must be a number >= 0",
        ),
        ("daily_report", {"masks_in_stock": 1.5}, "daily_report.masks_in_stock must be an integer"),
        ("daily_report", {"zero_report": "false"}, "daily_report.zero_report must be true or"),
        # appeals
        ("appeal_opened", {"appeal_id": ""}, "appeal_opened.appeal_id must be 1-64"),
        ("appeal_opened", {"category": "money"}, "appeal_opened.category must be one of"),
        ("appeal_opened", {"summary": "x" * 2001}, "appeal_opened.summary must be 0-2000"),
        ("appeal_resolved", {"appeal_id": DROP}, "appeal_resolved.appeal_id is required"),
    ],
)
def test_each_rule_rejects_with_a_sentence_naming_the_field(
    etype: str, override: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidEvent) as exc:
        from_dict(event(etype, **override), NOW)
    assert str(exc.value).startswith(reason), str(exc.value)


@pytest.mark.parametrize(
    "override",
    [
        {"occurred_at": "2020-02-10T04:00:00Z"},
        {"occurred_at": "2020-02-10t04:00:00.123456789z"},
        {"occurred_at": "2020-02-10T12:09:59Z"},  # within the 10 minutes of clock skew
        {"schema_version": 1},
        {"unknown_field": {"kept": True}},
        {"enterprise_id": "Az09._:-"},
    ],
)
def test_accepted_edge_cases(override: dict[str, Any]) -> None:
    from_dict(event("status_changed", **override), NOW)


def test_optional_defaults() -> None:
    ev = from_dict(
        event("daily_report", planned_output_value=DROP, masks_in_stock=DROP, zero_report=DROP), NOW
    )
    assert ev.planned_output_value is None and ev.masks_in_stock is None  # type: ignore[union-attr]
    assert ev.zero_report is False  # type: ignore[union-attr]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_and_always_get_a_reason(raw: bytes) -> None:
    try:
        decode(raw, NOW)
    except InvalidEvent as exc:
        assert str(exc)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(GOOD)),
    st.dictionaries(
        st.sampled_from(sorted({k for v in GOOD.values() for k in v} | set(COMMON) | {"type"})),
        json_values,
        max_size=4,
    ),
)
def test_arbitrary_field_values_never_crash(etype: str, override: dict[str, Any]) -> None:
    raw = json.dumps(event(etype, **override)).encode()  # stdlib: big ints and Infinity too
    try:
        decode(raw, NOW)
    except InvalidEvent as exc:
        assert str(exc)
