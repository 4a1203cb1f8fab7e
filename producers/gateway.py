"""HTTP gateway for systems that cannot speak Kafka: authenticated POSTs of events -> input topic.

``POST /v1/events`` takes a JSON array of events, one JSON object, or NDJSON, validates every
event with the contract's ``from_dict`` plus "source equals the token's source", and answers
202 only once Kafka has acknowledged (acks=all) every accepted event. ``GET /v1/health`` checks
Kafka with a metadata request; ``GET /metrics`` is the Prometheus text exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints
from aiohttp import hdrs, web

from producers.events import InvalidEvent, from_dict
from producers.publisher import Publisher, PublishError
from resumewatch.settings import Settings

log = logging.getLogger("resumewatch.gateway")

Record = tuple[bytes, bytes]
"""(key, value) of one Kafka message: enterprise_id as UTF-8, the encoded event."""

HEALTH_TIMEOUT = 3.0
"""Seconds /v1/health waits for Kafka metadata; health probes expect a prompt answer."""
RETRY_AFTER_SECONDS = "5"
MAX_EVENT_BYTES = 1_000_000
"""Largest encoded event: kafka-python's default max_request_size is 1 MiB, record overhead
included, and the broker's default message limit is about the same."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_STR_TAG = "tag:yaml.org,2002:str"
_MAX_SOURCE_LEN = 64  # an event's `source` may be 1-64 characters (CONTRACT §1)


class GatewayError(Exception):
    """The gateway cannot start; ``str(exc)`` says what is wrong and how to fix it."""


class ProducerError(RuntimeError):
    """Kafka did not take or acknowledge events (or answer a health check); clients retry."""


class EventProducer(Protocol):
    """What the gateway needs from Kafka; tests inject a fake one."""

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Return once Kafka acknowledged every record; raise ProducerError if one failed."""

    async def ping(self) -> None:
        """Return when a Kafka metadata request succeeds; raise ProducerError otherwise."""


# -- tokens -------------------------------------------------------------------------------
def load_tokens(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read the YAML mapping of bearer token -> source name.

    Errors name the file and line but never quote a token: they end up in logs.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GatewayError(
            f"The gateway tokens file {p} does not exist; create it with one "
            "`<token>: <source>` line per client system, or point "
            "RESUMEWATCH_GATEWAY_TOKENS_FILE at it."
        ) from None
    except UnicodeDecodeError:
        raise GatewayError(f"The gateway tokens file {p} is not UTF-8 text.") from None
    except OSError as exc:
        raise GatewayError(
            f"Cannot read the gateway tokens file {p}: {exc.strerror or exc}."
        ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # Only the problem and position: PyYAML's full message quotes the offending line.
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise GatewayError(
            f"The gateway tokens file {p}{where} is not valid YAML: {exc.problem or exc.context}."
        ) from None
    except yaml.YAMLError:
        raise GatewayError(f"The gateway tokens file {p} is not valid YAML.") from None
    if root is None:
        raise GatewayError(
            f"The gateway tokens file {p} defines no tokens; add `<token>: <source>` lines."
        )
    if not isinstance(root, yaml.MappingNode):
        raise GatewayError(
            f"The gateway tokens file {p} line {root.start_mark.line + 1}: expected a mapping "
            "of token -> source name, like `s3cr3t-token: hubei-portal`."
        )
    tokens: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 1
        where = f"The gateway tokens file {p} line {line}"
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
            raise GatewayError(f"{where}: the token must be a string; put it in quotes.")
        if not isinstance(value_node, yaml.ScalarNode) or value_node.tag != _STR_TAG:
            raise GatewayError(f"{where}: the source name must be a string; put it in quotes.")
        token, source = str(key_node.value), str(value_node.value)
        if token in first_line:
            raise GatewayError(
                f"{where}: this token is already defined on line {first_line[token]}."
            )
        problem = _token_problem(token, source)
        if problem:
            raise GatewayError(f"{where}: {problem}.")
        tokens[token] = source
        first_line[token] = line
    if not tokens:
        raise GatewayError(
            f"The gateway tokens file {p} defines no tokens; add `<token>: <source>` lines."
        )
    return tokens


def _token_problem(token: str, source: str) -> str:
    """Why a token/source pair is unusable, or "" when it is fine (never quotes the token)."""
    if not token:
        return "the token is empty"
    if not all("!" <= ch <= "~" for ch in token):
        # It travels in an HTTP header after "Bearer ": printable ASCII, no spaces.
        return "the token may only contain printable ASCII characters without spaces"
    if not 1 <= len(source) <= _MAX_SOURCE_LEN:
        return (
            f"the source name must be 1-{_MAX_SOURCE_LEN} characters long "
            f"(like an event's source field), got {len(source)}"
        )
    return ""


class _TokenTable:
    """Constant-time bearer token lookup."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        if not tokens:
            raise GatewayError("The gateway needs at least one token; it would reject everything.")
        self._entries: list[tuple[bytes, str]] = []
        for token, source in tokens.items():
            if not isinstance(token, str) or not isinstance(source, str):
                raise GatewayError("Gateway tokens and source names must be strings.")
            problem = _token_problem(token, source)
            if problem:
                raise GatewayError(f"A gateway token for source {source!r} is unusable: {problem}.")
            self._entries.append((_digest(token), source))

    def source_for(self, presented: str) -> str | None:
        """The source of a presented token, or None; the time taken does not depend on which
        token (if any) matched, nor on how much of one matched."""
        # Comparing digests makes every comparison the same length, so not even token lengths
        # leak; looping over all entries without breaking keeps the match position secret.
        digest = _digest(presented)
        found: str | None = None
        for known, source in self._entries:
            if hmac.compare_digest(digest, known) and found is None:
                found = source
        return found


