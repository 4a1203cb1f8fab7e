"""The Kafka publisher of integrating systems: validate, then send keyed by enterprise_id."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from producers.events import AnyEvent, InvalidEvent, decode, encode, from_dict

# Progress is reported in steps of this many events: a progress bar's update costs about as
# much as validating an event.
PROGRESS_EVERY = 1000
# NDJSON lines go to the validating processes in chunks of this many.
CHUNK_LINES = 2000

# Per line: ((source, event_id), enterprise_id) of a valid event, or why it is invalid.
Checked = tuple[tuple[str, str], str] | str


class PublishError(RuntimeError):
    """The broker could not be reached or did not acknowledge; the message says what to do."""


@dataclass
class Rejected:
    index: int  # 0-based position for publish(), 1-based line number for publish_lines()
    error: str


@dataclass
class PublishResult:
    sent: int = 0  # acknowledged by Kafka (final once the publish call returned)
    rejected: list[Rejected] = field(default_factory=list)  # invalid: never sent
    duplicates: int = 0
    failed: list[Rejected] = field(default_factory=list)  # valid, but Kafka refused them
    # Refusals arrive on the client's sender thread: they are only appended there, and the
    # count of sent events is settled once everything is flushed.
    _refusals: list[Rejected] = field(default_factory=list, repr=False)

    def _send(
        self,
        send: Callable[..., Any],
        topic: str,
        key: bytes,
        value: bytes,
        partition: int | None,
        index: int,
    ) -> None:
        """Send one record; a refusal, now or when Kafka answers, is recorded with its index."""
        from kafka.errors import KafkaError, KafkaTimeoutError

        try:
            future = send(topic, key=key, value=value, partition=partition)
        except KafkaTimeoutError:
            raise
        except KafkaError as exc:  # e.g. larger than the producer's max request size
            self.failed.append(Rejected(index, f"not sent: {exc}"))
            return
        self.sent += 1
        future.add_errback(self._refused, index)

    def _refused(self, index: int, exc: Exception) -> None:
        self._refusals.append(Rejected(index, f"Kafka refused it: {exc}"))

    def _settle(self) -> None:
        """After the flush: events Kafka refused later were not sent after all."""
        late, self._refusals = self._refusals, []
        self.sent -= len(late)
        self.failed = sorted(self.failed + late, key=lambda r: r.index)


class Publisher:
    """kafka-python producer with acks=all, idempotence, lz4 and batching."""

    def __init__(
        self, bootstrap: str, topic: str, producer: Any | None = None, **overrides: Any
    ) -> None:
        self.topic = topic
        if producer is not None:  # an injected producer (tests, or a shared one)
            self.producer = producer
            return
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        options: dict[str, Any] = {
            "bootstrap_servers": bootstrap.split(","),
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": "lz4",
            "linger_ms": 20,
            "batch_size": 512 * 1024,
            "retries": 2_147_483_647,
            "retry_backoff_ms": 200,
            "request_timeout_ms": 30_000,
            "max_in_flight_requests_per_connection": 5,
        }
        options.update(overrides)
        try:
            self.producer = KafkaProducer(**options)
        except KafkaError as exc:
            raise PublishError(
                f"No Kafka broker answers at {bootstrap}; start one (`resumewatch stack up`) "
                "or set RESUMEWATCH_KAFKA_BOOTSTRAP."
            ) from exc

    def _no_metadata(self, exc: Exception) -> PublishError:
        return PublishError(
            f"Kafka has no metadata for topic {self.topic!r} ({exc}): create it "
            "(`resumewatch migrate` creates the pipeline's topics) or check the bootstrap "
            "servers."
        )

    def publish(
        self,
        events: Iterable[AnyEvent | dict[str, Any]],
        progress: Callable[[int], None] | None = None,
    ) -> PublishResult:
        """Validate and send; invalid events are returned with their reasons, never sent, and
        events Kafka refused (too large, say) in ``failed``."""
        result = PublishResult()

        def valid() -> Iterator[tuple[bytes, bytes, int]]:
            for i, item in enumerate(events):
                try:
                    ev = item if not isinstance(item, dict) else from_dict(item)
                except InvalidEvent as exc:
                    result.rejected.append(Rejected(i, str(exc)))
                    continue
                yield ev.enterprise_id.encode(), encode(ev), i

        return self._send_all(result, valid(), progress)

    def publish_lines(
        self,
        lines: Iterable[bytes],
        progress: Callable[[int], None] | None = None,
        now: datetime | None = None,
        jobs: int = 0,
    ) -> PublishResult:
        """Publish NDJSON lines: each is validated and, if valid, sent as the original bytes
        (so unknown extra fields reach the raw record). Rejections carry 1-based line numbers;
        an event seen earlier in the same input (the same source and event_id) is counted as a
        duplicate and not sent.

        With ``jobs`` > 0, that many helper processes validate the lines while this one
        sends; the order of the lines is kept."""
        result = PublishResult()
        seen: set[tuple[str, str]] = set()

        def valid() -> Iterator[tuple[bytes, bytes, int]]:
            for numbers, chunk, checked in _checked(_chunks(lines), now, jobs):
                for lineno, line, c in zip(numbers, chunk, checked, strict=True):
                    if isinstance(c, str):
                        result.rejected.append(Rejected(lineno, c))
                        continue
                    ident, eid = c
                    if ident in seen:
                        result.duplicates += 1
                        continue
                    seen.add(ident)
                    yield eid.encode(), line, lineno

        return self._send_all(result, valid(), progress)

    def _send_all(
        self,
        result: PublishResult,
        records: Iterable[tuple[bytes, bytes, int]],
        progress: Callable[[int], None] | None,
    ) -> PublishResult:
        """Send (key, value, index) records, report progress, flush and settle ``result``."""
        from kafka.errors import KafkaTimeoutError

        send = self.producer.send
        route = self._router()
        topic = self.topic
        shown = 0
        for key, value, index in records:
            try:
                result._send(send, topic, key, value, route(key), index)
            except KafkaTimeoutError as exc:
                raise self._no_metadata(exc) from exc
            shown += 1
            if shown == PROGRESS_EVERY and progress is not None:
                progress(shown)
                shown = 0
        if shown and progress is not None:
            progress(shown)
        self.flush()
        result._settle()
        return result

    def _router(self) -> Callable[[bytes], int | None]:
        """key -> partition, as Kafka's default partitioner (murmur2) picks it, remembered per
        key: the client's pure-Python hash would otherwise run for every event. The topic's
        partitions are looked up at the first valid event (input without any sends nothing
        and needs no metadata)."""
        from kafka.errors import KafkaError, KafkaTimeoutError
        from kafka.partitioner.default import murmur2

        partitions_for = getattr(self.producer, "partitions_for", None)
        if partitions_for is None:  # an injected producer partitions by itself
            return lambda key: None
        parts: list[int] = []
        known: dict[bytes, int] = {}

        def route(key: bytes) -> int:
            p = known.get(key)
            if p is None:
                if not parts:
                    try:
                        parts.extend(sorted(partitions_for(self.topic)))
                    except KafkaTimeoutError as exc:
                        raise self._no_metadata(exc) from exc
                    except KafkaError as exc:  # e.g. not authorized for the topic
                        raise PublishError(f"Kafka refused topic {self.topic!r}: {exc}") from exc
                if len(known) > 1_000_000:
                    known.clear()
                p = known[key] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
            return p

        return route

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Send bytes as they are (for tests and replays of dead letters)."""
        self.producer.send(self.topic, key=key, value=value)

    def flush(self, timeout: float = 60.0) -> None:
        from kafka.errors import KafkaError

        try:
            self.producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise PublishError(f"Kafka did not acknowledge all events: {exc}") from exc

    def close(self) -> None:
        self.producer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def check_lines(lines: list[bytes], now: datetime | None) -> list[Checked]:
    """Validate NDJSON lines (in a helper process of ``publish_lines``, or in this one)."""
    out: list[Checked] = []
    for line in lines:
        try:
            ev = decode(line, now)
        except InvalidEvent as exc:
            out.append(str(exc))
        else:
            out.append(((ev.source, ev.event_id), ev.enterprise_id))
    return out


