"""The sink runner: Kafka -> batched ClickHouse inserts -> offset commit.

Offsets are committed only after ClickHouse acknowledged the insert. A crash in between
re-inserts the same rows with the same versions, which ReplacingMergeTree folds into one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import orjson
from aiokafka.abc import ConsumerRebalanceListener

from resumewatch.settings import Settings
from sinks.metrics import SinkMetrics
from sinks.schema import ALERTS
from sinks.writer import (
    DEAD_LETTER_COLUMNS,
    REGION_COLUMNS,
    REGION_KEY,
    Batcher,
    ClickHouseSink,
    Sink,
    alert_row,
    block_rows,
    dead_letter_row,
    enterprise_row,
    region_record,
)
from streams.metrics import serve

log = logging.getLogger("resumewatch.sink")
# Tables written every RESUMEWATCH_SINK_BATCH_SECONDS; the others every
# RESUMEWATCH_SINK_BULK_SECONDS, in larger inserts.
FAST_TABLES = frozenset({"region_metrics", "alerts"})


def clickhouse_client(settings: Settings, database: str | None = None) -> Any:
    from clickhouse_driver import Client

    return Client(
        settings.clickhouse_host,
        port=settings.clickhouse_port,
        user=settings.clickhouse_user,
        password=settings.clickhouse_password.get_secret_value(),
        database=database or "default",
        connect_timeout=5,
        send_receive_timeout=60,
    )


def analyst_client(settings: Settings, send_receive_timeout: float = 300.0) -> Any:
    """A client of the read-only analyst user on the pipeline's database (300 s for a
    query's answer is the driver's default)."""
    from clickhouse_driver import Client

    return Client(
        settings.clickhouse_host,
        port=settings.clickhouse_port,
        user=settings.clickhouse_analyst_user,
        password=settings.clickhouse_analyst_password.get_secret_value(),
        database=settings.clickhouse_database,
        connect_timeout=5,
        send_receive_timeout=send_receive_timeout,
    )


def route(batcher: Batcher, settings: Settings, record: Any) -> None:
    """Turn one Kafka record into a row of the table it belongs to."""
    # The worker packs the rows topics: one message holds many [key, row] records.
    if record.topic == settings.region_rows_topic:
        for _key, d in orjson.loads(record.value):
            row, retraction = region_record(d)
            if retraction is None:
                batcher.add("region_metrics", REGION_COLUMNS, row)
            else:
                batcher.retract("region_metrics", REGION_KEY, row, retraction)
    elif record.topic == settings.enterprise_rows_topic:
        for _key, d in orjson.loads(record.value):
            if d["t"] == "block":
                table, rows = block_rows(d)
                batcher.add_rows(table.name, table.column_names, rows)
            else:
                table, row = enterprise_row(d)
                batcher.add(table.name, table.column_names, row)
    elif record.topic == settings.alerts_topic:
        batcher.add("alerts", ALERTS.column_names, alert_row(record.value))
    elif record.topic == settings.dlq_topic:
        batcher.add(
            "dead_letters",
            DEAD_LETTER_COLUMNS,
            dead_letter_row(record.key, record.value, record.headers or []),
        )


class _ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forgets the positions of partitions that move away: should one come back, the
    position read before must not be committed over what another sink committed since."""

    def __init__(self, positions: dict[Any, int]) -> None:
        self.positions = positions

    def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.positions.pop(tp, None)

    def on_partitions_assigned(self, assigned: Any) -> None:
        pass


