"""Batch handlers of the agents: move data between Kafka records, tables and the pure core.

Each handler takes a batch of Faust events and returns the records to produce (changelog
writes included); the agent sends them and waits for every acknowledgement before the batch's
source offsets may be committed. A crash replays the batch; since every state change is a
replacement (event ids, versions, per-key values), the replay changes nothing.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
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
from resumewatch.settings import Settings
from streams import enterprise
from streams.alerts import REGION_METRICS, Rule, Step, new_transitions
from streams.core import day_text, event_day, parents, stable_partition
from streams.regions import DistrictAgg, RollupAgg
from streams.supply import readiness_series

log = logging.getLogger("resumewatch.worker")
META = b"\x00"  # prefix of the bookkeeping keys in the agents' tables (not aggregates)
CLOCK = META + b"clock"
VERSION = META + b"version"
OFFSET = META + b"offset\x1f"
KEY_SEP = "\x1e"  # joins the parts of a table key (region names never contain it)
ALERT_SCOPE = ("level", "province", "city", "district", "sector", "above_scale_only")


def _clock_key(partition: int) -> bytes:
    return CLOCK + str(partition).encode()


def _version_key(partition: int) -> bytes:
    return VERSION + str(partition).encode()


@dataclass(slots=True)  # not frozen: a frozen dataclass takes four times as long to build
class Out:
    """One record to produce. Changelog records are sent only after every other record of
    the batch was acknowledged: if a crash comes in between, the replayed batch finds the old
    state and produces all the derived records again."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None
    changelog: bool = False
    early: bool = False  # a changelog record sent before the batch's derived records


# A packed message holds many records of one internal topic partition as a JSON array of
# [key, value]: Faust and the Kafka clients cost time per message, not per byte.
PACK_BYTES = 256 * 1024


def packed_topics(settings: Settings) -> frozenset[str]:
    return frozenset(
        (
            settings.contributions_topic,
            settings.rollup_topic,
            settings.region_rows_topic,
            settings.enterprise_rows_topic,
            settings.supply_topic,
        )
    )


def pack(out: list[Out], topics: frozenset[str], partitions: int) -> list[Out]:
    """Group the records for ``topics`` into packed messages per partition, in their order;
    everything else passes as it is."""
    result: list[Out] = []
    groups: dict[tuple[str, int], list[Out]] = {}
    for r in out:
        if r.changelog or r.topic not in topics:
            result.append(r)
            continue
        assert r.key is not None and r.value is not None
        p = r.partition
        if p is None:
            p = zlib.crc32(r.key) % partitions  # stable_partition of the decoded key
        groups.setdefault((r.topic, p), []).append(r)
    for (topic, p), records in groups.items():
        chunk: list[Any] = []
        size = 0
        for r in records:
            assert r.key is not None and r.value is not None
            chunk.append((r.key.decode(), orjson.Fragment(r.value)))
            size += len(r.key) + len(r.value) + 8
            if size >= PACK_BYTES:
                result.append(Out(topic, None, orjson.dumps(chunk), p))
                chunk, size = [], 0
        if chunk:
            result.append(Out(topic, None, orjson.dumps(chunk), p))
    return result


def unpack(events: Sequence[Any]) -> Iterator[tuple[int, str, Any]]:
    """(partition, key, value) of every record in a batch of packed messages."""
    for event in events:
        msg = event.message
        for key, value in orjson.loads(msg.value):
            yield msg.partition, key, value


