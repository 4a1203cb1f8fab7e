"""Faults on the real services: whatever happens mid-stream, the final ClickHouse state equals
the reference, row by row (region_metrics, enterprise_daily, supply_chain, the alerts firing).

Each test starts its own worker and sink processes and stops only those; a test that stops
Kafka or ClickHouse starts them again before it ends.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from producers.publisher import Publisher
from producers.simulator import Record, SimConfig, Summary, stream
from resumewatch.settings import Settings
from resumewatch.stack import Stack
from streams.alerts.rules import load_rules
from tests.integration.conftest import free_port
from tests.reference import (
    expected_enterprise_daily,
    expected_firing,
    expected_rows,
    expected_supply_chain,
)


def firing(client: Any) -> set[tuple[Any, ...]]:
    """The alerts_firing view, in the form of tests.reference.expected_firing."""
    out = set()
    for rule, level, prov, city, dist, sector, above, eid, day in client.execute(
        "SELECT rule, level, province, city, district, sector, above_scale_only, "
        "enterprise_id, fired_day FROM alerts_firing"
    ):
        if eid:  # supplier alerts: by enterprise
            level, prov, city, dist, sector, above = "", "", "", "", "*", 0
        out.add((rule, level, prov, city, dist, sector, above, eid, day))
    return out


def assert_exact(p: Any, raws: list[bytes], timeout: float = 600) -> None:
    """Wait until every analyst-facing table equals the reference of ``raws``."""
    client = p.clickhouse()
    want_rows = expected_rows(raws)
    p.wait_for(lambda: p.region_rows(client) == want_rows, timeout, "region_metrics")
    want_daily = expected_enterprise_daily(raws)
    p.wait_for(lambda: p.enterprise_daily(client) == want_daily, 120, "enterprise_daily")
    want_chain = expected_supply_chain(raws)

    def chain() -> dict[tuple[str, Any], tuple[int, int]]:
        got = client.execute(
            "SELECT enterprise_id, day, suppliers, suppliers_resumed FROM supply_chain"
        )
        return {(r[0], r[1]): (r[2], r[3]) for r in got}

    p.wait_for(lambda: chain() == want_chain, 120, "supply_chain")
    rules = load_rules(p.settings.rules_path)
    want_alerts = expected_firing(want_rows, want_chain, rules)

    def alerts_differ() -> str:
        got = firing(client)
        return (
            f"firing, not expected: {sorted(got - want_alerts)[:20]}\n"
            f"expected, not firing: {sorted(want_alerts - got)[:20]}"
        )

    p.wait_for(lambda: firing(client) == want_alerts, 120, "the alerts firing", alerts_differ)
    # The transitions are well formed: every resolution resolves an alert that fired, on
    # that day or later.
    orphans = client.execute(
        "SELECT count() FROM alerts FINAL WHERE state = 'resolved' AND alert_id NOT IN "
        "(SELECT alert_id FROM alerts FINAL WHERE state = 'firing')"
    )[0][0]
    assert orphans == 0
    early = client.execute(
        "SELECT count() FROM (SELECT alert_id, min(day) AS fired FROM alerts FINAL "
        "WHERE state = 'firing' GROUP BY alert_id) AS f ANY INNER JOIN (SELECT alert_id, "
        "max(day) AS resolved FROM alerts FINAL WHERE state = 'resolved' GROUP BY alert_id) "
        "AS r USING alert_id WHERE resolved < fired"
    )[0][0]
    assert early == 0
    client.disconnect()


def wait_for_first_rows(p: Any, client: Any) -> None:
    """Until the pipeline is in the middle of its work: region rows reached ClickHouse."""
    p.wait_for(
        lambda: client.execute("SELECT count() FROM region_metrics")[0][0] > 0,
        120,
        "the first region rows",
    )


def kill(p: Any, proc: Any) -> None:
    """SIGKILL a pipeline process (no chance to flush or commit); the test stops tracking it."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    p.procs.remove(proc)


def valid(records: list[Record]) -> list[bytes]:
    return [r.value for r in records if r.kind != "bad"]


def test_worker_killed_mid_stream_then_restarted_is_exact(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=4)
    worker = p.start("worker")
    p.start("sink")
    p.wait_for_workers(1)
    cfg = SimConfig(enterprises=5000, days=21, seed=31, duplicate_share=0.01, disorder=2000)
    records = list(stream(cfg, Summary()))
    assert len(records) >= 100_000
    half = len(records) // 2
    client = p.clickhouse()
    p.publish(records[:half])
    # Kill the worker (no chance to flush or commit) while it is in the middle of work.
    wait_for_first_rows(p, client)
    kill(p, worker)
    p.publish(records[half:])
    p.start("worker")
    assert_exact(p, valid(records))


