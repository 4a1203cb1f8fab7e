"""A realistic mix through Kafka: valid events count once, every bad one is a dead letter."""

from __future__ import annotations

from datetime import timedelta

from producers.events import InvalidEvent, StatusChanged, decode, encode
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

    # Now events from long before the newest day: too late, amend nothing, land as dead letters.
    late = [
        StatusChanged(
            event_id=f"late-{i}",
            enterprise_id=f"E21-{i:07d}",
            source="it",
            occurred_at=cfg_start_at(cfg) - timedelta(days=60 + i),
            status="resumed",
        )
        for i in range(5)
    ]
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        pub.publish(late)
    p.wait_for(lambda: len(dead()) == len(expected_reasons) + 5, 60, "the too-late events")
    late_reasons = [v for k, v in dead().items() if k in {encode(e) for e in late}]
    assert len(late_reasons) == 5
    assert all(r.startswith("too late: status_changed affects 20") for r in late_reasons)
    assert rows() == want


def cfg_start_at(cfg: SimConfig):  # type: ignore[no-untyped-def]
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    return datetime.combine(cfg.start, time(9), ZoneInfo(cfg.tz))
