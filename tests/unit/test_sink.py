from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import orjson
import pytest

from sinks.writer import (
    DEAD_LETTER_COLUMNS,
    REGION_COLUMNS,
    Batcher,
    MemorySink,
    dead_letter_row,
    region_row,
)


def test_batcher_writes_one_insert_per_table() -> None:
    sink = MemorySink()
    b = Batcher(sink)
    from streams.core import RegionRow, region_key

    row_in = RegionRow(
        date(2020, 2, 10).toordinal(),
        region_key("district", "P", "C", "D"),
        "*\x1f0",
        (4, 2, 1, 1, 3, 2, 3, 7, 10, 12345, 20000),
    )
    value = row_in.to_json(1_581_292_800_000_000_000)
    for _ in range(3):
        b.add("region_metrics", REGION_COLUMNS, region_row(orjson.loads(value)))
    b.add(
        "dead_letters",
        DEAD_LETTER_COLUMNS,
        dead_letter_row(
            b"k",
            b"\xffraw",
            [
                ("reason", b"bad"),
                ("received_at", b"2020-02-10T00:00:00+00:00"),
                ("topic", b"t"),
                ("partition", b"2"),
                ("offset", b"7"),
            ],
        ),
    )
    assert len(b) == 4
    assert b.flush() == {"region_metrics": 3, "dead_letters": 1}
    assert sink.inserts == [3, 1]
    row = sink.tables["region_metrics"][0]
    assert row["day"] == date(2020, 2, 10) and row["resumption_rate"] == 0.25
    assert row["output_value"] == 123.45 and row["capacity_attainment"] == 0.61725
    assert row["appeals_opened"] == 3 and row["appeal_resolution_rate"] == 2 / 3
    assert row["staff_normal"] == 10 and row["reports_received"] == 3
    # DateTime values go to ClickHouse as Unix seconds: right whatever the server's zone.
    assert row["updated_at"] == int(datetime(2020, 2, 10, tzinfo=UTC).timestamp())
    dl = sink.tables["dead_letters"][0]
    assert dl["raw"] == b"\xffraw" and dl["reason"] == "bad" and dl["offset"] == 7
    assert dl["received_at"] == int(datetime(2020, 2, 10, tzinfo=UTC).timestamp())
    assert len(b) == 0


def test_retraction_deletes_only_older_versions() -> None:
    from sinks.writer import REGION_KEY, region_record
    from streams.core import WIDTH, RegionRow, region_key

    key = region_key("district", "P", "C", "D")
    day = date(2020, 2, 10).toordinal()
    live = RegionRow(day, key, "*\x1f0", (1,) + (0,) * (WIDTH - 1))
    sink = MemorySink()
    b = Batcher(sink)
    for version in (1, 3):
        row, retraction = region_record(orjson.loads(live.to_json(version)))
        assert retraction is None
        b.add("region_metrics", REGION_COLUMNS, row)
    gone = RegionRow(day, key, "*\x1f0", (0,) * WIDTH, deleted=True)
    values, version = region_record(orjson.loads(gone.to_json(2)))
    assert version == 2
    b.retract("region_metrics", REGION_KEY, values, version)
    assert b.flush() == {"region_metrics": 2, "region_metrics retractions": 1}
    assert [r["version"] for r in sink.tables["region_metrics"]] == [3]


def test_alert_row_for_the_alerts_table() -> None:
    from sinks.schema import ALERTS
    from sinks.writer import alert_row

    record = {
        "alert_id": "a1",
        "rule": "low",
        "state": "firing",
        "level": "district",
        "province": "P",
        "city": "C",
        "district": "D",
        "sector": "*",
        "above_scale_only": 0,
        "enterprise_id": "",
        "day": "2020-02-11",
        "metric": "resumption_rate",
        "value": 0.25,
        "threshold": 0.5,
        "at": "2020-02-11T01:02:03+00:00",
        "version": 7,
    }
    row = dict(zip(ALERTS.column_names, alert_row(orjson.dumps(record)), strict=True))
    assert row["day"] == date(2020, 2, 11)
    assert row["at"] == datetime(2020, 2, 11, 1, 2, 3, tzinfo=UTC)
    assert row["value"] == 0.25 and row["version"] == 7