def _digest(token: str) -> bytes:
    # surrogatepass: header text may hold anything; it must not raise, only fail to match.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


# -- request bodies -----------------------------------------------------------------------
class _Refused(Exception):
    """A request refused as a whole: HTTP status and the sentence for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    """The body, reading at most max_bytes + 1 bytes so an oversized body costs no memory."""
    too_big = _Refused(
        413,
        f"the request body is larger than {max_bytes} bytes (gateway_max_bytes); "
        "split the events over several requests",
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_big
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise too_big
    return bytes(body)


def _parse_events(body: bytes, max_events: int) -> list[Any]:
    """JSON array, one JSON object (one event) or NDJSON -> the decoded items, in order."""
    if not body.strip():
        raise _Refused(400, "the request body is empty; send a JSON array of events or NDJSON")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first = body.lstrip()[:1]
        if first == b"[" or b"\n" not in body.strip():
            raise _Refused(400, f"the request body is not valid JSON: {exc}") from None
        items = _parse_ndjson(body, max_events)
    else:
        if isinstance(value, list):
            items = value
        elif isinstance(value, dict):
            items = [value]
        else:
            raise _Refused(
                400,
                "the request body must be a JSON array of events, one event object or NDJSON, "
                f"got a JSON {_json_kind(value)}",
            )
    if len(items) > max_events:
        raise _Refused(
            413,
            f"the request holds {len(items)} events, more than {max_events} "
            "(gateway_max_events); split them over several requests",
        )
    return items


def _parse_ndjson(body: bytes, max_events: int) -> list[Any]:
    lines = body.split(b"\n")
    filled = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if len(filled) > max_events:  # before decoding anything: refusing is cheaper
        raise _Refused(
            413,
            f"the request holds {len(filled)} events, more than {max_events} "
            "(gateway_max_events); split them over several requests",
        )
    items: list[Any] = []
    for n, line in filled:
        try:
            items.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise _Refused(
                400, f"NDJSON line {n} is not valid JSON: {exc}; send one JSON object per line"
            ) from None
    return items


def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


def _validate(items: Sequence[Any], source: str, now: datetime) -> tuple[list[Record], list[Any]]:
    """The Kafka records of the valid events, and {index, error} for each of the others."""
    records: list[Record] = []
    rejected: list[Any] = []
    for index, item in enumerate(items):
        try:
            ev = from_dict(item, now)
        except InvalidEvent as exc:
            rejected.append({"index": index, "error": str(exc)})
            continue
        if ev.source != source:
            got = orjson.dumps(ev.source).decode()
            error = f'source must be "{source}" (the source of this token), got {got}'
            rejected.append({"index": index, "error": error})
            continue
        value = orjson.dumps(item)  # as received: unknown extra fields reach the raw record
        if len(value) > MAX_EVENT_BYTES:
            # Refused here, per event: kafka-python would fail the whole request instead.
            error = (
                f"the event is {len(value)} bytes as JSON, more than the {MAX_EVENT_BYTES} "
                "bytes of one Kafka message"
            )
            rejected.append({"index": index, "error": error})
            continue
        records.append((ev.enterprise_id.encode("utf-8"), value))
    return records, rejected


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


# -- metrics ------------------------------------------------------------------------------
class _Metrics:
    """Counters and the latency histogram of /v1/events; only touched on the event loop."""

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self.requests: Counter[int] = Counter()
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.seconds_sum = 0.0
        self.seconds_count = 0

    def observe(self, status: int, seconds: float) -> None:
        self.requests[status] += 1
        self.seconds_sum += seconds
        self.seconds_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1

    def render(self) -> str:
        name = "resumewatch_gateway"
        out = [
            f"# HELP {name}_events_accepted_total Events acknowledged by Kafka and answered 202.",
            f"# TYPE {name}_events_accepted_total counter",
            f"{name}_events_accepted_total {self.accepted}",
            f"# HELP {name}_events_rejected_total Events rejected as invalid in 202 answers.",
            f"# TYPE {name}_events_rejected_total counter",
            f"{name}_events_rejected_total {self.rejected}",
            f"# HELP {name}_requests_total Requests to POST /v1/events by HTTP status code.",
            f"# TYPE {name}_requests_total counter",
        ]
        out += [
            f'{name}_requests_total{{code="{c}"}} {n}' for c, n in sorted(self.requests.items())
        ]
        out += [
            f"# HELP {name}_request_seconds Time to answer POST /v1/events, Kafka acks included.",
            f"# TYPE {name}_request_seconds histogram",
        ]
        out += [
            f'{name}_request_seconds_bucket{{le="{bound}"}} {n}'
            for bound, n in zip(LATENCY_BUCKETS, self.buckets, strict=True)
        ]
        out += [
            f'{name}_request_seconds_bucket{{le="+Inf"}} {self.seconds_count}',
            f"{name}_request_seconds_sum {self.seconds_sum!r}",
            f"{name}_request_seconds_count {self.seconds_count}",
        ]
        return "\n".join(out) + "\n"


# -- Kafka --------------------------------------------------------------------------------
class _Acks:
    """Counts acknowledgements of one batch. kafka-python calls back on its sender thread, so the
    callbacks only hand over to the event loop, where all counting happens (no locks)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.remaining = expected
        self.done: asyncio.Future[None] = loop.create_future()
        self.fatal = False  # failed for a reason retrying will not fix

    def on_ack(self, _metadata: object) -> None:  # sender thread
        self._post(None)

    def on_error(self, exc: BaseException) -> None:  # sender thread
        self._post(exc)

    def _post(self, exc: BaseException | None) -> None:
        # RuntimeError: the loop is closed, so nobody waits for this answer any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._settle, exc)

    def _settle(self, exc: BaseException | None) -> None:  # event loop
        if self.done.done():  # failed before, or the request timed out and was cancelled
            return
        if exc is not None:
            self.fatal = not getattr(exc, "retriable", False)  # kafka-python's error flag
            self.done.set_exception(ProducerError(f"Kafka did not acknowledge an event: {exc}"))
            return
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set_result(None)


