"""ClickHouse schema (CONTRACT §4) as idempotent migrations.

The SQL sticks to what ClickHouse 18.16 understands (no DateTime64, no window functions, no
LowCardinality) and that current releases still accept; ``tests/unit/test_schema.py`` runs it
on a current engine through chdb. Every write carries a ``version``; ReplacingMergeTree keeps
the highest one per key, so a re-sent row replaces rather than adds. Read with FINAL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    engine: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def create(self, db: str) -> str:
        cols = ", ".join(f"{name} {ctype}" for name, ctype in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {db}.{self.name} ({cols}) ENGINE = {self.engine}"


RATE = "Nullable(Float64)"
REGION_METRICS = Table(
    "region_metrics",
    (
        ("day", "Date"),
        ("level", "String"),
        ("province", "String"),
        ("city", "String"),
        ("district", "String"),
        ("sector", "String"),
        ("above_scale_only", "UInt8"),
        ("enterprises", "UInt32"),
        ("resumed", "UInt32"),
        ("filed", "UInt32"),
        ("suspended", "UInt32"),
        ("resumption_rate", RATE),
        ("reports_received", "UInt32"),
        ("report_compliance", RATE),
        ("staff_on_duty", "UInt64"),
        ("staff_normal", "UInt64"),
        ("workforce_rate", RATE),
        ("output_value", "Float64"),
        ("capacity_value", "Float64"),
        ("capacity_attainment", RATE),
        ("appeals_opened", "UInt32"),
        ("appeals_resolved", "UInt32"),
        ("appeal_resolution_rate", RATE),
        ("updated_at", "DateTime"),
        ("version", "UInt64"),
    ),
    "ReplacingMergeTree(version) PARTITION BY toYYYYMM(day) "
    "ORDER BY (level, province, city, district, sector, above_scale_only, day)",
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        ("received_at", "DateTime"),
        ("reason", "String"),
        ("raw", "String"),
        ("message_key", "String"),
        ("topic", "String"),
        ("partition", "UInt32"),
        ("offset", "UInt64"),
    ),
    "ReplacingMergeTree PARTITION BY toYYYYMM(received_at) ORDER BY (topic, partition, offset)",
)
TABLES = (REGION_METRICS, DEAD_LETTERS)


def statements(database: str) -> list[str]:
    return [f"CREATE DATABASE IF NOT EXISTS {database}"] + [t.create(database) for t in TABLES]


def migrate(execute: Callable[..., Any], database: str) -> int:
    """Create what is missing, and add columns that a table of an older version lacks.

    Safe to repeat. Returns the number of statements run.
    """
    stmts = statements(database)
    for sql in stmts:
        execute(sql)
    for table in TABLES:
        have = {
            row[0]
            for row in execute(
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                {"db": database, "t": table.name},
            )
        }
        after = None
        for name, ctype in table.columns:
            if name not in have:
                where = f" AFTER {after}" if after else ""
                execute(f"ALTER TABLE {database}.{table.name} ADD COLUMN {name} {ctype}{where}")
                stmts.append(name)
            after = name
    return len(stmts)