def test_sink_metrics_count_rows_per_insert() -> None:
    from prometheus_client import generate_latest

    from sinks.metrics import SinkMetrics

    m = SinkMetrics()
    m.inserted({"region_metrics": 1200, "events": 30, "region_metrics retractions": 2}, 0.04)
    m.inserted({"region_metrics": 800}, 0.02)
    text = generate_latest(m.registry).decode()
    assert 'resumewatch_sink_rows_total{table="region_metrics"} 2000.0' in text
    assert 'resumewatch_sink_rows_total{table="region_metrics retractions"} 2.0' in text
    assert 'resumewatch_sink_insert_rows_count{table="region_metrics"} 2.0' in text
    assert 'resumewatch_sink_insert_rows_bucket{le="1000.0",table="region_metrics"} 1.0' in text
    assert "resumewatch_sink_insert_seconds_count 2.0" in text
    assert 'insert_rows_count{table="region_metrics retractions"}' not in text


def test_retractions_go_to_the_shards_tables_on_a_sharded_cluster() -> None:
    from sinks.writer import ClickHouseSink

    class Client:
        def __init__(self) -> None:
            self.sql: list[str] = []

        def execute(self, sql: str, params: object = None) -> None:
            self.sql.append(sql)

    one, sharded = Client(), Client()
    key = ("district", "day")
    ClickHouseSink(one, "rw").retract("region_metrics", key, [(("D", "2020-02-10"), 5)])
    ClickHouseSink(sharded, "rw", "prod").retract("region_metrics", key, [(("D", "x"), 5)])
    assert one.sql[0].startswith("ALTER TABLE rw.region_metrics DELETE WHERE (district = ")
    assert sharded.sql[0].startswith(
        "ALTER TABLE rw.region_metrics_local ON CLUSTER prod DELETE WHERE (district = "
    )


def test_batcher_flushes_groups_of_tables_and_commits_below_pending_rows() -> None:
    class Flaky(MemorySink):
        fail: set[str] = set()

        def write(self, table: str, columns: Any, rows: list[tuple[Any, ...]]) -> None:
            if table in self.fail:
                raise ConnectionError("ClickHouse is down")
            super().write(table, columns, rows)

    sink = Flaky()
    now = [100.0]
    b = Batcher(sink, clock=lambda: now[0])
    cols = ("a",)
    b.source("p0", 10)
    b.add("events", cols, (1,))
    b.add("region_metrics", cols, (2,))
    now[0] = 101.0
    b.source("p0", 11)
    b.add("events", cols, (3,))
    b.source("p1", 5)
    b.add("region_metrics", cols, (4,))
    assert b.oldest() == 100.0 and b.oldest(["region_metrics"]) == 100.0
    positions = {"p0": 12, "p1": 6, "p2": 40}
    assert b.committable(positions) == {"p0": 10, "p1": 5, "p2": 40}

    assert b.flush(["region_metrics"]) == {"region_metrics": 2}
    # The events of p0 from offset 10 are still pending: p0 stays there; p1 moves on.
    assert b.committable(positions) == {"p0": 10, "p1": 6, "p2": 40}
    assert b.oldest(["region_metrics"]) is None and b.oldest() == 100.0

    b.add("dead_letters", cols, (5,))
    sink.fail = {"dead_letters"}
    with pytest.raises(ConnectionError):
        b.flush()
    # What was written is not written again; what failed is kept for the retry.
    assert sink.inserts == [2, 2] and len(b) == 1
    assert b.committable(positions)["p1"] == 5  # dead_letters came from p1 at offset 5
    sink.fail = set()
    # The retry reports the rows of both attempts (for the sink's insert metrics).
    assert b.flush() == {"events": 2, "dead_letters": 1}
    assert sink.inserts == [2, 2, 1]
    assert b.committable(positions) == positions and len(b) == 0


def test_row_blocks_carry_the_sink_tables_columns() -> None:
    from sinks.schema import ENTERPRISE_REPORTS, EVENTS
    from streams.wire import EVENT_COLUMNS, REPORT_COLUMNS

    assert set(EVENT_COLUMNS) == set(EVENTS.column_names)
    assert set(REPORT_COLUMNS) == set(ENTERPRISE_REPORTS.column_names)


