from __future__ import annotations

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
