from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from resumewatch.cli import main


def test_help_lists_the_verbs() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for verb in ("demo", "stack", "worker", "sink", "simulate", "migrate"):
        assert verb in result.output


def test_settings_come_from_environment() -> None:
    result = CliRunner().invoke(main, ["settings"], env={"RESUMEWATCH_KAFKA_PORT": "29092"})
    assert result.exit_code == 0
    assert "RESUMEWATCH_KAFKA_PORT" in result.output and "29092" in result.output


def test_bad_setting_is_one_clear_line() -> None:
    result = CliRunner().invoke(main, ["settings"], env={"RESUMEWATCH_PARTITIONS": "many"})
    assert result.exit_code != 0
    assert "invalid configuration" in result.output and "partitions" in result.output


def test_simulate_writes_ndjson(tmp_path: object) -> None:
    import pathlib

    out = pathlib.Path(str(tmp_path)) / "ev.ndjson"
    result = CliRunner().invoke(main, ["simulate", "--enterprises", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) >= 5


def test_readme_configuration_table_is_current() -> None:
    import pathlib

    from resumewatch.cli import settings_markdown

    readme = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    assert settings_markdown() in readme, "regenerate with `resumewatch settings --markdown`"


def test_worker_refuses_an_invalid_rules_file(tmp_path: object) -> None:
    import pathlib

    rules = pathlib.Path(str(tmp_path)) / "rules.yaml"
    rules.write_text("rules:\n  - name: a\n    metric: resumed\n    below: 0.9\n    clear: 0.5\n")
    result = CliRunner().invoke(
        main,
        ["worker"],
        env={"RESUMEWATCH_ALERT_RULES_FILE": str(rules), "RESUMEWATCH_STATE_DIR": str(tmp_path)},
    )
    assert result.exit_code != 0
    assert f"invalid alert rules: {rules} line 5: rule a: clear (0.5) must be >= below (0.9)" in (
        result.output
    )


def test_worker_names_the_line_of_yaml_it_refuses_and_of_bytes_not_utf8(tmp_path: object) -> None:
    import pathlib

    rules = pathlib.Path(str(tmp_path)) / "rules.yaml"
    env = {"RESUMEWATCH_ALERT_RULES_FILE": str(rules), "RESUMEWATCH_STATE_DIR": str(tmp_path)}
    rules.write_text("rules:\n  - !!python/object:os.system x\n")
    result = CliRunner().invoke(main, ["worker"], env=env)
    assert result.exit_code == 1 and result.exception is not None
    assert f"invalid alert rules: {rules} line 2: refused by the safe YAML loader" in result.output
    rules.write_bytes(b"# \xb8\xb4\xb9\xa4\nrules: []\n")  # GBK
    result = CliRunner().invoke(main, ["worker"], env=env)
    assert f"invalid alert rules: {rules} line 1: not UTF-8 text (byte 0xb8)" in result.output


def test_passwords_are_never_printed() -> None:
    env = {
        "RESUMEWATCH_CLICKHOUSE_PASSWORD": "writer-s3cret",
        "RESUMEWATCH_CLICKHOUSE_ANALYST_PASSWORD": "analyst-s3cret",
    }
    result = CliRunner().invoke(main, ["settings"], env=env)
    assert result.exit_code == 0
    assert "s3cret" not in result.output
    assert "RESUMEWATCH_CLICKHOUSE_ANALYST_PASSWORD" in result.output


def test_local_clickhouse_users_have_a_read_only_analyst(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from resumewatch.settings import Settings
    from resumewatch.stack.clickhouse import ClickHouse

    s = Settings(state_dir=tmp_path, clickhouse_analyst_password="a<b&c")  # type: ignore[arg-type]
    ClickHouse(s).write_users()
    xml = (tmp_path / "clickhouse" / "users.xml").read_text()
    analyst = xml.split("<analyst>", 1)[1].split("</analyst>", 1)[0]
    assert "<profile>readonly</profile>" in analyst
    assert "<allow_databases><database>resumewatch</database></allow_databases>" in analyst
    assert "<password>a&lt;b&amp;c</password>" in analyst


def test_settings_as_env_round_trips_for_a_child_process() -> None:
    from pydantic import SecretStr

    from resumewatch.settings import Settings

    s = Settings(clickhouse_password=SecretStr("w-secret"), partitions=3)
    env = s.as_env()
    assert env["RESUMEWATCH_CLICKHOUSE_PASSWORD"] == "w-secret"
    assert env["RESUMEWATCH_PARTITIONS"] == "3"
    assert "RESUMEWATCH_REPLICATION" not in env  # None: left to its default
    child = Settings.model_validate(
        {k.removeprefix("RESUMEWATCH_").lower(): v for k, v in env.items()}
    )
    assert child.clickhouse_password.get_secret_value() == "w-secret"
    assert child.partitions == 3


def _firing_row() -> tuple[dict[str, Any], tuple[Any, ...]]:
    """A transition as the worker writes it to the alerts topic, and the row of
    `alerts_firing` the sink makes of it."""
    from datetime import UTC, date, datetime

    import orjson

    from resumewatch.cli import ALERT_FIELDS
    from sinks.schema import ALERTS
    from sinks.writer import alert_row
    from streams.alerts.handler import alert_record
    from streams.alerts.rules import Rule, Step

    rule = Rule("low", "resumption_rate", below=0.9, clear=0.92)
    scope = {
        "level": "district",
        "province": "湖北",
        "city": "武漢",
        "district": "漢陽",
        "sector": "steel",
        "above_scale_only": 1,
        "enterprise_id": "",
    }
    day = date(2020, 2, 11).toordinal()
    at = datetime(2020, 2, 11, 1, 2, 3, tzinfo=UTC).isoformat()  # as AlertProcessor writes it
    record = alert_record(rule, "abc", Step("firing", day, day, 0.25), scope, at)
    row = dict(
        zip(ALERTS.column_names, alert_row(orjson.dumps({**record, "version": 7})), strict=True)
    )
    return record, tuple(row[f] for f in ALERT_FIELDS)  # `day` is the view's fired_day


def test_alert_json_has_the_fields_of_the_alerts_topic() -> None:
    from resumewatch.cli import ALERT_FIELDS, alert_json

    record, row = _firing_row()
    got = alert_json(row)
    assert got == record
    assert list(got) == list(ALERT_FIELDS)
    assert got["day"] == "2020-02-11" and got["at"] == "2020-02-11T01:02:03+00:00"


def test_alerts_sql_renames_fired_day_and_needs_no_window_functions() -> None:
    from resumewatch.cli import ALERTS_FIRING_SQL

    assert ALERTS_FIRING_SQL == (
        "SELECT alert_id, rule, state, level, province, city, district, sector, "
        "above_scale_only, enterprise_id, fired_day AS day, metric, value, threshold, at "
        "FROM alerts_firing ORDER BY at DESC, fired_day DESC, alert_id"
    )


def test_alerts_command_prints_contract_json_and_a_table(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import orjson

    import sinks.runner
    from resumewatch.cli import ALERTS_FIRING_SQL, alert_json, alert_table_row

    record, row = _firing_row()
    queries: list[str] = []

    class FakeClient:
        def execute(self, query: str) -> list[tuple[Any, ...]]:
            queries.append(query)
            return [row]

        def disconnect(self) -> None:
            pass

    monkeypatch.setattr(sinks.runner, "clickhouse_client", lambda *a: FakeClient())
    result = CliRunner().invoke(main, ["alerts", "--json"])
    assert result.exit_code == 0, result.output
    (line,) = result.output.splitlines()
    assert orjson.loads(line) == record
    assert '"day":"2020-02-11"' in line and "fired_day" not in line
    assert '"at":"2020-02-11T01:02:03+00:00"' in line
    assert queries == [ALERTS_FIRING_SQL]

    result = CliRunner().invoke(main, ["alerts"])
    assert result.exit_code == 0, result.output
    assert "1 alerts firing" in result.output
    for cell in alert_table_row(alert_json(row)):
        assert cell.split(" ")[0] in result.output  # the table may wrap the longer ones

    monkeypatch.setattr(FakeClient, "execute", lambda self, q: [])
    result = CliRunner().invoke(main, ["alerts"])
    assert result.exit_code == 0 and result.output == "no alerts firing\n"


def test_alert_table_row() -> None:
    from resumewatch.cli import alert_json, alert_table_row

    _, row = _firing_row()
    d = alert_json(row)
    assert alert_table_row(d) == (
        "2020-02-11",
        "low",
        "湖北 / 武漢 / 漢陽 [steel, above size]",
        "resumption_rate",
        "0.25",
        "0.9",
    )
    supplier = {**d, "level": "enterprise", "province": "P", "city": "C", "district": "D"}
    supplier.update(enterprise_id="E1", sector="*", above_scale_only=0, value=None)
    assert alert_table_row(supplier)[2:5] == ("P / C / D / E1", "resumption_rate", "-")