class TableState:
    """A Faust table used as a changelog-backed dict of orjson values, written once a batch."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: bytes) -> Any | None:
        raw = self.table.data.get(key)
        return orjson.loads(raw) if raw is not None else None

    def put(
        self, partition: int, key: bytes, value: Any, out: list[Out], early: bool = False
    ) -> None:
        # orjson's result keeps the capacity of its output buffer (about 4 KB even for a
        # 60-byte value): a table holding it would need ~50 times the memory. Keep a copy.
        raw = memoryview(orjson.dumps(value)).tobytes()
        store = self.table.data
        store[key] = raw
        # Lets the store drop the key when the partition moves to another worker.
        place = getattr(store, "place", None)
        if place is not None:
            place(key, partition)
        out.append(Out(self.changelog, key, raw, partition, changelog=True, early=early))

    def delete(self, partition: int, key: bytes, out: list[Out]) -> None:
        self.table.data.pop(key, None)
        out.append(Out(self.changelog, key, None, partition, changelog=True))

    @property
    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        yield from list(self.table.data.items())


class _Clocks:
    """The newest event day per partition, persisted in the partition's own table."""

    def __init__(self, state: TableState) -> None:
        self.state = state
        self.values: dict[int, int] = {}
        self.advanced: dict[int, int] = {}  # partition -> value before this batch

    def get(self, p: int) -> int:
        if p not in self.values:
            self.values[p] = self.state.get(_clock_key(p)) or 0
        return self.values[p]

    def advance(self, p: int, day: int) -> None:
        before = self.get(p)
        if day > before:
            self.advanced.setdefault(p, before)
            self.values[p] = day

    def save(self, out: list[Out]) -> None:
        for p in self.advanced:
            self.state.put(p, _clock_key(p), self.values[p], out)


class _Versions:
    """Versions of the region rows a partition emits: the wall clock, but always above the
    partition's previous one (persisted before the rows are sent), so that after the
    partition moves to a host whose clock is behind, its new rows still supersede the old
    ones in ClickHouse."""

    def __init__(self, state: TableState) -> None:
        self.state = state
        self.now = time.time_ns()
        self.used: dict[int, int] = {}

    def of(self, p: int) -> int:
        v = self.used.get(p)
        if v is None:
            last = self.state.get(_version_key(p)) or 0
            v = self.used[p] = max(self.now, last + 1)
        return v

    def take(self, p: int) -> int:
        """A version above every one the partition used before (one per record)."""
        v = self.of(p)
        self.used[p] = v + 1
        return v

    def save(self, out: list[Out]) -> None:
        # Early: once a row with a version is out, a replay elsewhere must start above it.
        for p, v in self.used.items():
            self.state.put(p, _version_key(p), v, out, early=True)


class OffsetGuard:
    """Admits every source message once, in offset order, whatever the consumer does.

    The next offset to process per source partition is kept in the agent's own table and
    saved with the batch's other changelog writes. The Faust consumer can skip messages
    around restarts and rebalances (and commit offsets past messages no handler saw); a
    batch whose messages start past the next offset has a gap, which the agent fills by
    reading the missing offsets from Kafka itself. Messages before it were processed already.
    """

    def __init__(self, state: TableState, *topics: str) -> None:
        self.state = state
        self.topics = frozenset(topics)  # the source topics, for the lag metric
        self.next: dict[tuple[str, int], int] = {}

    def _key(self, tp: tuple[str, int]) -> bytes:
        return OFFSET + f"{tp[0]}\x1f{tp[1]}".encode()

    def _want(self, tp: tuple[str, int]) -> int:
        want = self.next.get(tp)
        if want is None:
            # Nothing processed from this partition yet: from its start (the fill goes on
            # from the first offset that retention kept).
            want = self.next[tp] = self.state.get(self._key(tp)) or 0
        return want

    def gaps(self, events: Sequence[Any]) -> dict[tuple[str, int], tuple[int, int]]:
        """Per partition, the first range [start, end) of offsets missing from the batch."""
        gaps: dict[tuple[str, int], tuple[int, int]] = {}
        at: dict[tuple[str, int], int] = {}
        for event in events:
            msg = event.message
            tp = (msg.topic, msg.partition)
            if tp in gaps:
                continue
            want = at.get(tp)
            if want is None:
                want = self._want(tp)
            if msg.offset > want:
                gaps[tp] = (want, msg.offset)
            elif msg.offset == want:
                at[tp] = want + 1
        return gaps

    def admit(self, events: Sequence[Any]) -> list[Any]:
        """The events not processed yet, in order; the batch must have no gap."""
        admitted = []
        for event in events:
            msg = event.message
            tp = (msg.topic, msg.partition)
            want = self._want(tp)
            if msg.offset == want:
                admitted.append(event)
                self.next[tp] = want + 1
            elif msg.offset > want:
                raise RuntimeError(f"{tp[0]}[{tp[1]}]: offsets {want} to {msg.offset - 1} missing")
        return admitted

    def next_offset(self, tp: tuple[str, int]) -> int:
        """The next offset of ``tp`` to process (without caching it: the table may still be
        recovering)."""
        want = self.next.get(tp)
        return want if want is not None else self.state.get(self._key(tp)) or 0

    def skip_to(self, tp: tuple[str, int], offset: int) -> None:
        """The partition's log starts at ``offset`` now (retention removed the rest)."""
        self.next[tp] = max(self._want(tp), offset)

    def save(self, partitions: set[tuple[str, int]], out: list[Out]) -> None:
        for tp in partitions:
            self.state.put(tp[1], self._key(tp), self.next[tp], out)

    def forget(self) -> None:
        """Partitions moved: read the next offsets from the (recovered) table again."""
        self.next.clear()


