"""The HTTP gateway without Kafka: aiohttp's test server on loopback and a fake producer."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from kafka.future import Future as KafkaFuture

from producers.events import encode, from_dict
from producers.gateway import (
    GatewayError,
    KafkaEventProducer,
    ProducerError,
    create_gateway_app,
    load_tokens,
)
from resumewatch.settings import Settings

T = TypeVar("T")
TOKEN = "s3cr3t-token-of-hubei"
OTHER_TOKEN = "t0ken-of-wuhan-app"
TOKENS = {TOKEN: "hubei-portal", OTHER_TOKEN: "wuhan-app"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRETS = (TOKEN, OTHER_TOKEN)


def event(i: int, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "event_id": f"ev-{i}",
        "type": "status_changed",
        "enterprise_id": f"E-{i}",
        "occurred_at": "2020-02-10T08:00:00+08:00",
        "source": "hubei-portal",
        "status": "resumed",
    }
    d.update(kw)
    return d


def ndjson(*items: Any) -> bytes:
    return b"\n".join(orjson.dumps(x) for x in items) + b"\n"


class FakeProducer:
    """Acknowledges instantly (or hangs, or fails) and remembers what it was sent."""

    def __init__(
        self, hang: bool = False, fail: Exception | None = None, healthy: bool = True
    ) -> None:
        self.hang = hang
        self.fail = fail
        self.healthy = healthy
        self.sent: list[tuple[bytes, bytes]] = []

    async def send_batch(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        if self.hang:
            await asyncio.Event().wait()
        if self.fail is not None:
            raise self.fail
        self.sent.extend(records)

    async def ping(self) -> None:
        if not self.healthy:
            raise ProducerError("no metadata from Kafka at 127.0.0.1:1: connection refused")


def settings(**kw: Any) -> Settings:
    values: dict[str, Any] = {
        "gateway_max_events": 5,
        "gateway_max_bytes": 4000,
        "gateway_ack_timeout": 5.0,
        "input_topic": "unit-input",
        **kw,
    }
    return Settings(**values)


def serve(
    scenario: Callable[[TestClient[web.Request, web.Application]], Awaitable[T]],
    producer: FakeProducer | None = None,
    **kw: Any,
) -> T:
    app = create_gateway_app(settings(**kw), TOKENS, producer or FakeProducer())

    async def main() -> T:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await scenario(client)

    return asyncio.run(main())


async def answer(resp: ClientResponse) -> tuple[int, Any]:
    return resp.status, orjson.loads(await resp.read())


# -- authentication ----------------------------------------------------------------------
def test_missing_or_wrong_token_is_401_and_sends_nothing() -> None:
    fake = FakeProducer()

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        body = orjson.dumps([event(1)])
        resp = await client.post("/v1/events", data=body)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization" in (await resp.json())["error"]
        for header in (
            "Bearer wrong-token",
            f"Bearer {TOKEN}x",
            f"Bearer {TOKEN[:-1]}",
            f"Basic {TOKEN}",
            "Bearer",
            f"{TOKEN}",
        ):
            resp = await client.post("/v1/events", data=body, headers={"Authorization": header})
            status, payload = await answer(resp)
            assert status == 401, header
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert set(payload) == {"error"}

    serve(scenario, fake)
    assert fake.sent == []


def test_bearer_scheme_is_case_insensitive_and_each_token_has_its_source() -> None:
    fake = FakeProducer()

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.post(
            "/v1/events", data=orjson.dumps(event(1)), headers={"Authorization": f"bearer {TOKEN}"}
        )
        assert await answer(resp) == (202, {"accepted": 1, "rejected": []})
        resp = await client.post(
            "/v1/events",
            data=orjson.dumps(event(2, source="wuhan-app")),
            headers={"Authorization": f"Bearer {OTHER_TOKEN}"},
        )
        assert await answer(resp) == (202, {"accepted": 1, "rejected": []})

    serve(scenario, fake)
    assert [k for k, _ in fake.sent] == [b"E-1", b"E-2"]


# -- malformed and oversized requests ----------------------------------------------------
def test_bad_json_and_bad_ndjson_are_400_naming_the_line() -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        status, payload = await answer(await client.post("/v1/events", data=b"[{", headers=AUTH))
        assert status == 400 and "not valid JSON" in payload["error"]

        body = orjson.dumps(event(1)) + b"\n\n" + orjson.dumps(event(2)) + b"\n{oops\n"
        status, payload = await answer(await client.post("/v1/events", data=body, headers=AUTH))
        assert status == 400
        assert "NDJSON line 4 is not valid JSON" in payload["error"]

        for body, kind in ((b"42", "number"), (b'"x"', "string"), (b"null", "null")):
            status, payload = await answer(await client.post("/v1/events", data=body, headers=AUTH))
            assert status == 400 and f"got a JSON {kind}" in payload["error"]

        status, payload = await answer(await client.post("/v1/events", data=b" \n", headers=AUTH))
        assert status == 400 and "empty" in payload["error"]

    serve(scenario)


def test_too_many_events_is_413() -> None:
    fake = FakeProducer()

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        six = [event(i) for i in range(6)]
        for body in (orjson.dumps(six), ndjson(*six)):
            status, payload = await answer(await client.post("/v1/events", data=body, headers=AUTH))
            assert status == 413
            assert "6 events, more than 5" in payload["error"]
        # Exactly the limit is fine.
        status, payload = await answer(
            await client.post("/v1/events", data=orjson.dumps(six[:5]), headers=AUTH)
        )
        assert (status, payload["accepted"]) == (202, 5)

    serve(scenario, fake, gateway_max_bytes=100_000)
    assert len(fake.sent) == 5


def test_too_many_bytes_is_413_with_and_without_content_length() -> None:
    fake = FakeProducer()
    big = orjson.dumps([event(1, padding="x" * 5000)])

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 512):
            yield big[i : i + 512]

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        status, payload = await answer(await client.post("/v1/events", data=big, headers=AUTH))
        assert status == 413 and "larger than 4000 bytes" in payload["error"]
        # Chunked: no Content-Length, so the limit is enforced while reading.
        status, payload = await answer(await client.post("/v1/events", data=chunks(), headers=AUTH))
        assert status == 413 and "larger than 4000 bytes" in payload["error"]

    serve(scenario, fake)
    assert fake.sent == []


# -- accepted and rejected events --------------------------------------------------------
def test_mixed_batch_reports_exact_indexes_and_reasons_and_sends_only_valid_events() -> None:
    fake = FakeProducer()
    items: list[Any] = [
        event(0),
        {k: v for k, v in event(1).items() if k != "status"},
        event(2, source="x"),
        event(3, enterprise_id="E 3"),
        42,
        event(5, type="daily_report"),
        event(6),
    ]

    async def scenario(client: TestClient[web.Request, web.Application]) -> tuple[int, Any]:
        return await answer(await client.post("/v1/events", data=orjson.dumps(items), headers=AUTH))

    status, payload = serve(scenario, fake, gateway_max_events=10)
    assert status == 202
    assert payload == {
        "accepted": 2,
        "rejected": [
            {"index": 1, "error": "status_changed.status is required but missing"},
            {
                "index": 2,
                "error": 'source must be "hubei-portal" (the source of this token), got "x"',
            },
            {
                "index": 3,
                "error": "status_changed.enterprise_id may only contain letters, digits and "
                '. _ : -, got "E 3"',
            },
            {"index": 4, "error": "an event must be a JSON object, got 42"},
            {"index": 5, "error": "daily_report.report_date is required but missing"},
        ],
    }
    assert fake.sent == [
        (b"E-0", encode(from_dict(event(0)))),
        (b"E-6", encode(from_dict(event(6)))),
    ]


def test_ndjson_and_single_object_bodies_are_accepted() -> None:
    fake = FakeProducer()

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        body = (
            b"\r\n"
            + orjson.dumps(event(1))
            + b"\r\n\r\n"
            + orjson.dumps(event(2, source="nope"))
            + b"\n   \n"
            + orjson.dumps(event(3))
        )  # blank lines skipped, CRLF tolerated, no trailing newline
        status, payload = await answer(
            await client.post(
                "/v1/events",
                data=body,
                headers={**AUTH, "Content-Type": "application/x-ndjson"},
            )
        )
        assert status == 202
        assert payload["accepted"] == 2
        assert [r["index"] for r in payload["rejected"]] == [1]

        status, payload = await answer(
            await client.post("/v1/events", data=orjson.dumps(event(4)), headers=AUTH)
        )
        assert (status, payload) == (202, {"accepted": 1, "rejected": []})

    serve(scenario, fake)
    assert [k for k, _ in fake.sent] == [b"E-1", b"E-3", b"E-4"]


def test_events_too_big_for_one_kafka_message_are_rejected_one_by_one() -> None:
    fake = FakeProducer()
    registration = event(
        1,
        type="enterprise_registered",
        name="n",
        province="Hubei",
        city="Wuhan",
        district="Hanyang",
        sector="steel",
        above_scale=True,
        employees=1,
        normal_daily_output_value=1.0,
        suppliers=[f"S-{i:06d}" for i in range(120_000)],
    )

    async def scenario(client: TestClient[web.Request, web.Application]) -> tuple[int, Any]:
        body = orjson.dumps([event(0), registration])
        return await answer(await client.post("/v1/events", data=body, headers=AUTH))

    status, payload = serve(scenario, fake, gateway_max_bytes=5 * 1024 * 1024)
    assert status == 202 and payload["accepted"] == 1
    [rejected] = payload["rejected"]
    assert rejected["index"] == 1
    assert "bytes of one Kafka message" in rejected["error"]
    assert [k for k, _ in fake.sent] == [b"E-0"]


def test_all_rejected_is_still_202_and_sends_nothing() -> None:
    fake = FakeProducer(fail=ProducerError("must not be called"))

    async def scenario(client: TestClient[web.Request, web.Application]) -> tuple[int, Any]:
        return await answer(
            await client.post("/v1/events", data=orjson.dumps([event(1, source="x")]), headers=AUTH)
        )

    status, payload = serve(scenario, fake)
    assert status == 202 and payload["accepted"] == 0 and len(payload["rejected"]) == 1


# -- Kafka not acknowledging -------------------------------------------------------------
def test_no_ack_within_timeout_or_kafka_error_is_503() -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        started = time.monotonic()
        resp = await client.post("/v1/events", data=orjson.dumps([event(1)]), headers=AUTH)
        status, payload = await answer(resp)
        assert status == 503 and "within 0.2 s" in payload["error"]
        assert "retry" in payload["error"]
        assert resp.headers["Retry-After"]
        assert time.monotonic() - started < 3

    serve(scenario, FakeProducer(hang=True), gateway_ack_timeout=0.2)

    async def failing(client: TestClient[web.Request, web.Application]) -> None:
        resp = await client.post("/v1/events", data=orjson.dumps([event(1)]), headers=AUTH)
        status, payload = await answer(resp)
        assert status == 503 and "broker gone" in payload["error"]

    serve(failing, FakeProducer(fail=ProducerError("broker gone")))


# -- health and metrics ------------------------------------------------------------------
def test_health_reflects_kafka() -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> tuple[int, Any]:
        return await answer(await client.get("/v1/health"))

    assert serve(scenario) == (200, {"status": "ok", "kafka": "ok"})
    status, payload = serve(scenario, FakeProducer(healthy=False))
    assert status == 503 and payload["status"] == "unavailable"
    assert "connection refused" in payload["kafka"]


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_count_requests_events_and_latency() -> None:
    async def scenario(client: TestClient[web.Request, web.Application]) -> tuple[str, str, str]:
        before = await client.get("/metrics")
        first = await before.text()
        await client.post("/v1/events", data=orjson.dumps([event(1), event(2, source="x")]))
        await client.post(
            "/v1/events", data=orjson.dumps([event(1), event(2, source="x")]), headers=AUTH
        )
        await client.post("/v1/events", data=ndjson(event(3), event(4)), headers=AUTH)
        await client.post("/v1/events", data=b"{", headers=AUTH)
        after = await client.get("/metrics")
        return first, await after.text(), after.headers["Content-Type"]

    first, second, content_type = serve(scenario)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    m0, m1 = parse_metrics(first), parse_metrics(second)
    assert m0["resumewatch_gateway_events_accepted_total"] == 0
    assert m0["resumewatch_gateway_request_seconds_count"] == 0
    assert m1["resumewatch_gateway_events_accepted_total"] == 3
    assert m1["resumewatch_gateway_events_rejected_total"] == 1
    assert m1['resumewatch_gateway_requests_total{code="202"}'] == 2
    assert m1['resumewatch_gateway_requests_total{code="401"}'] == 1
    assert m1['resumewatch_gateway_requests_total{code="400"}'] == 1
    assert m1["resumewatch_gateway_request_seconds_count"] == 4
    assert m1['resumewatch_gateway_request_seconds_bucket{le="+Inf"}'] == 4
    assert m1["resumewatch_gateway_request_seconds_sum"] > 0
    buckets = [v for k, v in m1.items() if k.startswith("resumewatch_gateway_request_seconds_b")]
    assert buckets == sorted(buckets)  # cumulative
    assert "# TYPE resumewatch_gateway_request_seconds histogram" in second


# -- secrecy -----------------------------------------------------------------------------
def test_tokens_never_appear_in_responses_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    async def scenario(client: TestClient[web.Request, web.Application]) -> None:
        requests: list[tuple[str, str, bytes, dict[str, str]]] = [
            ("POST", "/v1/events", orjson.dumps([event(1), event(2, source="x")]), AUTH),
            ("POST", "/v1/events", ndjson(event(3)), {"Authorization": f"Bearer {OTHER_TOKEN}"}),
            ("POST", "/v1/events", b"{", AUTH),
            ("POST", "/v1/events", b"[]", {"Authorization": f"Bearer {TOKEN}-wrong"}),
            ("POST", "/v1/events", b"[]", {"Authorization": f"Basic {TOKEN}"}),
            ("POST", "/v1/events", orjson.dumps([event(i) for i in range(9)]), AUTH),
            ("GET", "/v1/health", b"", AUTH),
            ("GET", "/metrics", b"", AUTH),
        ]
        for method, path, body, headers in requests:
            resp = await client.request(method, path, data=body, headers=headers)
            seen.append(await resp.text())
            seen.extend(f"{k}: {v}" for k, v in resp.headers.items())

    serve(scenario)
    assert len(seen) > 8
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /v1/events" in logged  # the access log did run
    for secret in SECRETS:
        assert not any(secret in text for text in seen)
        assert secret not in logged


# -- the kafka-python bridge -------------------------------------------------------------
class FakeKafkaProducer:
    """kafka-python's producer surface: send() returns a kafka Future resolved by another
    thread, as the real sender thread does."""

    def __init__(self) -> None:
        self.futures: list[KafkaFuture] = []
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.closed = False
        self.flush_error: Exception | None = None
        self._sender = FakeSender()

    def send(self, topic: str, key: bytes, value: bytes) -> KafkaFuture:
        self.sent.append((topic, key, value))
        future = KafkaFuture()
        self.futures.append(future)
        return future

    def resolve(
        self, fail_index: int | None = None, error: Exception | None = None
    ) -> threading.Thread:
        def run() -> None:
            for i, future in enumerate(self.futures):
                if i == fail_index:
                    future.failure(error or KafkaTimeoutError("batch expired"))
                else:
                    future.success(None)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def flush(self, timeout: float | None = None) -> None:
        if self.flush_error is not None:
            raise self.flush_error

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class FakeSender:
    def __init__(self) -> None:
        self.forced = False

    def force_close(self) -> None:
        self.forced = True


async def wait_for_sends(fake: FakeKafkaProducer, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(fake.futures) < n:
        assert time.monotonic() < deadline, "the records were never sent"
        await asyncio.sleep(0.01)


def test_kafka_bridge_waits_for_every_ack_from_the_sender_thread() -> None:
    fake = FakeKafkaProducer()
    producer = KafkaEventProducer(settings(), fake)
    records = [(f"E-{i}".encode(), b"{}") for i in range(50)]

    async def main() -> None:
        task = asyncio.create_task(producer.send_batch(records))
        await wait_for_sends(fake, 50)
        await asyncio.sleep(0.05)
        assert not task.done()  # nothing acknowledged yet
        fake.resolve().join()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert fake.sent == [("unit-input", k, v) for k, v in records]
    producer.close(1)
    assert fake.closed


def test_kafka_bridge_raises_when_an_event_is_not_acknowledged() -> None:
    fake = FakeKafkaProducer()
    producer = KafkaEventProducer(settings(), fake)

    async def main() -> None:
        task = asyncio.create_task(producer.send_batch([(b"A", b"1"), (b"B", b"2")]))
        await wait_for_sends(fake, 2)
        fake.resolve(fail_index=1).join()
        with pytest.raises(ProducerError, match="batch expired"):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_kafka_bridge_replaces_the_producer_after_a_non_retriable_error() -> None:
    first, second = FakeKafkaProducer(), FakeKafkaProducer()
    producer = KafkaEventProducer(settings(), first, reconnect=lambda: second)

    async def send_one(fake: FakeKafkaProducer, error: Exception | None) -> None:
        task = asyncio.create_task(producer.send_batch([(b"A", b"1")]))
        await wait_for_sends(fake, 1)
        fake.resolve(fail_index=0 if error else None, error=error).join()
        fake.futures.clear()
        await asyncio.wait_for(task, 5)

    async def main() -> None:
        # A retriable failure (expired batch) keeps the producer.
        with pytest.raises(ProducerError, match="batch expired"):
            await send_one(first, KafkaTimeoutError("batch expired"))
        await send_one(first, None)
        assert not first.closed
        # kafka-python 3.0 leaves an idempotent producer failed for good after this one.
        with pytest.raises(ProducerError, match="MessageSizeTooLarge"):
            await send_one(first, MessageSizeTooLargeError())
        await send_one(second, None)

    asyncio.run(main())
    assert first.closed and not second.closed
    assert len(first.sent) == 3 and len(second.sent) == 1


def test_kafka_close_stops_the_sender_when_flushing_times_out() -> None:
    fake = FakeKafkaProducer()
    fake.flush_error = KafkaTimeoutError("Timeout waiting for future")
    KafkaEventProducer(settings(), fake).close(0.1)
    assert fake._sender.forced and fake.closed


def test_gateway_answers_503_on_late_acks_and_ignores_them_afterwards() -> None:
    fake = FakeKafkaProducer()
    app = create_gateway_app(
        settings(gateway_ack_timeout=0.2), TOKENS, KafkaEventProducer(settings(), fake)
    )

    async def main() -> None:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            resp = await client.post("/v1/events", data=orjson.dumps([event(1)]), headers=AUTH)
            assert resp.status == 503
            fake.resolve().join()  # the late ack must not break anything
            await asyncio.sleep(0.05)
            fake.futures.clear()
            task = asyncio.create_task(
                client.post("/v1/events", data=orjson.dumps([event(2)]), headers=AUTH)
            )
            deadline = time.monotonic() + 5
            while not fake.futures:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            fake.resolve().join()
            resp = await task
            assert resp.status == 202

    asyncio.run(main())


# -- the tokens file ---------------------------------------------------------------------
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_tokens_reads_the_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, f'# clients\n"{TOKEN}": hubei-portal\n{OTHER_TOKEN}: "wuhan-app"\n')
    assert load_tokens(path) == TOKENS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"{TOKEN}: hubei-portal\n{TOKEN}: other\n",
            "line 2: this token is already defined on line 1",
        ),
        (f"{TOKEN}: hubei-portal\n123456789: x\n", "line 2: the token must be a string"),
        (f"{TOKEN}: [a, b]\n", "line 1: the source name must be a string"),
        (f"{TOKEN}: hubei-portal\n  bad: [\n", "line 2"),
        (f"- {TOKEN}\n", "line 1: expected a mapping of token -> source name"),
        ("# nothing here\n", "defines no tokens"),
        ("{}\n", "defines no tokens"),
        (f'"{TOKEN} x": hubei-portal\n', "printable ASCII characters without spaces"),
        (f"{TOKEN}: {'s' * 65}\n", "source name must be 1-64 characters long"),
    ],
)
def test_load_tokens_errors_name_file_and_line_but_never_the_token(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(GatewayError) as err:
        load_tokens(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message
    assert TOKEN not in message


def test_missing_tokens_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(GatewayError, match="does not exist") as err:
        create_gateway_app(settings(gateway_tokens_file=missing), producer=FakeProducer())
    assert str(missing) in str(err.value)
    assert "RESUMEWATCH_GATEWAY_TOKENS_FILE" in str(err.value)


def test_app_loads_tokens_from_the_settings_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"{TOKEN}: hubei-portal\n")
    app = create_gateway_app(settings(gateway_tokens_file=path), producer=FakeProducer())

    async def main() -> int:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            resp = await client.post("/v1/events", data=orjson.dumps(event(1)), headers=AUTH)
            return resp.status

    assert asyncio.run(main()) == 202


def test_unusable_injected_tokens_are_refused() -> None:
    with pytest.raises(GatewayError, match="at least one token"):
        create_gateway_app(settings(), {}, FakeProducer())
    with pytest.raises(GatewayError, match="printable ASCII") as err:
        create_gateway_app(settings(), {"has space": "src"}, FakeProducer())
    assert "has space" not in str(err.value)
