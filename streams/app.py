"""The Faust app factory: topics, tables and the agents.

enterprise_agent  enterprise-status (key enterprise_id) -> per-enterprise state, enterprise
                  rows, dead letters, and the partition's partial sums per (district, scope,
                  day) of every cell a batch touched
region_agent      partials (key province) -> district, city and province rows -> region alerts
supply_agent      status and supplier timelines -> supplier readiness -> supplier alerts

Every agent runs its batches through the commit protocol of ``streams.runtime.checkpoint``:
each changed table key is written once per batch to its changelog, and every produced record
is acknowledged before the batch's offsets are; a crash replays the batch, and every state
update is an idempotent replacement, so nothing is counted twice.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.sensors.monitor import Monitor

from resumewatch.settings import Settings
from streams.alerts.rules import load_rules
from streams.enterprise import store as enterprise_store
from streams.enterprise.handler import EnterpriseProcessor
from streams.metrics import WorkerMetrics, serve
from streams.regions import store as region_store
from streams.regions.handler import RegionProcessor
from streams.runtime import internals, store
from streams.runtime.checkpoint import Checkpoint
from streams.runtime.state import Result, Topics
from streams.supply.handler import SupplyProcessor
from streams.webhooks import Webhooks

log = logging.getLogger("resumewatch.worker")
# Messages of an internal topic are packed (up to 256 KB each): a stage that falls behind
# would otherwise buffer Faust's default 20,000 of them (gigabytes) and take thousands per
# batch. This many per stream buffer and per batch holds the fetcher back instead.
PACKED_BUFFER = 64
# The input's stream buffer holds chunks of up to 1,000 records (``internals.chunk_topic``):
# Faust's default 20,000 would let the fetcher read millions of records ahead of the agent.
CHUNK_BUFFER = 16


class RawSchema(faust.Schema[bytes, bytes]):
    """Keys and values stay the bytes Kafka delivered. Faust's own decode runs both through
    its serializer registry for every message, to the same result."""

    def compile(self, app: Any, **_: Any) -> Any:
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = False) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode


class QuietMonitor(Monitor):
    """Faust's default monitor keeps statistics per message and per event, which cost about
    a tenth of the worker's time; the pipeline counts what it needs itself."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_table_get(self, table: Any, key: Any) -> None:
        pass

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        pass

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        pass


