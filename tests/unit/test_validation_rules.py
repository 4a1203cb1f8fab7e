"""Every rule of CONTRACT §1, each with a passing and a failing case, and a property test."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.events import InvalidEvent, decode, decode_checked, from_dict

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
        (
            "status_changed",
            {"schema_version": 2},
            "status_changed.schema_version must be the integer 1",
        ),
        (
            "status_changed",
            {"schema_version": True},
            "status_changed.schema_version must be the integer 1",
        ),
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
            "enterprise_registered.employees must be an integer between 0 and 10000000",
        ),
        (
            "enterprise_registered",
            {"employees": 2.5},
            "enterprise_registered.employees must be an integer between 0 and 10000000",
        ),
        (
            "enterprise_registered",
            {"normal_daily_output_value": -0.1},
            "enterprise_registered.normal_daily_output_value must be a number between 0 and",
        ),
        (
            "enterprise_registered",
            {"normal_daily_output_value": "10"},
            "enterprise_registered.normal_daily_output_value must be a number between 0 and",
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
            "daily_report.staff_on_duty must be an integer between 0 and 10000000, got -3",
        ),
        ("daily_report", {"output_value": DROP}, "daily_report.output_value is required"),
        (
            "daily_report",
            {"planned_output_value": -1},
            "daily_report.planned_output_value must be a number between 0 and",
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


HUGE = 10**400  # a Python int: float() of it raises OverflowError
HUGE_SHOWN = "1" + "0" * 56 + "..."
LIMIT_BREAKS = [
    # amounts: integer fen summed over a province must stay within 64 bits
    (
        "daily_report",
        {"output_value": 1e300},
        "daily_report.output_value must be a number between 0 and 100000000000, got 1e+300",
    ),
    (
        "daily_report",
        {"planned_output_value": 100_000_000_000.01},
        "daily_report.planned_output_value must be a number between 0 and 100000000000, "
        "got 100000000000.01",
    ),
    (
        "enterprise_registered",
        {"normal_daily_output_value": HUGE},
        "enterprise_registered.normal_daily_output_value must be a number between 0 and "
        f"100000000000, got {HUGE_SHOWN}",
    ),
    (
        "daily_report",
        {"output_value": float("inf")},
        "daily_report.output_value must be a number between 0 and 100000000000, got inf",
    ),
    (
        "daily_report",
        {"output_value": float("nan")},
        "daily_report.output_value must be a number between 0 and 100000000000, got nan",
    ),
    # counts: UInt32 columns
    (
        "daily_report",
        {"staff_on_duty": 5_000_000_000},
        "daily_report.staff_on_duty must be an integer between 0 and 10000000, got 5000000000",
    ),
    (
        "enterprise_registered",
        {"employees": 10_000_001},
        "enterprise_registered.employees must be an integer between 0 and 10000000, got 10000001",
    ),
    (
        "enterprise_registered",
        {"employees": HUGE},
        "enterprise_registered.employees must be an integer between 0 and 10000000, "
        f"got {HUGE_SHOWN}",
    ),
    (
        "daily_report",
        {"masks_in_stock": 4_294_967_296},
        "daily_report.masks_in_stock must be an integer between 0 and 4294967295, got 4294967296",
    ),
    # report_date: not after the day in UTC+14:00 (the latest on Earth) at occurred_at
    (
        "daily_report",
        {"report_date": "2021-06-01"},  # occurred_at 2020-02-10T00:00Z is 14:00 in UTC+14
        "daily_report.report_date must not be after the day the report was sent (2020-02-10, "
        "the latest calendar day on Earth at occurred_at), got 2021-06-01",
    ),
    (
        "daily_report",
        {"occurred_at": "2020-02-10T09:59:59Z", "report_date": "2020-02-11"},
        "daily_report.report_date must not be after the day the report was sent (2020-02-10, "
        "the latest calendar day on Earth at occurred_at), got 2020-02-11",
    ),
    (
        "daily_report",  # the sender's own day, but its offset is beyond UTC+14:00
        {"occurred_at": "2020-02-10T05:00:00+20:00", "report_date": "2020-02-10"},
        "daily_report.report_date must not be after the day the report was sent (2020-02-09, "
        "the latest calendar day on Earth at occurred_at), got 2020-02-10",
    ),
    (
        "daily_report",
        {"report_date": "1969-12-31"},
        "daily_report.report_date must not be before 1970-01-01, got 1969-12-31",
    ),
    # schema_version: the JSON integer 1
    (
        "status_changed",
        {"schema_version": 1.0},
        "status_changed.schema_version must be the integer 1 (the only supported version), got 1.0",
    ),
    # occurred_at: a real UTC offset, and a day the day columns can hold
    (
        "status_changed",
        {"occurred_at": "2020-02-10T08:00:00+14:60"},
        "status_changed.occurred_at has an invalid UTC offset +14:60 (hours must be 00-23, "
        'minutes 00-59), got "2020-02-10T08:00:00+14:60"',
    ),
    (
        "status_changed",
        {"occurred_at": "2020-02-10T08:00:00-24:00"},
        "status_changed.occurred_at has an invalid UTC offset -24:00 (hours must be 00-23, "
        'minutes 00-59), got "2020-02-10T08:00:00-24:00"',
    ),
    (
        "status_changed",
        {"occurred_at": "1970-01-01T23:59:59Z"},
        "status_changed.occurred_at must not be before 1970-01-02T00:00:00Z, "
        'got "1970-01-01T23:59:59Z"',
    ),
    (
        "status_changed",  # its local day used to overflow datetime in the worker
        {"occurred_at": "0001-01-01T00:00:00+14:00"},
        "status_changed.occurred_at must not be before 1970-01-02T00:00:00Z, "
        'got "0001-01-01T00:00:00+14:00"',
    ),
    # blank region and sector names (the contract's "non-empty")
    (
        "enterprise_registered",
        {"province": "  "},
        'enterprise_registered.province must not be blank, got "  "',
    ),
    (
        "enterprise_registered",
        {"city": "\u3000"},  # the ideographic space
        'enterprise_registered.city must not be blank, got "\u3000"',
    ),
    (
        "enterprise_registered",
        {"district": " \n"},
        'enterprise_registered.district must not be blank, got " \\n"',
    ),
    (
        "enterprise_registered",
        {"sector": " "},
        'enterprise_registered.sector must not be blank, got " "',
    ),
]


@pytest.mark.parametrize(("etype", "override", "reason"), LIMIT_BREAKS)
def test_limits_reject_with_the_exact_sentence(
    etype: str, override: dict[str, Any], reason: str
) -> None:
    d = event(etype, **override)
    with pytest.raises(InvalidEvent) as exc:
        from_dict(d, NOW)
    assert str(exc.value) == reason
    try:
        raw = orjson.dumps(d)
    except TypeError:  # beyond JSON's reach (HUGE): only from_dict's callers can pass it
        return
    if orjson.loads(raw) == d:  # the worker's path (bytes) says the same
        with pytest.raises(InvalidEvent) as exc:
            decode(raw, NOW)
        assert str(exc.value) == reason


@pytest.mark.parametrize(
    ("etype", "override"),
    [
        ("daily_report", {"output_value": 100_000_000_000, "planned_output_value": 1e11}),
        ("enterprise_registered", {"normal_daily_output_value": 100_000_000_000.0}),
        ("daily_report", {"staff_on_duty": 10_000_000, "masks_in_stock": 4_294_967_295}),
        ("enterprise_registered", {"employees": 10_000_000}),
        # report_date: UTC+14:00's day at occurred_at, from any sender's offset
        ("daily_report", {"occurred_at": "2020-02-10T10:00:00Z", "report_date": "2020-02-11"}),
        ("daily_report", {"occurred_at": "2020-02-10T23:59:00+14:00", "report_date": "2020-02-10"}),
        ("daily_report", {"occurred_at": "2020-02-09T20:00:00-11:00", "report_date": "2020-02-10"}),
        ("daily_report", {"occurred_at": "2020-02-10T05:00:00+20:00", "report_date": "2020-02-09"}),
        ("daily_report", {"report_date": "1970-01-01"}),
        ("status_changed", {"schema_version": 1}),
        ("status_changed", {"schema_version": DROP}),
        ("status_changed", {"occurred_at": "2020-02-10T08:00:00+23:59"}),
        ("status_changed", {"occurred_at": "2020-02-09T08:00:00-23:59"}),
        ("status_changed", {"occurred_at": "2020-02-10T08:00:00-00:00"}),
        ("status_changed", {"occurred_at": "1970-01-02T00:00:00Z"}),
        # visible characters with spaces around them are not blank; summary may be blank
        ("status_changed", {"source": " portal ", "event_id": " 1"}),
        (
            "enterprise_registered",
            {"name": "x" * 500, "province": "P " * 100, "city": " C", "district": "D\t"},
        ),
        ("enterprise_registered", {"sector": "\u3000steel"}),
        ("appeal_opened", {"appeal_id": "A 1", "summary": "   "}),
        ("appeal_resolved", {"appeal_id": "\u00a0A"}),
        # the contract asks only for a length where it does not say "non-empty"
        ("status_changed", {"source": " ", "event_id": "\t"}),
        ("enterprise_registered", {"name": ""}),
        ("enterprise_registered", {"name": "   "}),
        ("appeal_opened", {"appeal_id": " "}),
    ],
)
def test_values_at_the_limits_are_accepted(etype: str, override: dict[str, Any]) -> None:
    d = event(etype, **override)
    ev = from_dict(d, NOW)
    assert ev == decode(orjson.dumps(d), NOW)


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


FIELDS = sorted({k for v in GOOD.values() for k in v} | set(COMMON) | {"type"})


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(GOOD)),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
)
def test_arbitrary_field_values_never_crash(etype: str, override: dict[str, Any]) -> None:
    raw = json.dumps(event(etype, **override)).encode()  # stdlib: big ints and Infinity too
    try:
        decode(raw, NOW)
    except InvalidEvent as exc:
        assert str(exc)


# Python callers of from_dict (gateway, publisher) can pass what JSON bytes cannot.
python_values = json_values | st.sampled_from(
    [HUGE, -HUGE, 10**5000, 2**64, float("nan"), float("inf"), float("-inf")]
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(sorted(GOOD)),
    st.dictionaries(st.sampled_from(FIELDS), python_values, min_size=1, max_size=4),
)
def test_arbitrary_python_values_never_crash_from_dict(
    etype: str, override: dict[str, Any]
) -> None:
    try:
        from_dict(event(etype, **override), NOW)
    except InvalidEvent as exc:
        assert str(exc)


# -- the compiled decoder gives the verdict of the checks written out in Python -----------
def verdict(decoder: Any, raw: bytes) -> Any:
    try:
        return decoder(raw, NOW)
    except InvalidEvent as exc:
        return f"rejected: {exc}"


def same_verdict(raw: bytes) -> None:
    assert verdict(decode, raw) == verdict(decode_checked, raw)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(sorted(GOOD)),
    st.dictionaries(st.sampled_from([*FIELDS, "extra"]), json_values, max_size=4),
)
def test_compiled_decoder_agrees_on_arbitrary_field_values(
    etype: str, override: dict[str, Any]
) -> None:
    same_verdict(json.dumps(event(etype, **override)).encode())


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(GOOD)), st.data())
def test_compiled_decoder_agrees_on_one_byte_changed(etype: str, data: st.DataObject) -> None:
    raw = bytearray(orjson.dumps(event(etype)))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 255))
    same_verdict(bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [
        # the last of a repeated key counts, as orjson reads it
        b'{"type":"status_changed","status":"resumed","status":"filed",'
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        b'{"type":"status_changed","status":"x","status":"filed",'
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        b'{"type":"status_changed","type":"appeal_resolved","appeal_id":"A","status":"filed",'
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        # an unknown field's content is checked as well (orjson refuses the whole message)
        b'{"type":"status_changed","status":"filed","x":"\xff",'
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        b'{"type":"status_changed","status":"filed","x":1e400,'
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        b'{"type":"status_changed","status":"filed","x":' + b"[" * 2000 + b"]" * 2000 + b","
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        b'{"type":"status_changed","status":"filed","event_id":"e","enterprise_id":"E\\n",'
        b'"occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        b'{"type":"status_changed","status":"filed","event_id":"\\ud83d\\ude00",'
        b'"enterprise_id":"E","occurred_at":"2020-02-10T08:00:00z","source":"s\\u0000"}',
        b'{"type":"status_changed","status":"filed","event_id":"e","enterprise_id":"E",'
        b'"occurred_at":"2020-02-10t08:00:00.1234567+08:00","source":"s"}',
        b'{"type":"daily_report","report_date":"2020-02-30","staff_on_duty":1,"output_value":1,'
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
        b'{"type":"daily_report","report_date":"2020-02-10","staff_on_duty":1,"output_value":1,'
        b'"planned_output_value":null,"masks_in_stock":null,'
        b'"event_id":"e","enterprise_id":"E","occurred_at":"2020-02-10T08:00:00Z","source":"s"}',
    ],
)
def test_compiled_decoder_agrees_on_corner_cases(raw: bytes) -> None:
    same_verdict(raw)


def test_compiled_decoder_agrees_on_the_simulator_feed() -> None:
    from producers.simulator import SimConfig, stream

    config = SimConfig(enterprises=300, days=10, seed=3, bad_share=0.05, duplicate_share=0.05)
    raws = [r.value for r in stream(config)]
    assert len(raws) > 3000
    for raw in raws:
        assert verdict(decode, raw) == verdict(decode_checked, raw), raw
