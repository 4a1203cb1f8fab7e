"""The event contract (CONTRACT §1): typed immutable events, validation and the JSON codec.

Validation runs once per message on the worker's hot path, and every rejection must be one
sentence naming the field and the rule: a compiled msgspec decoder takes the messages that
pass, and the hand-written ``from_dict`` says why the others fail.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated, Any, ClassVar, Literal

import msgspec
import orjson

MAX_FUTURE = timedelta(minutes=10)
# Every timestamp's local day is 1970 or later in any time zone: the day columns can hold it.
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
EARLIEST_REPORT_DATE = date(1970, 1, 1)
# The zone furthest ahead of UTC: its calendar day is the latest one on Earth at any instant,
# so a sender in any zone may report on the day it is sending.
LATEST_ZONE = timezone(timedelta(hours=14))
# Bounds that keep values in range downstream. Amounts become integer fen summed per scope: a
# million enterprises at the cap make 1e19 fen, still within orjson's 2**64 - 1. Headcounts
# and masks go to UInt32 columns.
MAX_AMOUNT = 100_000_000_000  # CNY
MAX_HEADCOUNT = 10_000_000
MAX_MASKS = 4_294_967_295
ENTERPRISE_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_TIMESTAMP = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?"
RFC3339_RE = re.compile(_TIMESTAMP + r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
ANY_OFFSET_RE = re.compile(_TIMESTAMP + r"([+-]\d{2}:\d{2})")  # for the rejection message only
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
STATUSES = ("suspended", "filed", "resumed")
CATEGORIES = (
    "funding",
    "raw_materials",
    "epidemic_supplies",
    "labor",
    "logistics",
    "policy",
    "other",
)
EVENT_TYPES = (
    "enterprise_registered",
    "status_changed",
    "daily_report",
    "appeal_opened",
    "appeal_resolved",
)


class InvalidEvent(ValueError):
    """An event that breaks the contract; ``str(exc)`` names the field and the rule."""


@dataclass(frozen=True, slots=True)
class Event:
    """Fields common to every event."""

    TYPE: ClassVar[str] = ""
    event_id: str
    enterprise_id: str
    occurred_at: datetime
    source: str
    schema_version: int = 1

    @property
    def type(self) -> str:
        return self.TYPE


@dataclass(frozen=True, slots=True)
class EnterpriseRegistered(Event):
    TYPE: ClassVar[str] = "enterprise_registered"
    name: str = ""
    province: str = ""
    city: str = ""
    district: str = ""
    sector: str = ""
    above_scale: bool = False
    key_enterprise: bool = False
    employees: int = 0
    normal_daily_output_value: float = 0.0
    suppliers: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class StatusChanged(Event):
    TYPE: ClassVar[str] = "status_changed"
    status: str = "suspended"


@dataclass(frozen=True, slots=True)
class DailyReport(Event):
    TYPE: ClassVar[str] = "daily_report"
    report_date: date = date.min
    staff_on_duty: int = 0
    output_value: float = 0.0
    planned_output_value: float | None = None
    masks_in_stock: int | None = None
    zero_report: bool = False


@dataclass(frozen=True, slots=True)
class AppealOpened(Event):
    TYPE: ClassVar[str] = "appeal_opened"
    appeal_id: str = ""
    category: str = "other"
    summary: str = ""


@dataclass(frozen=True, slots=True)
class AppealResolved(Event):
    TYPE: ClassVar[str] = "appeal_resolved"
    appeal_id: str = ""


AnyEvent = EnterpriseRegistered | StatusChanged | DailyReport | AppealOpened | AppealResolved


# -- field checks: each raises InvalidEvent naming "<type>.<field>" ----------------------
# (that name is put together only for an error: the worker validates every message)
def _missing(where: str) -> InvalidEvent:
    return InvalidEvent(f"{where} is required but missing")


def _string(
    d: dict[str, Any],
    t: str,
    key: str,
    lo: int = 1,
    hi: int = 64,
    default: str | None = None,
    solid: bool = False,
) -> str:
    if key not in d:
        if default is not None:
            return default
        raise _missing(f"{t}.{key}")
    v = d[key]
    if not isinstance(v, str):
        raise InvalidEvent(f"{t}.{key} must be a string, got {_show(v)}")
    if not lo <= len(v) <= hi:
        raise InvalidEvent(f"{t}.{key} must be {lo}-{hi} characters long, got {len(v)}")
    if solid and v.isspace():  # isspace() stops at the first visible character: cheap
        raise InvalidEvent(f"{t}.{key} must not be blank, got {_show(v)}")
    return v


def _bool(d: dict[str, Any], t: str, key: str, default: bool | None = None) -> bool:
    if key not in d:
        if default is not None:
            return default
        raise _missing(f"{t}.{key}")
    v = d[key]
    if not isinstance(v, bool):
        raise InvalidEvent(f"{t}.{key} must be true or false, got {_show(v)}")
    return v


def _count(d: dict[str, Any], t: str, key: str, hi: int, optional: bool = False) -> int | None:
    if key not in d or (optional and d[key] is None):
        if optional:
            return None
        raise _missing(f"{t}.{key}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
        raise InvalidEvent(f"{t}.{key} must be an integer between 0 and {hi}, got {_show(v)}")
    return v


def _amount(d: dict[str, Any], t: str, key: str, optional: bool = False) -> float | None:
    if key not in d or (optional and d[key] is None):
        if optional:
            return None
        raise _missing(f"{t}.{key}")
    v = d[key]
    # The chained comparison also rejects NaN and infinities, and compares a huge int exactly
    # (no OverflowError), so float(v) below cannot overflow.
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_AMOUNT:
        raise InvalidEvent(f"{t}.{key} must be a number between 0 and {MAX_AMOUNT}, got {_show(v)}")
    return float(v)


def _show(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)  # orjson would write null
    try:
        text = orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # orjson.JSONEncodeError, e.g. an int beyond 64 bits
        try:
            text = repr(v)
        except ValueError:  # an int over Python's 4300-digit limit for str()
            text = (
                f"an integer of {v.bit_length()} bits" if isinstance(v, int) else type(v).__name__
            )
    return text if len(text) <= 60 else text[:57] + "..."


def parse_timestamp(v: Any, where: str) -> datetime:
    if not isinstance(v, str) or not RFC3339_RE.fullmatch(v):
        bad = ANY_OFFSET_RE.fullmatch(v) if isinstance(v, str) else None
        if bad:
            raise InvalidEvent(
                f"{where} has an invalid UTC offset {bad.group(1)} (hours must be 00-23, "
                f"minutes 00-59), got {_show(v)}"
            )
        raise InvalidEvent(
            f"{where} must be an RFC 3339 timestamp with offset like "
            f"2026-02-10T08:30:00+08:00, got {_show(v)}"
        )
    # Python 3.11's fromisoformat takes any date/time separator and truncates digits beyond
    # microseconds; of RFC 3339's variants only a lower-case "z" needs rewriting.
    text = v if v[-1] != "z" else v[:-1] + "Z"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidEvent(f"{where} is not a valid date and time: {exc}, got {_show(v)}") from exc
    return ts


def _date(d: dict[str, Any], t: str, key: str) -> date:
    if key not in d:
        raise _missing(f"{t}.{key}")
    v = d[key]
    if not isinstance(v, str) or not DATE_RE.fullmatch(v):
        raise InvalidEvent(f"{t}.{key} must be a date YYYY-MM-DD, got {_show(v)}")
    try:
        return date.fromisoformat(v)
    except ValueError as exc:
        raise InvalidEvent(f"{t}.{key} is not a valid date, got {_show(v)}") from exc


def from_dict(d: Any, now: datetime | None = None) -> AnyEvent:
    """Validate one decoded JSON value against CONTRACT §1 and build its typed event."""
    if not isinstance(d, dict):
        raise InvalidEvent(f"an event must be a JSON object, got {_show(d)}")
    etype = d.get("type")
    if "type" not in d:
        raise _missing("type")
    if etype not in EVENT_TYPES:
        raise InvalidEvent(f"type must be one of {', '.join(EVENT_TYPES)}, got {_show(etype)}")
    t = str(etype)
    sv = d.get("schema_version", 1)
    if type(sv) is not int or sv != 1:  # not 1.0, not true
        raise InvalidEvent(
            f"{t}.schema_version must be the integer 1 (the only supported version), "
            f"got {_show(sv)}"
        )
    event_id = _string(d, t, "event_id", 1, 128)
    eid = _string(d, t, "enterprise_id", 1, 64)
    if not ENTERPRISE_ID_RE.fullmatch(eid):
        raise InvalidEvent(
            f"{t}.enterprise_id may only contain letters, digits and . _ : -, got {_show(eid)}"
        )
    if "occurred_at" not in d:
        raise _missing(f"{t}.occurred_at")
    occurred_at = parse_timestamp(d["occurred_at"], f"{t}.occurred_at")
    now = now or datetime.now(UTC)
    if occurred_at - now > MAX_FUTURE:
        raise InvalidEvent(
            f"{t}.occurred_at is more than 10 minutes in the future "
            f"({occurred_at.isoformat()} vs receiver clock {now.isoformat(timespec='seconds')})"
        )
    if occurred_at.year < 1971 and occurred_at < EARLIEST:  # the year first: 20x cheaper
        raise InvalidEvent(
            f"{t}.occurred_at must not be before 1970-01-02T00:00:00Z, "
            f"got {_show(d['occurred_at'])}"
        )
    source = _string(d, t, "source", 1, 64)
    if CONTROL_RE.search(source):
        # A system's name; a control character in it would make (source, event_id)
        # ambiguous where the two are joined (streams.enterprise.identity).
        raise InvalidEvent(f"{t}.source must not contain control characters, got {_show(source)}")
    common: dict[str, Any] = {
        "event_id": event_id,
        "enterprise_id": eid,
        "occurred_at": occurred_at,
        "source": source,
    }

    if t == "enterprise_registered":
        suppliers = d.get("suppliers", [])
        if not isinstance(suppliers, list):
            raise InvalidEvent(
                f"{t}.suppliers must be an array of enterprise ids, got {_show(suppliers)}"
            )
        for i, sup in enumerate(suppliers):
            if not isinstance(sup, str) or not ENTERPRISE_ID_RE.fullmatch(sup):
                raise InvalidEvent(
                    f"{t}.suppliers[{i}] must be an enterprise id (1-64 of A-Za-z0-9._:-), "
                    f"got {_show(sup)}"
                )
        return EnterpriseRegistered(
            **common,
            name=_string(d, t, "name", 0, 500),
            # "non-empty" in the contract: a name of spaces names no region or sector either.
            province=_string(d, t, "province", 1, 200, solid=True),
            city=_string(d, t, "city", 1, 200, solid=True),
            district=_string(d, t, "district", 1, 200, solid=True),
            sector=_string(d, t, "sector", 1, 200, solid=True),
            above_scale=_bool(d, t, "above_scale"),
            key_enterprise=_bool(d, t, "key_enterprise", default=False),
            employees=_count(d, t, "employees", MAX_HEADCOUNT) or 0,
            normal_daily_output_value=_amount(d, t, "normal_daily_output_value") or 0.0,
            suppliers=tuple(suppliers),
        )
    if t == "status_changed":
        status = d.get("status")
        if "status" not in d:
            raise _missing(f"{t}.status")
        if status not in STATUSES:
            raise InvalidEvent(
                f"{t}.status must be one of {', '.join(STATUSES)}, got {_show(status)}"
            )
        return StatusChanged(**common, status=str(status))
    if t == "daily_report":
        report_date = _date(d, t, "report_date")
        # A day before the sender's own calendar day is within UTC+14:00's day whatever the
        # offset (no offset is a day or more ahead of it): only later ones need converting.
        if report_date >= occurred_at.date():
            latest = occurred_at.astimezone(LATEST_ZONE).date()
            if report_date > latest:
                raise InvalidEvent(
                    f"{t}.report_date must not be after the day the report was sent ({latest}, "
                    f"the latest calendar day on Earth at occurred_at), got {report_date}"
                )
        if report_date < EARLIEST_REPORT_DATE:
            raise InvalidEvent(f"{t}.report_date must not be before 1970-01-01, got {report_date}")
        return DailyReport(
            **common,
            report_date=report_date,
            staff_on_duty=_count(d, t, "staff_on_duty", MAX_HEADCOUNT) or 0,
            output_value=_amount(d, t, "output_value") or 0.0,
            planned_output_value=_amount(d, t, "planned_output_value", optional=True),
            masks_in_stock=_count(d, t, "masks_in_stock", MAX_MASKS, optional=True),
            zero_report=_bool(d, t, "zero_report", default=False),
        )
    if t == "appeal_opened":
        category = d.get("category")
        if "category" not in d:
            raise _missing(f"{t}.category")
        if category not in CATEGORIES:
            raise InvalidEvent(
                f"{t}.category must be one of {', '.join(CATEGORIES)}, got {_show(category)}"
            )
        return AppealOpened(
            **common,
            appeal_id=_string(d, t, "appeal_id", 1, 64),
            category=str(category),
            summary=_string(d, t, "summary", 0, 2000, default=""),
        )
    return AppealResolved(**common, appeal_id=_string(d, t, "appeal_id", 1, 64))


# -- the compiled decoder: the same verdicts, about a third of the cost -------------------
# msgspec checks types, lengths, ranges and patterns in one pass over the bytes; what it
# cannot say (timestamps, dates, blank names, control characters) is checked after it, with
# the same functions ``from_dict`` uses. It takes only a message that ``from_dict`` would
# accept with the same values, and leaves everything else, unknown fields included, to
# ``orjson`` and ``from_dict``, which give the reason.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+\Z")]
_Text64 = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_Region = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_Amount = Annotated[float, msgspec.Meta(ge=0, le=MAX_AMOUNT)]
_Headcount = Annotated[int, msgspec.Meta(ge=0, le=MAX_HEADCOUNT)]
_Masks = Annotated[int, msgspec.Meta(ge=0, le=MAX_MASKS)]


class _Wire(msgspec.Struct, tag_field="type", kw_only=True, forbid_unknown_fields=True, gc=False):
    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    enterprise_id: _Id
    occurred_at: str
    source: _Text64
    schema_version: Literal[1] = 1


class _Registered(_Wire, tag="enterprise_registered", gc=False):
    name: Annotated[str, msgspec.Meta(max_length=500)]
    province: _Region
    city: _Region
    district: _Region
    sector: _Region
    above_scale: bool
    employees: _Headcount
    normal_daily_output_value: _Amount
    key_enterprise: bool = False
    suppliers: tuple[_Id, ...] = ()


class _Status(_Wire, tag="status_changed", gc=False):
    status: Literal["suspended", "filed", "resumed"]


class _Report(_Wire, tag="daily_report", gc=False):
    report_date: str
    staff_on_duty: _Headcount
    output_value: _Amount
    planned_output_value: _Amount | None = None
    masks_in_stock: _Masks | None = None
    zero_report: bool = False


class _Opened(_Wire, tag="appeal_opened", gc=False):
    appeal_id: _Text64
    category: Literal[CATEGORIES]  # type: ignore[valid-type]
    summary: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class _Resolved(_Wire, tag="appeal_resolved", gc=False):
    appeal_id: _Text64


_WIRE = msgspec.json.Decoder(_Registered | _Status | _Report | _Opened | _Resolved)


def _from_wire(w: _Wire, now: datetime) -> AnyEvent | None:
    """The event of a message msgspec took, or None when a rule beyond msgspec's fails."""
    text = w.occurred_at
    if not RFC3339_RE.fullmatch(text) or CONTROL_RE.search(w.source):
        return None
    try:
        at = datetime.fromisoformat(text if text[-1] != "z" else text[:-1] + "Z")
    except ValueError:
        return None
    if at - now > MAX_FUTURE or (at.year < 1971 and at < EARLIEST):
        return None
    t = type(w)
    if t is _Report:
        assert isinstance(w, _Report)
        if not DATE_RE.fullmatch(w.report_date):
            return None
        try:
            day = date.fromisoformat(w.report_date)
        except ValueError:
            return None
        if day < EARLIEST_REPORT_DATE or (
            day >= at.date() and day > at.astimezone(LATEST_ZONE).date()
        ):
            return None
        return DailyReport(
            w.event_id,
            w.enterprise_id,
            at,
            w.source,
            1,
            day,
            w.staff_on_duty,
            w.output_value,
            w.planned_output_value,
            w.masks_in_stock,
            w.zero_report,
        )
    if t is _Status:
        assert isinstance(w, _Status)
        return StatusChanged(w.event_id, w.enterprise_id, at, w.source, 1, w.status)
    if t is _Registered:
        assert isinstance(w, _Registered)
        if w.province.isspace() or w.city.isspace() or w.district.isspace() or w.sector.isspace():
            return None
        return EnterpriseRegistered(
            w.event_id,
            w.enterprise_id,
            at,
            w.source,
            1,
            w.name,
            w.province,
            w.city,
            w.district,
            w.sector,
            w.above_scale,
            w.key_enterprise,
            w.employees,
            w.normal_daily_output_value,
            w.suppliers,
        )
    if t is _Opened:
        assert isinstance(w, _Opened)
        return AppealOpened(
            w.event_id, w.enterprise_id, at, w.source, 1, w.appeal_id, w.category, w.summary
        )
    assert isinstance(w, _Resolved)
    return AppealResolved(w.event_id, w.enterprise_id, at, w.source, 1, w.appeal_id)


