"""Kafka helpers of the benchmark: end offsets, group progress, raw pre-fill."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def admin(bootstrap: str) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench")


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(name, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        client.close()


class Progress:
    """Lag of consumer groups, polled often: one admin client and one consumer for all the
    polls (a new client per poll cost the benchmark process a good share of a core)."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaConsumer

        self.admin = admin(bootstrap)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","))

    def end_offsets(self, topics: Iterable[str]) -> dict[tuple[str, int], int]:
        """The next offset of every partition of ``topics``."""
        from kafka import TopicPartition

        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self.consumer.partitions_for_topic(t) or ())
        ]
        ends = self.consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): o for tp, o in ends.items()}

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        """The committed offsets of ``group`` (empty while it has none)."""
        offsets = self.admin.list_group_offsets(group).get(group, {})
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}

    def lag(self, groups: dict[str, list[str]]) -> int:
        """Messages not yet committed by the groups, over their topics ({group: topics})."""
        total = 0
        for group, topics in groups.items():
            ends = self.end_offsets(topics)
            done = self.committed(group)
            total += sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())
        return total

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def send_lines(
    bootstrap: str,
    topic: str,
    lines: Iterable[bytes],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Send NDJSON lines as they are (invalid ones too), keyed by their enterprise_id when
    one can be read; returns how many were sent."""
    import orjson
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        compression_type="lz4",
        linger_ms=20,
        batch_size=512 * 1024,
        max_in_flight_requests_per_connection=5,
    )
    sent = 0
    try:
        for line in lines:
            line = line.rstrip(b"\n")
            if not line:
                continue
            key = None
            try:
                doc = orjson.loads(line)
                eid = doc.get("enterprise_id") if isinstance(doc, dict) else None
                if isinstance(eid, str) and eid:
                    key = eid.encode()
            except orjson.JSONDecodeError:
                pass
            producer.send(topic, key=key, value=line)
            sent += 1
            if progress is not None and sent % 10_000 == 0:
                progress(10_000)
        producer.flush(timeout=120)
    finally:
        producer.close()
    return sent
