"""The commit protocol: how a batch of source messages becomes state, records and a
committed offset, exactly once in effect, whatever crashes, rebalances or the consumer do.

Every agent runs its batches through ``Checkpoint.run``, in these steps:

0. Unpack. The source topic's records come in chunks (``internals.chunk_topic``), one Faust
   event each; a chunk of a partition this worker no longer holds is dropped (its new owner
   reads it), the others are unpacked into their records, in offset order.
1. Fill. The Faust consumer can skip messages around restarts and rebalances (and commit
   offsets past messages no handler saw). The batch's offsets are compared with the next
   offset the agent's table holds per source partition (``OffsetGuard``); a gap is read
   from Kafka directly and merged in.
2. Admit. Messages before the next offset were processed already (a replay after a crash);
   the rest are admitted once each, in offset order.
3. Handle. The stage's batch handler turns the admitted messages into a ``Result``:
   records to produce, changelog writes among them, transitions and counts. It sends
   nothing and keeps no state outside its table, so a replay produces the same records.
4. Remember. The guard's next offsets join the batch's changelog writes.
5. Send, in phases, each acknowledged before the next starts: the early changelog writes
   (row versions, which must never go back once a row that used them is out), then the
   derived records, then the rest of the changelog. A crash between phases replays the
   batch against the old state, which produces the same derived records again.
6. Acknowledge. Only now does Faust see the batch's source messages as done, so the
   committed offset never passes a message whose records are not acknowledged. A chunked
   topic is not acknowledged through Faust (its topic has acks off): the checkpoint commits
   the guard's next offsets itself, the offsets its changelog writes have just saved.
7. Exit to replay. Faust acknowledges a taken batch even when its handler fails, and would
   commit the offsets of events whose results were never produced; a failure in steps 1-5
   stops the process at once instead (exit status 70), and the restart replays the batch.

Besides the batches, ``Checkpoint.watch`` repairs commit holes: offsets the consumer skipped
below what the agent has processed, which nothing would ever acknowledge.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streams.runtime import internals, produce
from streams.runtime.state import OFFSET, Out, Result, TableState

log = logging.getLogger("resumewatch.worker")
EXIT_TO_REPLAY = 70
FILL_TIMEOUT = 120.0  # seconds to read one gap before the batch fails (and is replayed)


@dataclass(frozen=True, slots=True)
class Fetched:
    """A record read outside Faust, shaped like a Faust event for the batch handlers."""

    message: Any


def merge(events: list[Any], more: list[Any]) -> list[Any]:
    """Both batches, each message once, in offset order per partition."""
    seen: dict[tuple[str, int, int], Any] = {}
    for event in [*events, *more]:
        m = event.message
        seen.setdefault((m.topic, m.partition, m.offset), event)
    return [seen[k] for k in sorted(seen)]


class OffsetGuard:
    """Admits every source message once, in offset order, whatever the consumer does.

    The next offset to process per source partition is kept in the agent's own table and
    saved with the batch's other changelog writes. The Faust consumer can skip messages
    around restarts and rebalances (and commit offsets past messages no handler saw); a
    batch whose messages start past the next offset has a gap, which the agent fills by
    reading the missing offsets from Kafka itself. Messages before it were processed already.
    """

    def __init__(self, state: TableState, *topics: str) -> None:
        self.state = state
        self.topics = frozenset(topics)  # the source topics, for the lag metric
        self.next: dict[tuple[str, int], int] = {}
        self.committed: dict[tuple[str, int], int] = {}  # what Checkpoint.commit last sent

    def _key(self, tp: tuple[str, int]) -> bytes:
        return OFFSET + f"{tp[0]}\x1f{tp[1]}".encode()

    def _want(self, tp: tuple[str, int]) -> int:
        want = self.next.get(tp)
        if want is None:
            # Nothing processed from this partition yet: from its start (the fill goes on
            # from the first offset that retention kept).
            want = self.next[tp] = self.state.get(self._key(tp)) or 0
        return want

    def gaps(self, events: Sequence[Any]) -> dict[tuple[str, int], tuple[int, int]]:
        """Per partition, the first range [start, end) of offsets missing from the batch."""
        gaps: dict[tuple[str, int], tuple[int, int]] = {}
        at: dict[tuple[str, int], int] = {}
        for event in events:
            msg = event.message
            tp = (msg.topic, msg.partition)
            if tp in gaps:
                continue
            want = at.get(tp)
            if want is None:
                want = self._want(tp)
            if msg.offset > want:
                gaps[tp] = (want, msg.offset)
            elif msg.offset == want:
                at[tp] = want + 1
        return gaps

    def admit(self, events: Sequence[Any]) -> list[Any]:
        """The events not processed yet, in order; the batch must have no gap."""
        admitted = []
        for event in events:
            msg = event.message
            tp = (msg.topic, msg.partition)
            want = self._want(tp)
            if msg.offset == want:
                admitted.append(event)
                self.next[tp] = want + 1
            elif msg.offset > want:
                raise RuntimeError(f"{tp[0]}[{tp[1]}]: offsets {want} to {msg.offset - 1} missing")
        return admitted

    def next_offset(self, tp: tuple[str, int]) -> int:
        """The next offset of ``tp`` to process (without caching it: the table may still be
        recovering)."""
        want = self.next.get(tp)
        return want if want is not None else self.state.get(self._key(tp)) or 0

    def skip_to(self, tp: tuple[str, int], offset: int) -> None:
        """The partition's log starts at ``offset`` now (retention removed the rest)."""
        self.next[tp] = max(self._want(tp), offset)

    def save(self, partitions: set[tuple[str, int]], out: list[Out]) -> None:
        for tp in partitions:
            self.state.put(tp[1], self._key(tp), self.next[tp], out)

    def forget(self) -> None:
        """Partitions moved: read the next offsets from the (recovered) table again."""
        self.next.clear()
        self.committed.clear()


