"""The worker's LZ4 batches: fast level, same records back."""

from __future__ import annotations

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from streams.runtime import internals

LZ4 = 3  # the compression attribute of a Kafka record batch


def _batch(values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=LZ4,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=b"k%d" % i, value=value, headers=[])
    return bytes(builder.build())


def test_batches_compress_at_the_fast_level_and_read_back_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = [
        b'{"enterprise_id": "E%05d", "staff": %d}' % (i, i * 7919 % 1000) for i in range(3000)
    ]
    internals.install_lz4()
    fast = _batch(values)
    batch = MemoryRecords(fast).next_batch()
    assert batch is not None
    assert [r.value for r in batch] == values
    # The builder compresses through internals.lz4_encode: at aiokafka's own level 9 the same batch
    # comes out smaller.
    monkeypatch.setattr(internals, "LZ4_LEVEL", 9)
    slow = _batch(values)
    assert len(slow) < len(fast)
    batch = MemoryRecords(slow).next_batch()
    assert batch is not None
    assert [r.value for r in batch] == values
