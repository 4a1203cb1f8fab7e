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


def test_enterprise_daily_and_supply_chain_views_on_current_clickhouse(tmp_path: object) -> None:
    from chdb import session

    sess = session.Session(str(tmp_path))
    try:
        for sql in statements("rw_v"):
            sess.query(sql)
        # A: registered 2020-02-10 in D1, resumed from the 12th; depends on B.
        # B: registered 2020-02-10, never resumed. Newest day: 2020-02-13.
        sess.query(
            "INSERT INTO rw_v.enterprise_timeline (enterprise_id, seg_from, seg_to, province, "
            "city, district, sector, above_scale, key_enterprise, employees, "
            "normal_daily_output_value, status, appeals_opened, appeals_resolved, suppliers, "
            "updated_at, version) VALUES "
            "('A', ['2020-02-10','2020-02-12'], ['2020-02-12','1970-01-01'], ['P','P'], "
            "['C','C'], ['D1','D1'], ['steel','steel'], [1,1], [1,1], [10,10], [100,100], "
            "['filed','resumed'], [0,0], [0,0], [['B'],['B']], now(), 2),"
            "('B', ['2020-02-10'], ['1970-01-01'], ['P'], ['C'], ['D2'], ['coal'], [0], [0], "
            "[5], [50], ['suspended'], [0], [0], [[]], now(), 1)"
        )
        sess.query(
            "INSERT INTO rw_v.enterprise_reports (enterprise_id, report_date, event_id, "
            "occurred_at, staff_on_duty, output_value, zero_report, version) VALUES "
            "('A', '2020-02-12', 'r1', now(), 7, 55.5, 0, 1)"
        )
        # Before the pipeline clock is written (the sink may write it after the segments),
        # or while it is behind a segment, an open-ended segment has no days yet (and no
        # error): only A's closed first one (10th and 11th) has.
        for clock in ("", "INSERT INTO rw_v.pipeline_clock VALUES (0, '2020-02-09', 1)"):
            if clock:
                sess.query(clock)
            assert (
                str(sess.query("SELECT count() FROM rw_v.enterprise_daily", "CSV")).strip() == "2"
            )
        sess.query("INSERT INTO rw_v.pipeline_clock VALUES (0, '2020-02-13', 2)")
        daily = str(
            sess.query(
                "SELECT enterprise_id, day, status, reported, staff_on_duty FROM "
                "rw_v.enterprise_daily ORDER BY enterprise_id, day",
                "CSV",
            )
        )
        assert daily.split() == [
            '"A","2020-02-10","filed",0,0',
            '"A","2020-02-11","filed",0,0',
            '"A","2020-02-12","resumed",1,7',
            '"A","2020-02-13","resumed",0,0',
            '"B","2020-02-10","suspended",0,0',
            '"B","2020-02-11","suspended",0,0',
            '"B","2020-02-12","suspended",0,0',
            '"B","2020-02-13","suspended",0,0',
        ]
        chain = str(
            sess.query(
                "SELECT enterprise_id, day, suppliers, suppliers_resumed, supplier_readiness "
                "FROM rw_v.supply_chain ORDER BY day",
                "CSV",
            )
        )
        assert chain.split() == [f'"A","2020-02-1{d}",1,0,0' for d in range(4)]
    finally:
        sess.close()


def test_migrate_moves_alerts_of_an_older_sorting_key_to_the_new_one(tmp_path: object) -> None:
    from chdb import session

    from sinks.schema import ALERTS, migrate

    sess = session.Session(str(tmp_path))

    def execute(sql: str, params: dict[str, str] | None = None) -> list[tuple[str, ...]]:
        for k, v in (params or {}).items():
            sql = sql.replace(f"%({k})s", f"'{v}'")
        out = str(sess.query(sql, "TabSeparated")).strip()
        return [tuple(line.split("\t")) for line in out.splitlines()] if out else []

    try:
        sess.query("CREATE DATABASE rw_m")
        old = ALERTS.create("rw_m").replace(
            "ORDER BY (alert_id, state)", "ORDER BY (alert_id, state, day)"
        )
        sess.query(old)
        sess.query(
            "INSERT INTO rw_m.alerts (alert_id, rule, state, day, at, version) VALUES "
            "('a1', 'r', 'firing', '2020-02-10', now(), 1),"
            "('a1', 'r', 'resolved', '2020-02-12', now(), 2),"
            "('a1', 'r', 'resolved', '2020-02-13', now(), 3)"
        )
        migrate(execute, "rw_m")
        assert execute(
            "SELECT sorting_key FROM system.tables WHERE database = 'rw_m' AND name = 'alerts'"
        ) == [("alert_id, state",)]
        got = execute("SELECT state, toString(day) FROM rw_m.alerts FINAL ORDER BY version")
        assert got == [("firing", "2020-02-10"), ("resolved", "2020-02-13")]
        migrate(execute, "rw_m")  # nothing left to move
        assert execute("SELECT count() FROM rw_m.alerts FINAL") == [("2",)]
    finally:
        sess.close()