def commit_hole(
    committed: int | None, first_acked: int | None, processed: int
) -> tuple[int, int] | None:
    """The offsets [start, end] that hold a partition's commit back although the agent has
    processed them, or None.

    The Faust consumer commits up to its first unacknowledged offset only. Around rebalances
    it can skip offsets (see ``OffsetGuard``); those below the guard's next offset were
    processed before and nothing asks for them again, so it would wait for their
    acknowledgement for ever."""
    if committed is None or first_acked is None or first_acked - committed <= 1:
        return None
    end = first_acked - 1
    if end >= processed:
        return None  # not processed yet: the guard's fill reads them
    return committed, end


class Handler(Protocol):
    """What every stage gives the checkpoint: its table and its batch handler."""

    @property
    def state(self) -> TableState: ...

    def process(self, events: Sequence[Any]) -> Result: ...


class Checkpoint:
    """Runs the steps above for every agent of one app."""

    def __init__(self, app: Any, bootstrap: str, on_gap: Callable[[], None]) -> None:
        self.app = app
        self.bootstrap = bootstrap
        self.on_gap = on_gap  # counts gaps filled and holes repaired
        self.guards: list[OffsetGuard] = []
        self._filler: Any = None  # one plain consumer (no group) that reads skipped offsets
        self._filling = asyncio.Lock()  # agents share it; each fill assigns its partitions

    def guard(self, handler: Handler, topic: str) -> OffsetGuard:
        guard = OffsetGuard(handler.state, topic)
        self.guards.append(guard)
        return guard

    def forget(self) -> None:
        """Partitions moved: read the next offsets from the (recovered) tables again."""
        for guard in self.guards:
            guard.forget()

    async def run(
        self, guard: OffsetGuard, handler: Handler, events: list[Any]
    ) -> tuple[Result, int]:
        """Steps 0 to 5 for one batch: its result and how many messages it admitted. The
        caller acknowledges (6) once it returns, and exits to replay (7) if it raises."""
        events = self.unpack(events)  # 0. unpack
        for _ in range(100):  # 1. fill
            gaps = guard.gaps(events)
            if not gaps:
                break
            events = merge(events, await self._fill(guard, gaps))
        admitted = guard.admit(events)  # 2. admit
        result = handler.process(admitted)  # 3. handle
        # 4. remember
        guard.save({(e.message.topic, e.message.partition) for e in admitted}, result.records)
        await self.send(result.records)  # 5. send
        return result, len(admitted)

    def unpack(self, events: list[Any]) -> list[Any]:
        """Step 0: the records of the batch's chunks, shaped like Faust events; ordinary
        events as they are."""
        out: list[Any] = []
        assigned: set[Any] | None = None
        for event in events:
            records = internals.chunk_records(event.value)
            if records is None:
                out.append(event)
                continue
            if assigned is None:
                assigned = set(self.app.consumer.assignment())
            if event.message.tp not in assigned:
                continue  # revoked since it was fetched
            out += [Fetched(r) for r in records]
        return out

    async def send(self, records: list[Out]) -> None:
        """Step 5: early changelog, derived records, changelog; each phase acknowledged
        before the next is queued."""
        producer = internals.kafka_producer(self.app)
        for phase in (0, 1, 2):
            pending = await produce.submit(
                producer,
                [r for r in records if (0 if r.early else 2 if r.changelog else 1) == phase],
            )
            if pending:
                await asyncio.gather(*pending)

    def agent(
        self,
        channel: Any,
        name: str,
        handler: Handler,
        batch_max: int,
        within: float,
        done: Callable[[str, Result, int, float], Awaitable[None] | None],
        chunked: bool = False,
    ) -> None:
        """Register an agent that runs every batch of ``channel`` (up to ``batch_max``
        messages, or records when ``chunked``) through the steps, then calls
        ``done(name, result, admitted, seconds)``."""
        topic = channel.get_topic_name()
        guard = self.guard(handler, topic)
        take = batch_max
        if chunked:
            internals.chunk_topic(topic)
            take = max(1, batch_max // internals.CHUNK_RECORDS)

        async def run(stream: Any) -> None:
            async for events in stream.take_events(take, within=within):
                started = time.perf_counter()
                try:
                    result, admitted = await self.run(guard, handler, events)
                    maybe = done(name, result, admitted, time.perf_counter() - started)
                    if maybe is not None:
                        await maybe
                    if chunked:
                        await self.commit(guard)  # 6. acknowledge, by committing
                except BaseException:
                    # 7. exit to replay
                    log.critical("%s failed on a batch; exiting to replay it", name, exc_info=True)
                    logging.shutdown()
                    os._exit(EXIT_TO_REPLAY)
                # 6. acknowledge: take_events acknowledges the batch once this loop goes on
                # (for a chunked topic, a no-op: its acks are off).

        self.app.agent(channel, name=name)(run)

    async def commit(self, guard: OffsetGuard) -> None:
        """Commit the next offset of every source partition whose next offset moved since
        its last commit (a partition revoked meanwhile is left to its new owner)."""
        from faust.types import TP

        offsets = {tp: n for tp, n in guard.next.items() if guard.committed.get(tp) != n}
        if not offsets:
            return
        if await internals.commit(self.app.consumer, {TP(*tp): n for tp, n in offsets.items()}):
            guard.committed.update(offsets)

    async def _fill(
        self, guard: OffsetGuard, gaps: dict[tuple[str, int], tuple[int, int]]
    ) -> list[Fetched]:
        """The messages of each gap [start, end), read from Kafka directly."""
        async with self._filling:
            return await self._fill_now(guard, gaps)

    async def _fill_now(
        self, guard: OffsetGuard, gaps: dict[tuple[str, int], tuple[int, int]]
    ) -> list[Fetched]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from faust.types import TP

        if self._filler is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap.split(","),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await consumer.start()
            self._filler = consumer
        consumer = self._filler
        got: list[Fetched] = []
        for (topic, partition), (start, end) in gaps.items():
            self.on_gap()
            log.warning(
                "%s[%s]: the consumer skipped offsets %s to %s; reading them from Kafka",
                topic,
                partition,
                start,
                end - 1,
            )
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start)
            first = None
            deadline = time.monotonic() + FILL_TIMEOUT
            while await consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not read {topic}[{partition}] {start}..{end - 1}")
                records = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
                for r in records:
                    if r.offset >= end:
                        break
                    first = r.offset if first is None else first
                    got.append(Fetched(r))
            if first is None or first > start:
                # Retention removed them: go on from what the log still has.
                log.warning("%s[%s]: offsets from %s are gone", topic, partition, start)
                guard.skip_to((topic, partition), end if first is None else first)
            # Faust commits only up to the first offset it has not seen acknowledged, and it
            # never saw these: without marking them as a gap (as Faust itself does for
            # offsets a fetch skips), the partition's committed offset would stay here.
            faust_consumer: Any = self.app.consumer
            if TP(topic, partition) in faust_consumer.assignment():
                await internals.add_gap(faust_consumer, TP(topic, partition), start, end - 1)
        return got

    async def watch(self) -> dict[tuple[str, int], int]:
        """The lag of each source partition (from the brokers' end offsets: the consumer's
        own highwater is only as fresh as its last fetch, and it stops fetching exactly when
        the worker falls behind); and a commit held back by offsets the consumer skipped
        below what the agent has processed is let pass them."""
        consumer: Any = self.app.consumer
        sources = [
            (guard, tp)
            for tp in consumer.assignment()
            for guard in self.guards
            if tp.topic in guard.topics
        ]
        ends = await consumer.highwaters(*(tp for _, tp in sources))
        lags: dict[tuple[str, int], int] = {}
        for guard, tp in sources:
            processed = guard.next_offset(tp)
            if ends.get(tp) is not None:
                lags[(tp.topic, tp.partition)] = max(0, ends[tp] - processed)
            hole = commit_hole(
                internals.committed(consumer, tp), internals.first_acked(consumer, tp), processed
            )
            if hole is not None:
                log.warning(
                    "%s[%s]: the consumer never acknowledged offsets %s to %s, processed "
                    "already; letting the commit pass them",
                    tp.topic,
                    tp.partition,
                    *hole,
                )
                self.on_gap()
                await internals.add_gap(consumer, tp, *hole)
        return lags