def commit_hole(
    committed: int | None, first_acked: int | None, processed: int
) -> tuple[int, int] | None:
    """The offsets [start, end] that hold a partition's commit back although the agent has
    processed them, or None.

    The Faust consumer commits up to its first unacknowledged offset only. Around rebalances
    it can skip offsets (see ``OffsetGuard``); those below the guard's next offset were
    processed before and nothing asks for them again, so it would wait for their
    acknowledgement for ever."""
    if committed is None or first_acked is None or first_acked - committed <= 1:
        return None
    end = first_acked - 1
    if end >= processed:
        return None  # not processed yet: the guard's fill reads them
    return committed, end


@dataclass(slots=True)
class _Touched:
    """An enterprise changed during a batch, and what of it changed."""

    partition: int
    state: dict[str, Any]
    segments: bool = False  # profile, status or appeals: the day segments
    reports: dict[int, list[Any]] = field(default_factory=dict)  # day -> report, changed
    old_prof: list[list[Any]] | None = None  # the profile rows before the batch, if changed
    prof_from: int = 1 << 30  # the first day a registration of the batch affects
    nr_before: int = 0  # the newest report day accepted before the batch


class EnterpriseProcessor:
    """enterprise-status (key enterprise_id) -> per-enterprise state -> district contributions."""

    def __init__(self, settings: Settings, table: Any, supply: bool = False) -> None:
        self.s = settings
        self.tz = ZoneInfo(settings.timezone)
        self.state = TableState(table)
        self.supply = supply  # feed the supply agent (only needed for supplier rules)
        self.packed = packed_topics(settings)
        # events, duplicates, dead_letter:<kind>; read (and cleared) by the worker's metrics
        self.tally: Counter[str] = Counter()

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
        out.append(Out(self.s.dlq_topic, msg.key, msg.value, None, headers))

    def _contribute(self, out: list[Out], district: str, body: dict[str, Any]) -> None:
        # ``pack`` routes it to the district's partition.
        out.append(Out(self.s.contributions_topic, district.encode(), orjson.dumps(body)))

    def _report(self, day: int, entry: _Touched) -> list[Any] | None:
        """The enterprise's report for ``day``: changed in this batch, or as stored."""
        rep = entry.reports.get(day)
        if rep is not None:
            return rep
        held = entry.state["r"].get(str(day))
        return None if held is None else enterprise.unpack_report(held)

    def _derive(self, eid: str, entry: _Touched, newest: int, out: list[Out]) -> None:
        """The contributions (and rows) of what changed in an enterprise during a batch."""
        st, seq = entry.state, entry.state["seq"]
        if entry.segments:
            tl = enterprise.timeline(st)
            segs = enterprise.segment_contributions(tl)
            record = enterprise.timeline_record(eid, st, tl)
            out.append(Out(self.s.enterprise_rows_topic, eid.encode(), orjson.dumps(record)))
            for key in sorted(set(segs) | set(st["districts"])):
                self._contribute(out, key, {"e": eid, "q": seq, "s": segs.get(key, [])})
            st["districts"] = sorted(segs)
            if self.supply:
                body = {
                    "k": "ent",
                    "e": eid,
                    "q": seq,
                    "st": enterprise.status_timeline(tl),
                    "sl": enterprise.supplier_timeline(tl),
                }
                out.append(Out(self.s.supply_topic, eid.encode(), orjson.dumps(body)))
        # A report's version is [profile seq, report time]: a profile change or a later
        # correction both make it newer.
        days = set(entry.reports)
        if entry.old_prof is not None:
            # A registration can move every later report day to another district or sector.
            days.update(d for d in map(int, st["r"]) if d >= entry.prof_from)
        prof = st["prof"]
        for day in sorted(days):
            rep = self._report(day, entry)
            if rep is None:
                continue
            version = [seq, rep[0]]
            now = enterprise.report_contribution(prof, day, rep)
            before = None
            if entry.old_prof is not None:
                p = enterprise.report_district(entry.old_prof, day)
                before = enterprise.district_of(p) if p is not None else None
            if now is not None:
                self._contribute(out, now[0], {"e": eid, "q": version, "d": day, "r": now[1]})
            if before is not None and (now is None or now[0] != before):
                self._contribute(out, before, {"e": eid, "q": version, "d": day, "r": None})

    def process(self, events: Sequence[Any]) -> list[Out]:
        out: list[Out] = []
        now = datetime.now(UTC)
        touched: dict[str, _Touched] = {}
        clocks = _Clocks(self.state)
        self.tally["events"] += len(events)
        rows = self.s.enterprise_rows_topic
        received_at = int(now.timestamp())
        for event in events:
            msg = event.message
            p = msg.partition
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
                st = self.state.get(ev.enterprise_id.encode()) or enterprise.new_state()
                st.setdefault("r", {})  # a state saved before reports were part of it
                nr = enterprise.newest_report_day(st)
                entry = touched[ev.enterprise_id] = _Touched(p, st, nr_before=nr)
            if isinstance(ev, DailyReport):
                # Only a report can be too late, and only against its own enterprise's
                # newest accepted report day (CONTRACT §3).
                newest = enterprise.too_late(entry.state, day, self.s.grace_days)
                if newest is not None:
                    self._dead_letter(
                        out,
                        event,
                        f"too late: daily_report.report_date {day_text(day)} is more than "
                        f"{self.s.grace_days} days before {ev.enterprise_id}'s newest accepted "
                        f"report_date {day_text(newest)}",
                        "too_late",
                    )
                    continue
                entry.state["nr"] = max(entry.state["nr"], day)
            clocks.advance(p, day)
            # Re-sent also for a duplicate: rows keyed by event id replace.
            ekey = ev.enterprise_id.encode()
            accepted = {
                "t": "event",
                "event_id": ev.event_id,
                "type": ev.type,
                "enterprise_id": ev.enterprise_id,
                "occurred_at": int(ev.occurred_at.timestamp()),
                "first_day": day,
                "source": ev.source,
                "schema_version": ev.schema_version,
                "raw": raw.decode(),
                "received_at": received_at,
            }
            out.append(Out(rows, ekey, orjson.dumps(accepted)))
            if isinstance(ev, DailyReport):
                rep = enterprise.apply_report(self._report(day, entry), ev)
                if rep is None:
                    self.tally["duplicates"] += 1
                else:
                    entry.reports[day] = rep
                    record = enterprise.report_record(ev.enterprise_id, day, rep)
                    out.append(Out(rows, ekey, orjson.dumps(record)))
                continue
            st = entry.state
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
                out.append(Out(rows, ekey, orjson.dumps(record)))

        n = self.s.partitions
        for eid, entry in touched.items():
            if not (entry.segments or entry.reports):
                continue
            newest = clocks.get(entry.partition)
            self._derive(eid, entry, newest, out)
            if entry.reports:
                enterprise.keep_reports(
                    entry.state, entry.reports, self.s.grace_days, entry.nr_before
                )
            self.state.put(entry.partition, eid.encode(), entry.state, out)
        clocks.save(out)
        for p in clocks.advanced:
            clock = {
                "t": "clock",
                "partition": p,
                "newest_day": clocks.values[p],
                "version": clocks.values[p],
            }
            out.append(Out(self.s.enterprise_rows_topic, b"", orjson.dumps(clock)))
            tick = orjson.dumps({"tick": clocks.values[p]})
            for q in range(n):
                out.append(Out(self.s.contributions_topic, b"\x00tick", tick, q))
                if self.supply:
                    out.append(Out(self.s.supply_topic, b"\x00tick", tick, q))
        return pack(out, self.packed, n)


