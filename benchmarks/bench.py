"""The resumewatch benchmark: one run, one machine, one data set, every figure of the
Performance section of the README.

    python -m benchmarks.bench            # or: make bench

Uses the local stack (started when it is not running), a fresh set of topics and a fresh
ClickHouse database per run, and removes the database at the end.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from benchmarks import kafka_util
from resumewatch.provision import delete_topics
from resumewatch.settings import Settings
from resumewatch.stack.procs import stop_children


@dataclass
class Run:
    """One pipeline under test: its settings, environment, processes and logs."""

    settings: Settings
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env()}

    def start(self, *args: str, name: str | None = None) -> subprocess.Popen[bytes]:
        name = name or args[0]
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "resumewatch", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        stop_children(self.procs)
        self.procs.clear()

    def worker_groups(self) -> dict[str, list[str]]:
        s = self.settings
        return {s.app_id: [s.input_topic, s.partials_topic, s.supply_topic]}

    def sink_groups(self) -> dict[str, list[str]]:
        return {self.settings.sink_group: self.settings.sink_topics}

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise click.ClickException(
                    f"{proc.args!r} exited with {proc.returncode}; see the logs in {self.logs}"
                )


def new_run(base: Settings, logs: Path, tag: str, **overrides: Any) -> Run:
    from resumewatch.provision import ensure_schema, ensure_topics

    uid = f"{tag}-{uuid.uuid4().hex[:6]}"
    settings = base.model_copy(
        update={
            "input_topic": f"bench-{uid}-enterprise-status",
            "alerts_topic": f"bench-{uid}-alerts",
            "dlq_topic": f"bench-{uid}-enterprise-status-dlq",
            "internal_prefix": f"bench-{uid}",
            "clickhouse_database": f"bench_{uid.replace('-', '_')}",
            **overrides,
        }
    )
    ensure_topics(settings)
    ensure_schema(settings)
    logs.mkdir(parents=True, exist_ok=True)
    return Run(settings, logs)


def wait_drained(run: Run, groups: dict[str, list[str]], timeout: float) -> float:
    """Poll until every group committed every message of its topics, twice in a row (the
    second look catches records produced between the first look's reads). Returns the
    monotonic time of the first of those looks."""
    progress = kafka_util.Progress(run.settings.kafka_bootstrap)
    deadline = time.monotonic() + timeout
    first_zero: float | None = None
    try:
        while True:
            run.check_alive()
            now = time.monotonic()
            left = progress.lag(groups)
            if left == 0:
                if first_zero is not None:
                    return first_zero
                first_zero = now
            else:
                first_zero = None
            if now > deadline:
                raise click.ClickException(
                    f"not drained after {timeout:.0f} s ({left} messages left); "
                    f"see the logs in {run.logs}"
                )
            time.sleep(0.5)
    finally:
        progress.close()


def ndjson_file(settings: Settings, events: int, seed: int) -> Path:
    """The simulator's NDJSON for about ``events`` messages (1 % invalid, 1 % duplicates),
    generated once and kept under the state directory."""
    from producers.simulator import SimConfig, stream

    enterprises = max(100, events // 20)  # the simulator sends ~20 messages per enterprise
    path = settings.state_dir / "bench" / f"sim-{enterprises}-21-{seed}.ndjson"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = SimConfig(
        enterprises=enterprises,
        days=21,
        seed=seed,
        tz=settings.timezone,
        bad_share=0.01,
        duplicate_share=0.01,
    )
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f, step(f"simulating {enterprises:,} enterprises × 21 days"):
        for rec in stream(cfg):
            f.write(rec.value + b"\n")
    tmp.rename(path)
    return path


def lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from f


@contextmanager
def step(what: str) -> Iterator[None]:
    click.echo(f"… {what}", err=True)
    started = time.monotonic()
    yield
    click.echo(f"  done in {time.monotonic() - started:.1f} s", err=True)


def rss_peak(pid: int) -> int:
    """Peak resident set size of a process, in bytes (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy (not idle or waiting) so far."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def topic_bytes(bootstrap: str, topics: list[str]) -> tuple[int, int]:
    """(records, key + value bytes, uncompressed) of every record in ``topics``."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    progress = kafka_util.Progress(bootstrap)
    try:
        ends = {TopicPartition(t, p): o for (t, p), o in progress.end_offsets(topics).items()}
    finally:
        progress.close()

    async def read() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            group_id=f"bench-bytes-{uuid.uuid4().hex[:8]}",  # never commits
            enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        records = size = 0
        try:
            consumer.assign(list(ends))
            await consumer.seek_to_beginning(*ends)
            left = {tp for tp, end in ends.items() if end > 0}
            while left:
                for batch in (await consumer.getmany(*left, timeout_ms=1000)).values():
                    for r in batch:
                        records += 1
                        size += len(r.key or b"") + len(r.value or b"")
                for tp in list(left):
                    if await consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
        finally:
            await consumer.stop()
        return records, size

    return asyncio.run(read())


# --- the measurements ------------------------------------------------------------------


def measure_limit(run: Run, total: int) -> float:
    """A bare aiokafka consumer that reads and decodes every message, nothing else."""
    import asyncio

    import orjson
    from aiokafka import AIOKafkaConsumer

    async def drain() -> float:
        consumer = AIOKafkaConsumer(
            run.settings.input_topic,
            bootstrap_servers=run.settings.kafka_bootstrap.split(","),
            group_id=f"{run.settings.internal_prefix}-limit",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        started = time.monotonic()
        await consumer.start()
        seen = 0
        try:
            while seen < total:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        with suppress(orjson.JSONDecodeError):
                            orjson.loads(r.value)
                    seen += len(records)
        finally:
            await consumer.stop()
        return total / (time.monotonic() - started)

    return asyncio.run(drain())


def measure_baseline(
    run: Run, total: int, max_seconds: float, processes: int = 1
) -> dict[str, Any]:
    """An idiomatic Faust agent (one event at a time, a table update per event) in
    ``processes`` worker processes of one group, drained from a fresh group for at most
    ``max_seconds``."""
    group = f"{run.settings.internal_prefix}-baseline"
    procs = []
    for i in range(processes):
        env = {
            **run.env,
            "BENCH_BROKER": run.settings.kafka_bootstrap,
            "BENCH_TOPIC": run.settings.input_topic,
            "BENCH_APP": group,
            "BENCH_PARTITIONS": str(run.settings.partitions),
            "BENCH_DATADIR": str(run.logs / f"baseline-data-{i}"),
        }
        log = open(run.logs / f"baseline-{i}.log", "wb")  # noqa: SIM115
        # At WARN and above, Faust's terminal spinner turns the root logger to DEBUG (every
        # debug call of the Kafka client then builds a record); at INFO it does not. The
        # peer runs at INFO so that it does not pay for that. No web server: the processes
        # would all bind Faust's port 6066.
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.baseline",
                    "worker",
                    "-l",
                    "info",
                    "--without-web",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    progress = kafka_util.Progress(run.settings.kafka_bootstrap)
    started = time.monotonic()
    last = (started, 0)
    try:
        while time.monotonic() - started < max_seconds:
            if any(proc.poll() is not None for proc in procs):
                raise click.ClickException(f"a baseline worker exited; see {run.logs}")
            done = sum(progress.committed(group).values())
            last = (time.monotonic(), done)
            if done >= total:
                break
            time.sleep(1.0)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
        progress.close()
    # From start (including Faust's start-up) to the last committed progress.
    elapsed = last[0] - started
    return {
        "events_per_s": last[1] / elapsed if elapsed > 0 else 0.0,
        "events_done": last[1],
        "processes": processes,
    }


def measure_pipeline(run: Run, total: int, workers: int, timeout: float) -> dict[str, Any]:
    """The real workers and sink from fresh groups until everything is in ClickHouse."""
    started = time.monotonic()
    busy = machine_busy_seconds()
    procs = [
        run.start("worker", "--loglevel", "warning", name=f"worker-{i}") for i in range(workers)
    ]
    sink = run.start("sink")
    done = wait_drained(run, {**run.worker_groups(), **run.sink_groups()}, timeout)
    busy = machine_busy_seconds() - busy
    elapsed = done - started
    peak = max(rss_peak(p.pid) for p in procs)
    cpu = sum(cpu_seconds(p.pid) for p in procs)
    sink_cpu = cpu_seconds(sink.pid)
    run.stop()
    sizes = insert_sizes(run.logs / "sink.log")
    records, size = topic_bytes(run.settings.kafka_bootstrap, run.settings.changelog_topics)
    return {
        "events_per_s": total / elapsed,
        "workers": workers,
        "processes": workers + 1,  # and the sink
        "seconds": elapsed,
        "worker_peak_rss_bytes": peak,
        "worker_cpu_us_per_event": cpu / total * 1e6,
        # Where the rest of the machine's time goes: the sink, and everything busy during
        # the drain (the broker, ClickHouse and the benchmark's own polling included).
        "sink_cpu_us_per_event": sink_cpu / total * 1e6,
        "machine_cpu_us_per_event": busy / total * 1e6,
        "changelog_records_per_event": records / total,
        "changelog_bytes_per_event": size / total,
        "inserts": len(sizes),
        "median_rows_per_insert": statistics.median(sizes) if sizes else 0,
    }


def insert_sizes(log: Path) -> list[int]:
    """Rows of every ClickHouse insert, from the sink's "inserted {table: rows}" lines."""
    import ast

    sizes: list[int] = []
    for line in log.read_text(errors="replace").splitlines():
        at = line.find("inserted {")
        if at >= 0:
            written = ast.literal_eval(line[at + len("inserted ") :])
            sizes += [n for table, n in written.items() if "retractions" not in table]
    return sizes


def measure_publisher(run: Run, path: Path) -> tuple[float, int]:
    """`resumewatch publish` from NDJSON (validation included) into a scratch topic."""
    topic = f"{run.settings.internal_prefix}-publish"
    kafka_util.create_topic(run.settings.kafka_bootstrap, topic, run.settings.partitions)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "resumewatch", "publish", str(path)],
        env={**run.env, "RESUMEWATCH_INPUT_TOPIC": topic},
        capture_output=True,
        text=True,
    )
    elapsed = time.monotonic() - started
    summary = [line for line in proc.stdout.splitlines() if line.startswith("sent ")]
    if not summary:
        raise click.ClickException(f"publish failed: {proc.stderr[-2000:]}")
    sent = int(summary[0].split()[1].rstrip(","))
    rejected = int(summary[0].split()[3].rstrip(","))
    dups = int(summary[0].split()[5])
    return (sent + rejected + dups) / elapsed, sent


