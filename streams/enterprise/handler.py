"""The enterprise stage's batch handler: enterprise-status (key enterprise_id) ->
per-enterprise state (``streams.enterprise.state``) -> partial sums per (district, scope,
day) (``streams.enterprise.partials``), enterprise rows and dead letters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from producers.events import (
    AppealOpened,
    AppealResolved,
    DailyReport,
    EnterpriseRegistered,
    InvalidEvent,
    decode,
)
from streams.core import day_text, event_day, parents, stable_partition
from streams.enterprise import state as enterprise
from streams.enterprise import store
from streams.enterprise.partials import Partials
from streams.enterprise.reports import apply_report, keep_reports, unpack_report
from streams.enterprise.state import NEVER
from streams.runtime.state import META, Clocks, Out, Result, TableState, Topics, pack
from streams.wire import EVENT_COLUMNS, REPORT_COLUMNS, PartialSums, RowBlock


@dataclass(slots=True)
class _Touched:
    """An enterprise changed during a batch, and what of it changed."""

    partition: int
    state: dict[str, Any]
    segments: bool = False  # profile, status or appeals: the day segments
    # The day segments per district before the batch's first profile, status or appeal event
    old_segs: dict[str, list[list[Any]]] | None = None
    old_tl: list[list[Any]] | None = None  # and its timeline
    reports: dict[int, list[Any]] = field(default_factory=dict)  # day -> report, changed
    old_prof: list[list[Any]] | None = None  # the profile rows before the batch, if changed
    prof_from: int = NEVER  # the first day a registration of the batch affects
    nr_before: int = 0  # the newest report day accepted before the batch


class EnterpriseProcessor:
    """enterprise-status (key enterprise_id) -> per-enterprise state -> partial sums per
    (district, scope, day), enterprise rows and dead letters."""

    def __init__(
        self,
        topics: Topics,
        table: Any,
        *,
        partitions: int,
        timezone: str,
        grace_days: int,
        supply: bool = False,
    ) -> None:
        self.topics = topics
        self.partitions = partitions
        self.tz = ZoneInfo(timezone)
        self.grace_days = grace_days
        self.state = TableState(table)
        self.supply = supply  # feed the supply agent (only needed for supplier rules)
        self.partials = Partials()
        self.built: set[int] = set()  # source partitions whose partial sums are in memory
        # events, duplicates, dead_letter:<kind> of the batch being handled
        self.tally: Counter[str] = Counter()

    def reset(self) -> None:
        """Partitions moved: rebuild the partial sums from the (recovered) table on next use."""
        self.built.clear()

    def ensure(self, p: int) -> None:
        """The partial sums of partition ``p``, from its enterprises' states; all of them
        are sent with the batch (the region stage may have missed the last ones)."""
        if p in self.built:
            return
        self.partials.drop(p)
        for key, held in self.state.items_in(p):
            if not key.startswith(META):
                self._add(p, store.state_of(held))
        self.partials.touch_all(p)
        self.built.add(p)

    def _add(self, p: int, st: dict[str, Any]) -> None:
        """Add everything an enterprise's state contributes."""
        segs = enterprise.segment_contributions(enterprise.timeline(st))
        for district, s in segs.items():
            self.partials.segments(p, district, s, 1)
        prof = st["prof"]
        for day, held in st["r"].items():
            self._count_report(p, prof, day, unpack_report(held), 1)

    def _count_report(
        self, p: int, prof: list[list[Any]], day: int, rep: list[Any], sign: int
    ) -> None:
        """Add (``sign`` 1) or subtract (-1) a report under the profile it counts in."""
        c = enterprise.report_contribution(prof, day, rep)
        if c is not None:
            self.partials.report(p, c[0], day, c[1], sign)

    def _dead_letter(self, out: list[Out], event: Any, reason: str, kind: str) -> None:
        self.tally[f"dead_letter:{kind}"] += 1
        msg = event.message
        headers = [
            ("reason", reason.encode()),
            ("received_at", datetime.now(UTC).isoformat().encode()),
            ("topic", msg.topic.encode()),
            ("partition", str(msg.partition).encode()),
            ("offset", str(msg.offset).encode()),
        ]
        out.append(Out(self.topics.dead_letters, msg.key, msg.value, None, headers))

    def _report(self, day: int, entry: _Touched) -> list[Any] | None:
        """The enterprise's report for ``day``: changed in this batch, or as stored."""
        rep = entry.reports.get(day)
        if rep is not None:
            return rep
        held = entry.state["r"].get(day)
        return None if held is None else unpack_report(held)

    def _derive(self, eid: str, entry: _Touched, out: list[Out]) -> None:
        """What changed in an enterprise during a batch: its partial sums (the old state's
        contributions out, the new one's in), and its rows."""
        st, p, partials = entry.state, entry.partition, self.partials
        if entry.segments:
            tl = enterprise.timeline(st)
            segs = enterprise.segment_contributions(tl)
            record = enterprise.timeline_record(eid, st, tl)
            out.append(Out(self.topics.enterprise_rows, eid.encode(), orjson.dumps(record)))
            for district, s in (entry.old_segs or {}).items():
                partials.segments(p, district, s, -1)
            for district, s in segs.items():
                partials.segments(p, district, s, 1)
            if self.supply:
                # Only a change of status or of the supplier list matters to supply.
                statuses = enterprise.status_timeline(tl)
                suppliers = enterprise.supplier_timeline(tl)
                before = entry.old_tl or []
                if (statuses, suppliers) != (
                    enterprise.status_timeline(before),
                    enterprise.supplier_timeline(before),
                ):
                    body = {"k": "ent", "e": eid, "q": st["seq"], "st": statuses, "sl": suppliers}
                    out.append(Out(self.topics.supply, eid.encode(), orjson.dumps(body)))
        days = set(entry.reports)
        if entry.old_prof is not None:
            # A registration can move every later report day to another district or sector.
            days.update(d for d in st["r"].days() if d >= entry.prof_from)
        prof = st["prof"]
        old_prof = prof if entry.old_prof is None else entry.old_prof
        for day in days:
            held = st["r"].get(day)  # as before the batch (``keep_reports`` comes after)
            old = None if held is None else unpack_report(held)
            new = entry.reports.get(day, old)
            if old is not None:
                self._count_report(p, old_prof, day, old, -1)
            if new is not None:
                self._count_report(p, prof, day, new, 1)

    def process(self, events: Sequence[Any]) -> Result:
        out: list[Out] = []
        self.tally = Counter()
        now = datetime.now(UTC)
        touched: dict[str, _Touched] = {}
        clocks = Clocks(self.state)
        self.tally["events"] += len(events)
        rows = self.topics.enterprise_rows
        received_at = int(now.timestamp())
        last: dict[int, int] = {}  # partition -> offset of its last message in the batch
        accepted: list[tuple[Any, ...]] = []  # events rows (``EVENT_COLUMNS``)
        accepted_bytes: list[int] = []  # and the size of each one's raw event
        reports: list[tuple[Any, ...]] = []  # enterprise_reports rows (``REPORT_COLUMNS``)
        for event in events:
            msg = event.message
            p = msg.partition
            self.ensure(p)
            last[p] = msg.offset
            raw = msg.value if msg.value is not None else b""
            try:
                ev = decode(raw, now)
            except InvalidEvent as exc:
                self._dead_letter(out, event, str(exc), "invalid")
                continue
            if msg.key is not None and msg.key != ev.enterprise_id.encode():
                self._dead_letter(
                    out,
                    event,
                    f"{ev.type}.enterprise_id {ev.enterprise_id!r} differs from the message key "
                    f"{msg.key!r}; the key must be the enterprise_id",
                    "key",
                )
                continue
            day = event_day(ev, self.tz)
            entry = touched.get(ev.enterprise_id)
            if entry is None:
                st = store.load(self.state, ev.enterprise_id.encode()) or enterprise.new_state()
                nr = st["nr"]
                entry = touched[ev.enterprise_id] = _Touched(p, st, nr_before=nr)
            if isinstance(ev, DailyReport):
                # Only a report can be too late, and only against its own enterprise's
                # newest accepted report day (CONTRACT §3).
                newest = enterprise.too_late(entry.state, day, self.grace_days)
                if newest is not None:
                    self._dead_letter(
                        out,
                        event,
                        f"too late: daily_report.report_date {day_text(day)} is more than "
                        f"{self.grace_days} days before {ev.enterprise_id}'s newest accepted "
                        f"report_date {day_text(newest)}",
                        "too_late",
                    )
                    continue
                entry.state["nr"] = max(entry.state["nr"], day)
            clocks.advance(p, day)
            # Re-sent also for a duplicate: rows keyed by event id replace.
            accepted.append(
                (
                    ev.event_id,
                    ev.type,
                    ev.enterprise_id,
                    int(ev.occurred_at.timestamp()),
                    day,
                    ev.source,
                    ev.schema_version,
                    raw.decode(),
                    received_at,
                )
            )
            accepted_bytes.append(len(raw))
            if isinstance(ev, DailyReport):
                rep = apply_report(self._report(day, entry), ev)
                if rep is None:
                    self.tally["duplicates"] += 1
                else:
                    entry.reports[day] = rep
                    reports.append(enterprise.report_row(ev.enterprise_id, day, rep))
                continue
            st = entry.state
            if entry.old_tl is None:
                entry.old_tl = enterprise.timeline(st)
                entry.old_segs = enterprise.segment_contributions(entry.old_tl)
            if isinstance(ev, EnterpriseRegistered):
                if entry.old_prof is None:
                    entry.old_prof = list(st["prof"])
                entry.prof_from = min(entry.prof_from, day)
            if not enterprise.apply_event(st, ev, self.tz):
                self.tally["duplicates"] += 1
                continue
            entry.segments = True
            if isinstance(ev, AppealOpened | AppealResolved):
                record = enterprise.appeal_record(
                    ev.enterprise_id, ev.appeal_id, st["ap"][ev.appeal_id], st["seq"]
                )
                out.append(Out(rows, ev.enterprise_id.encode(), orjson.dumps(record)))

        n = self.partitions
        for eid, entry in touched.items():
            if not (entry.segments or entry.reports):
                continue
            self._derive(eid, entry, out)
            if entry.reports:
                keep_reports(
                    entry.state["r"],
                    entry.reports,
                    enterprise.newest_report_day(entry.state),
                    self.grace_days,
                    entry.nr_before,
                )
            store.write(
                self.state,
                entry.partition,
                eid,
                entry.state,
                core=entry.segments,
                days=entry.reports,
                out=out,
            )
        clocks.save(out)
        spread = 0
        for table, names, table_rows, sizes in (
            ("events", EVENT_COLUMNS, accepted, accepted_bytes),
            ("enterprise_reports", REPORT_COLUMNS, reports, None),
        ):
            for block in RowBlock.of_rows(table, names, table_rows, sizes):
                out.append(Out(rows, b"", block.to_json(), spread % self.partitions))
                spread += 1
        for p, by_district in self.partials.take().items():
            clock = clocks.get(p)
            for district, cells in by_district.items():
                province = parents(district)[1]
                sums = PartialSums(p, last[p], clock, district, cells)
                out.append(
                    Out(
                        self.topics.partials,
                        province.encode(),
                        sums.to_json(),
                        stable_partition(province, n),
                    )
                )
        for p in clocks.advanced:
            clock_row = {
                "t": "clock",
                "partition": p,
                "newest_day": clocks.values[p],
                "version": clocks.values[p],
            }
            out.append(Out(self.topics.enterprise_rows, b"", orjson.dumps(clock_row)))
            tick = PartialSums(p, last[p], clocks.values[p]).to_json()
            stick = orjson.dumps({"tick": clocks.values[p]})
            for q in range(n):
                out.append(Out(self.topics.partials, b"\x00tick", tick, q))
                if self.supply:
                    out.append(Out(self.topics.supply, b"\x00tick", stick, q))
        return Result(pack(out, self.topics.packed, n), counts=self.tally)