def test_the_enterprise_stage_rows_reach_their_tables_through_blocks() -> None:
    from types import SimpleNamespace

    from producers.events import DailyReport, decode
    from producers.simulator import SimConfig, stream
    from resumewatch.settings import Settings
    from sinks.runner import route
    from streams.wire import BLOCK_ROWS
    from tests.unit.harness import Harness

    settings = Settings(partitions=3)
    raws = [(r.key, r.value) for r in stream(SimConfig(enterprises=60, days=15, seed=5))]
    h = Harness(settings=settings)
    h.feed(raws, batch=2 * BLOCK_ROWS + 7)  # batches of several blocks each
    sink = MemorySink()
    b = Batcher(sink)
    for r in h.enterprise_rows:
        route(b, settings, SimpleNamespace(topic=r.topic, value=r.value))
    b.flush()

    events = sink.tables["events"]
    assert len(events) == len(raws)  # the simulator sends no bad or repeated messages
    now = datetime.now(UTC)
    by_id = {(e["source"], e["event_id"]): e for e in events}
    for _key, raw in raws:
        ev = decode(raw, now)
        row = by_id[(ev.source, ev.event_id)]
        assert row["raw"] == raw.decode()
        assert row["type"] == ev.type
        assert row["occurred_at"] == int(ev.occurred_at.timestamp())
        assert isinstance(row["first_day"], date)
    reports = sink.tables["enterprise_reports"]
    sent = [decode(raw, now) for _key, raw in raws]
    by_event = {(ev.source, ev.event_id): ev for ev in sent}
    assert {(r["enterprise_id"], r["report_date"]) for r in reports} == {
        (ev.enterprise_id, ev.report_date) for ev in sent if isinstance(ev, DailyReport)
    }
    for r in reports:  # each the report of the event it names
        ev = by_event[(r["source"], r["event_id"])]
        assert isinstance(ev, DailyReport)
        assert (r["enterprise_id"], r["report_date"]) == (ev.enterprise_id, ev.report_date)
        assert r["staff_on_duty"] == ev.staff_on_duty
        assert r["output_value"] == ev.output_value
        assert r["planned_output_value"] == ev.planned_output_value
        assert r["masks_in_stock"] == ev.masks_in_stock
        assert r["occurred_at"] == int(ev.occurred_at.timestamp())


def test_fast_and_bulk_tables_go_to_their_own_batchers_and_both_hold_commits_back() -> None:
    from sinks.runner import _Split

    fast_sink, bulk_sink = MemorySink(), MemorySink()
    rows = _Split(Batcher(fast_sink), Batcher(bulk_sink))
    rows.source("p0", 5)
    rows.add("region_metrics", ("a",), (1,))
    rows.source("p0", 6)
    rows.add_rows("events", ("b",), [(2,), (3,)])
    rows.add("alerts", ("c",), (4,))
    assert (len(rows.fast), len(rows.bulk), len(rows)) == (2, 2, 4)
    writing, rows.bulk = rows.bulk, Batcher(bulk_sink)  # the bulk insert under way

    def committable(*batchers: Batcher) -> dict[str, int]:
        out = {"p0": 10}
        for b in batchers:
            out = b.committable(out)
        return out

    assert committable(rows.fast, rows.bulk, writing) == {"p0": 5}
    rows.fast.flush()
    assert committable(rows.fast, rows.bulk, writing) == {"p0": 6}  # still being written
    writing.flush()
    assert committable(rows.fast, rows.bulk) == {"p0": 10}
    assert set(fast_sink.tables) == {"region_metrics", "alerts"}
    assert fast_sink.tables["region_metrics"] == [{"a": 1}]
    assert bulk_sink.tables == {"events": [{"b": 2}, {"b": 3}]}


def test_row_blocks_split_by_rows_and_by_bytes() -> None:
    from streams.wire import BLOCK_ROWS, RowBlock

    names = ("a", "b")
    rows = [(i, str(i)) for i in range(2 * BLOCK_ROWS + 3)]
    blocks = RowBlock.of_rows("events", names, rows)
    assert [len(b) for b in blocks] == [BLOCK_ROWS, BLOCK_ROWS, 3]
    assert [r for b in blocks for r in b.rows(names)] == rows
    big = RowBlock.of_rows("events", names, rows[:5], sizes=[100_000, 100_000, 900_000, 10, 10])
    assert [len(b) for b in big] == [2, 1, 2]  # a row over the bound alone, none lost
    assert [r for b in big for r in b.rows(names)] == rows[:5]
