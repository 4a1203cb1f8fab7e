"""``resumewatch stack up | down | status``: the services and the pipeline processes."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from resumewatch.settings import Settings
from resumewatch.stack.clickhouse import ClickHouse
from resumewatch.stack.kafka import Kafka
from resumewatch.stack.procs import read_pid, start_process, stop_process


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    address: str
    log: Path


class Stack:
    """Starts and stops what the project runs locally, tracking each by its pid file."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.kafka = Kafka(settings)
        self.clickhouse = ClickHouse(settings)
        self.run_dir = settings.state_dir.resolve() / "run"

    def up(self) -> list[str]:
        """Start Kafka and ClickHouse unless running; returns what happened, one line each."""
        said = []
        nodes = "" if self.kafka.n == 1 else f" ({self.kafka.n} nodes)"
        said.append(
            ("started" if self.kafka.start() else "already running") + " Kafka "
            f"{self.s.kafka_version}{nodes} on {self.kafka.bootstrap}"
        )
        said.append(
            ("started" if self.clickhouse.start() else "already running")
            + f" ClickHouse {self.clickhouse.version()} on 127.0.0.1:{self.s.clickhouse_port}"
        )
        return said

    # -- pipeline processes (worker, sink, dashboard) -----------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _log(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def start_pipeline_process(self, name: str, args: list[str]) -> bool:
        """Run ``resumewatch <args>`` in the background unless it already runs."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if read_pid(self._pidfile(name)) is not None:
            return False
        start_process(
            [sys.executable, "-m", "resumewatch", *args], self._log(name), self._pidfile(name)
        )
        return True

    def down(self) -> list[str]:
        said = []
        for name in ("dashboard", "worker", "sink"):
            if stop_process(self._pidfile(name)):
                said.append(f"stopped {name}")
        if self.clickhouse.stop():
            said.append("stopped ClickHouse")
        if self.kafka.stop():
            said.append("stopped Kafka")
        return said or ["nothing was running"]

    def status(self) -> list[ServiceStatus]:
        kafka = [
            ServiceStatus(
                "kafka" if len(self.kafka.known_nodes) == 1 else f"kafka-{i}",
                read_pid(self.kafka.pid_file(i)),
                f"127.0.0.1:{self.kafka.port(i)}",
                self.kafka.log_file(i),
            )
            for i in self.kafka.known_nodes
        ]
        return [
            *kafka,
            ServiceStatus(
                "clickhouse",
                self.clickhouse.pid(),
                f"127.0.0.1:{self.s.clickhouse_port} (http {self.s.clickhouse_http_port})",
                self.clickhouse.log.parent,
            ),
            ServiceStatus(
                "worker",
                read_pid(self._pidfile("worker")),
                self._metrics(self.s.worker_metrics_port),
                self._log("worker"),
            ),
            ServiceStatus(
                "sink",
                read_pid(self._pidfile("sink")),
                self._metrics(self.s.sink_metrics_port),
                self._log("sink"),
            ),
            ServiceStatus(
                "dashboard",
                read_pid(self._pidfile("dashboard")),
                self.dashboard_url,
                self._log("dashboard"),
            ),
        ]

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.s.dashboard_host}:{self.s.dashboard_port}/"

    def _metrics(self, port: int) -> str:
        return f"http://{self.s.metrics_host}:{port}/metrics" if port else "-"
