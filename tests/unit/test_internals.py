"""The one module that reaches into Faust, aiokafka and mode: its version check, the
attributes it names (on the installed, pinned releases), and the drain loop it installs."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP as FaustTP

from streams.runtime import internals


def test_the_pinned_versions_are_the_installed_ones() -> None:
    internals.check_versions()  # raises on any other release


def test_another_release_is_refused_with_what_to_install() -> None:
    installed = {**internals.PINNED, "aiokafka": "0.15.0"}
    with pytest.raises(internals.UnsupportedVersion) as exc:
        internals.check_versions(installed)
    assert "aiokafka 0.15.0 (needs 0.14.0)" in str(exc.value)
    assert "constraints.txt" in str(exc.value)


def test_every_named_attribute_exists_on_the_pinned_releases() -> None:
    from faust.transport.consumer import Consumer

    app = faust.App("internals-test", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    for name in (
        "_acked",
        "_committed_offset",
        "_read_offset",
        "_add_gap",
        "_commit_every",
        "_n_acked",
        "_stopped",
        "_commit",
    ):
        assert hasattr(consumer, name), name
    assert hasattr(Consumer, "_drain_messages")
    assert hasattr(app.producer, "_ensure_producer")
    assert hasattr(app.topics, "_tp_index") and hasattr(app.topics, "_tp_to_callback_lock")


def test_the_drain_loop_is_installed_once() -> None:
    from faust.transport.consumer import Consumer

    internals.install_drain()
    first = Consumer._drain_messages
    internals.install_drain()
    assert Consumer._drain_messages is first is internals._drain_messages


def test_acknowledgement_bookkeeping_is_read_and_written_through_the_consumer() -> None:
    gaps: list[tuple[Any, int, int]] = []

    async def add_gap(tp: Any, start: int, end: int) -> None:
        gaps.append((tp, start, end))

    consumer = SimpleNamespace(
        _acked={"tp": [7, 5, 9], "empty": []}, _committed_offset={"tp": 3}, _add_gap=add_gap
    )
    assert internals.first_acked(consumer, "tp") == 5
    assert internals.first_acked(consumer, "empty") is None
    assert internals.first_acked(consumer, "other") is None
    assert internals.committed(consumer, "tp") == 3
    assert internals.committed(consumer, "other") is None
    asyncio.run(internals.add_gap(consumer, "tp", 3, 4))
    assert gaps == [("tp", 3, 4)]


# --- the drain loop, on a consumer made of the parts it uses --------------------------


@dataclass
class Record:
    """What aiokafka fetches."""

    topic: str
    offset: int
    partition: int = 0
    timestamp: int | None = 1_000
    timestamp_type: int = 0


class Queue:
    def __init__(self, maxsize: int = 10) -> None:
        self.maxsize = maxsize
        self.items = 0

    def full(self) -> bool:
        return self.items >= self.maxsize

    def qsize(self) -> int:
        return self.items


TP = FaustTP("in", 0)


class FakeConsumer:
    """What ``_drain_messages`` touches of a Faust consumer; stops once every fetch was
    handed over."""

    consumer_stopped_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, fetches: list[list[Record]], suspended: bool = False):
        self.fetches = list(fetches)
        self.delivered: list[tuple[int, str, Any]] = []  # (offset, direct | waited, value)
        self.gaps: list[tuple[Any, int, int]] = []
        self.commits = 0
        self.should_stop = False
        self.flow_active = True
        self._buffered_partitions: set[Any] = set()
        self._stopped = asyncio.Event()
        self.suspend_flow = asyncio.Event()
        if suspended:
            self.suspend_flow.set()
        self._read_offset: dict[Any, int | None] = defaultdict(lambda: None)
        self._commit_every: int | None = None
        self._n_acked = 0
        self.channel = SimpleNamespace(queue=Queue())
        self.app = SimpleNamespace(
            topics=SimpleNamespace(
                _tp_index={TP: [self.channel]},
                _tp_to_callback_lock=asyncio.Lock(),
                acks_enabled_for=lambda topic: True,
            ),
            flow_control=SimpleNamespace(is_active=lambda: True),
            consumer_generation_id=3,
        )
        self.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
        self.waiting = False

    async def callback(self, message: Any) -> None:
        self.delivered.append(
            (message.offset, "waited" if self.waiting else "direct", message.value)
        )

    async def wait_first(self, coro: Any, other: Any) -> None:
        self.waiting = True
        try:
            await coro
        finally:
            self.waiting = False
            other.close()

    async def _wait_next_records(self, timeout: float) -> Any:
        if not self.fetches:
            self._stopped.set()
            return {}, None
        return {TP: self.fetches.pop(0)}, {TP}

    def _to_message(self, tp: Any, record: Record) -> Any:
        return SimpleNamespace(topic=record.topic, offset=record.offset, value=b"v")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((tp, start, end))

    async def commit(self) -> None:
        self.commits += 1


def _drain(consumer: FakeConsumer) -> None:
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    asyncio.run(internals._drain_messages(consumer, fetcher))


def _fetch(*offsets: int, topic: str = "in") -> list[Record]:
    return [Record(topic, o) for o in offsets]


def test_messages_are_handed_over_in_order_without_a_task_each() -> None:
    consumer = FakeConsumer([_fetch(0, 1, 2), _fetch(3, 4)])
    _drain(consumer)
    assert [(o, how) for o, how, _ in consumer.delivered] == [(o, "direct") for o in range(5)]
    assert consumer._read_offset[TP] == 4
    assert consumer.gaps == []


def test_a_suspended_flow_or_a_full_buffer_takes_fausts_wait() -> None:
    suspended = FakeConsumer([_fetch(0, 1)], suspended=True)
    _drain(suspended)
    assert [(o, how) for o, how, _ in suspended.delivered] == [(0, "waited"), (1, "waited")]

    full = FakeConsumer([_fetch(0)])
    full.channel.queue.items = full.channel.queue.maxsize
    full.suspend_flow.set()  # a rebalance: no waiting for the buffer to drain
    _drain(full)
    assert [(o, how) for o, how, _ in full.delivered] == [(0, "waited")]


def test_skipped_offsets_become_a_gap_and_offsets_read_before_are_dropped() -> None:
    consumer = FakeConsumer([_fetch(1, 2, 5), _fetch(3, 6)])
    _drain(consumer)
    assert consumer.gaps == [(TP, 3, 5)]  # Faust's own convention: [last + 1, offset]
    assert [o for o, _, _ in consumer.delivered] == [1, 2, 5, 6]


def test_the_loop_commits_every_n_acknowledgements() -> None:
    consumer = FakeConsumer([_fetch(0, 1)])
    consumer._commit_every = 10
    consumer._n_acked = 10
    _drain(consumer)
    assert consumer.commits == 1 and consumer._n_acked == 0


def test_a_chunked_topic_goes_over_as_one_message_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(internals, "_CHUNKED", {"in"})
    monkeypatch.setattr(internals, "CHUNK_RECORDS", 3)
    consumer = FakeConsumer([_fetch(0, 1, 2, 3, 4), _fetch(5)])
    _drain(consumer)
    chunks = [(offset, [r.offset for r in value]) for offset, _, value in consumer.delivered]
    # A chunk is a message at its last record's offset, the records its value; its other
    # offsets are a gap, acknowledged with it.
    assert chunks == [(2, [0, 1, 2]), (4, [3, 4]), (5, [5])]
    assert consumer.gaps == [(TP, 0, 1), (TP, 3, 3)]
    assert all(internals.chunk_records(value) is not None for _, _, value in consumer.delivered)
    assert internals.chunk_records(b"bytes") is None


def test_a_rebalance_during_the_hand_over_stops_it() -> None:
    consumer = FakeConsumer([_fetch(0, 1)])
    consumer.flow_active = False
    _drain(consumer)
    assert consumer.delivered == []