class _Lazy:
    """In-memory aggregates rebuilt from the table once per partition after (re)assignment."""

    def __init__(self, state: TableState, partitions: int) -> None:
        self.state = state
        self.partitions = partitions
        self.built: set[int] = set()

    def reset(self) -> None:
        self.built.clear()

    def ensure(self, p: int) -> None:
        if p in self.built:
            return
        self.drop(p)
        for raw_key, raw in self.state.items():
            if raw_key.startswith(META):
                continue
            parts = raw_key.decode().split(KEY_SEP)
            if stable_partition(parts[0], self.partitions) == p:
                self.load(parts, orjson.loads(raw))
        self.loaded(p)
        self.built.add(p)

    def loaded(self, p: int) -> None:
        """Called when partition ``p`` was rebuilt from the table."""

    def drop(self, p: int) -> None:
        raise NotImplementedError

    def load(self, parts: list[str], value: Any) -> None:
        raise NotImplementedError


class DistrictProcessor(_Lazy):
    """contributions (key district) -> DistrictAgg -> district rows and rollup updates."""

    def __init__(self, settings: Settings, table: Any) -> None:
        super().__init__(TableState(table), settings.partitions)
        self.s = settings
        self.packed = packed_topics(settings)
        self.aggs: dict[str, DistrictAgg] = {}

    def drop(self, p: int) -> None:
        for key in [k for k in self.aggs if stable_partition(k, self.partitions) == p]:
            del self.aggs[key]

    def load(self, parts: list[str], value: Any) -> None:
        agg = self.aggs.setdefault(parts[0], DistrictAgg(parts[0]))
        segments, reports = value
        if segments is not None:
            agg.replace_segments(None, segments[0], segments[1])
        for day, held in reports.items():
            agg.replace_report(None, int(day), held[0], held[1])

    def loaded(self, p: int) -> None:
        for key, agg in self.aggs.items():
            if stable_partition(key, self.partitions) == p:
                agg.mark_emitted()

    def process(self, events: Sequence[Any]) -> list[Out]:
        out: list[Out] = []
        clocks = _Clocks(self.state)
        changed: dict[str, int] = {}  # district -> first day to emit
        # A member's value: [[seq, segments] or None, {day: [version, report]}], one key per
        # district and enterprise; the table's copy is the only one. Written once a batch.
        members: dict[bytes, tuple[int, list[Any]]] = {}
        dirty: set[bytes] = set()
        for p, key, body in unpack(events):
            self.ensure(p)
            if "tick" in body:
                clocks.advance(p, body["tick"])
                continue
            agg = self.aggs.get(key)
            if agg is None:
                agg = self.aggs[key] = DistrictAgg(key)
            eid, seq = body["e"], body["q"]
            skey = f"{key}{KEY_SEP}{eid}".encode()
            held = members.get(skey)
            if held is None:
                held = members[skey] = (p, self.state.get(skey) or [None, {}])
            member = held[1]
            if "s" in body:
                old = member[0]
                if not agg.replace_segments(old, seq, body["s"]):
                    continue  # a stale copy of an older version
                first = enterprise.segments_changed_from(old[1] if old else None, body["s"])
                if first is not None:
                    changed[key] = min(changed.get(key, first), first)
                member[0] = [seq, body["s"]]
                dirty.add(skey)
                continue
            day, vec = body["d"], body["r"]
            reports = member[1]
            if not agg.replace_report(reports.get(str(day)), day, seq, vec):
                continue
            changed[key] = min(changed.get(key, day), day)
            if vec is None:
                reports.pop(str(day), None)
            else:
                reports[str(day)] = [seq, vec]
            dirty.add(skey)
        for skey in dirty:
            p, member = members[skey]
            if member[0] is None and not member[1]:
                self.state.delete(p, skey, out)
            else:
                self.state.put(p, skey, member, out)
        for p, before in clocks.advanced.items():
            for key in self.aggs:
                if stable_partition(key, self.partitions) == p:
                    changed[key] = min(changed.get(key, before + 1), before + 1)
        clocks.save(out)
        versions = _Versions(self.state)
        n = self.partitions
        for key, from_day in changed.items():
            p = stable_partition(key, n)
            newest = clocks.get(p)
            city, province = parents(key)
            version = versions.of(p)
            for row in self.aggs[key].rows(from_day, newest):
                out.append(Out(self.s.region_rows_topic, key.encode(), row.to_json(version), p))
                v = None if row.deleted else row.v
                update = orjson.dumps({"c": key, "d": row.day, "s": row.scope, "v": v})
                for parent in (city, province):
                    out.append(Out(self.s.rollup_topic, parent.encode(), update))
        versions.save(out)
        return pack(out, self.packed, n)


