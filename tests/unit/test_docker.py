"""docker/compose.yaml is a valid compose file (checked by Debian's docker-compose, which
needs no engine for `config`) describing the production-like deployment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml  # type: ignore[import-untyped]

DOCKER = Path(__file__).parents[2] / "docker"
SECRETS = {
    "RESUMEWATCH_CLICKHOUSE_PASSWORD": "writer-pw",
    "RESUMEWATCH_CLICKHOUSE_ANALYST_PASSWORD": "analyst-pw",
}


def config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: `make install` (scripts/system-deps.sh) installs it"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RESUMEWATCH_")}
    return subprocess.run(
        [exe, "-f", str(DOCKER / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        env={**clean, **env},
        timeout=60,
    )


def test_compose_file_is_valid_and_has_the_whole_deployment() -> None:
    done = config(SECRETS)
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load(done.stdout)
    services = cfg["services"]
    assert set(services) == {
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "clickhouse",
        "migrate",
        "worker-1",
        "worker-2",
        "sink",
        "gateway",
        "dashboard",
    }
    kafka = [services[f"kafka-{i}"] for i in (1, 2, 3)]
    assert [int(k["environment"]["KAFKA_NODE_ID"]) for k in kafka] == [1, 2, 3]
    for k in kafka:
        env = k["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3
    for name in ("kafka-1", "kafka-2", "kafka-3", "clickhouse", "gateway", "dashboard"):
        assert services[name]["healthcheck"]["test"], name
    # Workers and the sink: checked on their /metrics, which listens beyond loopback.
    for name, port in (("worker-1", 9101), ("worker-2", 9101), ("sink", 9102)):
        assert f"127.0.0.1:{port}/metrics" in " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["environment"]["RESUMEWATCH_METRICS_HOST"] == "0.0.0.0"
    assert services["dashboard"]["environment"]["RESUMEWATCH_DASHBOARD_HOST"] == "0.0.0.0"
    for name in ("kafka-1", "kafka-2", "kafka-3", "clickhouse", "worker-1", "worker-2"):
        assert any(":" in str(v) for v in services[name]["volumes"]), name
    assert set(cfg["volumes"]) >= {"kafka-1", "kafka-2", "kafka-3", "clickhouse"}
    for name in ("worker-1", "worker-2", "sink", "gateway", "dashboard"):
        svc = services[name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["environment"]["RESUMEWATCH_CLICKHOUSE_PASSWORD"] == "writer-pw"
        assert svc["build"]["dockerfile"] == "docker/Dockerfile"
    assert services["worker-1"]["command"] == ["worker"]
    assert services["migrate"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_compose_refuses_to_run_without_passwords() -> None:
    done = config({})
    assert done.returncode != 0
    assert "set RESUMEWATCH_CLICKHOUSE_PASSWORD" in done.stderr


def test_the_image_installs_the_pinned_versions() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -c constraints.txt ." in dockerfile
    assert 'ENTRYPOINT ["resumewatch"]' in dockerfile
