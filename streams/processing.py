"""Batch handlers of the agents: move data between Kafka, tables and the pure core."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from producers.events import InvalidEvent, decode
from resumewatch.settings import Settings
from streams import core

CLOCK = b"\x00clock"


@dataclass(frozen=True, slots=True)
class Out:
    """One record to produce; agents send a batch's records and await them all."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: list[tuple[str, bytes]] | None = None


def _clock_key(partition: int) -> bytes:
    return CLOCK + str(partition).encode()


class _TableState:
    """A Faust table used as a changelog-backed dict of orjson values, written once a batch."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: bytes) -> Any | None:
        raw = self.table.data.get(key)
        return orjson.loads(raw) if raw is not None else None

    def put(self, partition: int, key: bytes, value: Any, out: list[Out]) -> None:
        raw = orjson.dumps(value)
        store = self.table.data
        store[key] = raw
        # Lets the memory store drop the key when the partition moves to another worker.
        key_partition = getattr(store, "_key_partition", None)
        if key_partition is not None:
            key_partition[key] = partition
        out.append(Out(self.changelog, key, raw, partition))

    @property
    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def all_keys(self) -> list[bytes]:
        return list(self.table.data.keys())


class EnterpriseProcessor:
    def __init__(self, settings: Settings, table: Any) -> None:
        self.s = settings
        self.tz = ZoneInfo(settings.timezone)
        self.state = _TableState(table)

    def _dead_letter(self, out: list[Out], event: Any, reason: str) -> None:
        msg = event.message
        out.append(
            Out(
                self.s.dlq_topic,
                msg.key,
                msg.value,
                None,
                [
                    ("reason", reason.encode()),
                    ("received_at", datetime.now(UTC).isoformat().encode()),
                    ("topic", msg.topic.encode()),
                    ("partition", str(msg.partition).encode()),
                    ("offset", str(msg.offset).encode()),
                ],
            )
        )

    def process(self, events: Sequence[Any]) -> list[Out]:
        """Apply a batch of input messages; returns every record to produce."""
        out: list[Out] = []
        now = datetime.now(UTC)
        touched: dict[str, tuple[int, dict[str, Any]]] = {}
        clocks: dict[int, int] = {}
        advanced: set[int] = set()
        for event in events:
            msg = event.message
            p = msg.partition
            if p not in clocks:
                clocks[p] = self.state.get(_clock_key(p)) or 0
            raw = msg.value if msg.value is not None else b""
            try:
                ev = decode(raw, now)
            except InvalidEvent as exc:
                self._dead_letter(out, event, str(exc))
                continue
            if msg.key is not None and msg.key != ev.enterprise_id.encode():
                self._dead_letter(
                    out,
                    event,
                    f"{ev.type}.enterprise_id {ev.enterprise_id!r} differs from the message key "
                    f"{msg.key!r}; the key must be the enterprise_id",
                )
                continue
            day = core.event_day(ev, self.tz)
            if clocks[p] and day < clocks[p] - self.s.grace_days:
                self._dead_letter(
                    out,
                    event,
                    f"too late: {ev.type} affects {core.day_text(day)}, more than "
                    f"{self.s.grace_days} days before the newest event day "
                    f"{core.day_text(clocks[p])}",
                )
                continue
            entry = touched.get(ev.enterprise_id)
            if entry is None:
                st = self.state.get(ev.enterprise_id.encode()) or core.new_enterprise_state()
                entry = touched[ev.enterprise_id] = (p, st)
            core.apply_event(entry[1], ev, self.tz)
            if day > clocks[p]:
                clocks[p] = day
                advanced.add(p)
        n = self.s.partitions
        for eid, (p, st) in touched.items():
            contrib = core.contributions(core.timeline(st))
            keys = set(contrib) | set(st["regions"])
            for key in sorted(keys):
                out.append(
                    Out(
                        self.s.contributions_topic,
                        key.encode(),
                        orjson.dumps(
                            {"e": eid, "q": st["seq"], "s": contrib.get(key, []), "n": clocks[p]}
                        ),
                        core.stable_partition(key, n),
                    )
                )
            st["regions"] = sorted(contrib)
            self.state.put(p, eid.encode(), st, out)
        for p in advanced:
            self.state.put(p, _clock_key(p), clocks[p], out)
            tick = orjson.dumps({"tick": clocks[p]})
            for q in range(n):
                out.append(Out(self.s.contributions_topic, b"\x00tick", tick, q))
        return out


class RegionProcessor:
    def __init__(self, settings: Settings, table: Any) -> None:
        self.s = settings
        self.state = _TableState(table)

    def process(self, events: Sequence[Any]) -> list[Out]:
        """Merge a batch of contributions and ticks; returns every record to produce."""
        out: list[Out] = []
        changed: dict[str, tuple[int, dict[str, Any], int]] = {}
        clocks: dict[int, int] = {}
        ticked: set[int] = set()

        def load(key: str, p: int) -> tuple[int, dict[str, Any], int]:
            entry = changed.get(key)
            if entry is None:
                region = self.state.get(key.encode()) or core.new_region_state()
                entry = (p, region, 1 << 30)
            return entry

        for event in events:
            msg = event.message
            p = msg.partition
            if p not in clocks:
                clocks[p] = self.state.get(_clock_key(p)) or 0
            body = orjson.loads(msg.value)
            if "tick" in body:
                if body["tick"] > clocks[p]:
                    clocks[p] = body["tick"]
                    ticked.add(p)
                continue
            key = msg.key.decode()
            p_, region, from_day = load(key, p)
            if body["n"] > clocks[p]:
                clocks[p] = body["n"]
                ticked.add(p)
            first = core.merge_contribution(region, body["e"], body["q"], body["s"])
            if first is not None:
                from_day = min(from_day, first)
            changed[key] = (p_, region, from_day)

        # Extend every region of a partition whose clock moved to the new newest day.
        for p in ticked:
            self.state.put(p, _clock_key(p), clocks[p], out)
        if ticked:
            n = self.s.partitions
            for raw_key in self.state.all_keys():
                if raw_key.startswith(CLOCK):
                    continue
                key = raw_key.decode()
                p = core.stable_partition(key, n)
                if p not in ticked:
                    continue
                p_, region, from_day = load(key, p)
                changed[key] = (p_, region, from_day)
        version = time.time_ns()
        for key, (p, region, from_day) in changed.items():
            newest = max(region["newest"], clocks.get(p, 0))
            if newest > region["newest"]:
                from_day = min(from_day, region["newest"] + 1) if region["newest"] else from_day
                region["newest"] = newest
            if from_day < 1 << 30:
                for row in core.region_rows(key, region, from_day):
                    out.append(
                        Out(self.s.region_rows_topic, key.encode(), core.row_json(row, version), p)
                    )
            self.state.put(p, key.encode(), region, out)
        return out