def _retrieve(task: asyncio.Task[None]) -> None:
    # Health checks may all time out before the shared check ends; fetch its outcome anyway so
    # asyncio does not log "exception never retrieved".
    if not task.cancelled():
        task.exception()


class KafkaEventProducer:
    """EventProducer on kafka-python with the Publisher's options (acks=all, idempotence)."""

    def __init__(
        self,
        settings: Settings,
        kafka_producer: Any,
        reconnect: Callable[[], Any] | None = None,
    ) -> None:
        self._settings = settings
        self._topic = settings.input_topic
        self._producer = kafka_producer
        self._reconnect = reconnect
        self._failed: Any = None  # the producer that failed an event for a non-retriable reason
        self._swap = asyncio.Lock()
        self._admin: Any = None
        self._ping_task: asyncio.Task[None] | None = None

    @classmethod
    def connect(cls, settings: Settings) -> KafkaEventProducer:
        """Connect to Kafka (blocking, up to 10 s); GatewayError when no broker answers."""
        return cls(settings, _new_kafka_producer(settings), lambda: _new_kafka_producer(settings))

    async def send_batch(self, records: Sequence[Record]) -> None:
        if not records:
            return
        producer = await self._usable_producer()
        acks = _Acks(asyncio.get_running_loop(), len(records))
        try:
            # In a thread: send() may block (metadata, full buffer) and 10k appends take a while.
            await asyncio.to_thread(self._submit, producer, records, acks)
        except BaseException:
            acks.done.cancel()
            raise
        try:
            await acks.done
        except ProducerError:
            if acks.fatal:
                self._failed = producer
            raise

    async def _usable_producer(self) -> Any:
        """The producer, replaced first if it failed an event for a non-retriable reason.

        kafka-python 3.0 moves an idempotent producer into a permanent error state on any
        non-retriable produce error (say a topic's max.message.bytes): every later send fails
        the same way. A long-running gateway must not stay stuck like that.
        """
        if self._failed is None or self._failed is not self._producer or not self._reconnect:
            return self._producer
        async with self._swap:  # one replacement however many requests are waiting
            old = self._producer
            if self._failed is old:
                try:
                    self._producer = await asyncio.to_thread(self._reconnect)
                except GatewayError as exc:
                    raise ProducerError(str(exc)) from exc
                self._failed = None
                log.warning("Replaced the Kafka producer after a non-retriable produce error")
                await asyncio.to_thread(_close_kafka_producer, old, 5.0)
        return self._producer

    def _submit(self, producer: Any, records: Sequence[Record], acks: _Acks) -> None:
        from kafka.errors import KafkaError

        send = producer.send
        try:
            for key, value in records:
                future = send(self._topic, key=key, value=value)
                future.add_callback(acks.on_ack)
                future.add_errback(acks.on_error)
        except KafkaError as exc:
            raise ProducerError(f"Kafka did not take the events: {exc}") from exc

    async def ping(self) -> None:
        task = self._ping_task
        if task is None or task.done():
            # One check at a time: a hung broker must not pile up a thread per health probe.
            task = asyncio.create_task(asyncio.to_thread(self._describe_topic))
            task.add_done_callback(_retrieve)
            self._ping_task = task
        await asyncio.shield(task)

    def _describe_topic(self) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        timeout_ms = int(HEALTH_TIMEOUT * 1000)
        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self._settings.kafka_bootstrap.split(","),
                    bootstrap_timeout_ms=timeout_ms,
                    request_timeout_ms=timeout_ms,
                )
            topics = self._admin.describe_topics([self._topic])
        except (KafkaError, OSError) as exc:
            self._close_admin()  # reconnect from scratch next time
            raise ProducerError(
                f"no metadata from Kafka at {self._settings.kafka_bootstrap}: {exc}"
            ) from exc
        error_code = topics[0].get("error_code", 0) if topics else -1
        if error_code:
            raise ProducerError(
                f"Kafka has no usable topic {self._topic} (error code {error_code})"
            )

    def _close_admin(self) -> None:
        from kafka.errors import KafkaError

        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except (KafkaError, OSError) as exc:
                log.debug("Kafka admin client did not close cleanly: %s", exc)

    def close(self, timeout: float) -> None:
        """Flush and close (blocking, bounded by timeout)."""
        _close_kafka_producer(self._producer, timeout)
        self._close_admin()


