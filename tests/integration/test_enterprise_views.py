"""enterprise_daily, supply_chain and events, read back from ClickHouse, against the reference."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson

from producers.simulator import Record, SimConfig, Summary, stream
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
    p.publish(records)
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
    # Times are the instants the events carry, whatever zone they were written in.
    at_of = {r.event.event_id: r.event.occurred_at for r in records if r.event is not None}
    times = client.execute(
        "SELECT event_id, toUnixTimestamp(occurred_at) FROM events FINAL LIMIT 200"
    )
    assert times and all(int(at_of[eid].timestamp()) == ts for eid, ts in times)
    reports = client.execute(
        "SELECT event_id, toUnixTimestamp(occurred_at) FROM enterprise_reports LIMIT 200"
    )
    assert reports and all(int(at_of[eid].timestamp()) == ts for eid, ts in reports)

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


def test_readme_sql_cookbook_answers(pipeline) -> None:  # type: ignore[no-untyped-def]
    """Every recipe of the README's SQL cookbook, on the demo's simulated province (plus two
    rejected messages), against the reference."""
    import pathlib

    from producers.simulator import simulate
    from streams.alerts.rules import load_rules
    from tests.reference import expected_firing

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("### SQL cookbook", 1)[1].split("\n## ", 1)[0]
    queries = [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]
    assert len(queries) == 13
    p = pipeline()
    p.start("worker")
    p.start("sink")
    sim = simulate(enterprises=300, days=5, tz=p.settings.timezone)  # the demo's province
    bad = [
        Record(b"E-bad-1", b"{not json", "bad"),
        Record(b"E-bad-2", b'{"type": "status_changed"}', "bad"),
    ]
    p.publish([*sim.records, *bad])
    raws = [r.value for r in sim.records if r.kind != "bad"]
    want = expected_rows(raws)
    daily = expected_enterprise_daily(raws)
    chain = expected_supply_chain(raws)
    client = p.clickhouse()
    p.wait_for(lambda: p.region_rows(client) == want, 180, "region_metrics")
    p.wait_for(lambda: p.enterprise_daily(client) == daily, 60, "enterprise_daily")
    p.wait_for(
        lambda: client.execute("SELECT count() FROM dead_letters FINAL")[0][0] == len(bad),
        60,
        "the dead letters",
    )
    firing = expected_firing(want, chain, load_rules(p.settings.rules_path))
    p.wait_for(
        lambda: client.execute("SELECT count() FROM alerts_firing")[0][0] == len(firing),
        60,
        "the alerts",
    )
    r = [client.execute(q) for q in queries]
    newest = max(k[0] for k in want)

    def level(name: str, day: object = newest, sector: str = "*", above: int = 0) -> dict:
        return {
            k: m
            for k, m in want.items()
            if k[1] == name and k[5] == sector and k[6] == above and (day is None or k[0] == day)
        }

    districts = level("district")
    # 1. latest resumption by district
    assert [(x[0], x[1], x[2], x[3]) for x in r[0]] == sorted(
        (k[3], k[4], m[0], m[1]) for k, m in districts.items()
    )
    # 2. the ten lagging districts (at least 10 enterprises)
    lagging = sorted((m[1] / m[0], k[4]) for k, m in districts.items() if m[0] >= 10)
    assert [x[1] for x in r[1]] == [d for _, d in lagging[:10]]
    # 3. one district's trend, above size
    trend = {
        k[0]: m for k, m in level("district", None, above=1).items() if k[4] == "Wuhan-Hanyang"
    }
    assert [(x[0], x[1]) for x in r[2]] == [(d, trend[d][0]) for d in sorted(trend)]
    # 4. not reported today
    assert {x[0] for x in r[3]} == {e for (e, d), v in daily.items() if d == newest and not v[2]}
    # 5. unresolved appeals
    assert (
        sum(x[1] for x in r[4])
        == client.execute("SELECT count() FROM appeals FINAL WHERE resolved_at IS NULL")[0][0]
    )
    # 6. the province day by day
    province = level("province", None)
    assert [(x[0], x[1]) for x in r[5]] == sorted((k[0], m[0]) for k, m in province.items())
    # 7. sectors on the newest day
    sectors = {
        k[5]: m for k, m in want.items() if k[0] == newest and k[1:2] + k[6:] == ("province", 0)
    }
    assert {x[0]: x[1] for x in r[6]} == {s: m[0] for s, m in sectors.items() if s != "*"}
    # 8. compliance by city
    cities = level("city")
    assert {(x[0], x[1], x[2]) for x in r[7]} == {(k[3], m[0], m[4]) for k, m in cities.items()}
    # 9. districts whose resumption rate fell since the day before
    before = {k[4]: m for k, m in level("district", newest - timedelta(days=1)).items()}
    fell = {
        k[4]
        for k, m in districts.items()
        if k[4] in before
        and m[0]
        and before[k[4]][0]
        and m[1] / m[0] < before[k[4]][1] / before[k[4]][0]
    }
    assert fell and {x[1] for x in r[8]} == fell
    # 10. filed, not resumed yet
    history: dict[str, list[tuple[object, str]]] = {}
    for (e, d), v in daily.items():
        history.setdefault(e, []).append((d, v[1]))
    waiting = {
        e: sum(1 for _, status in h if status == "filed")
        for e, h in history.items()
        if max(h)[1] == "filed"
    }
    assert waiting and {x[0]: x[3] for x in r[9]} == waiting
    assert [x[3] for x in r[9]] == sorted(waiting.values(), reverse=True)
    # 11. key enterprises waiting for suppliers (key: the latest registration says so)
    profile: dict[str, tuple[datetime, dict[str, object]]] = {}
    for raw in raws:
        ev = orjson.loads(raw)
        if ev.get("type") == "enterprise_registered":
            at = datetime.fromisoformat(ev["occurred_at"])
            held = profile.get(ev["enterprise_id"])
            if held is None or held[0] < at:
                profile[ev["enterprise_id"]] = (at, ev)
    keyed = {e for e, (_, ev) in profile.items() if ev.get("key_enterprise")}
    waiting_for = {
        e: v for (e, d), v in chain.items() if d == newest and e in keyed and v[1] < v[0]
    }
    assert waiting_for and {x[0]: (x[3], x[4]) for x in r[10]} == waiting_for
    # 12. alerts firing now: (rule, level, city, district, enterprise_id, fired_day); the
    # reference leaves the region of an enterprise's (supplier) alert empty
    assert sorted(
        (x[0], x[1], "" if x[4] else x[2], "" if x[4] else x[3], x[4], x[5]) for x in r[11]
    ) == sorted((f[0], f[1], f[3], f[4], f[7], f[8]) for f in firing)
    # 13. rejected input
    assert sum(x[1] for x in r[12]) == len(bad)
