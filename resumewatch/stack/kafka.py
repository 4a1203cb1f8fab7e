"""Apache Kafka from its Maven Central artifacts, one KRaft node (broker + controller)."""

from __future__ import annotations

import shutil
import subprocess
import uuid

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


class Kafka:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.home = settings.state_dir.resolve() / "kafka"
        self.libs = self.home / "dist" / settings.kafka_version / "libs"
        self.data = self.home / "data"
        self.config = self.home / "server.properties"
        self.log = self.home / "kafka.log"
        self.pidfile = self.home / "kafka.pid"

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
        return read_pid(self.pidfile)

    def _write_config(self) -> None:
        s = self.s
        self.config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{s.kafka_port},"
                    f"CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data}",
                    f"num.partitions={s.partitions}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
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

    def _format(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        cluster_id_file = self.home / "cluster.id"
        if not cluster_id_file.exists():
            # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
            import base64

            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            cluster_id_file.write_text(cid)
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id_file.read_text().strip(),
            "-c",
            str(self.config),
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise StackError(f"Formatting Kafka storage failed: {proc.stderr.strip()[-500:]}")

    def start(self, timeout: float = 90.0) -> bool:
        """Start the broker unless it runs; wait until a metadata request succeeds."""
        if self.pid() is not None:
            self.wait_ready(timeout)
            return False
        for port in (self.s.kafka_port, self.s.kafka_controller_port):
            if port_in_use(port):
                raise StackError(
                    f"Port {port} on 127.0.0.1 is taken by another program; stop it or set "
                    "RESUMEWATCH_KAFKA_PORT / RESUMEWATCH_KAFKA_CONTROLLER_PORT to free ports."
                )
        self.ensure_installed()
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._format()
        start_process(
            self._java("kafka.Kafka", str(self.config), heap=self.s.kafka_heap),
            self.log,
            self.pidfile,
        )
        self.wait_ready(timeout)
        return True

    def ready(self) -> bool:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=f"127.0.0.1:{self.s.kafka_port}",
            request_timeout_ms=3000,
        )
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()

    def wait_ready(self, timeout: float) -> None:
        pid = self.pid()
        wait_until(
            self.ready,
            timeout,
            "Kafka",
            alive=(lambda: pid is not None and pid_alive(pid)),
            log=self.log,
        )

    def stop(self) -> bool:
        return stop_process(self.pidfile, timeout=60)
