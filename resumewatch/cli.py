"""The ``resumewatch`` command. Every default comes from Settings (env ``RESUMEWATCH_*``)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from resumewatch.settings import Settings
from resumewatch.stack import Stack, StackError
from sinks.schema import ALERTS


def _settings(ctx: click.Context) -> Settings:
    return ctx.ensure_object(dict)["settings"]  # type: ignore[no-any-return]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """resumewatch: rolling resumption-of-work metrics from Kafka into ClickHouse.

    Configuration comes from environment variables RESUMEWATCH_<SETTING>; see
    `resumewatch settings` for every one with its current value.
    """
    try:
        ctx.ensure_object(dict)["settings"] = Settings()
    except Exception as exc:  # noqa: BLE001 - show a configuration error as one sentence
        raise click.ClickException(f"invalid configuration: {exc}") from exc


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the table used in the README.")
@click.pass_context
def show_settings(ctx: click.Context, markdown: bool) -> None:
    """Print every setting, its environment variable and current value."""
    s = _settings(ctx)
    if markdown:
        click.echo(settings_markdown())
        return
    for name, field in Settings.model_fields.items():
        click.echo(f"RESUMEWATCH_{name.upper():<28} {getattr(s, name)!s:<24} {field.description}")


def settings_markdown() -> str:
    lines = ["| env var | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        lines.append(f"| `RESUMEWATCH_{name.upper()}` | `{field.default}` | {field.description} |")
    return "\n".join(lines)


# -- stack ---------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """Start, stop and inspect local Kafka and ClickHouse (state in RESUMEWATCH_STATE_DIR)."""


@stack.command("up")
@click.option(
    "--brokers",
    type=click.IntRange(1, 9),
    default=None,
    help="Kafka nodes to run (KRaft; 3 makes a real cluster).  "
    "[default: RESUMEWATCH_KAFKA_BROKERS, 1]",
)
@click.pass_context
def stack_up(ctx: click.Context, brokers: int | None) -> None:
    """Start Kafka (KRaft) and ClickHouse on loopback unless they already run."""
    s = _settings(ctx)
    if brokers is not None:
        s = s.model_copy(update={"kafka_brokers": brokers})
    try:
        for line in Stack(s).up():
            click.echo(line)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@stack.command("down")
@click.pass_context
def stack_down(ctx: click.Context) -> None:
    """Stop what `stack up` and `demo` started (by pid), and nothing else."""
    for line in Stack(_settings(ctx)).down():
        click.echo(line)


@stack.command("status")
@click.pass_context
def stack_status(ctx: click.Context) -> None:
    """Show what runs where."""
    for st in Stack(_settings(ctx)).status():
        state = f"running (pid {st.pid})" if st.pid else "stopped"
        click.echo(f"{st.name:<11} {state:<22} {st.address:<34} {st.log}")


# -- setup and processes --------------------------------------------------------------
@main.command()
@click.option(
    "--print-cluster-ddl",
    "cluster",
    metavar="CLUSTER",
    default=None,
    help="Print the ClickHouse schema for the cluster CLUSTER (Replicated tables, ON CLUSTER) "
    "instead of migrating; run it once with clickhouse-client --multiquery.",
)
@click.option(
    "--sharded",
    is_flag=True,
    help="With --print-cluster-ddl: several shards (<table>_local Replicated tables and "
    "Distributed tables over them; set RESUMEWATCH_CLICKHOUSE_CLUSTER for the sink).",
)
@click.pass_context
def migrate(ctx: click.Context, cluster: str | None, sharded: bool) -> None:
    """Create missing Kafka topics and the ClickHouse schema (idempotent)."""
    from resumewatch.provision import ensure_schema, ensure_topics

    s = _settings(ctx)
    if cluster is not None:
        from sinks.schema import cluster_statements

        for sql in cluster_statements(s.clickhouse_database, cluster, sharded):
            click.echo(sql + ";")
        return
    try:
        created = ensure_topics(s)
        n = ensure_schema(s)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"topics created: {', '.join(created) or 'none (all existed)'}")
    click.echo(f"ClickHouse schema: {n} idempotent statements applied to {s.clickhouse_database}")


@main.command()
@click.option("--loglevel", default="info", show_default=True, help="Faust log level.")
@click.pass_context
def worker(ctx: click.Context, loglevel: str) -> None:
    """Run a Faust worker (start more with the same settings to share the partitions)."""
    from faust import Worker

    from streams.alerts.rules import RulesError
    from streams.app import create_app
    from streams.metrics import WorkerMetrics, serve

    s = _settings(ctx)
    metrics = WorkerMetrics()
    try:
        app = create_app(s, metrics)
    except RulesError as exc:
        raise click.ClickException(f"invalid alert rules: {exc}") from exc

    class QuietWorker(Worker):
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # Faust's terminal spinner sets the root logger to DEBUG (to spin on every
            # record) at levels from WARNING up: every debug call then builds a record.
            self.spinner = None

    _tune_gc()
    _limit_malloc_arenas()
    # Served from its own thread before Faust starts: it answers during table recovery too.
    serve(metrics.registry, s.metrics_host, s.worker_metrics_port, "worker")
    QuietWorker(app, loglevel=loglevel).execute_from_commandline()


@main.command()
@click.pass_context
def sink(ctx: click.Context) -> None:
    """Run the ClickHouse sink: output topics -> batched inserts -> offset commits."""
    from sinks.runner import SinkRunner

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(message)s")
    _tune_gc()
    SinkRunner(_settings(ctx)).run()


def _tune_gc() -> None:
    """The worker and the sink allocate many short-lived objects per message, and almost no
    reference cycles: with Python's default thresholds the cycle collector took about 45 %
    of the enterprise agent's time. Collect rarely, and never scan the start-up objects."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 100)