def _chunks(lines: Iterable[bytes]) -> Iterator[tuple[list[int], list[bytes]]]:
    """The non-blank lines, stripped, with their 1-based numbers, in chunks."""
    numbers: list[int] = []
    chunk: list[bytes] = []
    for lineno, line in enumerate(lines, start=1):
        line = line.strip()
        if line:
            numbers.append(lineno)
            chunk.append(line)
            if len(chunk) == CHUNK_LINES:
                yield numbers, chunk
                numbers, chunk = [], []
    if chunk:
        yield numbers, chunk


def _checked(
    chunks: Iterator[tuple[list[int], list[bytes]]], now: datetime | None, jobs: int
) -> Iterator[tuple[list[int], list[bytes], list[Checked]]]:
    """Each chunk with its validation, in order. The first chunk is validated here: input
    that fits in it starts no process."""
    first = next(chunks, None)
    if first is None:
        return
    yield *first, check_lines(first[1], now)
    if jobs <= 0:
        for numbers, chunk in chunks:
            yield numbers, chunk, check_lines(chunk, now)
        return
    # spawn: the publishing process runs the Kafka client's threads, which fork would copy
    # in whatever state they are.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[tuple[list[int], list[bytes], Future[list[Checked]]]] = deque()
    try:
        for numbers, chunk in chunks:
            pending.append((numbers, chunk, pool.submit(check_lines, chunk, now)))
            # A few chunks ahead per process, so the input is read only as fast as it is sent.
            if len(pending) > 2 * jobs + 1:
                numbers, chunk, checked = pending.popleft()
                yield numbers, chunk, checked.result()
        while pending:
            numbers, chunk, checked = pending.popleft()
            yield numbers, chunk, checked.result()
    finally:
        pool.shutdown(cancel_futures=True)