def test_one_of_two_workers_killed_the_other_takes_over(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=4)
    doomed = p.start("worker")
    p.start("worker")
    p.start("sink")
    p.wait_for_workers(2)
    cfg = SimConfig(enterprises=1500, days=14, seed=32, duplicate_share=0.01, disorder=2000)
    records = list(stream(cfg, Summary()))
    half = len(records) // 2
    client = p.clickhouse()
    p.publish(records[:half])
    wait_for_first_rows(p, client)
    kill(p, doomed)
    p.publish(records[half:])
    assert_exact(p, valid(records))


def test_garbage_goes_to_dead_letters_and_the_rest_is_exact(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=4)
    p.start("worker")
    p.start("sink")
    cfg = SimConfig(enterprises=800, days=10, seed=33, bad_share=0.005, disorder=500)
    records = list(stream(cfg, Summary()))
    # And as much again of plain garbage: random bytes, random JSON, empty messages.
    rng = random.Random(33)
    mixed: list[Record] = []
    for r in records:
        mixed.append(r)
        if rng.random() < 0.005:
            junk = [
                rng.randbytes(rng.randrange(0, 200)),
                orjson.dumps([rng.random(), "x"]),
                orjson.dumps({"type": "daily_report", "enterprise_id": "E1"}),
                b"",
            ][rng.randrange(4)]
            mixed.append(Record(r.key, junk, "bad", None))
    bad = [r for r in mixed if r.kind == "bad"]
    assert len(bad) / len(mixed) >= 0.008
    p.publish(mixed)
    assert_exact(p, valid(mixed))
    client = p.clickhouse()
    p.wait_for(
        lambda: client.execute("SELECT count() FROM dead_letters FINAL")[0][0] >= len(bad),
        60,
        "every bad message in dead_letters",
    )
    got = client.execute(
        "SELECT raw, reason FROM dead_letters FINAL", settings={"strings_as_bytes": True}
    )
    assert sorted(r[0] for r in got) == sorted(r.value for r in bad)
    assert all(reason.strip() for _raw, reason in got)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def clickhouse_down(settings: Settings) -> Iterator[None]:
    stack = Stack(settings)
    assert stack.clickhouse.stop()
    try:
        yield
    finally:
        stack.clickhouse.start()


def test_clickhouse_down_for_30_seconds_the_sink_waits_and_nothing_is_lost(  # type: ignore[no-untyped-def]
    pipeline, base_settings
) -> None:
    p = pipeline(partitions=4)
    p.start("worker")
    sink = p.start("sink")
    cfg = SimConfig(enterprises=1500, days=14, seed=34, duplicate_share=0.01, disorder=1000)
    records = list(stream(cfg, Summary()))
    half = len(records) // 2
    client = p.clickhouse()
    p.publish(records[:half])
    wait_for_first_rows(p, client)
    client.disconnect()
    before = _rss_mb(sink.pid)
    peak = before
    # Restarted with the stack's own settings: the analyst user's database stays the same.
    with clickhouse_down(base_settings):
        p.publish(records[half:])
        # The outage itself lasts 30 s; the sink must stay up and not buffer the stream.
        end = time.monotonic() + 30
        while time.monotonic() < end:
            assert sink.poll() is None, p.log_tail()
            peak = max(peak, _rss_mb(sink.pid))
            time.sleep(1)
    assert peak < before + 200, f"sink RSS grew from {before:.0f} MB to {peak:.0f} MB"
    sink_log = "".join(f.read_text() for f in p.logs.glob("sink-*.log"))
    assert "ClickHouse insert failed" in sink_log and "retrying" in sink_log
    assert_exact(p, valid(records))


def test_kafka_restarted_mid_stream_everyone_reconnects(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=4)
    p.start("worker")
    p.start("sink")
    p.wait_for_workers(1)
    cfg = SimConfig(enterprises=1500, days=14, seed=35, duplicate_share=0.01, disorder=1000)
    records = list(stream(cfg, Summary()))
    third = len(records) // 3
    client = p.clickhouse()
    stack = Stack(p.settings)
    with Publisher(p.settings.kafka_bootstrap, p.settings.input_topic) as pub:
        for r in records[:third]:
            pub.send_raw(r.key, r.value)
        pub.flush()
        wait_for_first_rows(p, client)
        assert stack.kafka.stop()
        try:
            # The same publisher goes on while the broker is down: it buffers and retries.
            for r in records[third : 2 * third]:
                pub.send_raw(r.key, r.value)
        finally:
            stack.kafka.start()
        for r in records[2 * third :]:
            pub.send_raw(r.key, r.value)
        pub.flush()
    assert_exact(p, valid(records))


