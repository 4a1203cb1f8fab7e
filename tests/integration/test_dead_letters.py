"""A realistic mix through Kafka: valid events count once, every bad one is a dead letter."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from producers.events import DailyReport, InvalidEvent, StatusChanged, decode, encode
from producers.publisher import Publisher
from producers.simulator import SimConfig, Summary, stream
from tests.reference import expected_rows


def test_valid_invalid_duplicate_and_late_events_land_exactly(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    p.start("worker")
    p.start("sink")
    cfg = SimConfig(enterprises=300, days=7, seed=21, bad_share=0.03, duplicate_share=0.03)
    summary = Summary()
    records = list(stream(cfg, summary))
    assert summary.counts["bad"] > 20 and summary.counts["duplicate"] > 20
    p.publish(records)

    bad = [r.value for r in records if r.kind == "bad"]
    expected_reasons = {}
    for raw in bad:
        try:
            decode(raw)
        except InvalidEvent as exc:
            expected_reasons[raw] = str(exc)
    assert len(expected_reasons) == len(set(bad))
    want = expected_rows([r.value for r in records if r.kind in ("valid", "duplicate")])
    client = p.clickhouse()

    def rows() -> dict[tuple[object, ...], tuple[int, ...]]:
        return p.region_rows(client)

    def dead() -> dict[bytes, str]:
        got = client.execute(
            "SELECT raw, reason FROM dead_letters FINAL", settings={"strings_as_bytes": True}
        )
        return {raw: reason.decode() for raw, reason in got}

    p.wait_for(lambda: rows() == want, 180, "region_metrics to equal the reference")
    p.wait_for(lambda: len(dead()) == len(expected_reasons), 60, "every bad message")
    assert dead() == expected_reasons
    assert client.execute("SELECT count() FROM dead_letters FINAL")[0][0] == len(bad)

    # Now reports far behind their own enterprise's newest report: too late, amend
    # nothing, land as dead letters. Statuses as old are a backfill: they count.
    reports = [r.event for r in records if r.kind == "valid" and isinstance(r.event, DailyReport)]
    by_enterprise = {ev.enterprise_id: ev for ev in reports}
    late = [
        replace(ev, event_id=f"late-{i}", report_date=ev.report_date - timedelta(days=40 + i))
        for i, ev in enumerate(list(by_enterprise.values())[:5])
    ]
    backfill = [
        StatusChanged(
            event_id=f"old-{i}",
            enterprise_id=ev.enterprise_id,
            source="it",
            occurred_at=cfg_start_at(cfg) - timedelta(days=60 + i),
            status="resumed",
        )
        for i, ev in enumerate(list(by_enterprise.values())[5:10])
    ]
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        pub.publish([*late, *backfill])
    p.wait_for(lambda: len(dead()) == len(expected_reasons) + 5, 60, "the too-late events")
    late_reasons = [v for k, v in dead().items() if k in {encode(e) for e in late}]
    assert len(late_reasons) == 5
    assert all(r.startswith("too late: daily_report.report_date 20") for r in late_reasons)
    valid = [r.value for r in records if r.kind in ("valid", "duplicate")]
    want = expected_rows([*valid, *(encode(e) for e in [*late, *backfill])])
    assert want != expected_rows(valid)  # the backfill moved rows, the late reports did not
    p.wait_for(lambda: rows() == want, 120, "region_metrics with the backfill")


def cfg_start_at(cfg: SimConfig):  # type: ignore[no-untyped-def]
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    return datetime.combine(cfg.start, time(9), ZoneInfo(cfg.tz))
