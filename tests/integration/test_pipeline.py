"""End to end on the real services: kafka-python in, Faust worker, sink, ClickHouse out."""

from __future__ import annotations

from datetime import date

import orjson

from producers.events import encode
from producers.publisher import Publisher
from producers.simulator import simulate
from tests.reference import expected_rows

REGION_SQL = """
SELECT day, level, province, city, district, sector, above_scale_only,
       enterprises, resumed, filed, suspended, resumption_rate
FROM region_metrics FINAL
"""


def _ev(**kw: object) -> bytes:
    return orjson.dumps({"source": "it", **kw})


def test_events_published_with_kafka_python_land_exactly_in_clickhouse(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    p.start("worker")
    p.start("sink")
    reg = {
        "type": "enterprise_registered",
        "province": "Hubei",
        "city": "Wuhan",
        "name": "n",
        "sector": "steel",
        "employees": 10,
        "normal_daily_output_value": 1000.0,
    }
    raws: list[tuple[bytes, bytes]] = [
        (
            b"A",
            _ev(
                event_id="a1",
                enterprise_id="A",
                occurred_at="2020-02-10T09:00:00+08:00",
                district="Hanyang",
                above_scale=True,
                **reg,
            ),
        ),
        (
            b"B",
            _ev(
                event_id="b1",
                enterprise_id="B",
                occurred_at="2020-02-10T09:00:00+08:00",
                district="Hanyang",
                above_scale=False,
                **reg,
            ),
        ),
        (
            b"C",
            _ev(
                event_id="c1",
                enterprise_id="C",
                occurred_at="2020-02-10T09:00:00+08:00",
                district="Wuchang",
                above_scale=False,
                **reg,
            ),
        ),
        (
            b"A",
            _ev(
                event_id="a2",
                type="status_changed",
                enterprise_id="A",
                status="resumed",
                occurred_at="2020-02-11T09:00:00+08:00",
            ),
        ),
        # Out of order: B filed on the 11th, resumed on the 12th, sent in reverse.
        (
            b"B",
            _ev(
                event_id="b3",
                type="status_changed",
                enterprise_id="B",
                status="resumed",
                occurred_at="2020-02-12T09:00:00+08:00",
            ),
        ),
        (
            b"B",
            _ev(
                event_id="b2",
                type="status_changed",
                enterprise_id="B",
                status="filed",
                occurred_at="2020-02-11T09:00:00+08:00",
            ),
        ),
        # A duplicate that would flip A back if it counted twice as a new event.
        (
            b"A",
            _ev(
                event_id="a2",
                type="status_changed",
                enterprise_id="A",
                status="resumed",
                occurred_at="2020-02-11T09:00:00+08:00",
            ),
        ),
        (b"C", b"{this is not json"),
    ]
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        for key, value in raws:
            pub.send_raw(key, value)
        pub.flush()

    client = p.clickhouse()

    def rows() -> dict[tuple[object, ...], tuple[object, ...]]:
        return {tuple(r[:7]): tuple(r[7:]) for r in client.execute(REGION_SQL)}

    want = expected_rows([v for _, v in raws])

    def done() -> bool:
        # District, city and province rows come from different agents: wait for all of them.
        return (
            p.region_rows(client) == want
            and client.execute("SELECT count() FROM dead_letters")[0][0] == 1
        )

    p.wait_for(done, 120, "every region row and the dead letter")
    got = rows()
    hanyang = ("district", "Hubei", "Wuhan", "Hanyang", "*", 0)
    assert got[(date(2020, 2, 10), *hanyang)] == (2, 0, 0, 2, 0.0)
    assert got[(date(2020, 2, 11), *hanyang)] == (2, 1, 1, 0, 0.5)
    assert got[(date(2020, 2, 12), *hanyang)] == (2, 2, 0, 0, 1.0)
    wuchang = ("district", "Hubei", "Wuhan", "Wuchang", "*", 0)
    assert got[(date(2020, 2, 12), *wuchang)] == (1, 0, 0, 1, 0.0)
    assert got[(date(2020, 2, 12), "province", "Hubei", "", "", "*", 1)] == (1, 1, 0, 0, 1.0)
    assert got[(date(2020, 2, 12), "city", "Hubei", "Wuhan", "", "steel", 0)] == (3, 2, 0, 1, 2 / 3)
    # Every row equals the brute-force reference, and nothing else is there.
    assert p.region_rows(client) == want
    # One row per key through FINAL: nothing double counted.
    assert client.execute("SELECT count() FROM region_metrics FINAL")[0][0] == len(want)
    reason, raw = client.execute("SELECT reason, raw FROM dead_letters")[0]
    assert reason.startswith("message is not valid UTF-8 JSON")
    assert raw == "{this is not json"


def test_simulated_province_matches_reference_and_simulator(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=3)
    p.start("worker")
    p.start("sink")
    sim = simulate(enterprises=250, days=6, seed=5)
    raws = [encode(e) for e in sim.events]
    want = expected_rows(raws)
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        result = pub.publish(sim.events)
        pub.publish(sim.events[:100])  # re-sent events change nothing
    assert result.sent == len(sim.events) and not result.rejected

    client = p.clickhouse()
    last = sim.days[-1]

    def rows() -> dict[tuple[object, ...], tuple[int, ...]]:
        return p.region_rows(client)

    p.wait_for(lambda: rows() == want, 180, "region_metrics to equal the reference")
    by_district = {
        (k[3], k[4]): v[:2]
        for k, v in rows().items()
        if k[0] == last and k[1] == "district" and k[5] == "*" and k[6] == 0
    }
    assert by_district == {k: tuple(v) for k, v in sim.final_district.items()}


def test_rows_that_a_correction_removes_are_deleted_from_clickhouse(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=2)
    p.start("worker")
    p.start("sink")
    reg = {
        "type": "enterprise_registered",
        "enterprise_id": "A",
        "province": "Hubei",
        "city": "Wuhan",
        "name": "n",
        "sector": "steel",
        "above_scale": False,
        "employees": 10,
        "normal_daily_output_value": 1000.0,
    }
    first = _ev(event_id="r1", occurred_at="2020-02-10T10:00:00+08:00", district="Wuchang", **reg)
    status = _ev(
        event_id="s1",
        type="status_changed",
        enterprise_id="A",
        status="resumed",
        occurred_at="2020-02-12T09:00:00+08:00",
    )
    # Later the same day, the registration is corrected: A was in Hanyang all along.
    fix = _ev(event_id="r2", occurred_at="2020-02-10T15:00:00+08:00", district="Hanyang", **reg)
    client = p.clickhouse()
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        pub.send_raw(b"A", first)
        pub.send_raw(b"A", status)
        pub.flush()
        p.wait_for(lambda: p.region_rows(client) == expected_rows([first, status]), 120, "rows")
        assert any(k[4] == "Wuchang" for k in p.region_rows(client))
        pub.send_raw(b"A", fix)
        pub.flush()
    want = expected_rows([first, status, fix])
    p.wait_for(lambda: p.region_rows(client) == want, 120, "the Wuchang rows to be deleted")
    assert not any(k[4] == "Wuchang" for k in p.region_rows(client))