def _limit_malloc_arenas() -> None:
    """glibc gives threads their own malloc arenas (up to eight per core), and memory freed
    in one arena is not reused by another: with the Kafka client's thread, the worker's peak
    RSS was about 15 % higher. Two arenas are enough for a process that runs Python code on
    one thread at a time. Must run before those threads start."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-8, 2)  # M_ARENA_MAX; other C libraries lack mallopt or ignore it
    except (OSError, AttributeError):
        pass


# -- publishing ---------------------------------------------------------------------------
@main.command()
@click.option("--enterprises", default=3000, show_default=True, help="Enterprises to simulate.")
@click.option("--days", default=21, show_default=True, help="Days of history.")
@click.option("--seed", default=7, show_default=True, help="Random seed (same seed, same events).")
@click.option(
    "--bad-share", default=0.0, show_default=True, help="Share of contract-breaking messages."
)
@click.option(
    "--duplicate-share", default=0.0, show_default=True, help="Share of re-sent messages."
)
@click.option("--late-share", default=0.0, show_default=True, help="Share of too-late messages.")
@click.option("--disorder", default=200, show_default=True, help="Shuffle window (messages).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Write NDJSON to this file ('-' for stdout) instead of publishing to the input topic.",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    enterprises: int,
    days: int,
    seed: int,
    bad_share: float,
    duplicate_share: float,
    late_share: float,
    disorder: int,
    out: str | None,
) -> None:
    """Generate a simulated province and publish it to Kafka (or write it as NDJSON).

    Bad messages are sent as they are, so they exercise the dead-letter path.
    """
    from producers.simulator import SimConfig, Summary, stream

    s = _settings(ctx)
    cfg = SimConfig(
        enterprises=enterprises,
        days=days,
        seed=seed,
        tz=s.timezone,
        bad_share=bad_share,
        duplicate_share=duplicate_share,
        late_share=late_share,
        disorder=disorder,
    )
    summary = Summary()
    with _progress(out == "-") as bar:
        task = bar.add_task("simulating", total=None)
        if out is not None:
            sink = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
            with sink:
                for rec in stream(cfg, summary):
                    sink.write(rec.value + b"\n")
                    bar.advance(task)
        else:
            from producers.publisher import Publisher, PublishError

            try:
                with Publisher(s.kafka_bootstrap, s.input_topic) as pub:
                    for rec in stream(cfg, summary):
                        pub.send_raw(rec.key, rec.value)
                        bar.advance(task)
                    pub.flush()
            except PublishError as exc:
                raise click.ClickException(str(exc)) from exc
    where = "stdout" if out == "-" else (out or f"topic {s.input_topic}")
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    click.echo(f"{sum(summary.counts.values())} messages to {where} ({counts})", err=True)


def _progress(quiet: bool) -> Any:
    """A progress display on stderr with count, rate and elapsed time (totals optional)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}"),
        Rate(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )


