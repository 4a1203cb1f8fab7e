"""ClickHouse schema (CONTRACT §4) as idempotent migrations.

The SQL sticks to what ClickHouse 18.16 understands (no DateTime64, no window functions, no
LowCardinality) and that current releases still accept; ``tests/unit/test_schema.py`` runs it
on a current engine through chdb.
"""

from __future__ import annotations

from collections.abc import Callable

# Every write carries a ``version``; ReplacingMergeTree keeps the highest one per key, so a
# re-sent row (after a crash or a replay) replaces rather than adds. Read with FINAL.
TABLES: dict[str, str] = {
    "region_metrics": """
        CREATE TABLE IF NOT EXISTS {db}.region_metrics (
            day Date,
            level String,
            province String,
            city String,
            district String,
            sector String,
            above_scale_only UInt8,
            enterprises UInt32,
            resumed UInt32,
            filed UInt32,
            suspended UInt32,
            resumption_rate Nullable(Float64),
            updated_at DateTime,
            version UInt64
        ) ENGINE = ReplacingMergeTree(version)
        PARTITION BY toYYYYMM(day)
        ORDER BY (level, province, city, district, sector, above_scale_only, day)
    """,
    "dead_letters": """
        CREATE TABLE IF NOT EXISTS {db}.dead_letters (
            received_at DateTime,
            reason String,
            raw String,
            message_key String,
            topic String,
            partition UInt32,
            offset UInt64
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(received_at)
        ORDER BY (topic, partition, offset)
    """,
}


def statements(database: str) -> list[str]:
    return [f"CREATE DATABASE IF NOT EXISTS {database}"] + [
        " ".join(sql.split()).format(db=database) for sql in TABLES.values()
    ]


def migrate(execute: Callable[[str], object], database: str) -> int:
    """Run every migration through ``execute``; safe to repeat. Returns statements run."""
    stmts = statements(database)
    for sql in stmts:
        execute(sql)
    return len(stmts)
