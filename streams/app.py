"""The Faust app factory: topics, tables and the three agents.

enterprise_agent  enterprise-status (key enterprise_id) -> per-enterprise state,
                  dead letters, contributions per district
district_agent    contributions (key district) -> district sums -> district rows, rollups
rollup_agent      rollup (key city / province) -> sums of district rows -> city, province rows

Agents work in batches (``take_events``), write each changed table key once per batch to its
changelog, and wait for every produced record to be acknowledged before the batch's offsets
are acknowledged: a crash replays the batch, and every state update is an idempotent
replacement, so nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.types import TP

from resumewatch.settings import Settings
from streams import lz4, produce, store
from streams.alerts import load_rules
from streams.drain import install as install_drain
from streams.metrics import WorkerMetrics, serve
from streams.processing import (
    AlertProcessor,
    DistrictProcessor,
    EnterpriseProcessor,
    OffsetGuard,
    Out,
    RollupProcessor,
    SupplyProcessor,
    commit_hole,
)
from streams.webhooks import Webhooks

log = logging.getLogger("resumewatch.worker")
# Messages of an internal topic are packed (up to 256 KB each): a stage that falls behind
# would otherwise buffer Faust's default 20,000 of them (gigabytes) and take thousands per
# batch. This many per stream buffer and per batch holds the fetcher back instead.
PACKED_BUFFER = 64


@dataclass(frozen=True, slots=True)
class Fetched:
    """A record read outside Faust, shaped like a Faust event for the batch handlers."""

    message: Any


def merge(events: list[Any], more: list[Any]) -> list[Any]:
    """Both batches, each message once, in offset order per partition."""
    seen: dict[tuple[str, int, int], Any] = {}
    for event in [*events, *more]:
        m = event.message
        seen.setdefault((m.topic, m.partition, m.offset), event)
    return [seen[k] for k in sorted(seen)]


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
    install_drain()
    lz4.install()
    store.register()
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

    def topic(name: str, internal: bool = False) -> Any:
        if internal:
            return app.topic(
                name,
                partitions=settings.partitions,
                internal=True,
                maxsize=PACKED_BUFFER,
                schema=RawSchema(),
            )
        return app.topic(name, schema=RawSchema())

    source = topic(settings.input_topic)
    contributions = topic(settings.contributions_topic, internal=True)
    rollup = topic(settings.rollup_topic, internal=True)
    region_rows = topic(settings.region_rows_topic, internal=True)
    supply_topic = topic(settings.supply_topic, internal=True)
    # Declared so that Faust creates them when missing.
    topic(settings.enterprise_rows_topic, internal=True)
    topic(settings.alerts_topic)

    # Keys and values are bytes (orjson) through the app-wide raw serializers.
    def table(name: str) -> Any:
        return app.Table(name, partitions=settings.partitions, key_type=bytes, value_type=bytes)

    rules = load_rules(settings.rules_path)
    log.info(
        "%d alert rules from %s%s",
        len(rules),
        settings.rules_path,
        "" if rules else ": alerting is off",
    )
    supplier_rules = any(r.metric == "supplier_readiness" for r in rules)
    ent = EnterpriseProcessor(settings, table("enterprises"), supply=supplier_rules)
    dist = DistrictProcessor(settings, table("districts"))
    roll = RollupProcessor(settings, table("rollups"))
    alerts = AlertProcessor(settings, table("alerts"), rules)
    supply = SupplyProcessor(settings, table("supply"), rules)
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

    guards: list[OffsetGuard] = []

    async def watch_sources() -> None:
        """Every few seconds: the lag of each source partition, and a commit held back by
        offsets the consumer skipped below what the agent has processed."""
        if app.rebalancing or getattr(app, "in_recovery", False):
            return  # the tables (and the next offsets they hold) are being restored
        consumer: Any = app.consumer
        try:
            sources = [
                (guard, tp)
                for tp in consumer.assignment()
                for guard in guards
                if tp.topic in guard.topics
            ]
            # The brokers' end offsets (the consumer's own highwater is only as fresh as
            # its last fetch, and it stops fetching exactly when the worker falls behind).
            ends = await consumer.highwaters(*(tp for _, tp in sources))
            lags: dict[tuple[str, int], int] = {}
            for guard, tp in sources:
                processed = guard.next_offset(tp)
                if ends.get(tp) is not None:
                    lags[(tp.topic, tp.partition)] = max(0, ends[tp] - processed)
                acked = consumer._acked.get(tp)
                hole = commit_hole(
                    consumer._committed_offset.get(tp), min(acked) if acked else None, processed
                )
                if hole is not None:
                    log.warning(
                        "%s[%s]: the consumer never acknowledged offsets %s to %s, processed "
                        "already; letting the commit pass them",
                        tp.topic,
                        tp.partition,
                        *hole,
                    )
                    metrics.gaps.inc()
                    await consumer._add_gap(tp, *hole)
        except Exception as exc:  # noqa: BLE001 - a rebalance in between: look next time
            log.debug("source partitions not checked: %r", exc)
            return
        metrics.lag.set(lags)

    app.timer(5.0)(watch_sources)

    async def forget_aggregates(*_: Any, **__: Any) -> None:
        # Partitions moved: rebuild the in-memory sums from the (recovered) tables on next use.
        dist.reset()
        roll.reset()
        for guard in guards:
            guard.forget()

    app.on_partitions_revoked.connect(forget_aggregates)
    app.on_partitions_assigned.connect(forget_aggregates)

    async def send_all(records: list[Out]) -> None:
        # Straight to the Kafka client, in record batches (``produce``). Derived records
        # first, then, once all are acknowledged, the changelog: a crash in between replays
        # the batch against the old state, which produces the same records again. Before
        # them all, the table writes that must never be lost once a derived record is out
        # (the row versions, which only grow).
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
        for phase in (0, 1, 2):
            pending = await produce.submit(
                producer,
                [r for r in records if (0 if r.early else 2 if r.changelog else 1) == phase],
            )
            if pending:
                await asyncio.gather(*pending)

    filler: list[Any] = []  # one plain consumer (no group) that reads skipped offsets
    filling = asyncio.Lock()  # agents share it, and each fill assigns its own partitions

    async def fill(
        guard: OffsetGuard, gaps: dict[tuple[str, int], tuple[int, int]]
    ) -> list[Fetched]:
        """The messages of each gap [start, end), read from Kafka directly."""
        async with filling:
            return await fill_now(guard, gaps)

    async def fill_now(
        guard: OffsetGuard, gaps: dict[tuple[str, int], tuple[int, int]]
    ) -> list[Fetched]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if not filler:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap.split(","),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            filler.append(consumer)
        consumer = filler[0]
        got: list[Fetched] = []
        for (topic, partition), (start, end) in gaps.items():
            metrics.gaps.inc()
            log.warning(
                "%s[%s]: the consumer skipped offsets %s to %s; reading them from Kafka",
                topic,
                partition,
                start,
                end - 1,
            )
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            first = None
            deadline = time.monotonic() + 120
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not read {topic}[{partition}] {start}..{end - 1}")
                records = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
                for r in records:
                    if r.offset >= end:
                        break
                    first = r.offset if first is None else first
                    got.append(Fetched(r))
            if first is None or first > start:
                # Retention removed them: go on from what the log still has.
                log.warning("%s[%s]: offsets from %s are gone", topic, partition, start)
                guard.skip_to((topic, partition), end if first is None else first)
            # Faust commits only up to the first offset it has not seen acknowledged, and it
            # never saw these: without marking them as a gap (as Faust itself does for
            # offsets a fetch skips), the partition's committed offset would stay here.
            faust_consumer: Any = app.consumer
            if TP(topic, partition) in faust_consumer.assignment():
                await faust_consumer._add_gap(TP(topic, partition), start, end - 1)
        return got

    def agent(channel: Any, name: str, processor: Any, batch_max: int) -> None:
        guard = OffsetGuard(processor.state, channel.get_topic_name())
        guards.append(guard)

        async def run(stream: Any) -> None:
            async for events in stream.take_events(batch_max, within=settings.batch_seconds):
                started = time.perf_counter()
                try:
                    for _ in range(100):
                        gaps = guard.gaps(events)
                        if not gaps:
                            break
                        events = merge(events, await fill(guard, gaps))
                    admitted = guard.admit(events)
                    result = processor.process(admitted)
                    records = result[0] if isinstance(result, tuple) else result
                    guard.save({(e.message.topic, e.message.partition) for e in admitted}, records)
                    if isinstance(result, tuple):  # records, and transitions for the webhooks
                        await send_all(records)
                        for t in result[1]:
                            log.info(
                                "alert %s %s: rule %s, %s %s, %s = %s on %s (threshold %s)",
                                t["alert_id"],
                                t["state"],
                                t["rule"],
                                t["level"] or "enterprise",
                                "/".join(
                                    x
                                    for x in (
                                        t["province"],
                                        t["city"],
                                        t["district"],
                                        t["enterprise_id"],
                                    )
                                    if x
                                ),
                                t["metric"],
                                t["value"],
                                t["day"],
                                t["threshold"],
                            )
                        webhooks.submit(result[1])
                        metrics.transitions(t["state"] for t in result[1])
                    else:
                        await send_all(records)
                    tally = getattr(processor, "tally", None)
                    if tally:
                        metrics.counted(tally)
                    metrics.batch(name, len(admitted), time.perf_counter() - started, len(records))
                except BaseException:
                    # Faust acknowledges a taken batch even when its handler fails, and would
                    # commit offsets of events whose results were never produced. Stop the
                    # process at once instead: the batch is replayed after the restart.
                    log.critical("%s failed on a batch; exiting to replay it", name, exc_info=True)
                    logging.shutdown()
                    os._exit(70)

        app.agent(channel, name=name)(run)

    agent(source, "enterprise_agent", ent, settings.batch_max)
    agent(contributions, "district_agent", dist, PACKED_BUFFER)
    agent(rollup, "rollup_agent", roll, PACKED_BUFFER)
    agent(region_rows, "alert_agent", alerts, PACKED_BUFFER)
    agent(supply_topic, "supply_agent", supply, PACKED_BUFFER)
    return app


def __getattr__(name: str) -> Any:
    # ``faust -A streams.app worker`` looks up ``app``; build it from the environment then,
    # not at import time.
    if name == "app":
        return create_app(Settings())
    raise AttributeError(name)