@main.command()
@click.argument("file", type=click.File("rb"), default="-")
@click.option(
    "--jobs",
    type=click.IntRange(0, 64),
    default=None,
    help="Processes that validate lines while this one sends (0: validate here).  "
    "[default: RESUMEWATCH_PUBLISH_JOBS, 1]",
)
@click.pass_context
def publish(ctx: click.Context, file: Any, jobs: int | None) -> None:
    """Validate and publish NDJSON events (one per line) from FILE, or '-' for stdin.

    Invalid lines are not sent; the summary lists them with line numbers and reasons, and so
    it does lines Kafka refused (over its message size, say). An event repeated within the
    input (the same source and event_id) is counted as a duplicate and sent once. Exits
    with 1 when any line was not sent.
    """
    from producers.publisher import Publisher, PublishError

    s = _settings(ctx)
    try:
        with Publisher(s.kafka_bootstrap, s.input_topic) as pub, _progress(False) as bar:
            task = bar.add_task(f"publishing to {s.input_topic}", total=None)
            result = pub.publish_lines(
                file,
                progress=lambda n: bar.advance(task, n),
                jobs=s.publish_jobs if jobs is None else jobs,
            )
    except PublishError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"sent {result.sent}, rejected {len(result.rejected)}, duplicates {result.duplicates}"
        + (f", refused by Kafka {len(result.failed)}" if result.failed else "")
    )
    problems = sorted(result.rejected + result.failed, key=lambda r: r.index)
    for r in problems[:50]:
        click.echo(f"  line {r.index}: {r.error}")
    if len(problems) > 50:
        click.echo(f"  ... and {len(problems) - 50} more")
    if problems:
        ctx.exit(1)


def _publish_events(s: Settings, events: list[Any]) -> None:
    from producers.publisher import Publisher, PublishError

    try:
        with Publisher(s.kafka_bootstrap, s.input_topic) as pub, _progress(False) as bar:
            task = bar.add_task(f"publishing to {s.input_topic}", total=len(events))
            result = pub.publish(events, progress=lambda n: bar.advance(task, n))
    except PublishError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"published {result.sent} events to {s.input_topic}, rejected {len(result.rejected)}"
    )


@main.command()
@click.pass_context
def gateway(ctx: click.Context) -> None:
    """Run the HTTP gateway for systems that can't speak Kafka.

    POST /v1/events (JSON array or NDJSON, `Authorization: Bearer <token>`), GET /v1/health,
    GET /metrics. Address, tokens file and limits come from RESUMEWATCH_GATEWAY_* settings.
    """
    from producers.gateway import GatewayError, run_gateway

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(message)s")
    try:
        run_gateway(_settings(ctx))
    except GatewayError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--host", default=None, help="Address to bind [default: RESUMEWATCH_DASHBOARD_HOST].")
