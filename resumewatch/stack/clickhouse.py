"""ClickHouse as a plain process with its own config, data and logs under the state dir."""

from __future__ import annotations

import logging
import shutil
from xml.sax.saxutils import escape

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

# The <yandex> root is what 18.16 understands; current releases still accept it.
CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>{home}/log/server.log</log>
    <errorlog>{home}/log/error.log</errorlog>
    <size>100M</size>
    <count>3</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port>
  <tcp_port>{tcp}</tcp_port>
  <interserver_http_port>{inter}</interserver_http_port>
  <max_connections>1024</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>{home}/data/</path>
  <tmp_path>{home}/tmp/</tmp_path>
  <user_files_path>{home}/user_files/</user_files_path>
  <format_schema_path>{home}/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>
"""

USERS = """<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
    <readonly><readonly>1</readonly></readonly>
  </profiles>
  <users>
    <default>
      <password>{password}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <{analyst}>
      <password>{analyst_password}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>readonly</profile>
      <quota>default</quota>
      <allow_databases><database>{database}</database></allow_databases>
    </{analyst}>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"""


class ClickHouse:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.home = settings.state_dir.resolve() / "clickhouse"
        self.config = self.home / "config.xml"
        self.log = self.home / "log" / "stdout.log"
        self.pidfile = self.home / "clickhouse.pid"

    def command(self) -> list[str]:
        if self.s.clickhouse_binary:
            return self.s.clickhouse_binary.split()
        if shutil.which("clickhouse"):
            return ["clickhouse", "server"]
        if shutil.which("clickhouse-server"):
            return ["clickhouse-server"]
        raise StackError(
            "No ClickHouse server found; install Debian's package "
            "(apt-get install clickhouse-server) or put a `clickhouse` binary on PATH."
        )

    def pid(self) -> int | None:
        return read_pid(self.pidfile)

    def write_users(self) -> None:
        """The pipeline's writer (`clickhouse_user`) and the read-only analyst. A running
        server reloads the file by itself within seconds."""
        s = self.s
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "users.xml").write_text(
            USERS.format(
                password=escape(s.clickhouse_password.get_secret_value()),
                analyst=s.clickhouse_analyst_user,
                analyst_password=escape(s.clickhouse_analyst_password.get_secret_value()),
                database=s.clickhouse_database,
            )
        )

    def start(self, timeout: float = 60.0) -> bool:
        if self.pid() is not None:
            self.write_users()
            self.wait_ready(timeout)
            return False
        cmd = self.command()
        for port in (
            self.s.clickhouse_port,
            self.s.clickhouse_http_port,
            self.s.clickhouse_interserver_port,
        ):
            if port_in_use(port):
                raise StackError(
                    f"Port {port} on 127.0.0.1 is taken by another program; stop it or set "
                    "RESUMEWATCH_CLICKHOUSE_PORT / _HTTP_PORT / _INTERSERVER_PORT to free ports."
                )
        for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            CONFIG.format(
                home=self.home,
                http=self.s.clickhouse_http_port,
                tcp=self.s.clickhouse_port,
                inter=self.s.clickhouse_interserver_port,
            )
        )
        self.write_users()
        start_process([*cmd, f"--config-file={self.config}"], self.log, self.pidfile, cwd=self.home)
        self.wait_ready(timeout)
        return True

    def ready(self) -> bool:
        from clickhouse_driver import Client

        # Refused connections are expected while the server starts; the driver would log each
        # one with a traceback.
        logging.getLogger("clickhouse_driver.connection").setLevel(logging.CRITICAL)

        client = Client(
            self.s.clickhouse_host,
            port=self.s.clickhouse_port,
            user=self.s.clickhouse_user,
            password=self.s.clickhouse_password.get_secret_value(),
            connect_timeout=2,
            send_receive_timeout=5,
        )
        try:
            return bool(client.execute("SELECT 1") == [(1,)])
        finally:
            client.disconnect()

    def wait_ready(self, timeout: float) -> None:
        pid = self.pid()
        wait_until(
            self.ready,
            timeout,
            "ClickHouse",
            alive=(lambda: pid is not None and pid_alive(pid)),
            log=self.home / "log" / "error.log",
        )

    def stop(self) -> bool:
        return stop_process(self.pidfile, timeout=60)

    def version(self) -> str:
        from clickhouse_driver import Client

        client = Client(
            self.s.clickhouse_host,
            port=self.s.clickhouse_port,
            user=self.s.clickhouse_user,
            password=self.s.clickhouse_password.get_secret_value(),
        )
        try:
            return str(client.execute("SELECT version()")[0][0])
        finally:
            client.disconnect()