class RollupProcessor(_Lazy):
    """rollup (key city or province) -> RollupAgg -> city and province rows."""

    def __init__(self, settings: Settings, table: Any) -> None:
        super().__init__(TableState(table), settings.partitions)
        self.s = settings
        self.packed = packed_topics(settings)
        self.aggs: dict[str, RollupAgg] = {}

    def drop(self, p: int) -> None:
        for key in [k for k in self.aggs if stable_partition(k, self.partitions) == p]:
            del self.aggs[key]

    def load(self, parts: list[str], value: Any) -> None:
        parent, child, day, scope = parts
        agg = self.aggs.setdefault(parent, RollupAgg(parent))
        agg.replace(child, int(day), scope, tuple(value))

    def process(self, events: Sequence[Any]) -> list[Out]:
        out: list[Out] = []
        changed: dict[tuple[str, int, str], int] = {}
        for p, parent, body in unpack(events):
            self.ensure(p)
            agg = self.aggs.get(parent)
            if agg is None:
                agg = self.aggs[parent] = RollupAgg(parent)
            child, day, scope = body["c"], body["d"], body["s"]
            v = None if body["v"] is None else tuple(body["v"])
            if agg.replace(child, day, scope, v):
                changed[(parent, day, scope)] = p
                key = KEY_SEP.join((parent, child, str(day), scope)).encode()
                if v is None:
                    self.state.delete(p, key, out)
                else:
                    self.state.put(p, key, v, out)
        versions = _Versions(self.state)
        for (parent, day, scope), p in changed.items():
            row = self.aggs[parent].row(day, scope)
            out.append(
                Out(self.s.region_rows_topic, parent.encode(), row.to_json(versions.of(p)), p)
            )
        versions.save(out)
        return pack(out, self.packed, self.partitions)


