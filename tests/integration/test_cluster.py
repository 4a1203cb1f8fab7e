"""A three-node KRaft Kafka cluster (`resumewatch stack up --brokers 3`): topics replicated 3
times with min.insync.replicas 2, and a broker killed mid-stream loses nothing."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from producers.simulator import SimConfig, Summary, stream
from resumewatch.settings import Settings
from resumewatch.stack.kafka import Kafka
from resumewatch.stack.procs import read_pid
from tests.integration.test_faults import assert_exact, valid, wait_for_first_rows

PORT = 29092  # nodes on 29092/29094/29096, controllers on 29093/29095/29097


def min_insync(described: Any) -> Any:
    """min.insync.replicas out of kafka-python's nested describe_configs answer."""
    if isinstance(described, dict):
        if "min.insync.replicas" in described:
            data = described["min.insync.replicas"]
            return data.get("value", data.get("config_value")) if isinstance(data, dict) else data
        for v in described.values():
            found = min_insync(v)
            if found is not None:
                return found
    return None


@pytest.fixture
def cluster(base_settings: Settings, tmp_path: Path) -> Iterator[Kafka]:
    state = tmp_path / "state"
    (state / "kafka").mkdir(parents=True)
    # The broker jars and Maven cache of the main stack: no second download.
    base = base_settings.state_dir.resolve()
    (state / "kafka" / "dist").symlink_to(base / "kafka" / "dist")
    if (base / "m2").exists():
        (state / "m2").symlink_to(base / "m2")
    settings = base_settings.model_copy(
        update={
            "state_dir": state,
            "kafka_brokers": 3,
            "kafka_port": PORT,
            "kafka_controller_port": PORT + 1,
            "kafka_heap": "384m",
        }
    )
    kafka = Kafka(settings)
    try:
        kafka.start(timeout=240)
        yield kafka
    finally:
        # A node whose peers are gone waits long for a controlled shutdown: not here.
        kafka.stop(timeout=10)


def test_three_brokers_one_killed_mid_stream_loses_nothing(pipeline, cluster: Kafka) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource

    p = pipeline(partitions=4, kafka_bootstrap=cluster.bootstrap, kafka_brokers=3)
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap.split(","))
    try:
        for t in admin.describe_topics([p.settings.input_topic, *p.settings.changelog_topics]):
            assert all(len(part["replica_nodes"]) == 3 for part in t["partitions"]), t
        configs = admin.describe_configs([ConfigResource("TOPIC", p.settings.input_topic)])
        assert min_insync(configs) == "2"
    finally:
        admin.close()
    p.start("worker")
    p.start("sink")
    p.wait_for_workers(1)
    cfg = SimConfig(enterprises=1500, days=14, seed=37, duplicate_share=0.01, disorder=1000)
    records = list(stream(cfg, Summary()))
    half = len(records) // 2
    client = p.clickhouse()
    p.publish(records[:half])
    wait_for_first_rows(p, client)
    # The first node: the bootstrap address of everyone's default, and a partition leader.
    pid = read_pid(cluster.pid_file(1))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    p.publish(records[half:])
    assert_exact(p, valid(records))
