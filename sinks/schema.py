"""ClickHouse schema (CONTRACT §4) as idempotent migrations.

The SQL sticks to what ClickHouse 18.16 understands (no DateTime64, no window functions, no
LowCardinality) and that current releases still accept; ``tests/unit/test_schema.py`` runs it
on a current engine through chdb. Every write carries a ``version``; ReplacingMergeTree keeps
the highest one per key, so a re-sent row replaces rather than adds. Read with FINAL.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

log = logging.getLogger("resumewatch.schema")


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    engine: str

    @cached_property  # read for every row the sink writes
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def create(self, db: str, as_name: str | None = None) -> str:
        cols = ", ".join(f"{name} {ctype}" for name, ctype in self.columns)
        name = as_name or self.name
        return f"CREATE TABLE IF NOT EXISTS {db}.{name} ({cols}) ENGINE = {self.engine}"

    @property
    def sorting_key(self) -> str:
        """As system.tables.sorting_key shows it: "a, b, c"."""
        return self.engine.split("ORDER BY", 1)[1].strip().strip("()")


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
ENTERPRISE_TIMELINE = Table(
    "enterprise_timeline",
    (
        ("enterprise_id", "String"),
        # Day segments; seg_to is exclusive, 1970-01-01 for "still so today".
        ("seg_from", "Array(Date)"),
        ("seg_to", "Array(Date)"),
        ("province", "Array(String)"),
        ("city", "Array(String)"),
        ("district", "Array(String)"),
        ("sector", "Array(String)"),
        ("above_scale", "Array(UInt8)"),
        ("key_enterprise", "Array(UInt8)"),
        ("employees", "Array(UInt32)"),
        ("normal_daily_output_value", "Array(Float64)"),
        ("status", "Array(String)"),
        ("appeals_opened", "Array(UInt32)"),
        ("appeals_resolved", "Array(UInt32)"),
        ("suppliers", "Array(Array(String))"),
        ("updated_at", "DateTime"),
        ("version", "UInt64"),
    ),
    "ReplacingMergeTree(version) ORDER BY enterprise_id",
)
ENTERPRISE_REPORTS = Table(
    "enterprise_reports",
    (
        ("enterprise_id", "String"),
        ("report_date", "Date"),
        ("event_id", "String"),
        ("source", "String"),
        ("occurred_at", "DateTime"),
        ("staff_on_duty", "UInt32"),
        ("output_value", "Float64"),
        ("planned_output_value", "Nullable(Float64)"),
        ("masks_in_stock", "Nullable(UInt32)"),
        ("zero_report", "UInt8"),
        ("version", "UInt64"),
    ),
    "ReplacingMergeTree(version) PARTITION BY toYYYYMM(report_date) "
    "ORDER BY (enterprise_id, report_date)",
)
PIPELINE_CLOCK = Table(
    "pipeline_clock",
    (("partition", "UInt32"), ("newest_day", "Date"), ("version", "UInt64")),
    "ReplacingMergeTree(version) ORDER BY partition",
)
EVENTS = Table(
    "events",
    (
        ("event_id", "String"),
        ("type", "String"),
        ("enterprise_id", "String"),
        ("occurred_at", "DateTime"),
        ("first_day", "Date"),
        ("source", "String"),
        ("schema_version", "UInt16"),
        ("raw", "String"),
        ("received_at", "DateTime"),
    ),
    # An event is (source, event_id) (CONTRACT §1): two sources' same id are two rows.
    "ReplacingMergeTree PARTITION BY toYYYYMM(first_day) "
    "ORDER BY (enterprise_id, source, event_id)",
)
APPEALS = Table(
    "appeals",
    (
        ("enterprise_id", "String"),
        ("appeal_id", "String"),
        ("category", "String"),
        ("opened_at", "Nullable(DateTime)"),
        ("resolved_at", "Nullable(DateTime)"),
        ("version", "UInt64"),
    ),
    "ReplacingMergeTree(version) ORDER BY (enterprise_id, appeal_id)",
)
ALERTS = Table(
    "alerts",
    (
        ("alert_id", "String"),
        ("rule", "String"),
        ("state", "String"),
        ("level", "String"),
        ("province", "String"),
        ("city", "String"),
        ("district", "String"),
        ("sector", "String"),
        ("above_scale_only", "UInt8"),
        ("enterprise_id", "String"),
        ("day", "Date"),
        ("metric", "String"),
        ("value", "Nullable(Float64)"),
        ("threshold", "Float64"),
        ("at", "DateTime"),
        ("version", "UInt64"),
    ),
    # One row per alert and state: when it fired and, once it did, when it resolved (a
    # transition sent again after a worker crash, or after a correction, replaces the old one).
    "ReplacingMergeTree(version) ORDER BY (alert_id, state)",
)
TABLES = (
    ALERTS,
    REGION_METRICS,
    DEAD_LETTERS,
    ENTERPRISE_TIMELINE,
    ENTERPRISE_REPORTS,
    PIPELINE_CLOCK,
    EVENTS,
    APPEALS,
)

# Views: one row per enterprise and day, expanded from the timeline up to the newest event day
# the pipeline has seen, with that day's report joined in; and supplier readiness on top.
VIEWS = {
    # The alerts firing now: those whose latest transition is `firing`.
    "alerts_firing": """
        SELECT alert_id, argMax(rule, version) AS rule, argMax(state, version) AS state,
               argMax(level, version) AS level, argMax(province, version) AS province,
               argMax(city, version) AS city, argMax(district, version) AS district,
               argMax(sector, version) AS sector,
               argMax(above_scale_only, version) AS above_scale_only,
               argMax(enterprise_id, version) AS enterprise_id, min(day) AS fired_day,
               argMax(metric, version) AS metric, argMax(value, version) AS value,
               argMax(threshold, version) AS threshold, max(at) AS at
        FROM {db}.alerts FINAL
        GROUP BY alert_id
        HAVING state = 'firing'
    """,
    # A segment's days run to the newest day the pipeline has seen; while the pipeline clock
    # is not written yet, or is behind a segment the sink wrote first, they are none (and
    # not the wrapped-around difference of the two).
    "enterprise_daily": """
        SELECT enterprise_id, day, province, city, district, sector, above_scale, key_enterprise,
               status, reported, zero_report, staff_on_duty, output_value, planned_output_value,
               masks_in_stock, employees, normal_daily_output_value, appeals_opened,
               appeals_resolved, suppliers
        FROM
        (
            SELECT enterprise_id, province, city, district, sector, above_scale, key_enterprise,
                   employees, normal_daily_output_value, status, appeals_opened,
                   appeals_resolved, suppliers,
                   if(seg_to = toDate(0), newest + 1, seg_to) AS seg_end,
                   arrayJoin(arrayMap(k -> seg_from + k, range(toUInt32(
                       if(seg_end > seg_from, seg_end - seg_from, 0))))) AS day
            FROM
            (
                SELECT *, (SELECT max(newest_day) FROM {db}.pipeline_clock FINAL) AS newest
                FROM {db}.enterprise_timeline FINAL
            )
            ARRAY JOIN seg_from, seg_to, province, city, district, sector, above_scale,
                       key_enterprise, employees, normal_daily_output_value, status,
                       appeals_opened, appeals_resolved, suppliers
        ) AS days
        ANY LEFT JOIN
        (
            SELECT enterprise_id, report_date AS day, toUInt8(1) AS reported, zero_report,
                   staff_on_duty, output_value, planned_output_value, masks_in_stock
            FROM {db}.enterprise_reports FINAL
        ) AS reports USING (enterprise_id, day)
    """,
    "supply_chain": """
        SELECT day, enterprise_id, any(province) AS province, any(city) AS city,
               any(district) AS district, any(sector) AS sector,
               any(key_enterprise) AS key_enterprise, count() AS suppliers,
               toUInt32(sum(supplier_status = 'resumed')) AS suppliers_resumed,
               suppliers_resumed / suppliers AS supplier_readiness,
               groupArray(supplier_id) AS supplier_ids
        FROM
        (
            SELECT day, enterprise_id, province, city, district, sector, key_enterprise,
                   arrayJoin(suppliers) AS supplier_id
            FROM {db}.enterprise_daily
            WHERE notEmpty(suppliers)
        ) AS links
        ANY LEFT JOIN
        (
            SELECT enterprise_id AS supplier_id, day, status AS supplier_status
            FROM {db}.enterprise_daily
        ) AS supplier_days USING (supplier_id, day)
        GROUP BY day, enterprise_id
    """,
}


def view_sql(database: str, name: str) -> str:
    return " ".join(VIEWS[name].split()).format(db=database)


def statements(database: str) -> list[str]:
    return (
        [f"CREATE DATABASE IF NOT EXISTS {database}"]
        + [t.create(database) for t in TABLES]
        + [
            f"CREATE VIEW IF NOT EXISTS {database}.{name} AS {view_sql(database, name)}"
            for name in VIEWS
        ]
    )


def _identifiers(sql: str) -> set[str]:
    return set(re.findall(r"[a-z_][a-z0-9_]*", sql.lower()))


def cluster_statements(database: str, cluster: str, sharded: bool = False) -> list[str]:
    """The schema for a ClickHouse cluster, every statement ``ON CLUSTER`` (paths use the
    servers' ``{shard}`` and ``{replica}`` macros).

    One shard of replicas (``sharded=False``): every table a Replicated table with the
    contract's name. Several shards: Replicated ``<table>_local`` tables on every shard and a
    ``Distributed`` table with the contract's name over them, sharded by a hash of the whole
    sorting key, so that all versions of a row live on one shard and ``FINAL`` folds them.
    The views are the same in both, on every node.
    """
    on = f" ON CLUSTER {cluster}"
    out = [f"CREATE DATABASE IF NOT EXISTS {database}{on}"]
    for table in TABLES:
        engine, rest = table.engine.split(" ", 1)
        args = engine[len("ReplacingMergeTree") :].strip("()")
        path = f"'/clickhouse/tables/{{shard}}/{database}/{table.name}', '{{replica}}'"
        replicated = f"ReplicatedReplacingMergeTree({path}{', ' + args if args else ''}) {rest}"
        cols = ", ".join(f"{name} {ctype}" for name, ctype in table.columns)
        local = f"{table.name}_local" if sharded else table.name
        out.append(
            f"CREATE TABLE IF NOT EXISTS {database}.{local}{on} ({cols}) ENGINE = {replicated}"
        )
        if sharded:
            out.append(
                f"CREATE TABLE IF NOT EXISTS {database}.{table.name}{on} AS {database}.{local} "
                f"ENGINE = Distributed({cluster}, {database}, {local}, "
                f"cityHash64({table.sorting_key}))"
            )
    out += [
        f"CREATE VIEW IF NOT EXISTS {database}.{name}{on} AS "
        + " ".join(sql.split()).format(db=database)
        for name, sql in VIEWS.items()
    ]
    return out


def migrate(execute: Callable[..., Any], database: str) -> int:
    """Create what is missing, add columns that a table of an older version lacks, and move a
    table whose sorting key changed into one with the new key.

    Safe to repeat. Returns the number of statements run. Replicated and Distributed tables
    (a cluster's schema, from ``cluster_statements``) are left alone: their changes go
    ``ON CLUSTER``.
    """
    stmts = statements(database)
    for sql in stmts:
        execute(sql)
    where = {"db": database}
    replicated = {
        row[0]
        for row in execute(
            "SELECT name FROM system.tables WHERE database = %(db)s "
            "AND (engine LIKE 'Replicated%%' OR engine = 'Distributed')",
            where,
        )
    }
    if replicated:
        log.warning(
            "%s holds a cluster's tables (%s): column, sorting-key and view changes are not "
            "applied to them here; apply a release's schema changes ON CLUSTER",
            database,
            ", ".join(sorted(replicated)),
        )
    else:
        # A view holds no data: one of an older release (its stored query lacks a name the
        # current one uses) is created again.
        for name in VIEWS:
            held = execute(
                "SELECT create_table_query FROM system.tables "
                "WHERE database = %(db)s AND name = %(t)s",
                {**where, "t": name},
            )
            current = view_sql(database, name)
            if held and _identifiers(current) - _identifiers(held[0][0]):
                again = [
                    f"DROP TABLE IF EXISTS {database}.{name}",
                    f"CREATE VIEW {database}.{name} AS {current}",
                ]
                for sql in again:
                    execute(sql)
                stmts += again
    for table in TABLES:
        if table.name in replicated:
            continue
        have = {
            row[0]
            for row in execute(
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
                {**where, "t": table.name},
            )
        }
        after = None
        for name, ctype in table.columns:
            if name not in have:
                at = f" AFTER {after}" if after else ""
                execute(f"ALTER TABLE {database}.{table.name} ADD COLUMN {name} {ctype}{at}")
                stmts.append(name)
            after = name
        key = execute(
            "SELECT sorting_key FROM system.tables WHERE database = %(db)s AND name = %(t)s",
            {**where, "t": table.name},
        )
        if key and key[0][0] != table.sorting_key:
            old, new = f"{database}.{table.name}", f"{database}.{table.name}__migrating"
            cols = ", ".join(table.column_names)
            moves = [
                f"DROP TABLE IF EXISTS {new}",
                table.create(database, f"{table.name}__migrating"),
                f"INSERT INTO {new} ({cols}) SELECT {cols} FROM {old}",
                f"RENAME TABLE {old} TO {old}__old, {new} TO {old}",
                f"DROP TABLE {old}__old",
            ]
            for sql in moves:
                execute(sql)
            stmts += moves
    return len(stmts)
