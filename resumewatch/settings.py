"""The one settings object: every knob, with its env var ``RESUMEWATCH_<FIELD>``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """resumewatch configuration; build it once in ``main()`` and pass it down."""

    model_config = SettingsConfigDict(env_prefix="RESUMEWATCH_", frozen=True, extra="ignore")

    # --- local stack -------------------------------------------------------------------
    state_dir: Path = Field(
        default=Path(".state"),
        description="Where the local stack keeps Kafka/ClickHouse data, logs, pid files and "
        "the Maven cache of the Kafka broker.",
    )
    kafka_version: str = Field(
        default="4.4.0",
        description="Apache Kafka broker version fetched from Maven Central (kafka_2.13).",
    )
    kafka_port: int = Field(default=19092, description="Local Kafka broker port (loopback).")
    kafka_controller_port: int = Field(
        default=19093, description="Local KRaft controller port (loopback)."
    )
    kafka_heap: str = Field(default="768m", description="JVM heap (-Xmx) of each local broker.")
    kafka_brokers: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Kafka nodes `stack up` runs (KRaft, each broker + controller); node i "
        "listens on kafka_port + 2(i-1) and kafka_controller_port + 2(i-1).",
    )
    clickhouse_binary: str = Field(
        default="",
        description="ClickHouse server command; empty picks `clickhouse server` when a "
        "`clickhouse` binary is on PATH, else Debian's `clickhouse-server`.",
    )
    clickhouse_http_port: int = Field(default=18123, description="Local ClickHouse HTTP port.")
    clickhouse_interserver_port: int = Field(
        default=19009, description="Local ClickHouse interserver port."
    )

    # --- services the pipeline talks to ------------------------------------------------
    kafka_bootstrap: str = Field(
        default="",
        description="Kafka bootstrap servers, comma separated; empty means the local stack's "
        "brokers (127.0.0.1:kafka_port, one address per node of kafka_brokers).",
    )
    kafka_compression: Literal["none", "lz4", "gzip", "snappy", "zstd"] = Field(
        default="lz4",
        description="Compression of what the worker produces (derived records and table "
        "changelogs); lz4 at its fast level.",
    )
    clickhouse_host: str = Field(default="127.0.0.1", description="ClickHouse host.")
    clickhouse_port: int = Field(default=19000, description="ClickHouse native TCP port.")
    clickhouse_user: str = Field(default="default", description="ClickHouse user of the sink.")
    clickhouse_password: SecretStr = Field(
        default=SecretStr(""), description="Password of clickhouse_user (never printed)."
    )
    clickhouse_database: str = Field(default="resumewatch", description="ClickHouse database.")
    clickhouse_analyst_user: str = Field(
        default="analyst",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Read-only ClickHouse user for analysts and `resumewatch sql`: SELECT on "
        "clickhouse_database only (the local stack creates it).",
    )
    clickhouse_analyst_password: SecretStr = Field(
        default=SecretStr(""), description="Password of clickhouse_analyst_user (never printed)."
    )
    clickhouse_cluster: str = Field(
        default="",
        pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$",
        description="Cluster (remote_servers) of a sharded ClickHouse schema (`migrate "
        "--print-cluster-ddl --sharded`): the sink then deletes retracted rows in the "
        "<table>_local tables ON CLUSTER. Empty for one server or one shard of replicas.",
    )

    # --- topics ----------------------------------------------------------------------
    input_topic: str = Field(default="enterprise-status", description="Input topic (contract).")
    dlq_topic: str = Field(
        default="enterprise-status-dlq", description="Dead-letter topic (contract)."
    )
    internal_prefix: str = Field(
        default="resumewatch",
        description="Prefix of internal topics and the Faust app id; change it to run "
        "independent pipelines on one cluster.",
    )
    partitions: int = Field(
        default=4, description="Partitions of every topic the pipeline creates."
    )
    replication: int | None = Field(
        default=None,
        ge=1,
        description="Replication factor of the topics the pipeline creates; empty: "
        "min(3, kafka_brokers). With 3 or more the topics get min.insync.replicas 2.",
    )

    # --- semantics -------------------------------------------------------------------
    timezone: str = Field(default="Asia/Shanghai", description="Time zone of local days.")
    grace_days: int = Field(
        default=31,
        description=(
            "How many days behind its enterprise's newest accepted report a daily report may "
            "be; older ones are too late."
        ),
    )

    # --- publishing --------------------------------------------------------------------
    publish_jobs: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Helper processes that validate NDJSON for `resumewatch publish` while "
        "the main one sends; 0 validates in the sending process.",
    )

    # --- HTTP gateway ------------------------------------------------------------------
    gateway_host: str = Field(default="127.0.0.1", description="Address the HTTP gateway binds.")
    gateway_port: int = Field(default=18080, description="Port of the HTTP gateway.")
    gateway_tokens_file: Path = Field(
        default=Path("gateway-tokens.yaml"),
        description="YAML mapping of bearer token -> source name; an event's `source` must "
        "equal its token's source.",
    )
    gateway_max_bytes: int = Field(
        default=5 * 1024 * 1024, description="Largest request body the gateway accepts (bytes)."
    )
    gateway_max_events: int = Field(
        default=10_000, description="Most events the gateway accepts in one request."
    )
    gateway_ack_timeout: float = Field(
        default=30.0, description="Seconds the gateway waits for Kafka to acknowledge a request."
    )

    # --- alerts ------------------------------------------------------------------------
    alerts_topic: str = Field(
        default="alerts", description="Topic of alert transitions (contract)."
    )
    alert_rules_file: Path | None = Field(
        default=None,
        description="YAML alert rules; empty uses the rules shipped in "
        "resumewatch/default_rules.yaml.",
    )
    alert_webhooks: str = Field(
        default="",
        description="Comma-separated URLs that receive every alert transition as an HTTP POST "
        "of its JSON.",
    )
    webhook_timeout: float = Field(default=5.0, description="Seconds per webhook request.")
    webhook_retries: int = Field(
        default=8, description="Attempts per alert and webhook before it is counted as failed."
    )

    # --- worker and sink tuning --------------------------------------------------------
    batch_max: int = Field(default=5000, description="Max events per worker batch.")
    batch_seconds: float = Field(
        default=0.1, description="Max seconds a worker batch waits to fill up."
    )
    sink_batch_max: int = Field(
        default=50000,
        description="Max rows the sink holds: reaching it writes every table at once.",
    )
    sink_batch_seconds: float = Field(
        default=0.25,
        description="Max seconds rows of region_metrics and alerts wait for their "
        "ClickHouse insert.",
    )
    sink_bulk_seconds: float = Field(
        default=5.0,
        description="Max seconds rows of the other tables (events, enterprise rows, dead "
        "letters) wait, for larger and fewer ClickHouse inserts.",
    )

    # --- observability and the dashboard ------------------------------------------------
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the worker's and the sink's Prometheus /metrics listen on "
        "(0.0.0.0 in containers).",
    )
    worker_metrics_port: int = Field(
        default=18101,
        description="Port of a worker's /metrics; 0 turns it off. Workers on one host need "
        "ports of their own.",
    )
    sink_metrics_port: int = Field(
        default=18102, description="Port of the sink's /metrics; 0 turns it off."
    )
    dashboard_host: str = Field(
        default="127.0.0.1", description="Address the dashboard binds (loopback by default)."
    )
    dashboard_port: int = Field(default=18050, description="Port of the dashboard.")
    dashboard_refresh: float = Field(
        default=30.0,
        gt=0,
        le=86400,
        allow_inf_nan=False,
        description="Seconds between the dashboard page's refreshes.",
    )

    @property
    def rules_path(self) -> Path:
        return self.alert_rules_file or Path(__file__).with_name("default_rules.yaml")

    @property
    def webhook_urls(self) -> list[str]:
        return [u.strip() for u in self.alert_webhooks.split(",") if u.strip()]

    @property
    def app_id(self) -> str:
        return self.internal_prefix

    @property
    def topic_replication(self) -> int:
        return self.replication or min(3, self.kafka_brokers)

    @property
    def topic_configs(self) -> dict[str, str]:
        """Configs of created topics: acks=all writes need 2 in-sync copies from 3 up."""
        return {"min.insync.replicas": "2"} if self.topic_replication >= 3 else {}

    @property
    def partials_topic(self) -> str:
        """The enterprise stage's partial sums, keyed by province, to the region stage."""
        return f"{self.internal_prefix}-partials"

    @property
    def region_rows_topic(self) -> str:
        return f"{self.internal_prefix}-region-metrics"

    @property
    def enterprise_rows_topic(self) -> str:
        return f"{self.internal_prefix}-enterprise-rows"

    @property
    def supply_topic(self) -> str:
        return f"{self.internal_prefix}-supply"

    @property
    def changelog_topics(self) -> list[str]:
        """Changelog topics of the worker's tables (Faust's naming)."""
        tables = ("enterprises", "regions", "alerts", "supply")
        return [f"{self.app_id}-{t}-changelog" for t in tables]

    @property
    def sink_topics(self) -> list[str]:
        """The topics the ClickHouse sink consumes."""
        return [
            self.region_rows_topic,
            self.enterprise_rows_topic,
            self.alerts_topic,
            self.dlq_topic,
        ]

    @model_validator(mode="after")
    def _local_bootstrap(self) -> Settings:
        if not self.kafka_bootstrap.strip():
            addresses = ",".join(
                f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(self.kafka_brokers)
            )
            # The model is frozen; this fills in a default derived from other fields.
            object.__setattr__(self, "kafka_bootstrap", addresses)
        return self

    def as_env(self) -> dict[str, str]:
        """These settings as RESUMEWATCH_* variables, for a child process (secrets included:
        the child needs them)."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"RESUMEWATCH_{name.upper()}"] = str(value)
        return env

    @property
    def sink_group(self) -> str:
        return f"{self.internal_prefix}-sink"
