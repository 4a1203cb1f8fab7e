"""Prometheus metrics of a worker, served on ``/metrics`` (RESUMEWATCH_WORKER_METRICS_PORT).

The agents count into plain ``Counter`` objects of the batch handlers; ``WorkerMetrics``
carries them over after each batch, so the handlers stay free of any metrics import.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("resumewatch.worker")

BATCH_EVENTS = (1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000)
BATCH_SECONDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WEBHOOK_OUTCOMES = ("sent", "failed", "dropped")


class WorkerMetrics:
    """One worker's metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter(
            "resumewatch_worker_events",
            "Messages read from enterprise-status and processed.",
            registry=r,
        )
        self.dead_letters = Counter(
            "resumewatch_worker_dead_letters",
            "Messages sent to enterprise-status-dlq, by kind: invalid (JSON or a contract "
            "rule), key (message key differs from enterprise_id), too_late.",
            ["kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "resumewatch_worker_duplicates",
            "Valid events that changed nothing: re-sent events (same event_id), and reports "
            "older than the one held for their day.",
            registry=r,
        )
        self.batch_events = Histogram(
            "resumewatch_worker_batch_events",
            "Messages per batch, by agent.",
            ["agent"],
            buckets=BATCH_EVENTS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "resumewatch_worker_batch_seconds",
            "Time to process a batch and have its records acknowledged by Kafka, by agent.",
            ["agent"],
            buckets=BATCH_SECONDS,
            registry=r,
        )
        self.records_out = Counter(
            "resumewatch_worker_records_produced",
            "Kafka messages produced (packed messages count once), by agent.",
            ["agent"],
            registry=r,
        )
        self.alerts = Counter(
            "resumewatch_worker_alerts",
            "Alert transitions emitted, by state (firing, resolved).",
            ["state"],
            registry=r,
        )
        self.lag = LagGauge(
            "resumewatch_worker_consumer_lag",
            "Messages in an assigned source partition not processed yet (high watermark minus "
            "the next offset to process).",
            r,
        )
        self.webhook_deliveries = Counter(
            "resumewatch_worker_webhook_deliveries",
            "Alert transitions handed to a webhook URL, by outcome: sent (a status below 300), "
            "failed (every attempt failed), dropped (the URL's queue was full).",
            ["outcome"],
            registry=r,
        )
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(outcome)  # present at 0 before the first one
        self.webhook_failed_attempts = Counter(
            "resumewatch_worker_webhook_failed_attempts",
            "Webhook requests that failed (an error, a timeout or a status of 300 or more); "
            "each is retried unless it was the last attempt.",
            registry=r,
        )
        self.gaps = Counter(
            "resumewatch_worker_skipped_offset_fills",
            "Ranges of offsets the consumer skipped: read from Kafka by the worker itself, or, "
            "when processed before, let past by the commit.",
            registry=r,
        )

    def batch(self, agent: str, events: int, seconds: float, produced: int) -> None:
        self.batch_events.labels(agent).observe(events)
        self.batch_seconds.labels(agent).observe(seconds)
        self.records_out.labels(agent).inc(produced)

    def counted(self, tally: Tally[str]) -> None:
        """Carry over what a batch handler counted, and clear its tally."""
        for name, n in tally.items():
            if name == "events":
                self.events_in.inc(n)
            elif name == "duplicates":
                self.duplicates.inc(n)
            elif name.startswith("dead_letter:"):
                self.dead_letters.labels(name.split(":", 1)[1]).inc(n)
        tally.clear()

    def transitions(self, states: Iterable[str]) -> None:
        for state in states:
            self.alerts.labels(state).inc()

    def webhook(self, what: str) -> None:
        """Count one outcome of ``Webhooks`` (the names of its ``stats``)."""
        if what == "failed_attempts":
            self.webhook_failed_attempts.inc()
        elif what in WEBHOOK_OUTCOMES:
            self.webhook_deliveries.labels(what).inc()


class LagGauge:
    """Messages behind, per (topic, partition), set to exactly the partitions given each time:
    partitions no longer assigned are removed one by one, never the whole gauge at once, so a
    scrape in between sees no series vanish."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(name, documentation, ["topic", "partition"], registry=registry)
        self.held: set[tuple[str, str]] = set()

    def set(self, lags: dict[tuple[str, int], int]) -> None:
        values = {(topic, str(p)): n for (topic, p), n in lags.items()}
        for labels in self.held - values.keys():
            self.gauge.remove(*labels)
        for labels, value in values.items():
            self.gauge.labels(*labels).set(value)
        self.held = set(values)


def serve(registry: CollectorRegistry, host: str, port: int, what: str) -> None:
    """Serve ``/metrics`` from a thread; port 0 turns it off. A port in use is logged, and
    the process goes on without the endpoint."""
    if not port:
        return
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("%s metrics: cannot listen on %s:%s (%s); /metrics is off", what, host, port, exc)
        return
    log.info("%s metrics on http://%s:%s/metrics", what, host, port)
