"""The Kafka publisher of integrating systems: validate, then send keyed by enterprise_id."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from producers.events import AnyEvent, InvalidEvent, encode, from_dict


class PublishError(RuntimeError):
    """The broker could not be reached or did not acknowledge; the message says what to do."""


@dataclass
class Rejected:
    index: int
    error: str


@dataclass
class PublishResult:
    sent: int = 0
    rejected: list[Rejected] = field(default_factory=list)


class Publisher:
    """kafka-python producer with acks=all, idempotence, lz4 and batching."""

    def __init__(self, bootstrap: str, topic: str, **overrides: Any) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.topic = topic
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

    def publish(
        self,
        events: Iterable[AnyEvent | dict[str, Any]],
        progress: Callable[[int], None] | None = None,
    ) -> PublishResult:
        """Validate and send; invalid events are returned with their reasons, never sent."""
        result = PublishResult()
        send = self.producer.send
        for i, item in enumerate(events):
            try:
                ev = item if not isinstance(item, dict) else from_dict(item)
            except InvalidEvent as exc:
                result.rejected.append(Rejected(i, str(exc)))
                continue
            send(self.topic, key=ev.enterprise_id.encode(), value=encode(ev))
            result.sent += 1
            if progress is not None:
                progress(1)
        self.flush()
        return result

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
