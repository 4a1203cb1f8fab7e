"""The read-only analyst user: SELECT on every contract name of the pipeline's database, and
nothing else; `resumewatch sql` runs as that user."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from clickhouse_driver.errors import ServerException

from resumewatch.provision import ensure_schema
from resumewatch.settings import Settings
from sinks.runner import analyst_client

CONTRACT = (
    "region_metrics",
    "enterprise_daily",
    "supply_chain",
    "events",
    "alerts",
    "alerts_firing",
    "dead_letters",
)


def test_analyst_reads_everything_in_the_contract_and_cannot_write(
    base_settings: Settings,
) -> None:
    from sinks.runner import clickhouse_client

    ensure_schema(base_settings)
    writer = clickhouse_client(base_settings, base_settings.clickhouse_database)
    client = analyst_client(base_settings)
    try:
        for name in CONTRACT:
            client.execute(f"SELECT count() FROM {name}")
        refused = [
            "INSERT INTO events (event_id) SELECT 'x'",
            "ALTER TABLE events ADD COLUMN sneaky String",
            "DROP TABLE dead_letters",
            "CREATE TABLE mine (x UInt8) ENGINE = Memory",
            "ALTER TABLE events DELETE WHERE 1",
        ]
        for sql in refused:
            with pytest.raises(ServerException):
                client.execute(sql)
        # Another database the writer has: not for the analyst.
        writer.execute("CREATE DATABASE IF NOT EXISTS rw_not_analysts")
        writer.execute("CREATE TABLE IF NOT EXISTS rw_not_analysts.t (x UInt8) ENGINE = Memory")
        with pytest.raises(ServerException):
            client.execute("SELECT count() FROM rw_not_analysts.t")
    finally:
        client.disconnect()
        writer.execute("DROP DATABASE IF EXISTS rw_not_analysts")
    # Nothing changed: the writer still sees the tables, without the analyst's column.
    names = {r[0] for r in writer.execute("SHOW TABLES")}
    assert set(CONTRACT) <= names
    cols = {r[0] for r in writer.execute("DESCRIBE TABLE events")}
    assert "sneaky" not in cols
    writer.disconnect()


def test_sql_command_prints_table_csv_and_json(base_settings: Settings) -> None:
    ensure_schema(base_settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "resumewatch", "sql", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )

    query = "SELECT number AS n, toString(number * 2) AS twice FROM system.numbers LIMIT 3"
    out = run(query)
    assert out.returncode == 0, out.stderr
    assert "twice" in out.stdout and "3 rows" in out.stdout
    out = run(query, "--format", "csv")
    assert out.stdout.splitlines() == ["n,twice", "0,0", "1,2", "2,4"]
    out = run(query, "--format", "json")
    assert [orjson.loads(x) for x in out.stdout.splitlines()] == [
        {"n": 0, "twice": "0"},
        {"n": 1, "twice": "2"},
        {"n": 2, "twice": "4"},
    ]
    out = run("DROP TABLE events")
    assert out.returncode != 0 and "ClickHouse refused the query" in out.stderr


def test_the_dashboard_reads_as_the_analyst(base_settings: Settings) -> None:
    """Every dashboard query runs with the analyst's rights on the pipeline's database."""
    from resumewatch.dashboard import load

    ensure_schema(base_settings)
    client = analyst_client(base_settings)
    try:
        for sector, above in (("*", 0), ("*", 1), ("no such sector", 0)):
            data = load(client, sector, above)
            assert set(data) == {
                "newest_day",
                "sectors",
                "provinces",
                "districts",
                "alerts",
                "missing",
            }
    finally:
        client.disconnect()