def test_sink_killed_between_insert_and_commit_shows_no_duplicate(pipeline) -> None:  # type: ignore[no-untyped-def]
    """The state such a kill leaves (rows inserted, offsets not committed), made exactly: the
    sink is killed once everything is in ClickHouse, its group's offsets are reset to the
    start, and a new sink inserts every row a second time."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    p = pipeline(partitions=2)
    p.start("worker")
    sink = p.start("sink")
    cfg = SimConfig(enterprises=300, days=8, seed=36, disorder=300)
    records = list(stream(cfg, Summary()))
    p.publish(records)
    raws = valid(records)
    assert_exact(p, raws)
    client = p.clickhouse()
    inserted = client.execute("SELECT count() FROM events")[0][0]
    kill(p, sink)
    s = p.settings
    topics = [s.region_rows_topic, s.enterprise_rows_topic, s.alerts_topic, s.dlq_topic]
    admin = KafkaAdminClient(bootstrap_servers=s.kafka_bootstrap.split(","))
    consumer = KafkaConsumer(bootstrap_servers=s.kafka_bootstrap.split(","))
    try:
        tps = [TopicPartition(t, i) for t in topics for i in range(s.partitions)]
        ends = consumer.end_offsets(tps)

        def empty() -> bool:
            return admin.describe_groups([s.sink_group])[s.sink_group]["group_state"] == "Empty"

        p.wait_for(empty, 60, "the killed sink to leave its group")
        admin.alter_group_offsets(s.sink_group, dict.fromkeys(tps, OffsetAndMetadata(0, "", -1)))
        p.start("sink")

        def drained() -> bool:
            got = admin.list_group_offsets(s.sink_group)[s.sink_group]
            return all(got[tp].offset >= ends[tp] for tp in tps if ends[tp])

        p.wait_for(drained, 120, "the new sink to insert everything again")
    finally:
        admin.close()
        consumer.close()
    assert client.execute("SELECT count() FROM events")[0][0] >= inserted
    assert_exact(p, raws, timeout=60)
    unique = {r.event.event_id for r in records if r.event is not None}
    assert client.execute("SELECT count() FROM events FINAL")[0][0] == len(unique)


async def _clients(url: str, token: str, n: int, seconds: float) -> tuple[set[str], list[Any]]:
    """``n`` concurrent clients, each posting 3 events a second for ``seconds``: the event ids
    acknowledged with 202, and (status, body) of every other answer."""
    import asyncio

    import aiohttp

    acked: set[str] = set()
    other: list[Any] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    end = time.monotonic() + seconds

    async def client(c: int, session: aiohttp.ClientSession) -> None:
        k = 0
        while time.monotonic() < end:
            started = time.monotonic()
            events = []
            for _ in range(3):
                k += 1
                events.append(
                    {
                        "event_id": f"gw-{c}-{k}",
                        "type": "status_changed",
                        "enterprise_id": f"GW{c:03d}-{k % 7}",
                        "occurred_at": "2020-02-10T08:00:00+08:00",
                        "source": "load-test",
                        "status": ("filed", "resumed", "suspended")[k % 3],
                    }
                )
            try:
                async with session.post(url, data=orjson.dumps(events), headers=headers) as r:
                    body = await r.read()
                    if r.status == 202:
                        answer = orjson.loads(body)
                        assert answer == {"accepted": 3, "rejected": []}, answer
                        acked.update(e["event_id"] for e in events)
                    else:
                        other.append((r.status, body))
            except aiohttp.ClientError as exc:
                other.append((None, repr(exc)))
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(client(c, session) for c in range(n)))
    return acked, other


def test_gateway_under_200_concurrent_clients_lands_every_acknowledged_event_once(
    pipeline, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import urllib.request

    token = "load-test-token-0123456789"
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"{token}: load-test\n")
    port = free_port()
    p = pipeline(partitions=4, gateway_port=port, gateway_tokens_file=tokens)
    p.start("worker")
    p.start("sink")
    p.start("gateway")
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/v1/health", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    p.wait_for(healthy, 60, "the gateway to answer its health check")
    acked, other = asyncio.run(_clients(f"{base}/v1/events", token, 200, 30))
    assert len(acked) > 10_000
    for status, body in other:  # any refusal is a clean HTTP error with a reason
        assert status is not None and 400 <= status < 600, body
        assert orjson.loads(body)["error"]
    client = p.clickhouse()
    p.wait_for(
        lambda: client.execute("SELECT count() FROM events FINAL")[0][0] >= len(acked),
        300,
        "every acknowledged event in the events table",
    )
    got = client.execute("SELECT event_id, count() FROM events FINAL GROUP BY event_id")
    assert {eid for eid, _n in got} == acked
    assert all(n == 1 for _eid, n in got)
