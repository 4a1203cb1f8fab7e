"""Apache Kafka from its Maven Central artifacts in KRaft mode: one node, or a cluster of
``kafka_brokers`` nodes (each broker + controller) on consecutive loopback ports."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from resumewatch.settings import Settings
from resumewatch.stack.procs import (
    StackError,
    pid_alive,
    port_in_use,
    read_pid,
    start_process,
    stop_process,
    wait_until,
)

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.resumewatch</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""
LOG4J_VERSION = "2.25.5"

LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def new_cluster_id(random: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A Kafka cluster id: 16 random bytes in URL-safe base64 without padding. One that
    starts with "-" is drawn again (as Kafka's own Uuid.randomUuid does): the storage
    tool would read it as an option, and formatting would fail."""
    while True:
        cid = base64.urlsafe_b64encode(random().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


class Kafka:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.n = settings.kafka_brokers
        self.home = settings.state_dir.resolve() / "kafka"
        self.libs = self.home / "dist" / settings.kafka_version / "libs"
        # Node 1 lives in the top directory; nodes 2.. in node-<i>/.
        self.log = self.log_file(1)
        self.pidfile = self.pid_file(1)

    def node_dir(self, i: int) -> Path:
        return self.home if i == 1 else self.home / f"node-{i}"

    def data_dir(self, i: int) -> Path:
        return self.node_dir(i) / "data"

    def config_file(self, i: int) -> Path:
        return self.node_dir(i) / "server.properties"

    def log_file(self, i: int) -> Path:
        return self.node_dir(i) / "kafka.log"

    def pid_file(self, i: int) -> Path:
        return self.node_dir(i) / "kafka.pid"

    def port(self, i: int) -> int:
        return self.s.kafka_port + 2 * (i - 1)

    def controller_port(self, i: int) -> int:
        return self.s.kafka_controller_port + 2 * (i - 1)

    @property
    def nodes(self) -> range:
        return range(1, self.n + 1)

    @property
    def known_nodes(self) -> range:
        """Every node this state directory has: stop them all, whatever the setting says."""
        size_file = self.home / "cluster.size"
        size = int(size_file.read_text()) if size_file.exists() else 1
        return range(1, max(self.n, size) + 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port(i)}" for i in self.nodes)

    # -- install ------------------------------------------------------------------
    def ensure_installed(self) -> None:
        """Fetch the broker jars with Maven once; later calls return at once."""
        marker = self.libs / ".complete"
        if marker.exists():
            return
        for tool, pkg in (("java", "openjdk-17-jre-headless"), ("mvn", "maven")):
            if shutil.which(tool) is None:
                raise StackError(
                    f"`{tool}` is not on PATH; install it (apt-get install {pkg}) and retry."
                )
        build = self.home / "dist" / self.s.kafka_version
        build.mkdir(parents=True, exist_ok=True)
        (build / "pom.xml").write_text(POM.format(kafka=self.s.kafka_version, log4j=LOG4J_VERSION))
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(build / "pom.xml"),
            f"-Dmaven.repo.local={self.s.state_dir.resolve() / 'm2'}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}",
            "-DincludeScope=runtime",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
            raise StackError(
                f"Maven could not fetch Kafka {self.s.kafka_version} from Maven Central "
                f"(check network access to the Maven repository): {' | '.join(tail)}"
            )
        marker.write_text("ok\n")

    # -- lifecycle ----------------------------------------------------------------
    def pid(self) -> int | None:
        """The first node's pid (the one a single-node stack runs)."""
        return read_pid(self.pidfile)

    def pids(self) -> list[int | None]:
        return [read_pid(self.pid_file(i)) for i in self.nodes]

    def _write_config(self, i: int) -> None:
        s = self.s
        replicas = min(3, self.n)
        min_isr = 2 if self.n >= 3 else 1
        voters = ",".join(f"{j}@127.0.0.1:{self.controller_port(j)}" for j in self.nodes)
        self.node_dir(i).mkdir(parents=True, exist_ok=True)
        self.config_file(i).write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={i}",
                    f"controller.quorum.voters={voters}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port(i)},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port(i)}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port(i)}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir(i)}",
                    f"num.partitions={s.partitions}",
                    f"default.replication.factor={replicas}",
                    f"min.insync.replicas={min_isr}",
                    f"offsets.topic.replication.factor={replicas}",
                    "offsets.topic.num.partitions=8",
                    f"transaction.state.log.replication.factor={replicas}",
                    f"transaction.state.log.min.isr={min_isr}",
                    f"share.coordinator.state.topic.replication.factor={replicas}",
                    f"share.coordinator.state.topic.min.isr={min_isr}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.hours=-1",
                    "",
                ]
            )
        )
        (self.home / "log4j2.properties").write_text(LOG4J2)

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _format(self, i: int) -> None:
        size_file = self.home / "cluster.size"
        size = int(size_file.read_text()) if size_file.exists() else None
        if size is None and (self.data_dir(1) / "meta.properties").exists():
            size = 1  # formatted before the size was recorded
        if size is not None and size != self.n:
            raise StackError(
                f"The Kafka state in {self.home} is a {size}-node "
                f"cluster, not {self.n}; run `resumewatch stack down` and remove {self.home} "
                "(keep its dist/ to skip the download), or use another RESUMEWATCH_STATE_DIR."
            )
        if (self.data_dir(i) / "meta.properties").exists():
            return
        self.data_dir(i).mkdir(parents=True, exist_ok=True)
        cluster_id_file = self.home / "cluster.id"
        if not cluster_id_file.exists():
            cluster_id_file.write_text(new_cluster_id())
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id_file.read_text().strip(),
            "-c",
            str(self.config_file(i)),
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise StackError(f"Formatting Kafka storage failed: {proc.stderr.strip()[-500:]}")
        size_file.write_text(f"{self.n}\n")

    def start(self, timeout: float = 90.0) -> bool:
        """Start every node that is not running; wait until the cluster answers with all its
        brokers. False if all of them were running already."""
        todo = [i for i in self.nodes if read_pid(self.pid_file(i)) is None]
        for i in todo:
            for port in (self.port(i), self.controller_port(i)):
                if port_in_use(port):
                    raise StackError(
                        f"Port {port} on 127.0.0.1 is taken by another program; stop it or set "
                        "RESUMEWATCH_KAFKA_PORT / RESUMEWATCH_KAFKA_CONTROLLER_PORT to free "
                        "ports."
                    )
        if todo:
            if shutil.which("java") is None:
                raise StackError(
                    "`java` is not on PATH; install it (apt-get install "
                    "openjdk-17-jre-headless) and retry."
                )
            self.ensure_installed()
            self.home.mkdir(parents=True, exist_ok=True)
        for i in todo:
            self._write_config(i)
            self._format(i)
        for i in todo:
            self.start_node(i, wait=False)
        self.wait_ready(timeout)
        return bool(todo)

    def start_node(self, i: int, wait: bool = True, timeout: float = 90.0) -> None:
        start_process(
            self._java("kafka.Kafka", str(self.config_file(i)), heap=self.s.kafka_heap),
            self.log_file(i),
            self.pid_file(i),
        )
        if wait:
            self.wait_ready(timeout)

    def stop_node(self, i: int, timeout: float = 60) -> bool:
        return stop_process(self.pid_file(i), timeout=timeout)

    def ready(self) -> bool:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        try:
            admin.list_topics()
            return len(admin.describe_cluster()["brokers"]) == self.n
        finally:
            admin.close()

    def wait_ready(self, timeout: float) -> None:
        pids = self.pids()
        wait_until(
            self.ready,
            timeout,
            "Kafka",
            alive=(lambda: all(pid is not None and pid_alive(pid) for pid in pids)),
            log=self.log,
        )

    def stop(self, timeout: float = 60) -> bool:
        """Stop every node (SIGTERM, then SIGKILL after ``timeout`` seconds each)."""
        stopped = [self.stop_node(i, timeout) for i in self.known_nodes]
        return any(stopped)
