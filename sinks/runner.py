"""The sink runner: Kafka -> batched ClickHouse inserts -> offset commit.

Offsets are committed only after ClickHouse acknowledged the insert. A crash in between
re-inserts the same rows with the same versions, which ReplacingMergeTree folds into one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Sequence
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
    Rows,
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


def route(batcher: Rows, settings: Settings, record: Any) -> None:
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


class _Split:
    """The rows of the fast tables to one batcher, the others to another: the bulk tables'
    inserts (seconds of rows, hundreds of thousands at a time) run in the background on a
    connection of their own, and never hold up the region rows."""

    def __init__(self, fast: Batcher, bulk: Batcher) -> None:
        self.fast = fast
        self.bulk = bulk

    def source(self, partition: Any, offset: int) -> None:
        self.fast.source(partition, offset)
        self.bulk.source(partition, offset)

    def _of(self, table: str) -> Batcher:
        return self.fast if table in FAST_TABLES else self.bulk

    def add(self, table: str, columns: Sequence[str], row: tuple[Any, ...]) -> None:
        self._of(table).add(table, columns, row)

    def add_rows(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self._of(table).add_rows(table, columns, rows)

    def retract(
        self, table: str, key: Sequence[str], values: tuple[Any, ...], version: int
    ) -> None:
        self._of(table).retract(table, key, values, version)

    def __len__(self) -> int:
        return len(self.fast) + len(self.bulk)


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

    def __init__(
        self, settings: Settings, sink: Sink | None = None, bulk_sink: Sink | None = None
    ) -> None:
        self.s = settings

        def connect() -> Sink:
            return ClickHouseSink(
                clickhouse_client(settings),
                settings.clickhouse_database,
                settings.clickhouse_cluster,
            )

        self.sink = sink or connect()  # the fast tables
        # The bulk tables', written from another thread: a connection of its own.
        self.bulk_sink = bulk_sink or (sink if sink is not None else connect())
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
        rows = _Split(Batcher(self.sink), Batcher(self.bulk_sink))
        writing: asyncio.Future[tuple[dict[str, int], float]] | None = None  # bulk, running
        written_by: Batcher | None = None  # the batcher being written by it
        started = time.monotonic()
        cap = self.s.sink_batch_max
        try:
            while True:
                ending = self.stopping or (
                    max_seconds is not None and time.monotonic() - started > max_seconds
                )
                while not ending and len(rows) < cap:
                    left = self._next_due(rows, writing is None) - time.monotonic()
                    if left <= 0:
                        break
                    polled = await consumer.getmany(
                        timeout_ms=max(1, int(left * 1000)), max_records=cap - len(rows)
                    )
                    for tp, records in polled.items():
                        self.metrics.messages.labels(tp.topic).inc(len(records))
                        for record in records:
                            rows.source(tp, record.offset)
                            route(rows, self.s, record)
                        if records:
                            positions[tp] = records[-1].offset + 1
                    ending = self.stopping
                    if writing is not None and writing.done():
                        break  # its offsets can be committed now
                full = ending or len(rows) >= cap
                if self._due(rows.fast, self.s.sink_batch_seconds, full):
                    self.metrics.inserted(
                        *await loop.run_in_executor(None, self._write_with_retry, rows.fast)
                    )
                if writing is not None and (writing.done() or full):
                    self.metrics.inserted(*await writing)
                    writing = written_by = None
                if writing is None and self._due(rows.bulk, self.s.sink_bulk_seconds, full):
                    written_by, rows.bulk = rows.bulk, Batcher(self.bulk_sink)
                    writing = loop.run_in_executor(None, self._write_with_retry, written_by)
                    if ending:
                        self.metrics.inserted(*await writing)
                        writing = written_by = None
                held = [rows.fast, rows.bulk] + ([written_by] if written_by else [])
                await self._commit(consumer, held, positions)
                self._measure_lag(consumer, positions)
                if ending and writing is None:
                    break
        finally:
            if writing is not None:
                await asyncio.wait([writing])
            await consumer.stop()

    def _next_due(self, rows: _Split, bulk: bool) -> float:
        """When the fast tables are next due, or the bulk ones (``bulk``: none is being
        written); at the latest a fast wait from now, to look at the lag and at stop
        requests."""
        wake = time.monotonic() + self.s.sink_batch_seconds
        waits = [(rows.fast, self.s.sink_batch_seconds)]
        if bulk:
            waits.append((rows.bulk, self.s.sink_bulk_seconds))
        for batcher, wait in waits:
            oldest = batcher.oldest()
            if oldest is not None:
                wake = min(wake, oldest + wait)
        return wake

    @staticmethod
    def _due(batcher: Batcher, wait: float, everything: bool) -> bool:
        oldest = batcher.oldest()
        # The same sum as in _next_due: due exactly when that said so.
        return oldest is not None and (everything or oldest + wait <= time.monotonic())

    async def _commit(
        self, consumer: Any, batchers: list[Batcher], positions: dict[Any, int]
    ) -> None:
        """Commit what ClickHouse holds: offsets past the rows still pending (or being
        written) stay."""
        from aiokafka.errors import CommitFailedError, IllegalStateError

        assigned = consumer.assignment()
        committable = positions
        for batcher in batchers:
            committable = batcher.committable(committable)
        offsets = {tp: o for tp, o in committable.items() if tp in assigned}
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

    def _write_with_retry(self, batcher: Batcher) -> tuple[dict[str, int], float]:
        """Write everything ``batcher`` holds: (rows per table, seconds it took)."""
        delay = 0.5
        started = time.perf_counter()
        while True:
            try:
                written = batcher.flush()
                log.info("inserted %s", written)
                return written, time.perf_counter() - started
            except Exception as exc:  # noqa: BLE001 - ClickHouse down: retry, keep the batch
                if self.stopping:
                    raise
                self.metrics.insert_failures.inc()
                log.warning("ClickHouse insert failed (%s); retrying in %.1f s", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _stop(self) -> None:
        self.stopping = True