def test_migrate_creates_a_view_of_an_older_release_again(tmp_path: object) -> None:
    from chdb import session

    from sinks.schema import VIEWS, migrate, view_sql

    sess = session.Session(str(tmp_path))

    def execute(sql: str, params: dict[str, str] | None = None) -> list[tuple[str, ...]]:
        for k, v in (params or {}).items():
            sql = sql.replace(f"%({k})s", f"'{v}'")
        out = str(sess.query(sql, "TabSeparated")).strip()
        return [tuple(line.split("\t")) for line in out.splitlines()] if out else []

    try:
        for sql in statements("rw_o"):
            sess.query(sql)
        # enterprise_daily as an older release made it (its range without seg_end)
        older = view_sql("rw_o", "enterprise_daily")
        older = older.replace("if(seg_to = toDate(0), newest + 1, seg_to) AS seg_end, ", "")
        older = older.replace(
            "if(seg_end > seg_from, seg_end - seg_from, 0)",
            "if(seg_to = toDate(0), newest + 1, seg_to) - seg_from",
        )
        assert older != view_sql("rw_o", "enterprise_daily")
        sess.query("DROP TABLE rw_o.enterprise_daily")
        sess.query(f"CREATE VIEW rw_o.enterprise_daily AS {older}")
        first = migrate(execute, "rw_o")
        held = execute(
            "SELECT create_table_query FROM system.tables "
            "WHERE database = 'rw_o' AND name = 'enterprise_daily'"
        )
        assert "seg_end" in held[0][0]
        assert migrate(execute, "rw_o") == first - 2  # up to date: nothing created again
        assert len(VIEWS) == 3
    finally:
        sess.close()


def test_cluster_ddl_parses_on_current_clickhouse(tmp_path: object) -> None:
    from chdb import session

    from sinks.schema import TABLES, VIEWS, cluster_statements

    replicas = cluster_statements("rw", "prod")
    shards = cluster_statements("rw", "prod", sharded=True)
    assert len(replicas) == 1 + len(TABLES) + len(VIEWS)
    assert len(shards) == 1 + 2 * len(TABLES) + len(VIEWS)
    sess = session.Session(str(tmp_path))
    try:
        for sql in replicas + shards:
            quoted = sql.replace("\\", "\\\\").replace("'", "\\'")
            formatted = str(sess.query(f"SELECT formatQuery('{quoted}')", "TSVRaw")).strip()
            assert "ON CLUSTER prod" in formatted, sql
    finally:
        sess.close()
    for table, sql in zip(TABLES, replicas[1:], strict=False):
        assert f"rw.{table.name} ON CLUSTER prod" in sql
        assert f"'/clickhouse/tables/{{shard}}/rw/{table.name}', '{{replica}}'" in sql
        assert sql.endswith(table.engine.split(" ", 1)[1])  # same partitions and sorting key
    for i, table in enumerate(TABLES):
        local, distributed = shards[1 + 2 * i], shards[2 + 2 * i]
        assert local.startswith(f"CREATE TABLE IF NOT EXISTS rw.{table.name}_local ON CLUSTER")
        assert local.endswith(table.engine.split(" ", 1)[1])
        # Every version of a row on one shard: the hash covers the whole sorting key.
        assert distributed.endswith(
            f"AS rw.{table.name}_local ENGINE = Distributed(prod, rw, {table.name}_local, "
            f"cityHash64({table.sorting_key}))"
        )