@click.option("--port", default=None, type=int, help="Port [default: RESUMEWATCH_DASHBOARD_PORT].")
@click.pass_context
def dashboard(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the dashboard: resumption and capacity over the days, districts, alerts firing,
    enterprises without today's report. Reads ClickHouse as the read-only analyst user."""
    from resumewatch.dashboard import run_dashboard

    s = _settings(ctx)
    update = {k: v for k, v in (("dashboard_host", host), ("dashboard_port", port)) if v}
    run_dashboard(s.model_copy(update=update))


@main.command("sql")
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="A readable table, CSV with a header, or one JSON object per line.",
)
@click.pass_context
def sql_cmd(ctx: click.Context, query: str, fmt: str) -> None:
    """Run QUERY in ClickHouse as the read-only analyst user and print the result.

    The database is RESUMEWATCH_CLICKHOUSE_DATABASE; the user and password come from
    RESUMEWATCH_CLICKHOUSE_ANALYST_USER / _PASSWORD. Writes are refused by ClickHouse.
    """
    import csv
    import sys

    import orjson
    from clickhouse_driver.errors import Error as ClickHouseError

    from sinks.runner import analyst_client

    s = _settings(ctx)
    client = analyst_client(s)
    try:
        rows, columns = client.execute(query, with_column_types=True)
    except ClickHouseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"ClickHouse refused the query: {first}") from exc
    except OSError as exc:
        raise click.ClickException(
            f"No ClickHouse answers at {s.clickhouse_host}:{s.clickhouse_port} ({exc}); "
            "run `resumewatch stack up`."
        ) from exc
    finally:
        client.disconnect()
    names = [c[0] for c in columns]
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(names)
        writer.writerows(rows)
    elif fmt == "json":
        for row in rows:
            line = orjson.dumps(dict(zip(names, row, strict=True)), default=str)
            click.echo(line.decode())
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*names)
        for row in rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        Console().print(table)
        click.echo(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


# The fields of an alert transition (CONTRACT §5), in order: the `alerts` table's columns but
# its row version. In `alerts_firing`, `day` is the day the alert fired (its latest transition
# is the firing one).
ALERT_FIELDS = tuple(c for c in ALERTS.column_names if c != "version")
ALERTS_FIRING_SQL = (
    f"SELECT {', '.join('fired_day AS day' if f == 'day' else f for f in ALERT_FIELDS)} "
    "FROM alerts_firing ORDER BY at DESC, fired_day DESC, alert_id"
)


def alert_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """A row of ALERTS_FIRING_SQL as the alerts topic has it: `day` an ISO date, `at` RFC 3339
    in UTC with its offset (ClickHouse hands back the naive UTC time the sink wrote)."""
    from datetime import UTC

    d = dict(zip(ALERT_FIELDS, row, strict=True))
    d["day"] = d["day"].isoformat()
    at = d["at"] if d["at"].tzinfo else d["at"].replace(tzinfo=UTC)
    d["at"] = at.astimezone(UTC).isoformat()
    return d


def alert_table_row(d: dict[str, Any]) -> tuple[str, ...]:
    """An alert_json() object as a row of the table: since, rule, where, metric, value,
    threshold."""
    where = " / ".join(
        str(x) for x in (d["province"], d["city"], d["district"], d["enterprise_id"]) if x
    )
    if d["sector"] != "*" or d["above_scale_only"]:
        where += f" [{d['sector']}{', above size' if d['above_scale_only'] else ''}]"
    value = "-" if d["value"] is None else f"{d['value']:.3g}"
    return (d["day"], d["rule"], where, d["metric"], value, f"{d['threshold']:g}")


@main.command("alerts")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (CONTRACT §5).")
@click.pass_context
def alerts_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the alerts firing now (from ClickHouse), newest first."""
    import orjson

    from sinks.runner import clickhouse_client

    s = _settings(ctx)
    client = clickhouse_client(s, s.clickhouse_database)
    try:
        rows = client.execute(ALERTS_FIRING_SQL)
    except Exception as exc:  # noqa: BLE001 - one sentence instead of a driver trace
        raise click.ClickException(f"cannot read alerts from ClickHouse: {exc}") from exc
    finally:
        client.disconnect()
    alerts = [alert_json(r) for r in rows]
    if as_json:
        for d in alerts:
            click.echo(orjson.dumps(d).decode())
        return
    if not alerts:
        click.echo("no alerts firing")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(alerts)} alerts firing")
    for col in ("since", "rule", "where", "metric", "value", "threshold"):
        table.add_column(col)
    for d in alerts:
        table.add_row(*alert_table_row(d))
    Console().print(table)


@main.command("reconcile")
@click.option("--limit", default=20, show_default=True, help="Differences to print at most.")
@click.pass_context
def reconcile_cmd(ctx: click.Context, limit: int) -> None:
    """Recompute region_metrics from enterprise_daily with one SQL query and compare.

    Exits 1 when any streamed row differs from the recomputation.
    """
    from resumewatch.reconcile import reconcile

    report = reconcile(_settings(ctx))
    click.echo(f"checked {report.rows_checked} region rows: {len(report.differences)} differ")
    for diff in report.differences[:limit]:
        click.echo(f"  {diff.describe()}")
    if report.differences:
        ctx.exit(1)


# -- demo -------------------------------------------------------------------------------
@main.command()
@click.option("--enterprises", default=300, show_default=True, help="Enterprises to simulate.")
@click.option("--days", default=5, show_default=True, help="Days of history.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for results.")
@click.pass_context
def demo(ctx: click.Context, enterprises: int, days: int, timeout: float) -> None:
    """Run everything: services, schema, worker, sink, a simulated province, the results."""
    from resumewatch.demo import run_demo

    try:
        run_demo(_settings(ctx), enterprises=enterprises, days=days, timeout=timeout)
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc
