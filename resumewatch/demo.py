"""``resumewatch demo``: the whole pipeline on local services, then the results."""

from __future__ import annotations

import sys
import time
from datetime import date
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from resumewatch.provision import ensure_schema, ensure_topics
from resumewatch.settings import Settings
from resumewatch.stack import Stack, StackError

DISTRICT_SQL = """
SELECT city, district, enterprises, resumed, filed, suspended, resumption_rate,
       report_compliance, capacity_attainment, appeals_opened, appeals_resolved
FROM {db}.region_metrics FINAL
WHERE level = 'district' AND sector = '*' AND above_scale_only = 0 AND day = %(day)s
ORDER BY resumption_rate, district
"""


def district_rates(settings: Settings, day: date) -> list[tuple[Any, ...]]:
    from sinks.runner import clickhouse_client

    client = clickhouse_client(settings)
    try:
        return list(
            client.execute(DISTRICT_SQL.format(db=settings.clickhouse_database), {"day": day})
        )
    finally:
        client.disconnect()


def run_demo(settings: Settings, enterprises: int, days: int, timeout: float) -> None:
    from producers.simulator import simulate
    from resumewatch.cli import _publish_events

    console = Console(width=None if sys.stdout.isatty() else 120)
    stack = Stack(settings)
    for line in stack.up():
        console.print(line)
    ensure_topics(settings)
    ensure_schema(settings)
    for name in ("worker", "sink", "dashboard"):
        started = stack.start_pipeline_process(name, [name])
        console.print(
            f"{'started' if started else 'already running'} {name} "
            f"(log: {stack.run_dir / (name + '.log')})"
        )

    sim = simulate(enterprises=enterprises, days=days, tz=settings.timezone)
    _publish_events(settings, sim.events)
    last = sim.days[-1]
    want = {(c, d): tuple(v) for (c, d), v in sim.final_district.items()}

    t0 = time.monotonic()
    rows: list[tuple[Any, ...]] = []
    with console.status(f"waiting for {last} district rows in ClickHouse"):
        while True:
            try:
                rows = district_rates(settings, last)
            except Exception:  # noqa: BLE001 - the table may be empty or ClickHouse busy
                rows = []
            got = {(r[0], r[1]): (r[2], r[3]) for r in rows}
            if got == want:
                break
            running = {s.name: s.pid for s in stack.status()}
            for name in ("worker", "sink"):
                if running[name] is None:
                    raise StackError(f"the {name} stopped; see {stack.run_dir / (name + '.log')}")
            if time.monotonic() - t0 > timeout:
                raise StackError(
                    f"results did not arrive within {timeout:.0f} s; see the logs in "
                    f"{stack.run_dir} (if {settings.state_dir} holds data of another version, "
                    "`make clean` starts afresh)"
                )
            time.sleep(0.5)
    console.print(f"results queryable after {time.monotonic() - t0:.1f} s")

    table = Table(title=f"Districts on {last}, all sectors")
    for col in (
        "city",
        "district",
        "enterprises",
        "resumed",
        "復工率",
        "reported",
        "達產率",
        "辦結率",
    ):
        table.add_column(col, justify="left" if col in ("city", "district") else "right")

    def pct(x: Any) -> str:
        return "-" if x is None else f"{float(x):.1%}"

    for city, district, n, resumed, _f, _s, rate, compliance, attain, ao, ar in rows:
        table.add_row(
            str(city),
            str(district),
            str(n),
            str(resumed),
            pct(rate),
            pct(compliance),
            pct(attain),
            f"{pct(ar / ao if ao else None)} of {ao}",
        )
    console.print(table)
    db = settings.clickhouse_database
    click.echo(
        "\nQuery it yourself:\n"
        f'  clickhouse-client --port {settings.clickhouse_port} -d {db} -q "SELECT day, '
        "district, resumption_rate FROM region_metrics FINAL WHERE level = 'district' AND "
        "sector = '*' AND above_scale_only = 0 ORDER BY day, district\"\n"
        f"  curl 'http://127.0.0.1:{settings.clickhouse_http_port}/?database={db}' "
        "--data-binary 'SELECT count() FROM region_metrics FINAL'\n"
        f"Dashboard:  {stack.dashboard_url}\n"
        "Services keep running. Stop everything with:  .venv/bin/resumewatch stack down"
    )
