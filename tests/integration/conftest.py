"""Integration fixtures: the real Kafka and ClickHouse of `resumewatch stack up`, and a
pipeline (topics, database, worker and sink processes) unique to each test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from producers.publisher import Publisher
from producers.simulator import Record
from resumewatch.provision import delete_topics, ensure_schema, ensure_topics
from resumewatch.settings import Settings
from resumewatch.stack import Stack
from resumewatch.stack.procs import stop_children

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, never the same one twice in
    a test session."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    settings = Settings()
    # Starts Kafka and ClickHouse when they are not running yet (no-op otherwise).
    Stack(settings).up()
    return settings


@dataclass
class Pipeline:
    settings: Settings
    env: dict[str, str]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, what: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``resumewatch WHAT`` with the pipeline's settings (and ``env`` on top)."""
        log = open(self.logs / f"{what}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "resumewatch", what],
            env={**os.environ, **self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def publish(self, records: Iterable[Record]) -> None:
        """Send simulator records (key and value as they are) to the input topic; returns once
        Kafka acknowledged them all."""
        with Publisher(self.settings.kafka_bootstrap, self.settings.input_topic) as pub:
            for r in records:
                pub.send_raw(r.key, r.value)
            pub.flush()

    def publish_raw(self, raws: Iterable[bytes]) -> None:
        """Send event JSON to the input topic, each keyed by its enterprise_id; returns once
        Kafka acknowledged them all."""
        with Publisher(self.settings.kafka_bootstrap, self.settings.input_topic) as pub:
            for raw in raws:
                pub.send_raw(orjson.loads(raw)["enterprise_id"].encode(), raw)
            pub.flush()

    def full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def clickhouse(self) -> Any:
        from sinks.runner import clickhouse_client

        return clickhouse_client(self.settings, self.settings.clickhouse_database)

    def region_rows(self, client: Any | None = None) -> dict[tuple[Any, ...], tuple[int, ...]]:
        """region_metrics FINAL as {key: metrics tuple of tests.reference}; checks on the way
        that every rate column is its numerator over its denominator, NULL for a zero
        denominator (so rows whose counts equal the reference have the reference's rates)."""
        from tests.reference import RATES, region_row_key, row_metrics

        own = client is None
        client = client or self.clickhouse()
        try:
            data, cols = client.execute(
                "SELECT * FROM region_metrics FINAL", with_column_types=True
            )
        finally:
            if own:
                client.disconnect()
        names = [c[0] for c in cols]
        out = {}
        for values in data:
            d = dict(zip(names, values, strict=True))
            m = row_metrics(d)
            for rate, (num, den) in RATES.items():
                want = m[num] / m[den] if m[den] else None
                got = d[rate]
                assert (got is None) == (want is None), (rate, d)
                assert want is None or abs(got - want) <= 1e-9 * max(1.0, want), (rate, d)
            out[region_row_key(d)] = m
        return out

    def enterprise_daily(self, client: Any) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        """enterprise_daily in the form of tests.reference.expected_enterprise_daily."""
        from tests.reference import fen

        got = client.execute(
            "SELECT enterprise_id, day, district, status, reported, staff_on_duty, "
            "output_value, appeals_opened, appeals_resolved FROM enterprise_daily"
        )
        return {(r[0], r[1]): (r[2], r[3], r[4], r[5], fen(r[6]), r[7], r[8]) for r in got}

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        """Wait until the worker group is stable with ``n`` members (partitions shared)."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap.split(","))

        def stable() -> bool:
            from kafka.errors import KafkaError

            try:
                group = admin.describe_groups([self.settings.app_id])[self.settings.app_id]
            except KafkaError:  # e.g. a new cluster's group coordinator is not elected yet
                return False
            return group.get("group_state") == "Stable" and len(group.get("members", [])) == n

        try:
            self.wait_for(stable, timeout, f"{n} workers sharing the partitions")
        finally:
            admin.close()

    def uncommitted(self) -> int:
        """Messages of the input topic past the worker group's committed offsets (-1 while
        Kafka cannot tell, e.g. the group's coordinator is moving)."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError

        servers = self.settings.kafka_bootstrap.split(",")
        try:
            admin = KafkaAdminClient(bootstrap_servers=servers)
            consumer = KafkaConsumer(bootstrap_servers=servers)
        except KafkaError:
            return -1
        try:
            topic = self.settings.input_topic
            parts = [TopicPartition(topic, n) for n in range(self.settings.partitions)]
            ends = consumer.end_offsets(parts)
            group = self.settings.app_id
            done = admin.list_group_offsets(group).get(group, {})
            return sum(ends[tp] - (done[tp].offset if tp in done else 0) for tp in parts)
        except KafkaError:
            return -1
        finally:
            consumer.close()
            admin.close()

    def wait_for(
        self,
        check: Callable[[], bool],
        timeout: float,
        what: str,
        detail: Callable[[], str] | None = None,
    ) -> None:
        """Poll until ``check()``; fail with ``detail()`` (what still differs) and the
        workers' log tails at the deadline."""
        deadline = time.monotonic() + timeout
        while not check():
            for p in self.procs:
                assert p.poll() is None, f"a pipeline process exited: {self.log_tail()}"
            if time.monotonic() > deadline:
                differs = f"{detail()}\n" if detail is not None else ""
                pytest.fail(
                    f"timed out after {timeout:.0f} s waiting for {what}\n{differs}"
                    f"{self.log_tail()}"
                )
            time.sleep(0.3)

    def log_tail(self) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")):
            out.append(
                f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            )
        return "\n".join(out)

    def stop(self) -> None:
        stop_children(self.procs)


@pytest.fixture
def pipeline(base_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    """Factory: a fresh set of topics and a fresh ClickHouse database for this test."""
    made: list[Pipeline] = []

    def make(partitions: int = 4, **overrides: Any) -> Pipeline:
        uid = uuid.uuid4().hex[:10]
        values = {
            "input_topic": f"it-{uid}-enterprise-status",
            "alerts_topic": f"it-{uid}-alerts",
            "dlq_topic": f"it-{uid}-enterprise-status-dlq",
            "internal_prefix": f"it-{uid}",
            "clickhouse_database": f"it_{uid}",
            "partitions": partitions,
            "batch_seconds": 0.1,
            "sink_batch_seconds": 0.2,
            "sink_bulk_seconds": 0.5,
            # Several workers run at once: /metrics only where a test asks for it.
            "worker_metrics_port": 0,
            "sink_metrics_port": 0,
            **overrides,
        }
        settings = base_settings.model_copy(update=values)
        env = settings.as_env()
        ensure_topics(settings)
        ensure_schema(settings)
        p = Pipeline(settings, env, tmp_path)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()
        if os.environ.get("RESUMEWATCH_KEEP_TEST_DATA"):
            continue  # for debugging a failure: keep the database and topics
        client = p.clickhouse()
        client.execute(f"DROP DATABASE IF EXISTS {p.settings.clickhouse_database}")
        client.disconnect()
        if p.settings.kafka_bootstrap == base_settings.kafka_bootstrap:
            delete_topics(p.settings)  # (a test's own cluster goes away with its data)
