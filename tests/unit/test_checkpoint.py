"""The commit protocol's steps (streams.runtime.checkpoint), on a fake Kafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streams.runtime import checkpoint as cp
from streams.runtime.state import OFFSET, Out, Result, TableState
from tests.unit.harness import Ev, FakeTable, Msg


class SlowProducer:
    """Acknowledges each queued send a little later, and remembers, for every send, which
    earlier sends were acknowledged by then."""

    def __init__(self) -> None:
        self.log: list[tuple[str, set[str]]] = []  # (topic, topics acknowledged so far)
        self.acked: set[str] = set()

    def _later(self, topic: str) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def ack() -> None:
            self.acked.add(topic)
            future.set_result(None)

        loop.call_later(0.01, ack)
        return future

    def create_batch(self) -> Any:
        return SimpleNamespace(append=lambda **kw: True, close=lambda: None, records=[])

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        self.log.append((topic, set(self.acked)))
        return self._later(topic)

    async def send(self, topic: str, value: Any, *, key: Any, headers: Any) -> Any:
        self.log.append((topic, set(self.acked)))
        return self._later(topic)


class Handler:
    """Emits one record per phase for every admitted message, and remembers what it saw."""

    def __init__(self, fail: bool = False) -> None:
        self.state = TableState(FakeTable("handler-changelog"))
        self.seen: list[int] = []
        self.fail = fail

    def process(self, events: Sequence[Any]) -> Result:
        if self.fail:
            raise ValueError("a bug")
        self.seen += [e.message.offset for e in events]
        return Result(
            [
                Out("handler-changelog", b"v", b"1", 0, changelog=True, early=True),
                Out("derived", b"k", b"x", 0),
                Out("dead-letters", b"k", b"x"),
                Out("handler-changelog", b"k", b"2", 0, changelog=True),
            ]
        )


def _checkpoint(monkeypatch: pytest.MonkeyPatch) -> tuple[cp.Checkpoint, SlowProducer]:
    producer = SlowProducer()
    monkeypatch.setattr(cp.internals, "kafka_producer", lambda app: producer)
    return cp.Checkpoint(SimpleNamespace(), "127.0.0.1:1", on_gap=lambda: None), producer


def _batch(*offsets: int) -> list[Ev]:
    return [Ev(Msg("in", 0, o, b"k", b"{}")) for o in offsets]


def test_each_phase_is_acknowledged_before_the_next_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint, producer = _checkpoint(monkeypatch)
    handler = Handler()
    guard = checkpoint.guard(handler, "in")
    result, admitted = asyncio.run(checkpoint.run(guard, handler, _batch(0, 1)))
    assert admitted == 2
    order = [topic for topic, _ in producer.log]
    assert order[0] == "handler-changelog"  # the early write first
    assert set(order[1:3]) == {"derived", "dead-letters"}
    assert order[3:] == ["handler-changelog"]  # the handler's writes and the guard's
    # Derived records only once the early write was acknowledged; the changelog only once
    # every derived record was.
    assert all("handler-changelog" in acked for topic, acked in producer.log[1:3])
    assert all({"derived", "dead-letters"} <= acked for _, acked in producer.log[3:])
    # Step 4: the guard's next offset travels with the batch's changelog writes.
    saved = [r for r in result.records if r.key and r.key.startswith(OFFSET)]
    assert [orjson.loads(r.value or b"") for r in saved] == [2]


def test_a_replayed_batch_admits_only_what_was_not_processed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint, _ = _checkpoint(monkeypatch)
    handler = Handler()
    guard = checkpoint.guard(handler, "in")
    asyncio.run(checkpoint.run(guard, handler, _batch(0, 1, 2)))
    asyncio.run(checkpoint.run(guard, handler, _batch(1, 2, 3, 4)))
    assert handler.seen == [0, 1, 2, 3, 4]


def test_a_gap_is_read_from_kafka_before_the_handler_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint, _ = _checkpoint(monkeypatch)
    handler = Handler()
    guard = checkpoint.guard(handler, "in")
    asked: list[dict[tuple[str, int], tuple[int, int]]] = []

    async def fill(guard: Any, gaps: dict[tuple[str, int], tuple[int, int]]) -> list[Any]:
        asked.append(gaps)
        return [cp.Fetched(Msg("in", 0, o, b"k", b"{}")) for o in range(*gaps[("in", 0)])]

    monkeypatch.setattr(checkpoint, "_fill", fill)
    asyncio.run(checkpoint.run(guard, handler, _batch(3, 4)))
    assert asked == [{("in", 0): (0, 3)}]
    assert handler.seen == [0, 1, 2, 3, 4]


def test_a_failing_batch_stops_the_process_to_replay_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint, producer = _checkpoint(monkeypatch)
    agents: dict[str, Any] = {}
    checkpoint.app = SimpleNamespace(
        agent=lambda channel, name: lambda fn: agents.setdefault(name, fn)
    )
    exits: list[int] = []

    class Exited(Exception):
        pass

    def exit_now(code: int) -> None:
        exits.append(code)
        raise Exited

    monkeypatch.setattr(cp.os, "_exit", exit_now)
    channel = SimpleNamespace(get_topic_name=lambda: "in")
    done: list[Any] = []
    checkpoint.agent(channel, "a", Handler(fail=True), 10, 1.0, lambda *a: done.append(a))

    class Stream:
        async def take_events(self, n: int, within: float) -> Any:
            yield _batch(0, 1)

    with pytest.raises(Exited):
        asyncio.run(agents["a"](Stream()))
    assert exits == [cp.EXIT_TO_REPLAY]
    assert done == [] and producer.log == []  # nothing sent, nothing acknowledged


def test_a_chunked_topics_offsets_are_committed_once_each_as_they_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint, _ = _checkpoint(monkeypatch)
    commits: list[dict[Any, int]] = []
    answers = [True, False, True]

    async def commit(offsets: dict[Any, int]) -> bool:
        commits.append(dict(offsets))
        return answers.pop(0)

    checkpoint.app = SimpleNamespace(consumer=SimpleNamespace(_commit=commit))
    handler = Handler()
    guard = checkpoint.guard(handler, "in")

    async def go() -> None:
        await checkpoint.run(guard, handler, _batch(0, 1))
        await checkpoint.commit(guard)
        await checkpoint.commit(guard)  # nothing moved: no request
        await checkpoint.run(guard, handler, _batch(2))
        await checkpoint.commit(guard)  # refused (a rebalance): tried again next time
        await checkpoint.commit(guard)

    asyncio.run(go())
    assert commits == [{("in", 0): 2}, {("in", 0): 3}, {("in", 0): 3}]
