"""CONTRACT v2 through the real pipeline: an event is (source, event_id), and only a daily
report can be too late, judged against its own enterprise (the too-late case itself is in
test_dead_letters)."""

from __future__ import annotations

from datetime import date

import orjson

from producers.events import AppealOpened, AppealResolved, EnterpriseRegistered, StatusChanged
from producers.simulator import SimConfig, Summary, stream
from tests.reference import expected_enterprise_daily, expected_rows


def _dead_letters(client) -> int:  # type: ignore[no-untyped-def]
    return int(client.execute("SELECT count() FROM dead_letters")[0][0])


def test_a_late_connecting_source_backfills_its_history_in_full(pipeline) -> None:  # type: ignore[no-untyped-def]
    """The portal's reports for 40 days come first; the hotline connects last and sends its
    registrations, statuses and appeals of a third of the enterprises, weeks old."""
    p = pipeline(partitions=3)
    p.start("worker")
    p.start("sink")
    cfg = SimConfig(enterprises=90, days=40, seed=5, disorder=1)
    records = list(stream(cfg, Summary()))
    backfilled = {f"{e.enterprise_id}" for e in (r.event for r in records) if e}
    backfilled = set(sorted(backfilled)[::3])
    kinds = (EnterpriseRegistered, StatusChanged, AppealOpened, AppealResolved)
    first, last = [], []
    for r in records:
        late = isinstance(r.event, kinds) and r.event.enterprise_id in backfilled
        (last if late else first).append(r.value)
    assert len(last) > 100
    raws = [*first, *last]
    want = expected_rows(raws)
    assert want != expected_rows(first)  # the backfill changes the rows
    p.publish_raw(raws)
    client = p.clickhouse()
    p.wait_for(lambda: p.region_rows(client) == want, 240, "region_metrics with the backfill")
    want_daily = expected_enterprise_daily(raws)
    p.wait_for(lambda: p.enterprise_daily(client) == want_daily, 60, "enterprise_daily")
    assert _dead_letters(client) == 0


def _event(source: str, event_id: str, etype: str, at: str, **kw: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "source": source,
            "type": etype,
            "enterprise_id": "TWO-1",
            "occurred_at": at,
            **kw,
        }
    )


def test_the_same_event_id_from_two_sources_counts_twice(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=2)
    p.start("worker")
    p.start("sink")
    registered = _event(
        "portal",
        "1",
        "enterprise_registered",
        "2020-02-10T08:00:00+08:00",
        name="Harbin Bearing",
        province="黑龍江省",
        city="哈爾濱市",
        district="平房區",
        sector="machinery",
        above_scale=True,
        employees=100,
        normal_daily_output_value=1000,
    )
    raws = [
        registered,
        _event("portal", "2", "status_changed", "2020-02-11T08:00:00+08:00", status="resumed"),
        # The hotline numbers its events from 1 too: these are other events.
        _event("hotline", "2", "status_changed", "2020-02-12T08:00:00+08:00", status="filed"),
        _event(
            "portal",
            "3",
            "daily_report",
            "2020-02-11T20:00:00+08:00",
            report_date="2020-02-11",
            staff_on_duty=40,
            output_value=400,
        ),
        _event(
            "erp",
            "3",
            "daily_report",
            "2020-02-12T20:00:00+08:00",
            report_date="2020-02-12",
            staff_on_duty=60,
            output_value=600,
        ),
    ]
    raws += raws  # everything re-sent: still once each
    p.publish_raw(raws)
    want = expected_rows(raws)
    district = ("district", "黑龍江省", "哈爾濱市", "平房區", "*", 0)
    assert want[(date(2020, 2, 12), *district)][:5] == (1, 0, 1, 0, 1)  # filed, reported
    assert want[(date(2020, 2, 11), *district)][:5] == (1, 1, 0, 0, 1)
    client = p.clickhouse()
    p.wait_for(lambda: p.region_rows(client) == want, 120, "region_metrics")

    def events() -> list[tuple[str, str]]:
        return client.execute("SELECT source, event_id FROM events FINAL ORDER BY source, event_id")

    want_events = [
        ("erp", "3"),
        ("hotline", "2"),
        ("portal", "1"),
        ("portal", "2"),
        ("portal", "3"),
    ]
    p.wait_for(lambda: events() == want_events, 60, "each (source, event_id) once in events")

    def reports() -> list[tuple[date, str, str]]:
        return client.execute(
            "SELECT report_date, source, event_id FROM enterprise_reports FINAL "
            "ORDER BY report_date"
        )

    want_reports = [(date(2020, 2, 11), "portal", "3"), (date(2020, 2, 12), "erp", "3")]
    p.wait_for(lambda: reports() == want_reports, 60, "both reports in enterprise_reports")
    assert _dead_letters(client) == 0
