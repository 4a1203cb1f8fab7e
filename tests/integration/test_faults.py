"""Faults on the real services: the final ClickHouse state still equals the reference."""

from __future__ import annotations

import signal
import time

from producers.publisher import Publisher
from producers.simulator import SimConfig, Summary, stream
from tests.reference import expected_enterprise_daily, expected_rows


def test_worker_killed_mid_stream_then_restarted_is_exact(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=4)
    worker = p.start("worker")
    p.start("sink")
    p.wait_for_workers(1)
    cfg = SimConfig(enterprises=2500, days=12, seed=31, duplicate_share=0.01, disorder=2000)
    records = list(stream(cfg, Summary()))
    half = len(records) // 2
    client = p.clickhouse()
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        for r in records[:half]:
            pub.send_raw(r.key, r.value)
        pub.flush()
        # Kill the worker (no chance to flush or commit) while it is in the middle of work.
        p.wait_for(
            lambda: client.execute("SELECT count() FROM region_metrics")[0][0] > 0,
            120,
            "the first region rows",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        for r in records[half:]:
            pub.send_raw(r.key, r.value)
        pub.flush()
    p.procs.remove(worker)
    p.start("worker")
    raws = [r.value for r in records]
    want = expected_rows(raws)
    started = time.monotonic()
    p.wait_for(lambda: p.region_rows(client) == want, 600, "region_metrics to equal the reference")
    want_daily = expected_enterprise_daily(raws)

    p.wait_for(
        lambda: p.enterprise_daily(client) == want_daily,
        120,
        "enterprise_daily to equal the reference",
    )
    assert time.monotonic() - started < 600
