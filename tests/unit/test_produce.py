"""Records reach the producer as record batches per partition, in order, none lost."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from streams.runtime import internals
from streams.runtime.produce import submit
from streams.runtime.state import Out


class FakeProducer:
    """The part of ``AIOKafkaProducer`` that ``submit`` uses, with aiokafka's own batch
    builder (``batch_size`` bytes) and every queued send remembered."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.sent: list[tuple[str, int | None, list[tuple[bytes | None, bytes | None]]]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_size, 0, is_transactional=False)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        closed = batch.append(key=b"k", value=b"v", timestamp=None) is None
        assert closed, "a queued batch must be closed to further records"
        records = MemoryRecords(internals.batch_bytes(batch)).next_batch()
        assert records is not None
        self.sent.append((topic, partition, [(r.key, r.value) for r in records]))
        return _done()

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: Any) -> Any:
        self.sent.append((topic, None, [(key, value)]))
        return _done()


def _done() -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def test_records_go_in_batches_per_partition_in_order() -> None:
    records = [Out("log", b"k%d" % i, b"v%d" % i, i % 2) for i in range(10)]
    records.insert(3, Out("dlq", b"bad", b"{", None, [("reason", b"not JSON")]))
    producer = FakeProducer(1 << 20)

    async def run() -> int:
        return len(await submit(producer, records))

    assert asyncio.run(run()) == 3
    assert producer.sent == [
        ("dlq", None, [(b"bad", b"{")]),
        ("log", 0, [(b"k%d" % i, b"v%d" % i) for i in range(0, 10, 2)]),
        ("log", 1, [(b"k%d" % i, b"v%d" % i) for i in range(1, 10, 2)]),
    ]


def test_a_full_batch_is_queued_and_the_rest_goes_in_the_next() -> None:
    records = [Out("log", b"k%04d" % i, b"x" * 300, 0) for i in range(50)]
    producer = FakeProducer(4096)
    futures = asyncio.run(_submit(producer, records))
    assert len(futures) == len(producer.sent) > 2
    sent = [kv for _, _, batch in producer.sent for kv in batch]
    assert sent == [(r.key, r.value) for r in records]
    assert all(p == 0 for _, p, _ in producer.sent)


def test_a_record_larger_than_a_batch_goes_alone_in_its_own() -> None:
    producer = FakeProducer(1024)
    big = b"x" * 4096
    asyncio.run(_submit(producer, [Out("log", b"a", b"1", 0), Out("log", b"b", big, 0)]))
    assert producer.sent == [("log", 0, [(b"a", b"1")]), ("log", 0, [(b"b", big)])]


async def _submit(producer: FakeProducer, records: list[Out]) -> list[Any]:
    return await submit(producer, records)
