"""Sinks behind one small interface: ``add`` rows, ``flush`` them in one ``write``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

import orjson

from sinks.schema import (
    ALERTS,
    APPEALS,
    DEAD_LETTERS,
    ENTERPRISE_REPORTS,
    ENTERPRISE_TIMELINE,
    EVENTS,
    PIPELINE_CLOCK,
    REGION_METRICS,
    Table,
)
from streams.wire import RowBlock

REGION_COLUMNS = REGION_METRICS.column_names
DEAD_LETTER_COLUMNS = DEAD_LETTERS.column_names


# A retraction: delete the rows with these key values and a version below ``version``.
Retraction = tuple[tuple[Any, ...], int]


class Sink(Protocol):
    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None: ...

    def retract(self, table: str, key: Sequence[str], items: list[Retraction]) -> None: ...


class Rows(Protocol):
    """Where ``sinks.runner.route`` puts the rows of a record."""

    def add(self, table: str, columns: Sequence[str], row: tuple[Any, ...]) -> None: ...

    def add_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None: ...

    def retract(
        self, table: str, key: Sequence[str], values: tuple[Any, ...], version: int
    ) -> None: ...


class Batcher:
    """Collects rows per table and writes each table's rows in one insert; retractions are
    applied after the inserts of the same flush.

    It also remembers, per table, when its oldest pending row came and the first source
    offset (per partition) of its pending rows: a partition's offsets are safe to commit
    only below that."""

    def __init__(self, sink: Sink, clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.clock = clock
        self.pending: dict[str, tuple[Sequence[str], list[tuple[Any, ...]]]] = {}
        self.retractions: dict[str, tuple[Sequence[str], list[Retraction]]] = {}
        self.since: dict[str, float] = {}  # table -> when its oldest pending row came
        self.sources: dict[str, dict[Any, int]] = {}  # table -> partition -> first offset
        self._source: tuple[Any, int] | None = None
        self.written: dict[str, int] = {}  # by a flush that failed part-way, until it ends

    def source(self, partition: Any, offset: int) -> None:
        """The rows added from now on come from this source message."""
        self._source = (partition, offset)

    def _note(self, table: str) -> None:
        if table not in self.since:
            self.since[table] = self.clock()
        if self._source is not None:
            self.sources.setdefault(table, {}).setdefault(*self._source)

    def add(self, table: str, columns: Sequence[str], row: tuple[Any, ...]) -> None:
        self.pending.setdefault(table, (columns, []))[1].append(row)
        self._note(table)

    def add_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.pending.setdefault(table, (columns, []))[1].extend(rows)
        self._note(table)

    def retract(
        self, table: str, key: Sequence[str], values: tuple[Any, ...], version: int
    ) -> None:
        self.retractions.setdefault(table, (key, []))[1].append((values, version))
        self._note(table)

    def __len__(self) -> int:
        return sum(len(rows) for _, rows in self.pending.values()) + sum(
            len(items) for _, items in self.retractions.values()
        )

    def oldest(self, tables: Iterable[str] | None = None) -> float | None:
        """When the oldest pending row of ``tables`` (default: all) came, or None."""
        times = [t for name, t in self.since.items() if tables is None or name in tables]
        return min(times) if times else None

    def flush(self, tables: Iterable[str] | None = None) -> dict[str, int]:
        """Write the pending rows of ``tables`` (default: all), one insert per table."""
        wanted = None if tables is None else set(tables)
        names = [t for t in self.since if wanted is None or t in wanted]  # in arrival order
        # Each table's rows are dropped once written: a failed flush, retried, writes the rest
        # and reports what both wrote.
        written = self.written
        for table in names:
            columns, rows = self.pending.get(table, ((), []))
            if rows:
                self.sink.write(table, columns, rows)
                written[table] = written.get(table, 0) + len(rows)
            self.pending.pop(table, None)
        for table in names:
            key, items = self.retractions.get(table, ((), []))
            if items:
                self.sink.retract(table, key, items)
                written[f"{table} retractions"] = len(items)
            self.retractions.pop(table, None)
        for table in names:
            del self.since[table]
            self.sources.pop(table, None)
        self.written = {}
        return written

    def committable(self, positions: dict[Any, int]) -> dict[Any, int]:
        """The offsets to commit: each partition's next position, held back to the first
        source message whose rows are still pending."""
        out = dict(positions)
        for firsts in self.sources.values():
            for partition, offset in firsts.items():
                if partition in out:
                    out[partition] = min(out[partition], offset)
        return out


class MemorySink:
    """In-memory twin of the ClickHouse sink, for unit tests."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.inserts: list[int] = []

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.tables.setdefault(table, []).extend(dict(zip(columns, r, strict=True)) for r in rows)
        self.inserts.append(len(rows))

    def retract(self, table: str, key: Sequence[str], items: list[Retraction]) -> None:
        gone = {(values, version) for values, version in items}
        self.tables[table] = [
            row
            for row in self.tables.get(table, [])
            if not any(
                tuple(row[k] for k in key) == values and row["version"] < version
                for values, version in gone
            )
        ]


