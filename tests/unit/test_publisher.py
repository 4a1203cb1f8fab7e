from __future__ import annotations

from typing import Any

import orjson

from producers.publisher import CHUNK_LINES, PROGRESS_EVERY, Publisher
from producers.simulator import SimConfig, Summary, simulate, stream


class FakeFuture:
    def __init__(self) -> None:
        self.errbacks: list[tuple[Any, tuple[Any, ...]]] = []

    def add_errback(self, f: Any, *args: Any) -> None:
        self.errbacks.append((f, args))


class FakeProducer:
    """Like KafkaProducer: send() returns a future; values containing ``refuse`` are refused
    by the broker at flush, values over ``max_size`` bytes at once."""

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = 0
        self.max_size = max_size
        self.pending: list[tuple[bytes, FakeFuture]] = []

    def send(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> FakeFuture:
        from kafka.errors import MessageSizeTooLargeError

        if len(value) > self.max_size:
            raise MessageSizeTooLargeError(f"The message is {len(value)} bytes")
        self.sent.append((topic, key, value))
        future = FakeFuture()
        self.pending.append((value, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        from kafka.errors import InvalidRecordError

        self.flushed += 1
        for value, future in self.pending:
            if b"refuse" in value:
                for f, args in future.errbacks:
                    f(*args, InvalidRecordError("broker refused the record"))
        self.pending.clear()

    def close(self) -> None:
        pass


def _line(**kw: Any) -> bytes:
    d = {
        "event_id": "e1",
        "type": "status_changed",
        "enterprise_id": "E1",
        "source": "s",
        "occurred_at": "2020-02-10T08:00:00+08:00",
        "status": "filed",
    }
    d.update(kw)
    return orjson.dumps(d)


def test_publish_lines_validates_counts_and_keeps_original_bytes() -> None:
    fake = FakeProducer()
    pub = Publisher("unused:1", "topic", producer=fake)
    lines = [
        _line(extra_field="kept"),
        b"",
        _line(event_id="e2", status="closed"),
        _line(),  # the same event_id again
        b"{oops",
        _line(event_id="e3", enterprise_id="E2"),
    ]
    result = pub.publish_lines(lines)
    assert result.sent == 2 and result.duplicates == 1
    assert [r.index for r in result.rejected] == [3, 5]  # 1-based line numbers
    assert result.rejected[0].error.startswith("status_changed.status must be one of")
    assert result.rejected[1].error.startswith("message is not valid UTF-8 JSON")
    assert fake.sent[0] == ("topic", b"E1", lines[0])  # unknown fields reach Kafka as sent
    assert fake.sent[1][1] == b"E2"
    assert fake.flushed == 1


def test_publish_lines_in_helper_processes_keeps_order_numbers_and_duplicates() -> None:
    # Several chunks: the first is validated in this process, the others by the helpers.
    lines: list[bytes] = []
    for i in range(2 * CHUNK_LINES + 500):
        if i % 1000 == 7:
            lines.append(b"")
        elif i % 1000 == 9:
            lines.append(_line(event_id=f"e{i}", status="closed"))
        elif i % 1000 == 11:
            lines.append(_line(event_id="e0"))  # a duplicate of the first line
        else:
            lines.append(_line(event_id=f"e{i}", enterprise_id=f"E{i % 13}"))
    results = []
    for jobs in (0, 2):
        fake = FakeProducer()
        steps: list[int] = []
        result = Publisher("unused:1", "topic", producer=fake).publish_lines(
            iter(lines), progress=steps.append, jobs=jobs
        )
        assert sum(steps) == result.sent == len(fake.sent)
        assert max(steps) == PROGRESS_EVERY
        results.append((result.sent, result.duplicates, result.rejected, fake.sent))
    assert results[0] == results[1]
    sent, duplicates, rejected, records = results[0]
    assert duplicates == 5 and sent == len(lines) - 5 - 5 - 5
    assert [r.index for r in rejected] == [i + 1 for i in range(len(lines)) if i % 1000 == 9]
    assert [value for _, _, value in records] == [
        line for i, line in enumerate(lines) if line and i % 1000 not in (9, 11)
    ]


def test_publish_returns_invalid_events_unsent() -> None:
    fake = FakeProducer()
    result = Publisher("unused:1", "t", producer=fake).publish(
        [orjson.loads(_line()), {"type": "status_changed"}]
    )
    assert result.sent == 1
    assert result.rejected[0].index == 1
    assert "event_id is required" in result.rejected[0].error


def test_simulator_is_reproducible_and_counts_its_kinds() -> None:
    cfg = SimConfig(
        enterprises=200, days=6, seed=3, bad_share=0.05, duplicate_share=0.05, late_share=0.02
    )
    s1, s2 = Summary(), Summary()
    a = [r.value for r in stream(cfg, s1)]
    b = [r.value for r in stream(cfg, s2)]
    assert a == b and s1.counts == s2.counts
    assert all(s1.counts[k] > 0 for k in ("valid", "duplicate", "bad", "late"))
    assert sum(s1.counts.values()) == len(a)


def test_simulated_events_are_all_valid_and_cover_every_type() -> None:
    sim = simulate(enterprises=300, days=8, seed=1)
    types = {e.type for e in sim.events}
    assert types == {
        "enterprise_registered",
        "status_changed",
        "daily_report",
        "appeal_opened",
        "appeal_resolved",
    }
    assert any(getattr(e, "zero_report", False) for e in sim.events)
    assert any(getattr(e, "suppliers", ()) for e in sim.events)
    assert sum(v[0] for v in sim.final_district.values()) == 300


def test_a_topic_without_metadata_is_one_clear_error() -> None:
    import pytest
    from kafka.errors import KafkaTimeoutError

    from producers.publisher import PublishError

    class NoTopic(FakeProducer):
        def partitions_for(self, topic: str) -> set[int]:
            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")

    pub = Publisher("unused:1", "missing-topic", producer=NoTopic())
    # Nothing valid to send: the rejections, without asking Kafka about the topic.
    result = pub.publish_lines([_line(status="closed"), b"{"])
    assert [r.index for r in result.rejected] == [1, 2] and result.sent == 0
    with pytest.raises(PublishError, match="no metadata for topic 'missing-topic'.*migrate"):
        pub.publish_lines([_line()])


def test_events_kafka_refuses_are_reported_not_counted_as_sent() -> None:
    fake = FakeProducer(max_size=400)
    pub = Publisher("unused:1", "topic", producer=fake)
    lines = [
        _line(),
        _line(event_id="e2", note="x" * 500),  # over the producer's request size
        _line(event_id="e3", note="refuse"),  # refused by the broker
        _line(event_id="e4"),
    ]
    result = pub.publish_lines(lines)
    assert result.sent == 2 and not result.rejected
    assert [r.index for r in result.failed] == [2, 3]
    assert result.failed[0].error.startswith("not sent: [Error 10] MessageSizeTooLargeError")
    assert result.failed[1].error.startswith("Kafka refused it: [Error 87] InvalidRecordError")


def test_events_go_to_the_partition_kafkas_default_partitioner_picks() -> None:
    from kafka.partitioner.default import DefaultPartitioner

    class Cluster:
        def topics(self) -> set[str]:
            return {"topic"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(6))

        def available_partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(6))

    class Routed(FakeProducer):
        def __init__(self) -> None:
            super().__init__()
            self.partitions: list[int | None] = []

        def partitions_for(self, topic: str) -> set[int]:
            return set(range(6))

        def send(
            self, topic: str, key: bytes, value: bytes, partition: int | None = None
        ) -> FakeFuture:
            self.partitions.append(partition)
            return super().send(topic, key, value)

    fake = Routed()
    lines = [_line(event_id=f"e{i}", enterprise_id=f"E{i % 40}") for i in range(120)]
    assert Publisher("unused:1", "topic", producer=fake).publish_lines(lines).sent == 120
    want = [
        DefaultPartitioner().partition("topic", None, k, None, None, Cluster())
        for _, k, _ in fake.sent
    ]
    assert fake.partitions == want and len(set(want)) > 1
