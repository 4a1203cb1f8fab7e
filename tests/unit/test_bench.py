"""The benchmark's own bookkeeping: parsing the sink log and laying out the figures."""

from __future__ import annotations

from pathlib import Path

from benchmarks.bench import insert_sizes, markdown, table_rows
from benchmarks.memory import events


def test_insert_sizes_reads_every_table_of_every_insert_but_not_retractions(
    tmp_path: Path,
) -> None:
    log = tmp_path / "sink.log"
    log.write_text(
        "[2026-11-28 20:10:10,712] INFO inserted {'events': 1073, 'enterprise_reports': 944}\n"
        "[2026-11-28 20:10:11,000] WARNING ClickHouse insert failed (down); retrying in 0.5 s\n"
        "[2026-11-28 20:10:12,488] INFO inserted {'region_metrics': 540, "
        "'region_metrics retractions': 3}\n"
    )
    assert insert_sizes(log) == [1073, 944, 540]


def test_table_shows_ratios_and_marks_what_was_not_measured() -> None:
    results = {
        "machine": {"cpus": 2, "cpu": "x", "memory_gb": 24.0, "python": "3.11.7"},
        "events": 1000,
        "prefilled": 1000,
        "started_at": "2026-11-28T20:00:00+0000",
        "limit_events_per_s": 100_000.0,
        "baseline": {"events_per_s": 4000.0, "events_done": 1000, "processes": 2},
        "pipeline": {
            "events_per_s": 2000.0,
            "workers": 1,
            "processes": 2,
            "inserts": 10,
            "median_rows_per_insert": 150,
            "worker_peak_rss_bytes": 2**30,
            "worker_cpu_us_per_event": 123.4,
            "changelog_records_per_event": 1.5,
            "changelog_bytes_per_event": 180.2,
            "sink_cpu_us_per_event": 40.4,
            "machine_cpu_us_per_event": 250.6,
        },
        "latency": {
            "publish_rate": 5000.0,
            "workers": 1,
            "runs": 3,
            "probes": 600,
            "probes_seen": 599,
            "p50": 0.5,
            "p95": 0.9,
            "p99": float("inf"),
        },
    }
    rows = {measure: value for measure, value, _ in table_rows(results)}
    assert rows["resumewatch / baseline"] == "0.50×"
    assert rows["resumewatch / limit"] == "0.020"
    assert rows["peer baseline: idiomatic Faust agent (2 processes)"] == "4,000 events/s"
    assert rows["changelog per input event"] == "180 bytes in 1.50 records"
    assert rows["worker CPU per input event"] == "123 µs"
    assert rows["sink CPU per input event"] == "40 µs"
    assert rows["machine CPU per input event (all cores, every process)"] == "251 µs"
    latency = next(v for k, v in rows.items() if k.startswith("publish → queryable"))
    assert latency == "0.50 s / 0.90 s / never (599 of 600 probes seen)"  # one never came
    assert rows["publisher from NDJSON"] == "not measured"
    text = markdown(results)
    assert text.count("\n| ") == len(table_rows(results)) + 1  # header + one line per row
    assert "2 cores" in text


def test_memory_events_are_valid_contract_events() -> None:
    from datetime import UTC, datetime

    from producers.events import decode

    batch = list(events(3, "Asia/Shanghai", report_days=31))
    assert len(batch) == 3 * 33
    decoded = [decode(raw, datetime.now(UTC)) for raw in batch]
    assert {e.type for e in decoded} == {"enterprise_registered", "status_changed", "daily_report"}
    days = {e.report_date for e in decoded if e.type == "daily_report"}
    assert len(days) == 31 and len({e.event_id for e in decoded}) == len(decoded)


def test_latency_events_are_valid_contract_events() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from benchmarks.latency import _event, _registration
    from producers.events import decode

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    reg = decode(_registration("P0", "Probe-0", "Probe", now), datetime.now(UTC))
    report = decode(
        _event(
            "daily_report",
            "P0",
            1,
            now,
            report_date=now.date().isoformat(),
            staff_on_duty=1,
            output_value=1.0,
        ),
        datetime.now(UTC),
    )
    assert (reg.type, report.type) == ("enterprise_registered", "daily_report")
