"""The HTTP gateway on the real Kafka: what a 202 reports is exactly what lands in the topic."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from producers.events import decode, from_dict
from producers.gateway import create_gateway_app
from resumewatch.settings import Settings

TOKEN = "it-s3cr3t-token-0f-hubei"
TOKENS = {TOKEN: "hubei-portal"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def event(event_id: str, enterprise_id: str, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "event_id": event_id,
        "type": "status_changed",
        "enterprise_id": enterprise_id,
        "occurred_at": "2020-02-10T08:00:00+08:00",
        "source": "hubei-portal",
        "status": "resumed",
    }
    d.update(kw)
    return d


@contextmanager
def running_gateway(settings: Settings) -> Iterator[str]:
    """The real app (owning its Kafka producer) on a free loopback port, in its own loop."""
    app = create_gateway_app(settings, TOKENS)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app)

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw.decode()


def read_topic(settings: Settings) -> list[tuple[bytes, bytes]]:
    """Every message of the input topic, read up to the end offsets taken now."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        enable_auto_commit=False,
        group_id=None,
    )
    try:
        deadline = time.monotonic() + 30
        partitions = None
        while not partitions:
            assert time.monotonic() < deadline, "no partitions for the input topic"
            partitions = consumer.partitions_for_topic(settings.input_topic)
        tps = [TopicPartition(settings.input_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[tuple[bytes, bytes]] = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"read only {len(out)} messages before deadline"
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value) for r in records)
        return out
    finally:
        consumer.close()


def test_gateway_publishes_exactly_the_accepted_events(pipeline) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    s: Settings = p.settings
    registration = {
        "type": "enterprise_registered",
        "name": "Wuhan Steel",
        "province": "Hubei",
        "city": "Wuhan",
        "district": "Hanyang",
        "sector": "steel",
        "above_scale": True,
        "employees": 120,
        "normal_daily_output_value": 1000.0,
    }
    array = [
        event("a1", "E-A"),
        {k: v for k, v in event("bad-1", "E-X").items() if k != "status"},
        event("ws-1", "E-X", source="someone-else"),
        {**event("b1", "E-B"), **registration},
    ]
    lines = [event("c1", "E-C", status="filed"), event("bad-2", "E-X", type="nope")]
    body = orjson.dumps(lines[0]) + b"\n\n" + orjson.dumps(lines[1]) + b"\n"
    bulk = [event(f"bulk-{i}", f"E-{i % 37}") for i in range(300)]

    with running_gateway(s) as url:
        assert http("GET", f"{url}/v1/health") == (200, {"status": "ok", "kafka": "ok"})

        unauthorized = orjson.dumps([event("unauth-1", "E-U")])
        status, payload = http("POST", f"{url}/v1/events", unauthorized)
        assert status == 401 and "error" in payload
        status, _ = http(
            "POST", f"{url}/v1/events", unauthorized, {"Authorization": "Bearer not-a-token"}
        )
        assert status == 401

        status, payload = http("POST", f"{url}/v1/events", orjson.dumps(array), AUTH)
        assert status == 202, payload
        assert payload["accepted"] == 2
        assert [r["index"] for r in payload["rejected"]] == [1, 2]
        assert payload["rejected"][1]["error"] == (
            'source must be "hubei-portal" (the source of this token), got "someone-else"'
        )

        status, payload = http(
            "POST", f"{url}/v1/events", body, {**AUTH, "Content-Type": "application/x-ndjson"}
        )
        assert status == 202, payload
        assert payload["accepted"] == 1 and [r["index"] for r in payload["rejected"]] == [1]

        status, payload = http("POST", f"{url}/v1/events", orjson.dumps(bulk), AUTH)
        assert (status, payload) == (202, {"accepted": 300, "rejected": []})

        status, metrics = http("GET", f"{url}/metrics")
        assert status == 200
        assert "resumewatch_gateway_events_accepted_total 303" in metrics
        assert 'resumewatch_gateway_requests_total{code="401"} 2' in metrics

    # 202 came after Kafka acknowledged, so everything accepted is already in the topic.
    accepted = [array[0], array[3], lines[0], *bulk]
    got = read_topic(s)
    # Sent as received: unknown extra fields stay in the raw record.
    assert sorted(got) == sorted((d["enterprise_id"].encode(), orjson.dumps(d)) for d in accepted)
    by_id = {decode(value).event_id: (key, decode(value)) for key, value in got}
    assert len(by_id) == len(got) == 303
    for d in accepted:
        key, ev = by_id[d["event_id"]]
        assert key == d["enterprise_id"].encode()
        assert ev == from_dict(d)
    assert not {"unauth-1", "bad-1", "ws-1", "bad-2"} & set(by_id)