# --- the command -----------------------------------------------------------------------


@click.command()
@click.option("--events", default=1_000_000, show_default=True, help="Events to pre-fill.")
@click.option("--seed", default=7, show_default=True, help="Simulator seed.")
@click.option(
    "--baseline-seconds",
    default=120.0,
    show_default=True,
    help="Longest drain of the Faust baseline (its rate is measured over that time).",
)
@click.option(
    "--only",
    type=click.Choice(["publisher", "limit", "baseline", "pipeline", "latency", "memory"]),
    multiple=True,
    help="Run only these measurements (repeatable); default: all.",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("benchmarks/results.json"),
    show_default=True,
    help="Where to write the figures as JSON.",
)
@click.option(
    "--memory-enterprises",
    default=1_000_000,
    show_default=True,
    help="Registered enterprises of the memory measurement.",
)
@click.option(
    "--report-days",
    default=31,
    show_default=True,
    help="Daily reports per enterprise in the memory measurement (the grace is 31).",
)
@click.option(
    "--workers", default=2, show_default=True, help="Worker processes of the pipeline run."
)
@click.option(
    "--latency-runs",
    default=3,
    show_default=True,
    help="Latency runs; the worst one's figures are reported.",
)
@click.option(
    "--keep", is_flag=True, help="Keep the benchmark's ClickHouse databases and Kafka topics."
)
def main(
    events: int,
    seed: int,
    baseline_seconds: float,
    only: tuple[str, ...],
    json_out: Path,
    memory_enterprises: int,
    report_days: int,
    workers: int,
    latency_runs: int,
    keep: bool,
) -> None:
    """Measure throughput (limit, Faust baseline, resumewatch), latency, publisher rate,
    ClickHouse insert sizes and worker memory; print a table and write JSON."""
    from resumewatch.stack import Stack

    base = Settings()
    Stack(base).up()
    wanted = set(only) or {"publisher", "limit", "baseline", "pipeline", "latency", "memory"}
    logs = base.state_dir / "bench" / time.strftime("run-%Y%m%d-%H%M%S")
    results: dict[str, Any] = {
        "machine": machine(),
        "events": events,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    runs: list[Run] = []
    drains = wanted & {"limit", "baseline", "pipeline"}
    try:
        main_run = new_run(base, logs, "drain")
        runs.append(main_run)
        if wanted & {"publisher", *drains}:
            path = ndjson_file(base, events, seed)
        if "publisher" in wanted:
            with step("publisher: resumewatch publish from NDJSON"):
                rate, _ = measure_publisher(main_run, path)
            results["publisher_events_per_s"] = rate
        total = 0
        if drains:
            with step(f"pre-filling {main_run.settings.input_topic}"):
                total = kafka_util.send_lines(
                    base.kafka_bootstrap, main_run.settings.input_topic, lines(path)
                )
            results["prefilled"] = total
        if "limit" in wanted:
            with step("limit: bare aiokafka consumer"):
                results["limit_events_per_s"] = measure_limit(main_run, total)
        if "baseline" in wanted:
            # As many processes as the pipeline's: its workers and the sink.
            with step(f"baseline: idiomatic Faust agent, {workers + 1} processes"):
                results["baseline"] = measure_baseline(
                    main_run, total, baseline_seconds, processes=workers + 1
                )
        if "pipeline" in wanted:
            with step("resumewatch: worker + sink into ClickHouse"):
                results["pipeline"] = measure_pipeline(main_run, total, workers, timeout=1800)
        if "latency" in wanted:
            from benchmarks.latency import RATE, measure_latency

            worst: dict[str, Any] | None = None
            for i in range(latency_runs):
                run = new_run(base, logs / f"latency-{i}", "latency")
                runs.append(run)
                with step(f"latency {i + 1} of {latency_runs}: {RATE:,} events/s for 60 s"):
                    got = measure_latency(run, workers)
                run.stop()
                if worst is None or got["p99"] > worst["p99"]:
                    worst = got
            results["latency"] = {**(worst or {}), "runs": latency_runs}
        if "memory" in wanted:
            from benchmarks.memory import measure_memory

            run = new_run(base, logs / "memory", "memory")
            runs.append(run)
            with step(
                f"memory: worker with {memory_enterprises:,} enterprises × "
                f"{report_days} report days"
            ):
                results["memory"] = measure_memory(run, memory_enterprises, report_days)
    finally:
        for run in runs:
            run.stop()
            if not keep:
                drop_database(run.settings)
                delete_topics(run.settings)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=2) + "\n")
    json_out.with_suffix(".md").write_text(markdown(results))
    print_table(results)
    click.echo(f"figures written to {json_out}; logs in {logs}", err=True)