def decode(raw: bytes, now: datetime | None = None) -> AnyEvent:
    """Bytes from Kafka -> a validated event, or InvalidEvent with the reason."""
    now = now or datetime.now(UTC)
    try:
        ev = _from_wire(_WIRE.decode(raw), now)
    except (msgspec.DecodeError, UnicodeDecodeError):  # the latter: bad UTF-8 in a key
        ev = None
    return ev if ev is not None else decode_checked(raw, now)


def decode_checked(raw: bytes, now: datetime | None = None) -> AnyEvent:
    """``decode`` without the compiled decoder: every rule checked in Python, one by one."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"message is not valid UTF-8 JSON: {exc}") from exc
    return from_dict(d, now)


def to_dict(ev: AnyEvent) -> dict[str, Any]:
    """The JSON form of an event, as published."""
    d: dict[str, Any] = {
        "event_id": ev.event_id,
        "type": ev.TYPE,
        "enterprise_id": ev.enterprise_id,
        "occurred_at": ev.occurred_at.isoformat(),
        "source": ev.source,
    }
    for f in fields(ev):
        name = f.name
        if name in d or name == "schema_version":
            continue
        v = getattr(ev, name)
        if isinstance(v, date):
            v = v.isoformat()
        elif isinstance(v, tuple):
            v = list(v)
        if v is None:
            continue
        d[name] = v
    return d


def encode(ev: AnyEvent) -> bytes:
    return orjson.dumps(to_dict(ev))
