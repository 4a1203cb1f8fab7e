"""Per-enterprise state: every accepted event, kept idempotently, and what follows from it.

The state is plain JSON-able data stored in a changelog-backed table. Applying an event twice
changes nothing (event ids are remembered), and everything downstream is *derived* from the
whole state, so a replayed or reordered event leads to the same output.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from producers.events import (
    AnyEvent,
    AppealOpened,
    AppealResolved,
    EnterpriseRegistered,
    StatusChanged,
)
from streams.core import fen, identity, local_day, region_key, split_identity, ts_us
from streams.enterprise.reports import Reports

STATUS_CODE = {"suspended": 0, "filed": 1, "resumed": 2}
STATUS_NAME = {v: k for k, v in STATUS_CODE.items()}
NEVER = 1 << 30  # a day after every real day

# prof rows: [ts_us, ident, day, province, city, district, sector, above, employees,
#             capacity_fen, key_enterprise, suppliers]   (ident: see ``identity``)
P_TS, P_ID, P_DAY, P_PROV, P_CITY, P_DIST, P_SECTOR, P_ABOVE, P_EMP, P_CAP, P_KEY, P_SUP = range(12)


def new_state() -> dict[str, Any]:
    # prof: profile rows; st: [ts_us, ident, day, status]; ap: appeal_id -> [open_ts,
    # open_day, category, res_ts, res_day]; seq: changes so far, a monotonic version;
    # r: the report held for each day (``Reports``: ``apply_report``'s rows as
    # ``pack_report`` text); nr: the newest report day accepted, which a report must be
    # within the grace of (``too_late``).
    # Re-applying an event changes nothing without a list of seen event ids: a profile or
    # status row carries its identity, a report is replaced only by a later one, and an
    # appeal keeps its earliest times.
    return {"prof": [], "st": [], "ap": {}, "seq": 0, "r": Reports(), "nr": 0}


def newest_report_day(state: dict[str, Any]) -> int:
    """The newest report day accepted for the enterprise (0: none yet)."""
    return int(state["nr"])


def too_late(state: dict[str, Any], day: int, grace: int) -> int | None:
    """The newest accepted report day when a report for ``day`` is too late (more than
    ``grace`` days behind it: CONTRACT §3), else None."""
    nr = newest_report_day(state)
    return nr if nr and day < nr - grace else None


def apply_event(state: dict[str, Any], ev: AnyEvent, tz: ZoneInfo) -> bool:
    """Apply a profile, status or appeal event; False if it changes nothing (re-sent)."""
    ts = ts_us(ev)
    ident = identity(ev)
    if isinstance(ev, EnterpriseRegistered):
        if any(r[P_ID] == ident for r in state["prof"]):
            return False
        state["prof"].append(
            [
                ts,
                ident,
                local_day(ev.occurred_at, tz),
                ev.province,
                ev.city,
                ev.district,
                ev.sector,
                int(ev.above_scale),
                ev.employees,
                fen(ev.normal_daily_output_value),
                int(ev.key_enterprise),
                list(ev.suppliers),
            ]
        )
        state["prof"].sort(key=lambda r: (r[P_TS], r[P_ID]))
    elif isinstance(ev, StatusChanged):
        if any(r[1] == ident for r in state["st"]):
            return False
        state["st"].append([ts, ident, local_day(ev.occurred_at, tz), STATUS_CODE[ev.status]])
        state["st"].sort(key=lambda r: (r[0], r[1]))
    elif isinstance(ev, AppealOpened):
        ap = state["ap"].setdefault(ev.appeal_id, [None, None, "", None, None])
        # An appeal counts as opened from its earliest appeal_opened.
        if ap[0] is not None and ts >= ap[0]:
            return False
        ap[0], ap[1], ap[2] = ts, local_day(ev.occurred_at, tz), ev.category
    elif isinstance(ev, AppealResolved):
        ap = state["ap"].setdefault(ev.appeal_id, [None, None, "", None, None])
        if ap[3] is not None and ts >= ap[3]:
            return False
        ap[3], ap[4] = ts, local_day(ev.occurred_at, tz)
    state["seq"] += 1
    return True


def _at_day(rows: list[list[Any]], day: int) -> list[Any] | None:
    """The row holding at the end of ``day`` (rows sorted by time; their day is column 2)."""
    best = None
    for r in rows:
        if r[2] <= day:
            best = r
        else:
            break
    return best


def timeline(state: dict[str, Any]) -> list[list[Any]]:
    """The enterprise's carried values, as day segments from its first registration on.

    Each segment: [from_day, profile_row, status, appeals_opened, appeals_resolved]; it lasts
    until the next segment's from_day (the last one: until today).
    """
    prof = state["prof"]
    if not prof:
        return []
    first = min(r[P_DAY] for r in prof)
    appeals = [
        (ap[1], max(ap[1], ap[4]) if ap[4] is not None else None)
        for ap in state["ap"].values()
        if ap[1] is not None
    ]
    days = {r[P_DAY] for r in prof} | {r[2] for r in state["st"]}
    days |= {o for o, _ in appeals} | {r for _, r in appeals if r is not None}
    out: list[list[Any]] = []
    for d in sorted(x for x in days if x >= first) or [first]:
        p = _at_day(prof, d)
        if p is None:
            continue
        s = _at_day(state["st"], d)
        opened = sum(1 for o, _ in appeals if o <= d)
        resolved = sum(1 for _, r in appeals if r is not None and r <= d)
        seg = [d, p, s[3] if s is not None else 0, opened, resolved]
        if not out or out[-1][1:] != seg[1:]:
            out.append(seg)
    return out


def district_of(p: list[Any]) -> str:
    return region_key("district", p[P_PROV], p[P_CITY], p[P_DIST])


def segment_contributions(tl: list[list[Any]]) -> dict[str, list[list[Any]]]:
    """What each district receives from this enterprise's carried values, as day segments
    [from, to, sector, above, status, opened, resolved] (``to`` None: open-ended)."""
    out: dict[str, list[list[Any]]] = {}
    for i, (d, p, status, opened, resolved) in enumerate(tl):
        to = tl[i + 1][0] if i + 1 < len(tl) else None
        segs = out.setdefault(district_of(p), [])
        body = [p[P_SECTOR], p[P_ABOVE], status, opened, resolved]
        if segs and segs[-1][1] == d and segs[-1][2:] == body:
            segs[-1][1] = to  # nothing this district sees changed: extend the segment
        else:
            segs.append([d, to, *body])
    return out


def report_district(prof: list[list[Any]], day: int) -> list[Any] | None:
    """The profile a report for ``day`` counts under; None before the first registration
    (the enterprise is in no scope then)."""
    if not prof:
        return None
    # Nearly always one registration: skip the generator (this runs for every report).
    first = prof[0][P_DAY] if len(prof) == 1 else min(r[P_DAY] for r in prof)
    if day < first:
        return None
    return _at_day(prof, day)


def report_contribution(
    prof: list[list[Any]], day: int, rep: list[Any]
) -> tuple[str, list[Any]] | None:
    """(district key, [sector, above, staff, employees, output_fen, capacity_fen]) of a
    report for ``day``, or None when it does not count (before the first registration)."""
    p = report_district(prof, day)
    if p is None:
        return None
    return district_of(p), [p[P_SECTOR], p[P_ABOVE], rep[2], p[P_EMP], rep[3], p[P_CAP]]


def timeline_record(eid: str, state: dict[str, Any], tl: list[list[Any]]) -> dict[str, Any]:
    """The enterprise_timeline row: one array element per day segment."""
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "seg_from",
            "seg_to",
            "province",
            "city",
            "district",
            "sector",
            "above_scale",
            "key_enterprise",
            "employees",
            "normal_daily_output_value",
            "status",
            "appeals_opened",
            "appeals_resolved",
            "suppliers",
        )
    }
    for i, (d, p, status, opened, resolved) in enumerate(tl):
        cols["seg_from"].append(d)
        cols["seg_to"].append(tl[i + 1][0] if i + 1 < len(tl) else 0)
        cols["province"].append(p[P_PROV])
        cols["city"].append(p[P_CITY])
        cols["district"].append(p[P_DIST])
        cols["sector"].append(p[P_SECTOR])
        cols["above_scale"].append(p[P_ABOVE])
        cols["key_enterprise"].append(p[P_KEY])
        cols["employees"].append(p[P_EMP])
        cols["normal_daily_output_value"].append(p[P_CAP] / 100)
        cols["status"].append(STATUS_NAME[status])
        cols["appeals_opened"].append(opened)
        cols["appeals_resolved"].append(resolved)
        cols["suppliers"].append(sorted(set(p[P_SUP])))
    return {"t": "timeline", "enterprise_id": eid, "version": state["seq"], **cols}


def report_row(eid: str, day: int, rep: list[Any]) -> tuple[Any, ...]:
    """The enterprise_reports row of the report that holds for ``day``, in the order of
    ``streams.wire.REPORT_COLUMNS``."""
    ts, ident, staff, output, planned, masks, zero = rep
    source, event_id = split_identity(ident)
    return (
        eid,
        day,
        event_id,
        source,
        ts // 1_000_000,
        staff,
        output / 100,
        None if planned is None else planned / 100,
        masks,
        zero,
        ts,
    )


def appeal_record(eid: str, appeal_id: str, ap: list[Any], version: int) -> dict[str, Any]:
    """The appeals row: one per appeal, opened and resolved times (None until known)."""
    open_ts, _open_day, category, res_ts, _res_day = ap
    return {
        "t": "appeal",
        "enterprise_id": eid,
        "appeal_id": appeal_id,
        "category": category,
        "opened_at": None if open_ts is None else open_ts // 1_000_000,
        "resolved_at": None if res_ts is None else res_ts // 1_000_000,
        "version": version,
    }


def status_timeline(tl: list[list[Any]]) -> list[list[int]]:
    """[[from_day, resumed 0/1], ...] from the first registration on (the supplier's view)."""
    out: list[list[int]] = []
    for d, _p, status, _o, _r in tl:
        resumed = int(status == STATUS_CODE["resumed"])
        if not out or out[-1][1] != resumed:
            out.append([d, resumed])
    return out


def supplier_timeline(tl: list[list[Any]]) -> list[list[Any]]:
    """[[from_day, sorted supplier ids, sector, above, province, city, district], ...]."""
    out: list[list[Any]] = []
    for d, p, _s, _o, _r in tl:
        row = [d, sorted(set(p[P_SUP])), p[P_SECTOR], p[P_ABOVE], p[P_PROV], p[P_CITY], p[P_DIST]]
        if not out or out[-1][1:] != row[1:]:
            out.append(row)
    return out
