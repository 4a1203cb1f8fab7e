"""The schema's SQL on a current ClickHouse engine (chdb, in-process)."""

from __future__ import annotations

from sinks.schema import statements


def test_migrations_run_twice_on_current_clickhouse(tmp_path: object) -> None:
    from chdb import session

    sess = session.Session(str(tmp_path))
    try:
        for _ in range(2):  # idempotent
            for sql in statements("rw_test"):
                sess.query(sql)
        sess.query(
            "INSERT INTO rw_test.region_metrics (day, level, province, city, district, sector, "
            "above_scale_only, enterprises, resumed, resumption_rate, updated_at, version) VALUES "
            "('2020-02-10','district','P','C','D','*',0,10,5,0.5,now(),1),"
            "('2020-02-10','district','P','C','D','*',0,10,6,0.6,now(),2)"
        )
        got = sess.query("SELECT resumed, resumption_rate FROM rw_test.region_metrics FINAL", "CSV")
        assert str(got).strip() == "6,0.6"
    finally:
        sess.close()
