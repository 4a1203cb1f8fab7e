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


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """The next offset of every partition of ``topics``."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","))
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        return {(tp.topic, tp.partition): o for tp, o in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed(client: Any, group: str) -> dict[tuple[str, int], int]:
    """The committed offsets of ``group`` (empty while it has none)."""
    offsets = client.list_group_offsets(group).get(group, {})
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def lag(client: Any, bootstrap: str, groups: dict[str, list[str]]) -> int:
    """Messages not yet committed by the groups, over their topics ({group: topics})."""
    total = 0
    for group, topics in groups.items():
        ends = end_offsets(bootstrap, topics)
        done = committed(client, group)
        total += sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())
    return total


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