def drop_database(settings: Settings) -> None:
    from sinks.runner import clickhouse_client

    client = clickhouse_client(settings)
    try:
        client.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    finally:
        client.disconnect()


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(int(mem) / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _workers(figures: dict[str, Any]) -> str:
    n = figures.get("workers", 1)
    return f"{n} worker" + ("s" if n != 1 else "")


def _s(seconds: float) -> str:
    return "never" if seconds == float("inf") else f"{seconds:.2f} s"


def table_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measure, value, target) of every figure present in the results."""
    rows: list[tuple[str, str, str]] = []

    def rate(v: float | None) -> str:
        return f"{v:,.0f} events/s" if v else "not measured"

    pipe = r.get("pipeline", {})
    ours = pipe.get("events_per_s")
    baseline = r.get("baseline", {})
    base = baseline.get("events_per_s")
    limit = r.get("limit_events_per_s")
    rows.append(("limit: bare aiokafka consumer, read + decode", rate(limit), ""))
    processes = baseline.get("processes", 1)
    rows.append(
        (
            f"peer baseline: idiomatic Faust agent ({processes} process"
            + ("es)" if processes != 1 else ")"),
            rate(base),
            "",
        )
    )
    rows.append((f"resumewatch end to end ({_workers(pipe)} + sink)", rate(ours), "≥ 30,000"))
    if ours and base:
        rows.append(("resumewatch / baseline", f"{ours / base:.2f}×", "≥ 8×"))
    if ours and limit:
        rows.append(("resumewatch / limit", f"{ours / limit:.3f}", "≥ 0.15"))
    if "changelog_bytes_per_event" in pipe:
        rows.append(
            (
                "changelog per input event",
                f"{pipe['changelog_bytes_per_event']:,.0f} bytes in "
                f"{pipe['changelog_records_per_event']:.2f} records",
                "≤ 200 bytes",
            )
        )
        rows.append(
            ("worker CPU per input event", f"{pipe['worker_cpu_us_per_event']:,.0f} µs", "")
        )
    if "machine_cpu_us_per_event" in pipe:
        rows.append(("sink CPU per input event", f"{pipe['sink_cpu_us_per_event']:,.0f} µs", ""))
        rows.append(
            (
                "machine CPU per input event (all cores, every process)",
                f"{pipe['machine_cpu_us_per_event']:,.0f} µs",
                "",
            )
        )
    lat = r.get("latency")
    if lat:
        rows.append(
            (
                f"publish → queryable at {lat['publish_rate']:,.0f} events/s "
                f"({_workers(lat)} + sink), worst of {lat.get('runs', 1)} runs, "
                "p50 / p95 / p99",
                f"{_s(lat['p50'])} / {_s(lat['p95'])} / {_s(lat['p99'])} "
                f"({lat['probes_seen']:,} of {lat['probes']:,} probes seen)",
                "p99 ≤ 1 s",
            )
        )
    rows.append(("publisher from NDJSON", rate(r.get("publisher_events_per_s")), "≥ 25,000"))
    if pipe:
        rows.append(
            (
                "median rows per ClickHouse insert (all tables)",
                f"{pipe['median_rows_per_insert']:,.0f} of {pipe['inserts']:,} inserts",
                "≥ 5,000",
            )
        )
        rows.append(
            (
                "worker peak RSS during the drain",
                f"{pipe['worker_peak_rss_bytes'] / 1e6:,.0f} MB",
                "",
            )
        )
    mem = r.get("memory")
    if mem:
        rows.append(
            (
                f"worker peak RSS, {mem['enterprises']:,} enterprises × "
                f"{mem.get('report_days', 1)} report days",
                # Decimal units, as the target's: 1.5 GB is 1.40 GiB.
                f"{mem['peak_rss_bytes'] / 1e9:.2f} GB",
                "≤ 1.5 GB",
            )
        )
    return rows


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"resumewatch benchmark ({r.get('prefilled', r['events']):,} events)")
    for column in ("measure", "value", "target"):
        t.add_column(column)
    for row in table_rows(r):
        t.add_row(*row)
    Console().print(t)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"Measured {r['started_at'][:10]} on {m['cpus']} cores ({m['cpu']}), "
        f"{m['memory_gb']} GiB of memory, Python {m['python']}, "
        "Kafka and ClickHouse on the same machine; "
        f"{r.get('prefilled', r['events']):,} events.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table_rows(r)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