class ClickHouseSink:
    def __init__(self, client: Any, database: str, cluster: str = "") -> None:
        self.client = client
        self.database = database
        self.cluster = cluster  # sharded: Distributed tables over <table>_local ones

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        # Column lists (the driver converts them in place): zip turns the rows around in C,
        # where the driver's row-oriented path does it item by item in Python.
        self.client.execute(
            f"INSERT INTO {self.database}.{table} ({', '.join(columns)}) VALUES",
            [list(column) for column in zip(*rows, strict=True)],
            types_check=False,
            columnar=True,
        )

    def retract(self, table: str, key: Sequence[str], items: list[Retraction]) -> None:
        # Rare (a scope lost its first days through a correction): a DELETE mutation per
        # chunk, limited to versions older than the retraction, so newer rows survive.
        for start in range(0, len(items), 200):
            params: dict[str, Any] = {}
            clauses = []
            for i, (values, version) in enumerate(items[start : start + 200]):
                cond = [f"{k} = %(k{i}_{j})s" for j, k in enumerate(key)]
                params.update({f"k{i}_{j}": v for j, v in enumerate(values)})
                params[f"v{i}"] = version
                clauses.append("(" + " AND ".join([*cond, f"version < %(v{i})s"]) + ")")
            # A Distributed table takes no DELETE: the shards' own tables do.
            target = (
                f"{self.database}.{table}_local ON CLUSTER {self.cluster}"
                if self.cluster
                else f"{self.database}.{table}"
            )
            self.client.execute(
                f"ALTER TABLE {target} DELETE WHERE " + " OR ".join(clauses), params
            )


REGION_KEY = ("level", "province", "city", "district", "sector", "above_scale_only", "day")


def region_record(d: dict[str, Any]) -> tuple[tuple[Any, ...], int | None]:
    """A region row record -> (the row, None), or for a retraction (its key values, version)."""
    d["day"] = date.fromisoformat(d["day"])
    if d.get("deleted"):
        return tuple(d[c] for c in REGION_KEY), d["version"]
    d["updated_at"] = d["version"] // 1_000_000_000  # Unix seconds (see enterprise_row)
    return tuple(d[c] for c in REGION_COLUMNS), None


def region_row(d: dict[str, Any]) -> tuple[Any, ...]:
    row, retraction = region_record(d)
    assert retraction is None, "a retraction has no row"
    return row


def dead_letter_row(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> tuple[Any, ...]:
    h = {k: v.decode(errors="replace") for k, v in headers}
    received = datetime.fromisoformat(h.get("received_at", datetime.now(UTC).isoformat()))
    return (
        int(received.timestamp()),
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


def enterprise_row(d: dict[str, Any]) -> tuple[Table, tuple[Any, ...]]:
    """A record of the enterprise rows topic -> (its table, the row). Times stay Unix
    seconds: clickhouse-driver writes an int to a DateTime column as it is, where a
    datetime would cost a conversion here and another in the driver."""
    kind = d.pop("t")
    if kind == "timeline":
        d["seg_from"] = [_day(x) for x in d["seg_from"]]
        d["seg_to"] = [_day(x) for x in d["seg_to"]]
        d["updated_at"] = int(time.time())
        table = ENTERPRISE_TIMELINE
    elif kind == "report":
        d["report_date"] = _day(d["report_date"])
        table = ENTERPRISE_REPORTS
    elif kind == "event":
        d["first_day"] = _day(d["first_day"])
        table = EVENTS
    elif kind == "appeal":
        table = APPEALS
    elif kind == "clock":
        d["newest_day"] = _day(d["newest_day"])
        table = PIPELINE_CLOCK
    else:
        raise ValueError(f"unknown enterprise row kind {kind!r}")
    return table, tuple(d[c] for c in table.column_names)


BLOCK_TABLES = {t.name: t for t in (EVENTS, ENTERPRISE_REPORTS)}
BLOCK_DAYS = ("first_day", "report_date")  # day ordinals in a block's columns


def block_rows(d: dict[str, Any]) -> tuple[Table, list[tuple[Any, ...]]]:
    """A record of rows as columns (``streams.wire.RowBlock``) -> (its table, the rows)."""
    table = BLOCK_TABLES.get(d["table"])
    if table is None:
        raise ValueError(f"unknown row block table {d['table']!r}")
    block = RowBlock(table.name, d["cols"])
    for name in BLOCK_DAYS:
        days = block.columns.get(name)
        if days is not None:
            block.columns[name] = [_day(x) for x in days]
    return table, block.rows(table.column_names)


def alert_row(value: bytes) -> tuple[Any, ...]:
    d = orjson.loads(value)
    d["day"] = date.fromisoformat(d["day"])
    # Aware: clickhouse-driver would read a naive time in the server's zone.
    d["at"] = datetime.fromisoformat(d["at"]).astimezone(UTC)
    return tuple(d[c] for c in ALERTS.column_names)