def test_health_is_503_when_the_topic_does_not_exist(base_settings: Settings) -> None:
    s = base_settings.model_copy(update={"input_topic": f"it-missing-{uuid.uuid4().hex[:10]}"})
    with running_gateway(s) as url:
        status, payload = http("GET", f"{url}/v1/health")
    assert status == 503
    assert payload["status"] == "unavailable"
    assert s.input_topic in payload["kafka"]


def test_a_message_kafka_refuses_is_503_and_the_gateway_recovers(base_settings: Settings) -> None:
    topic = f"it-{uuid.uuid4().hex[:10]}-small-messages"
    admin = KafkaAdminClient(bootstrap_servers=base_settings.kafka_bootstrap.split(","))
    # The broker refuses batches over 1000 bytes: a non-retriable error for the producer.
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "1000"})])
    try:
        s = base_settings.model_copy(update={"input_topic": topic})
        big = event("big-1", "E-BIG", type="appeal_opened", appeal_id="ap-1", category="other")
        big["summary"] = os.urandom(1000).hex()  # incompressible, so lz4 cannot save it
        with running_gateway(s) as url:
            status, payload = http("POST", f"{url}/v1/events", orjson.dumps(big), AUTH)
            assert status == 503, payload
            assert "MessageSizeTooLarge" in payload["error"]
            status, payload = http(
                "POST", f"{url}/v1/events", orjson.dumps(event("small-1", "E-S")), AUTH
            )
            assert (status, payload) == (202, {"accepted": 1, "rejected": []})
        assert [key for key, _ in read_topic(s)] == [b"E-S"]
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_run_gateway_logs_its_address_serves_and_stops_cleanly(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    p = pipeline()
    tokens_file = tmp_path / "gateway-tokens.yaml"
    tokens_file.write_text(f'"{TOKEN}": hubei-portal\n', encoding="utf-8")
    env = {
        **os.environ,
        **p.env,
        "RESUMEWATCH_GATEWAY_TOKENS_FILE": str(tokens_file),
        "RESUMEWATCH_GATEWAY_HOST": "127.0.0.1",
        "RESUMEWATCH_GATEWAY_PORT": "0",
    }
    code = (
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s %(name)s %(message)s')\n"
        "from producers.gateway import run_gateway\n"
        "from resumewatch.settings import Settings\n"
        "run_gateway(Settings())\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=pump)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None:
            assert proc.poll() is None, "the gateway exited:\n" + "".join(output)
            assert time.monotonic() < deadline, "no startup line:\n" + "".join(output)
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            output.append(line)
            match = re.search(r"listening on (http://\S+) with 1 tokens for 1 sources", line)
            if match:
                url = match.group(1)
        assert http("GET", f"{url}/v1/health") == (200, {"status": "ok", "kafka": "ok"})
        status, payload = http("POST", f"{url}/v1/events", orjson.dumps(event("r1", "E-R")), AUTH)
        assert (status, payload) == (202, {"accepted": 1, "rejected": []})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    while not lines.empty():
        output.append(lines.get())
    text = "".join(output)
    assert sum("listening on" in line for line in output) == 1
    assert "HTTP gateway stopping" in text
    assert TOKEN not in text
    assert [key for key, _ in read_topic(p.settings)] == [b"E-R"]
