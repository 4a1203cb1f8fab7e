"""enterprise_daily, supply_chain and events, read back from ClickHouse, against the reference."""

from __future__ import annotations

from producers.publisher import Publisher
from producers.simulator import SimConfig, Summary, stream
from tests.reference import (
    expected_enterprise_daily,
    expected_rows,
    expected_supply_chain,
)


def test_enterprise_views_match_the_reference(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=3)
    p.start("worker")
    p.start("sink")
    cfg = SimConfig(enterprises=200, days=6, seed=9, key_share=0.1, duplicate_share=0.05)
    records = list(stream(cfg, Summary()))
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        for r in records:
            pub.send_raw(r.key, r.value)
        pub.flush()
    raws = [r.value for r in records]
    want_rows = expected_rows(raws)
    want_daily = expected_enterprise_daily(raws)
    want_chain = expected_supply_chain(raws)
    assert want_chain, "the simulation should have enterprises with suppliers"
    client = p.clickhouse()
    p.wait_for(lambda: p.region_rows(client) == want_rows, 180, "region_metrics")

    p.wait_for(
        lambda: p.enterprise_daily(client) == want_daily,
        60,
        "enterprise_daily to equal the reference",
    )
    got_chain = client.execute(
        "SELECT enterprise_id, day, suppliers, suppliers_resumed, supplier_readiness "
        "FROM supply_chain"
    )
    assert {(r[0], r[1]): (r[2], r[3]) for r in got_chain} == want_chain
    assert all(r[4] == r[3] / r[2] for r in got_chain)
    unique = {e.event_id for e in (r.event for r in records) if e is not None}
    p.wait_for(
        lambda: client.execute("SELECT count() FROM events FINAL")[0][0] == len(unique),
        60,
        "every accepted event in the events table",
    )
    raw_of = {r.event.event_id: r.value for r in records if r.event is not None}
    sample = client.execute("SELECT event_id, raw FROM events FINAL LIMIT 50")
    assert all(raw_of[eid] == raw.encode() for eid, raw in sample)

    # reconcile: the SQL recomputation over enterprise_daily agrees with the stream ...
    from resumewatch.reconcile import reconcile

    report = reconcile(p.settings, client)
    assert report.rows_checked == len(want_rows)
    assert report.differences == []
    # ... and it finds a row that is off.
    client.execute(
        "INSERT INTO region_metrics (day, level, province, city, district, sector, "
        "above_scale_only, enterprises, updated_at, version) "
        "SELECT day, level, province, city, district, sector, above_scale_only, "
        "enterprises + 1, updated_at, version + 1 FROM region_metrics FINAL "
        "WHERE level = 'province' AND sector = '*' AND above_scale_only = 0 "
        "ORDER BY day DESC LIMIT 1"
    )
    diffs = reconcile(p.settings, client).differences
    assert len(diffs) == 1
    assert diffs[0].describe().startswith("day=")
    assert "level=province" in diffs[0].describe()
    assert "enterprises streamed" in diffs[0].describe()


def test_readme_example_queries_run(pipeline) -> None:  # type: ignore[no-untyped-def]
    import pathlib

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### Example queries", 1)[1].split("\n## ", 1)[0]
    queries = [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]
    assert len(queries) == 5
    p = pipeline()
    p.start("worker")
    p.start("sink")
    cfg = SimConfig(enterprises=150, days=4, seed=4, cities=1, districts_per_city=3)
    records = list(stream(cfg, Summary()))
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        for r in records:
            pub.send_raw(r.key, r.value)
        pub.flush()
    client = p.clickhouse()
    want = expected_rows([r.value for r in records])
    p.wait_for(lambda: p.region_rows(client) == want, 180, "region_metrics")
    p.wait_for(lambda: client.execute("SELECT count() FROM appeals FINAL")[0][0] > 0, 60, "appeals")
    results = [client.execute(q) for q in queries]
    assert len(results[0]) == 3  # one row per district
    assert 0 < len(results[1]) <= 3
    assert len(results[2]) == 4  # Wuhan-Hanyang, one row per day
    assert all(r[4] in ("suspended", "filed", "resumed") for r in results[3])
    assert (
        sum(r[1] for r in results[4])
        == client.execute("SELECT count() FROM appeals FINAL WHERE resolved_at IS NULL")[0][0]
    )
