"""Prometheus /metrics of the worker and the sink, read while they run on real services."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from producers.simulator import SimConfig, Summary, stream
from tests.integration.conftest import free_port
from tests.reference import expected_rows


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of http://127.0.0.1:PORT/metrics: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_worker_and_sink_metrics_count_what_happened(pipeline) -> None:  # type: ignore[no-untyped-def]
    worker_port, sink_port = free_port(), free_port()
    p = pipeline(partitions=3, worker_metrics_port=worker_port, sink_metrics_port=sink_port)
    p.start("worker")
    p.start("sink")
    cfg = SimConfig(enterprises=120, days=5, seed=21, bad_share=0.03, duplicate_share=0.05)
    records = list(stream(cfg, Summary()))
    kinds = [r.kind for r in records]
    assert kinds.count("bad") > 0 and kinds.count("duplicate") > 0
    p.publish(records)
    client = p.clickhouse()
    want = expected_rows([r.value for r in records if r.kind != "bad"])
    p.wait_for(lambda: p.region_rows(client) == want, 180, "region_metrics")

    def worker_done() -> bool:
        w = scrape(worker_port)
        lags = [v for (n, _), v in w.items() if n == "resumewatch_worker_consumer_lag"]
        done = total(w, "resumewatch_worker_events_total") == len(records)
        return done and bool(lags) and not any(lags)

    p.wait_for(worker_done, 60, "the worker's event counter and a lag of 0")
    # Kafka's view agrees: the worker group committed every input message.
    p.wait_for(lambda: p.uncommitted() == 0, 60, "the worker's commits to reach the end")
    w = scrape(worker_port)
    assert total(w, "resumewatch_worker_dead_letters_total") == kinds.count("bad")
    # A re-sent event changes nothing; so can a report older than the one held for its day.
    assert total(w, "resumewatch_worker_duplicates_total") >= kinds.count("duplicate")
    lags = [ls for (n, ls), _ in w.items() if n == "resumewatch_worker_consumer_lag"]
    assert {dict(ls)["topic"] for ls in lags} >= {p.settings.input_topic}
    assert len([ls for ls in lags if dict(ls)["topic"] == p.settings.input_topic]) == 3
    assert total(w, "resumewatch_worker_batch_events_count", agent="enterprise_agent") > 0
    # Each message is admitted once, also when the consumer delivers some twice.
    assert total(w, "resumewatch_worker_batch_events_sum", agent="enterprise_agent") == len(records)
    assert total(w, "resumewatch_worker_batch_seconds_count", agent="region_agent") > 0

    # Every alert transition the worker emitted is one row of the alerts table.
    def alerts_landed() -> bool:
        emitted = total(scrape(worker_port), "resumewatch_worker_alerts_total")
        return emitted == client.execute("SELECT count() FROM alerts FINAL")[0][0]

    p.wait_for(alerts_landed, 60, "the alert transitions in ClickHouse")
    assert total(scrape(worker_port), "resumewatch_worker_alerts_total", state="firing") > 0

    def sink_done() -> bool:
        s = scrape(sink_port)
        dead = client.execute("SELECT count() FROM dead_letters FINAL")[0][0]
        lags = [v for (n, _), v in s.items() if n == "resumewatch_sink_consumer_lag"]
        return dead == kinds.count("bad") and bool(lags) and not any(lags)

    p.wait_for(sink_done, 60, "the sink's lag of 0")
    s = scrape(sink_port)
    assert total(s, "resumewatch_sink_rows_total", table="dead_letters") >= kinds.count("bad")
    assert total(s, "resumewatch_sink_rows_total", table="region_metrics") >= len(want)
    assert total(s, "resumewatch_sink_insert_seconds_count") > 0
    inserts = total(s, "resumewatch_sink_insert_rows_count", table="region_metrics")
    assert 0 < inserts <= total(s, "resumewatch_sink_insert_seconds_count")
    assert total(s, "resumewatch_sink_messages_total", topic=p.settings.dlq_topic) == kinds.count(
        "bad"
    )
    assert total(s, "resumewatch_sink_insert_failures_total") == 0