class AlertProcessor:
    """region rows (key region) -> per (region, scope) day series -> alert transitions.

    After every change the rules are evaluated over the whole series again, and the
    transitions not emitted yet are emitted: the alerts firing now always equal the
    evaluation of the current data. An alert that a correction undoes (it would never have
    fired) is resolved.
    """

    def __init__(self, settings: Settings, table: Any, rules: Sequence[Rule]) -> None:
        self.s = settings
        self.state = TableState(table)
        self.by_scope: dict[tuple[str, str, int], list[Rule]] = {}
        for rule in rules:
            if rule.metric in REGION_METRICS:
                key = (rule.level, rule.sector, rule.above_scale_only)
                self.by_scope.setdefault(key, []).append(rule)

    def process(self, events: Sequence[Any]) -> tuple[list[Out], list[dict[str, Any]]]:
        """Returns the records to produce and the transitions (for the webhooks)."""
        out: list[Out] = []
        changed: dict[bytes, tuple[int, dict[str, Any], list[Rule], dict[str, Any]]] = {}
        for p, region, d in unpack(events):
            rules = self.by_scope.get((d["level"], d["sector"], d["above_scale_only"]))
            if not rules:
                continue
            key = f"{region}{KEY_SEP}{d['sector']}{KEY_SEP}{d['above_scale_only']}"
            skey = key.encode()
            entry = changed.get(skey)
            if entry is None:
                st = self.state.get(skey) or {"d": {}, "e": {}}
                scope = {k: d[k] for k in ALERT_SCOPE}
                entry = changed[skey] = (p, st, rules, scope)
            series = entry[1]["d"]
            if d.get("deleted"):
                series.pop(d["day"], None)
            else:
                series[d["day"]] = [d["enterprises"], {r.metric: d[r.metric] for r in rules}]
        transitions: list[dict[str, Any]] = []
        at = datetime.now(UTC).replace(microsecond=0).isoformat()
        versions = _Versions(self.state)  # also orders the transitions within the batch
        for skey, (p, st, rules, scope) in changed.items():
            for rule in rules:
                for record in self._evaluate(rule, st, scope, at):
                    record["version"] = versions.take(p)
                    transitions.append(record)
                    out.append(
                        Out(self.s.alerts_topic, record["alert_id"].encode(), orjson.dumps(record))
                    )
            self.state.put(p, skey, st, out)
        versions.save(out)
        return out, transitions

    def _evaluate(
        self, rule: Rule, st: dict[str, Any], scope: dict[str, Any], at: str
    ) -> Iterator[dict[str, Any]]:
        days = sorted(st["d"])
        series = [
            (date.fromisoformat(day).toordinal(), st["d"][day][1].get(rule.metric), st["d"][day][0])
            for day in days
        ]
        scope_key = tuple(str(scope[k]) for k in ALERT_SCOPE) + ("",)
        for aid, step in new_transitions(rule, series, scope_key, st["e"]):
            yield alert_record(rule, aid, step, {**scope, "enterprise_id": ""}, at)


