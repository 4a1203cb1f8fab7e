"""Sinks behind one small interface: ``add`` rows, ``flush`` them in one ``write``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson

from sinks.schema import (
    DEAD_LETTERS,
    ENTERPRISE_REPORTS,
    ENTERPRISE_TIMELINE,
    EVENTS,
    PIPELINE_CLOCK,
    REGION_METRICS,
    Table,
)

REGION_COLUMNS = REGION_METRICS.column_names
DEAD_LETTER_COLUMNS = DEAD_LETTERS.column_names


class Sink(Protocol):
    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None: ...


class Batcher:
    """Collects rows per table and writes each table's rows in one insert."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pending: dict[str, tuple[Sequence[str], list[tuple[Any, ...]]]] = {}

    def add(self, table: str, columns: Sequence[str], row: tuple[Any, ...]) -> None:
        self.pending.setdefault(table, (columns, []))[1].append(row)

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.pending.values())

    def flush(self) -> dict[str, int]:
        written = {}
        for table, (columns, rows) in self.pending.items():
            if rows:
                self.sink.write(table, columns, rows)
                written[table] = len(rows)
        self.pending.clear()
        return written


class MemorySink:
    """In-memory twin of the ClickHouse sink, for unit tests."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.inserts: list[int] = []

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.tables.setdefault(table, []).extend(dict(zip(columns, r, strict=True)) for r in rows)
        self.inserts.append(len(rows))


class ClickHouseSink:
    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.database = database

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.client.execute(
            f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES",
            rows,
            types_check=False,
        )


def region_row(value: bytes) -> tuple[Any, ...]:
    d = orjson.loads(value)
    d["day"] = date.fromisoformat(d["day"])
    d["updated_at"] = datetime.fromtimestamp(d["version"] / 1e9, UTC).replace(tzinfo=None)
    return tuple(d[c] for c in REGION_COLUMNS)


def dead_letter_row(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> tuple[Any, ...]:
    h = {k: v.decode(errors="replace") for k, v in headers}
    received = datetime.fromisoformat(h.get("received_at", datetime.now(UTC).isoformat()))
    return (
        received.astimezone(UTC).replace(tzinfo=None),
        h.get("reason", "unknown"),
        value or b"",
        key or b"",
        h.get("topic", ""),
        int(h.get("partition", 0)),
        int(h.get("offset", 0)),
    )


EPOCH = date(1970, 1, 1)


def _day(ordinal: int) -> date:
    return date.fromordinal(ordinal) if ordinal else EPOCH


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def enterprise_row(value: bytes) -> tuple[Table, tuple[Any, ...]]:
    """A record of the enterprise rows topic -> (its table, the row)."""
    d = orjson.loads(value)
    kind = d.pop("t")
    if kind == "timeline":
        d["seg_from"] = [_day(x) for x in d["seg_from"]]
        d["seg_to"] = [_day(x) for x in d["seg_to"]]
        d["updated_at"] = datetime.now(UTC).replace(tzinfo=None)
        table = ENTERPRISE_TIMELINE
    elif kind == "report":
        d["report_date"] = _day(d["report_date"])
        d["occurred_at"] = _utc(d["occurred_at"])
        table = ENTERPRISE_REPORTS
    elif kind == "event":
        d["occurred_at"] = _utc(d["occurred_at"])
        d["received_at"] = _utc(d["received_at"])
        d["first_day"] = _day(d["first_day"])
        table = EVENTS
    elif kind == "clock":
        d["newest_day"] = _day(d["newest_day"])
        table = PIPELINE_CLOCK
    else:
        raise ValueError(f"unknown enterprise row kind {kind!r}")
    return table, tuple(d[c] for c in table.column_names)
