"""The Faust app factory: topics, tables and the two agents.

enterprise_agent  enterprise-status (key enterprise_id)
                  -> per-enterprise state table, dead letters, contributions per region
region_agent      contributions (key region) -> per-region state table -> region rows topic

Both agents work in batches (``take_events``) and write each changed table key once per batch
to its changelog, then flush the producer before the batch's offsets are acknowledged: a crash
replays the batch, and every state update is an idempotent replacement, so nothing is counted
twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from resumewatch.settings import Settings
from streams.processing import EnterpriseProcessor, Out, RegionProcessor


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(",")],
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=512 * 1024,
        producer_compression_type="lz4",
        broker_commit_every=10_000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=20_000,
        table_standby_replicas=0,
        key_serializer="raw",
        value_serializer="raw",
    )
    source = app.topic(settings.input_topic, key_serializer="raw", value_serializer="raw")
    contributions = app.topic(
        settings.contributions_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
    )
    # Declared so that Faust creates it when missing; records go out through ``_send_all``.
    app.topic(
        settings.region_rows_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        internal=True,
    )
    # Keys and values are bytes (orjson) through the app-wide raw serializers.
    enterprises = app.Table(
        "enterprises", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )
    regions = app.Table("regions", partitions=settings.partitions, key_type=bytes, value_type=bytes)

    ent = EnterpriseProcessor(settings, enterprises)
    reg = RegionProcessor(settings, regions)

    async def _send_all(records: list[Out]) -> None:
        # Straight to the driver (Faust's own buffer sends one message at a time), then wait
        # for every acknowledgement before the batch's offsets may be committed.
        send = app.producer.send
        pending = [
            await send(r.topic, r.key, r.value, r.partition, None, r.headers) for r in records
        ]
        if pending:
            await asyncio.gather(*pending)

    @app.agent(source, name="enterprise_agent")
    async def enterprise_agent(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_seconds):
            await _send_all(ent.process(events))

    @app.agent(contributions, name="region_agent")
    async def region_agent(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_seconds):
            await _send_all(reg.process(events))

    return app


def __getattr__(name: str) -> Any:
    # ``faust -A streams.app worker`` looks up ``app``; build it from the environment then,
    # not at import time.
    if name == "app":
        return create_app(Settings())
    raise AttributeError(name)