def alert_record(
    rule: Rule, aid: str, step: Step, scope: dict[str, Any], at: str
) -> dict[str, Any]:
    return {
        "alert_id": aid,
        "rule": rule.name,
        "state": step.state,
        **scope,
        "day": date.fromordinal(step.day).isoformat(),
        "metric": rule.metric,
        "value": step.value,
        "threshold": rule.threshold,
        "at": at,
    }


class SupplyProcessor:
    """supply (key enterprise) -> supplier readiness per enterprise -> supplier alerts.

    Each enterprise's partition holds its status timeline and the enterprises that depend on
    it; a change of status is forwarded to the dependents' partitions, which evaluate the
    supplier_readiness rules over their suppliers' statuses.
    """

    def __init__(self, settings: Settings, table: Any, rules: Sequence[Rule]) -> None:
        self.s = settings
        self.state = TableState(table)
        self.rules = [r for r in rules if r.metric == "supplier_readiness"]
        self.packed = packed_topics(settings)

    def _send(self, out: list[Out], to: str, body: dict[str, Any]) -> None:
        # ``pack`` routes it to the partition of ``to``.
        out.append(Out(self.s.supply_topic, to.encode(), orjson.dumps(body)))

    def process(self, events: Sequence[Any]) -> tuple[list[Out], list[dict[str, Any]]]:
        out: list[Out] = []
        loaded: dict[str, tuple[int, dict[str, Any]]] = {}
        evaluate_for: set[str] = set()

        def load(x: str, p: int) -> dict[str, Any]:
            if x not in loaded:
                st = self.state.get(x.encode()) or {
                    "st": [-1, []],
                    "sl": [],
                    "deps": [],
                    "subs": [],
                    "sups": {},
                    "al": {},
                }
                loaded[x] = (p, st)
            return loaded[x][1]

        clocks = _Clocks(self.state)
        for p, _key, body in unpack(events):
            if "tick" in body:
                clocks.advance(p, body["tick"])
                continue
            kind = body["k"]
            if kind == "ent":
                x = body["e"]
                st = load(x, p)
                if body["q"] < st["st"][0]:
                    continue  # a stale copy
                if st["st"][1] != body["st"]:
                    for dep in st["deps"]:
                        self._send(
                            out,
                            dep,
                            {"k": "sup", "s": x, "e": dep, "q": body["q"], "st": body["st"]},
                        )
                st["st"] = [body["q"], body["st"]]
                st["sl"] = body["sl"]
                wanted = sorted({s for row in body["sl"] for s in row[1]})
                for s in set(wanted) - set(st["subs"]):
                    self._send(out, s, {"k": "sub", "e": x, "s": s, "on": 1})
                for s in set(st["subs"]) - set(wanted):
                    self._send(out, s, {"k": "sub", "e": x, "s": s, "on": 0})
                    st["sups"].pop(s, None)
                st["subs"] = wanted
                evaluate_for.add(x)
            elif kind == "sub":
                st = load(body["s"], p)
                deps = set(st["deps"])
                if body["on"]:
                    deps.add(body["e"])
                    self._send(
                        out,
                        body["e"],
                        {
                            "k": "sup",
                            "s": body["s"],
                            "e": body["e"],
                            "q": st["st"][0],
                            "st": st["st"][1],
                        },
                    )
                else:
                    deps.discard(body["e"])
                st["deps"] = sorted(deps)
            elif kind == "sup":
                st = load(body["e"], p)
                if body["s"] not in st["subs"]:
                    continue  # no longer a supplier
                held = st["sups"].get(body["s"])
                if held is None or body["q"] >= held[0]:
                    st["sups"][body["s"]] = [body["q"], body["st"]]
                    evaluate_for.add(body["e"])
        # A new newest day moves every series on (a drop resolves the day after, say).
        n = self.s.partitions
        for raw_key, _raw in self.state.items() if clocks.advanced else ():
            if not raw_key.startswith(META):
                x = raw_key.decode()
                p = stable_partition(x, n)
                if p in clocks.advanced and load(x, p)["sl"]:
                    evaluate_for.add(x)
        clocks.save(out)
        transitions: list[dict[str, Any]] = []
        at = datetime.now(UTC).replace(microsecond=0).isoformat()
        versions = _Versions(self.state)
        for x in sorted(evaluate_for):
            p, st = loaded[x]
            for record in self._evaluate(x, st, clocks.get(p), at):
                record["version"] = versions.take(p)
                transitions.append(record)
                out.append(
                    Out(self.s.alerts_topic, record["alert_id"].encode(), orjson.dumps(record))
                )
        for x, (p, st) in loaded.items():
            self.state.put(p, x.encode(), st, out)
        versions.save(out)
        return pack(out, self.packed, n), transitions

    def _evaluate(
        self, x: str, st: dict[str, Any], newest: int, at: str
    ) -> Iterator[dict[str, Any]]:
        if any(s not in st["sups"] for s in st["subs"]):
            return  # a supplier has not answered its subscription yet: its status is unknown
        statuses = {s: v[1] for s, v in st["sups"].items()}
        full = readiness_series(st["sl"], statuses, newest)
        if not full:
            if not any(state == "firing" for _rule, state in st["al"].values()):
                return
            # It lists no suppliers any more: what fired is resolved on the newest day.
            last: list[Any] = st["sl"][-1] if st["sl"] else [newest, [], "", 0, "", "", ""]
            full = [(max(newest, int(last[0])), 0, 0, last)]
        profile = full[-1][3]
        for rule in self.rules:
            if rule.sector != "*" and rule.sector != profile[2]:
                continue
            if rule.above_scale_only and not profile[3]:
                continue
            series = [(d, r / n if n else None, n) for d, n, r, _ in full]
            for aid, step in new_transitions(rule, series, ("enterprise", x), st["al"]):
                row = next(r[3] for r in full if r[0] == step.day)
                scope = {
                    "level": "",
                    "province": row[4],
                    "city": row[5],
                    "district": row[6],
                    "sector": row[2],
                    "above_scale_only": 0,
                    "enterprise_id": x,
                }
                yield alert_record(rule, aid, step, scope, at)
