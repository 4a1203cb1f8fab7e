"""Prometheus metrics of the sink, served on ``/metrics`` (RESUMEWATCH_SINK_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from streams.metrics import LagGauge

INSERT_ROWS = (1, 10, 100, 500, 1000, 5000, 10000, 25000, 50000, 100000)
INSERT_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SinkMetrics:
    """The sink's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "resumewatch_sink_messages",
            "Kafka messages consumed (a packed message of the worker counts once), by topic.",
            ["topic"],
            registry=r,
        )
        self.rows = Counter(
            "resumewatch_sink_rows",
            "Rows inserted into ClickHouse (and retractions applied), by table.",
            ["table"],
            registry=r,
        )
        self.insert_rows = Histogram(
            "resumewatch_sink_insert_rows",
            "Rows per ClickHouse insert, by table.",
            ["table"],
            buckets=INSERT_ROWS,
            registry=r,
        )
        self.insert_seconds = Histogram(
            "resumewatch_sink_insert_seconds",
            "Time from a batch's first insert to ClickHouse's acknowledgement of its last "
            "(every table of the batch; retries included).",
            buckets=INSERT_SECONDS,
            registry=r,
        )
        self.insert_failures = Counter(
            "resumewatch_sink_insert_failures",
            "ClickHouse inserts that failed and were retried.",
            registry=r,
        )
        self.lag = LagGauge(
            "resumewatch_sink_consumer_lag",
            "Messages in an assigned partition not written to ClickHouse yet (high watermark "
            "minus the consumer's position).",
            r,
        )

    def inserted(self, written: dict[str, int], seconds: float) -> None:
        self.insert_seconds.observe(seconds)
        for table, n in written.items():
            self.rows.labels(table).inc(n)
            if not table.endswith(" retractions"):
                self.insert_rows.labels(table).observe(n)