class SinkRunner:
    """Consumes the pipeline's output topics with aiokafka (group-managed, so several sinks
    share the partitions) and writes ClickHouse inserts from a worker thread, keeping the
    consumer's heartbeats going while an insert waits or retries."""

    def __init__(self, settings: Settings, sink: Sink | None = None) -> None:
        self.s = settings
        self.sink = sink or ClickHouseSink(
            clickhouse_client(settings), settings.clickhouse_database, settings.clickhouse_cluster
        )
        self.stopping = False
        self.metrics = SinkMetrics()

    def run(self, max_seconds: float | None = None) -> None:
        asyncio.run(self._run(max_seconds))

    async def _run(self, max_seconds: float | None) -> None:
        from aiokafka import AIOKafkaConsumer

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        positions: dict[Any, int] = {}  # next offset per partition, once read
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.s.kafka_bootstrap.split(","),
            group_id=self.s.sink_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.s.sink_batch_max,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            metadata_max_age_ms=5_000,
        )
        consumer.subscribe(list(self.s.sink_topics), listener=_ForgetRevoked(positions))
        await consumer.start()
        serve(self.metrics.registry, self.s.metrics_host, self.s.sink_metrics_port, "sink")
        batcher = Batcher(self.sink)
        started = time.monotonic()
        cap = self.s.sink_batch_max
        try:
            while True:
                ending = self.stopping or (
                    max_seconds is not None and time.monotonic() - started > max_seconds
                )
                while not ending and len(batcher) < cap:
                    left = self._next_due(batcher) - time.monotonic()
                    if left <= 0:
                        break
                    polled = await consumer.getmany(
                        timeout_ms=max(1, int(left * 1000)), max_records=cap - len(batcher)
                    )
                    for tp, records in polled.items():
                        self.metrics.messages.labels(tp.topic).inc(len(records))
                        for record in records:
                            batcher.source(tp, record.offset)
                            route(batcher, self.s, record)
                        if records:
                            positions[tp] = records[-1].offset + 1
                    ending = self.stopping
                due = self._due(batcher, everything=ending or len(batcher) >= cap)
                if due:
                    t_insert = time.perf_counter()
                    written = await loop.run_in_executor(None, self._write_with_retry, batcher, due)
                    self.metrics.inserted(written, time.perf_counter() - t_insert)
                    await self._commit(consumer, batcher, positions)
                self._measure_lag(consumer, positions)
                if ending:
                    break
        finally:
            await consumer.stop()

    def _groups(self, batcher: Batcher) -> list[tuple[list[str], float]]:
        """The pending tables in two groups, each with how long its rows may wait: the
        region rows and alerts (what coordinators watch), and the rest (written in larger,
        rarer inserts; each group's tables are written together, so the enterprise tables
        agree with each other)."""
        fast = [t for t in batcher.since if t in FAST_TABLES]
        bulk = [t for t in batcher.since if t not in FAST_TABLES]
        return [(fast, self.s.sink_batch_seconds), (bulk, self.s.sink_bulk_seconds)]

    def _next_due(self, batcher: Batcher) -> float:
        """When the next group of tables is due (at the latest a fast wait from now, to
        look at the lag and at stop requests)."""
        wake = time.monotonic() + self.s.sink_batch_seconds
        for tables, wait in self._groups(batcher):
            oldest = batcher.oldest(tables)
            if oldest is not None:
                wake = min(wake, oldest + wait)
        return wake

    def _due(self, batcher: Batcher, everything: bool) -> list[str]:
        now = time.monotonic()
        due: list[str] = []
        for tables, wait in self._groups(batcher):
            oldest = batcher.oldest(tables)
            # The same sum as in _next_due: due exactly when that said so.
            if oldest is not None and (everything or oldest + wait <= now):
                due += tables
        return due

    async def _commit(self, consumer: Any, batcher: Batcher, positions: dict[Any, int]) -> None:
        """Commit what ClickHouse holds: offsets past the rows still pending stay."""
        from aiokafka.errors import CommitFailedError, IllegalStateError

        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in batcher.committable(positions).items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance moved the partitions: the new owner re-inserts the same rows with
            # the same versions, which FINAL folds into one.
            log.warning("offset commit after insert failed (%s)", exc)

    def _measure_lag(self, consumer: Any, positions: dict[Any, int]) -> None:
        """Lag of the assigned partitions the sink has read from (a partition not read yet
        has no position of its own to compare with)."""
        lags = {}
        try:
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                at = positions.get(tp)
                if high is not None and at is not None:
                    lags[(tp.topic, tp.partition)] = max(0, high - at)
        except Exception as exc:  # noqa: BLE001 - a rebalance in between: measure next time
            log.debug("consumer lag not measured: %r", exc)
            return
        self.metrics.lag.set(lags)

    def _write_with_retry(self, batcher: Batcher, tables: list[str]) -> dict[str, int]:
        delay = 0.5
        while True:
            try:
                written = batcher.flush(tables)
                log.info("inserted %s", written)
                return written
            except Exception as exc:  # noqa: BLE001 - ClickHouse down: retry, keep the batch
                if self.stopping:
                    raise
                self.metrics.insert_failures.inc()
                log.warning("ClickHouse insert failed (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _stop(self) -> None:
        self.stopping = True