def _new_kafka_producer(settings: Settings) -> Any:
    """A kafka-python producer with the Publisher's options (blocking, up to 10 s)."""
    try:
        publisher = Publisher(
            settings.kafka_bootstrap,
            settings.input_topic,
            # send() blocks for metadata or buffer space; never longer than a request may.
            max_block_ms=max(1, int(settings.gateway_ack_timeout * 1000)),
            bootstrap_timeout_ms=10_000,
        )
    except PublishError as exc:
        raise GatewayError(str(exc)) from exc
    return publisher.producer


def _close_kafka_producer(producer: Any, timeout: float) -> None:
    from kafka.errors import KafkaError

    try:
        producer.flush(timeout=timeout)
    except KafkaError:
        log.warning(
            "Kafka did not acknowledge every pending event within %.0f s; dropping them "
            "(their requests were answered 503, so clients retry)",
            timeout,
        )
        # kafka-python's close() flushes first and raises when that times out, leaving its
        # non-daemon sender thread running; stop the thread so the process can exit.
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
    try:
        producer.close(timeout=timeout)
    except KafkaError as exc:
        log.warning("Kafka producer did not close cleanly: %s", exc)


# -- the application ----------------------------------------------------------------------
class _Gateway:
    def __init__(
        self, settings: Settings, tokens: Mapping[str, str], producer: EventProducer | None
    ) -> None:
        self.settings = settings
        self.tokens = _TokenTable(tokens)
        self.producer = producer
        self.metrics = _Metrics()

    async def kafka_context(self, _app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: own a Kafka producer for the app's lifetime."""
        kafka = await asyncio.to_thread(KafkaEventProducer.connect, self.settings)
        self.producer = kafka
        try:
            yield
        finally:
            self.producer = None
            await asyncio.to_thread(kafka.close, self.settings.gateway_ack_timeout)

    def _producer(self) -> EventProducer:
        if self.producer is None:
            raise _Refused(503, "the gateway is not connected to Kafka; retry the request")
        return self.producer

    async def post_events(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500  # what an unexpected exception turns into
        try:
            response = await self._post_events(request)
            status = response.status
            return response
        finally:
            self.metrics.observe(status, time.perf_counter() - started)

    async def _post_events(self, request: web.Request) -> web.Response:
        source = self._authenticate(request)
        if source is None:
            error = (
                "the Authorization header is missing; send `Authorization: Bearer <token>`"
                if hdrs.AUTHORIZATION not in request.headers
                else "the bearer token is not valid"
            )
            challenge = 'Bearer realm="resumewatch"'
            if hdrs.AUTHORIZATION in request.headers:
                challenge += ', error="invalid_token"'
            return _json(401, {"error": error}, {hdrs.WWW_AUTHENTICATE: challenge})
        s = self.settings
        try:
            body = await _read_body(request, s.gateway_max_bytes)
            items = _parse_events(body, s.gateway_max_events)
        except _Refused as exc:
            return _json(exc.status, {"error": exc.message})

        records, rejected = _validate(items, source, datetime.now(UTC))
        if records:
            try:
                await asyncio.wait_for(
                    self._producer().send_batch(records), timeout=s.gateway_ack_timeout
                )
            except _Refused as exc:
                return self._unavailable(exc.message)
            except TimeoutError:
                log.warning(
                    "Kafka did not acknowledge %d events from %s within %.0f s; answered 503",
                    len(records),
                    source,
                    s.gateway_ack_timeout,
                )
                return self._unavailable(
                    f"Kafka did not acknowledge the events within {s.gateway_ack_timeout:g} s; "
                    "retry the request (events are deduplicated by source and event_id)"
                )
            except ProducerError as exc:
                log.warning("Kafka refused events from %s: %s; answered 503", source, exc)
                return self._unavailable(
                    f"{exc}; retry the request (events are deduplicated by source and event_id)"
                )
        self.metrics.accepted += len(records)
        self.metrics.rejected += len(rejected)
        log.debug("%s: %d events accepted, %d rejected", source, len(records), len(rejected))
        return _json(202, {"accepted": len(records), "rejected": rejected})

    def _authenticate(self, request: web.Request) -> str | None:
        header = request.headers.get(hdrs.AUTHORIZATION)
        if header is None:
            return None
        scheme, _, presented = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        return self.tokens.source_for(presented.strip())

    @staticmethod
    def _unavailable(message: str) -> web.Response:
        return _json(503, {"error": message}, {hdrs.RETRY_AFTER: RETRY_AFTER_SECONDS})

    async def health(self, _request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(self._producer().ping(), timeout=HEALTH_TIMEOUT)
        except _Refused:
            return _json(503, {"status": "unavailable", "kafka": "not connected"})
        except TimeoutError:
            return _json(
                503,
                {"status": "unavailable", "kafka": f"no answer within {HEALTH_TIMEOUT:g} s"},
            )
        except ProducerError as exc:
            return _json(503, {"status": "unavailable", "kafka": str(exc)})
        return _json(200, {"status": "ok", "kafka": "ok"})

    async def metrics_page(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=self.metrics.render().encode(), headers={hdrs.CONTENT_TYPE: METRICS_CONTENT_TYPE}
        )


def create_gateway_app(
    settings: Settings,
    tokens: Mapping[str, str] | None = None,
    producer: EventProducer | None = None,
) -> web.Application:
    """The gateway as an aiohttp application.

    ``tokens`` None reads ``settings.gateway_tokens_file`` (GatewayError when missing or
    malformed). ``producer`` None makes the app own a Kafka producer for its lifetime (connected
    on startup, flushed and closed on cleanup); an injected producer is left to its owner.
    """
    if tokens is None:
        tokens = load_tokens(settings.gateway_tokens_file)
    gateway = _Gateway(settings, tokens, producer)
    app = web.Application(client_max_size=settings.gateway_max_bytes)
    app.router.add_post("/v1/events", gateway.post_events)
    app.router.add_get("/v1/health", gateway.health)
    app.router.add_get("/metrics", gateway.metrics_page)
    if producer is None:
        app.cleanup_ctx.append(gateway.kafka_context)
    return app


def run_gateway(settings: Settings) -> None:
    """Serve the gateway on settings.gateway_host:gateway_port until SIGINT or SIGTERM."""
    tokens = load_tokens(settings.gateway_tokens_file)
    app = create_gateway_app(settings, tokens)
    asyncio.run(_serve(app, settings, tokens))


async def _serve(app: web.Application, settings: Settings, tokens: Mapping[str, str]) -> None:
    # In-flight requests may wait gateway_ack_timeout for Kafka; let them finish on shutdown.
    runner = web.AppRunner(app, shutdown_timeout=settings.gateway_ack_timeout + 5)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
        try:
            await site.start()
        except OSError as exc:
            raise GatewayError(
                f"The gateway cannot listen on {settings.gateway_host}:{settings.gateway_port}: "
                f"{exc.strerror or exc}; set RESUMEWATCH_GATEWAY_PORT to a free port."
            ) from exc
        host, port = runner.addresses[0][:2]
        log.info(
            "HTTP gateway listening on http://%s:%d with %d tokens for %d sources, "
            "producing to %s at %s",
            host if ":" not in host else f"[{host}]",
            port,
            len(tokens),
            len(set(tokens.values())),
            settings.input_topic,
            settings.kafka_bootstrap,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("HTTP gateway stopping")
    finally:
        await runner.cleanup()