def create_app(settings: Settings, metrics: WorkerMetrics | None = None) -> faust.App:
    """The worker's Faust app. ``metrics`` are served by the caller (``resumewatch worker``
    does it before Faust starts, so /metrics answers during table recovery); without them the
    app serves its own once it runs."""
    internals.install()
    store.register()
    enterprise_store.register()
    region_store.register()
    datadir = settings.state_dir.resolve() / "faust" / settings.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",")],
        store=store.URL,
        # Faust keeps a small data directory even with the memory store; not in the cwd.
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.topic_replication,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
        producer_compression_type=(
            None if settings.kafka_compression == "none" else settings.kafka_compression
        ),
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=20_000,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
        consumer_max_fetch_size=1024 * 1024,
        monitor=QuietMonitor(),
    )

    def buffered(name: str, maxsize: int, **kwargs: Any) -> Any:
        # Built as a Topic, not with App.topic(): App.topic() takes a maxsize and does not
        # pass it on (faust-streaming 0.15.3, faust/app/base.py), so the stream buffers
        # would be Faust's default 20,000 messages, and the input's 20,000 chunks of records
        # would let the fetcher read the whole backlog into memory.
        return faust.Topic(
            app, topics=[name], schema=RawSchema(), maxsize=maxsize, allow_empty=False, **kwargs
        )

    def topic(name: str, internal: bool = False) -> Any:
        if internal:
            return buffered(name, PACKED_BUFFER, partitions=settings.partitions, internal=True)
        return app.topic(name, schema=RawSchema())

    # Chunked: committed by the checkpoint, not through Faust's acknowledgements.
    source = buffered(settings.input_topic, CHUNK_BUFFER, acks=False)
    partials = topic(settings.partials_topic, internal=True)
    supply_topic = topic(settings.supply_topic, internal=True)
    # Declared so that Faust creates them when missing.
    topic(settings.region_rows_topic, internal=True)
    topic(settings.enterprise_rows_topic, internal=True)
    topic(settings.alerts_topic)

    # Keys and values are bytes (orjson) through the app-wide raw serializers.
    def table(name: str, store: str | None = None) -> Any:
        return app.Table(
            name,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            store=store,
        )

    rules = load_rules(settings.rules_path)
    log.info(
        "%d alert rules from %s%s",
        len(rules),
        settings.rules_path,
        "" if rules else ": alerting is off",
    )
    topics = Topics.of(settings)
    n = settings.partitions
    ent = EnterpriseProcessor(
        topics,
        table("enterprises", enterprise_store.URL),
        partitions=n,
        timezone=settings.timezone,
        grace_days=settings.grace_days,
        supply=any(r.metric == "supplier_readiness" for r in rules),
    )
    regions = RegionProcessor(
        topics, table("regions", region_store.URL), table("alerts"), rules, partitions=n
    )
    supply = SupplyProcessor(topics, table("supply"), rules, partitions=n)
    if metrics is None:
        own = metrics = WorkerMetrics()

        async def serve_metrics() -> None:
            serve(own.registry, settings.metrics_host, settings.worker_metrics_port, "worker")

        app.task(serve_metrics)
    webhooks = Webhooks(
        settings.webhook_urls,
        settings.webhook_timeout,
        settings.webhook_retries,
        on_count=metrics.webhook,
    )
    app.task(webhooks.run)
    checkpoint = Checkpoint(app, settings.kafka_bootstrap, on_gap=metrics.gaps.inc)

    async def watch_sources() -> None:
        """Every few seconds: the lag of each source partition, and commit holes repaired."""
        if app.rebalancing or getattr(app, "in_recovery", False):
            return  # the tables (and the next offsets they hold) are being restored
        try:
            lags = await checkpoint.watch()
        except Exception as exc:  # noqa: BLE001 - a rebalance in between: look next time
            log.debug("source partitions not checked: %r", exc)
            return
        metrics.lag.set(lags)

    app.timer(5.0)(watch_sources)

    async def forget_aggregates(*_: Any, **__: Any) -> None:
        # Partitions moved: rebuild the in-memory sums from the (recovered) tables on next use.
        ent.reset()
        regions.reset()
        checkpoint.forget()

    app.on_partitions_revoked.connect(forget_aggregates)
    app.on_partitions_assigned.connect(forget_aggregates)

    def done(name: str, result: Result, admitted: int, seconds: float) -> None:
        for t in result.transitions:
            log.info(
                "alert %s %s: rule %s, %s %s, %s = %s on %s (threshold %s)",
                t["alert_id"],
                t["state"],
                t["rule"],
                t["level"] or "enterprise",
                "/".join(
                    x for x in (t["province"], t["city"], t["district"], t["enterprise_id"]) if x
                ),
                t["metric"],
                t["value"],
                t["day"],
                t["threshold"],
            )
        if result.transitions:
            webhooks.submit(result.transitions)
            metrics.transitions(t["state"] for t in result.transitions)
        metrics.counted(result.counts)
        metrics.batch(name, admitted, seconds, len(result.records))

    within = settings.batch_seconds
    checkpoint.agent(
        source, "enterprise_agent", ent, settings.batch_max, within, done, chunked=True
    )
    checkpoint.agent(partials, "region_agent", regions, PACKED_BUFFER, within, done)
    checkpoint.agent(supply_topic, "supply_agent", supply, PACKED_BUFFER, within, done)
    return app


def __getattr__(name: str) -> Any:
    # ``faust -A streams.app worker`` looks up ``app``; build it from the environment then,
    # not at import time.
    if name == "app":
        return create_app(Settings())
    raise AttributeError(name)
