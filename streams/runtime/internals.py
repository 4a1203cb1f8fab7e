"""Every reach into Faust, aiokafka or mode beyond their public API, in one place.

The worker depends on private attributes and on replacing two of the frameworks' functions;
each such reach is here, named, and the versions it was written against are pinned: the
worker refuses to start on others (``check_versions``), since a private attribute may change
meaning in any release. ``tests/unit/test_internals.py`` checks each against the installed
packages.

1. ``install_drain``: a cheaper hand-over of fetched messages to Faust's streams.
   Faust's fetcher loop passes every message to the conductor through
   ``Service.wait_first(callback(message), suspend_flow.wait())``: four tasks and an
   ``asyncio.wait`` per message, about 30-50 µs. The wait matters only when the callback can
   block: while flow control is suspended (a rebalance), while the conductor's index is being
   rebuilt, or when a subscribing stream's buffer is full. In every other case the callback
   completes without yielding to the event loop, so this loop awaits it directly, and takes
   Faust's wait otherwise. A stream whose buffer is full is left to take half of it before
   more is handed over. Offsets, gaps and commits are handled as Faust does
   (``Consumer._drain_messages``). The records of a topic given to ``chunk_topic`` go
   over in chunks, one Faust message per chunk (about 20 µs a record saved).
2. ``install_lz4``: LZ4 at its fast level. aiokafka compresses every LZ4 batch at level 9
   (LZ4's high-compression mode) and has no setting for it; on the worker's output that took
   about an eighth of its CPU, ten times the fast level's cost for batches a third smaller.
   Both levels write the same LZ4 frame format, which every Kafka client and broker reads.
3. ``kafka_producer``: the app's running ``AIOKafkaProducer``, for whole record batches.
4. ``first_acked``, ``committed``, ``add_gap``: the Faust consumer's acknowledgement
   bookkeeping, read to find commit holes and written to let a commit pass offsets that
   were processed but never acknowledged (``streams.runtime.checkpoint``); ``commit``:
   a commit of given offsets, for the chunked topic, whose acks are off.
5. ``batch_bytes``: the wire bytes of an aiokafka batch builder, for reading back what was
   queued (the tests of ``streams.runtime.produce``).
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Any

from aiokafka import codec

# The releases whose private attributes this module was written against.
PINNED = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}
LZ4_LEVEL = 1
CHUNK_RECORDS = 1000  # records of one partition per chunk (``chunk_topic``)
_INSTALLED = "_resumewatch_drain"
_CHUNKED: set[str] = set()


class UnsupportedVersion(RuntimeError):
    """An installed framework is not the release this module was written against."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse to run on framework releases other than ``PINNED``."""
    if installed is None:
        installed = {}
        for name in PINNED:
            try:
                installed[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed[name] = "not installed"
    wrong = [
        f"{n} {installed.get(n)} (needs {v})" for n, v in PINNED.items() if installed.get(n) != v
    ]
    if wrong:
        raise UnsupportedVersion(
            "the worker reaches into framework internals checked against pinned releases "
            f"only, and found {', '.join(wrong)}; install the versions of constraints.txt"
        )


def install() -> None:
    """Check the versions, then apply both replacements (idempotent)."""
    check_versions()
    install_drain()
    install_lz4()


def install_drain() -> None:
    """Make every Faust consumer in this process use ``_drain_messages`` below."""
    from faust.transport.consumer import Consumer

    if not getattr(Consumer._drain_messages, _INSTALLED, False):
        Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


def lz4_encode(payload: Any) -> bytes:
    return bytes(codec.lz4_encode(payload, level=LZ4_LEVEL))


def install_lz4() -> None:
    """Make aiokafka's batch builders (the compiled one and the pure-Python one) in this
    process compress LZ4 at ``LZ4_LEVEL``."""
    from aiokafka.record import default_records, legacy_records

    modules: list[Any] = [default_records, legacy_records]
    try:
        from aiokafka.record._crecords import default_records as c_default
        from aiokafka.record._crecords import legacy_records as c_legacy
    except ImportError:  # aiokafka built without its extensions
        pass
    else:
        modules += [c_default, c_legacy]
    for module in modules:
        if hasattr(module, "lz4_encode"):
            module.lz4_encode = lz4_encode


def kafka_producer(app: Any) -> Any:
    """The app's ``AIOKafkaProducer`` (started on first use)."""
    return app.producer._ensure_producer()


def first_acked(consumer: Any, tp: Any) -> int | None:
    """The lowest offset of ``tp`` acknowledged and not committed yet, or None."""
    acked = consumer._acked.get(tp)
    return min(acked) if acked else None


def committed(consumer: Any, tp: Any) -> int | None:
    """The offset of ``tp`` the consumer committed last, or None."""
    return consumer._committed_offset.get(tp)  # type: ignore[no-any-return]


def batch_bytes(batch: Any) -> bytes:
    """The record batch a closed aiokafka ``BatchBuilder`` holds, as sent to Kafka."""
    return bytes(batch._build())


async def commit(consumer: Any, offsets: dict[Any, int]) -> bool:
    """Commit ``offsets`` (the next offset to read, per partition) for the consumer's
    group, without Faust's acknowledgement bookkeeping; the partitions no longer assigned
    are left out. False when nothing was committed (a rebalance came first)."""
    return bool(await consumer._commit(offsets))


async def add_gap(consumer: Any, tp: Any, start: int, end: int) -> None:
    """Let the consumer's commits pass offsets ``start``..``end`` (inclusive) of ``tp``
    without their acknowledgement, as Faust does for offsets a fetch skipped."""
    await consumer._add_gap(tp, start, end)


def chunk_topic(topic: str) -> None:
    """Hand the fetched records of ``topic`` to its stream in chunks: one Faust message per
    up to ``CHUNK_RECORDS`` records of a partition, the records its value (``chunk_records``).
    Faust's per-message path (a message object, the conductor, the stream's bookkeeping)
    costs about 20 µs a record; a chunk costs it once."""
    _CHUNKED.add(topic)


def chunk_records(value: Any) -> list[Any] | None:
    """The records of a chunk's value (aiokafka ``ConsumerRecord``s, in offset order), or
    None for the value of an ordinary message."""
    return value if isinstance(value, list) else None


def _chunk_message(tp: Any, records: list[Any], generation_id: int) -> Any:
    """One Faust message standing for ``records``: the offset of the last, whose
    acknowledgement, with the gap the drain loop adds below it, acknowledges them all."""
    from faust.types import ConsumerMessage

    last = records[-1]
    timestamp = last.timestamp / 1000.0 if last.timestamp is not None else None
    return ConsumerMessage(
        tp.topic,
        tp.partition,
        last.offset,
        timestamp,  # type: ignore[arg-type]
        last.timestamp_type,
        [],
        None,
        records,  # type: ignore[arg-type]
        None,
        0,
        0,
        tp,
        generation_id=generation_id,
    )


async def _drain_messages(self: Any, fetcher: Any) -> None:
    from faust.transport.consumer import CONSUMER_FETCHING

    callback = self.callback
    app = self.app
    conductor = app.topics
    channels_of = conductor._tp_index.get
    index_lock = conductor._tp_to_callback_lock
    flow_active = app.flow_control.is_active
    suspend = self.suspend_flow
    read_offset = self._read_offset
    stopped = self._stopped.is_set
    fetcher_stopped = fetcher._stopped.is_set
    to_message = self._to_message
    since_yield = 0

    async def hand_over(tp: Any, message: Any, first: int) -> None:
        """Give ``message`` (standing for offsets ``first``..``message.offset``) to the
        conductor, as Faust's loop does, without a task when it cannot block."""
        nonlocal since_yield
        since_yield += 1
        if since_yield > 100:
            await asyncio.sleep(0)
            since_yield = 0
        last = read_offset[tp]
        if last and first - last > 1 and conductor.acks_enabled_for(message.topic):
            await self._add_gap(tp, last + 1, first)
        if message.offset > first and conductor.acks_enabled_for(message.topic):
            # The chunk's records before its last: acknowledged with the last (a gap counts
            # only up to the highest acknowledged offset).
            await self._add_gap(tp, first, message.offset - 1)
        every = self._commit_every
        if every is not None and self._n_acked >= every:
            self._n_acked = 0
            await self.commit()
        channels = channels_of(tp, ())
        if not suspend.is_set() and any(chan.queue.full() for chan in channels):
            await _until_half_empty(channels, suspend)
        if (
            not suspend.is_set()
            and flow_active()
            and not index_lock.locked()
            and not any(chan.queue.full() for chan in channels)
        ):
            await callback(message)  # cannot block: no task needed
        else:
            await self.wait_first(callback(message), suspend.wait())
        read_offset[tp] = message.offset

    try:
        while not (stopped() or fetcher_stopped()):
            self.diag.set_flag(CONSUMER_FETCHING)
            fetched, active = await self._wait_next_records(1.0)
            await self.sleep(0)  # the fetch may return at once, again and again
            if fetched is None or self.should_stop:
                continue
            generation = app.consumer_generation_id
            for tp, records in fetched.items():
                if not self.flow_active or app.consumer_generation_id != generation:
                    break  # a rebalance: what was fetched is fetched again after it
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    continue
                last = read_offset[tp]
                if last is not None and records and records[0].offset < last:
                    # Read already (a seek back); Faust drops these too.
                    records = [r for r in records if r.offset >= last]
                if tp.topic in _CHUNKED:
                    for i in range(0, len(records), CHUNK_RECORDS):
                        part = records[i : i + CHUNK_RECORDS]
                        await hand_over(tp, _chunk_message(tp, part, generation), part[0].offset)
                else:
                    for record in records:
                        await hand_over(tp, to_message(tp, record), record.offset)
            self.diag.unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        self.diag.unset_flag(CONSUMER_FETCHING)


setattr(_drain_messages, _INSTALLED, True)


async def _until_half_empty(channels: Any, suspend: asyncio.Event) -> None:
    """A stream's buffer is full (its agent is behind): wait until it has taken half of it.
    Handing over a message each time the agent frees one slot would wake this loop, and
    pay Faust's wait, for every message."""
    while not suspend.is_set() and any(
        chan.queue.qsize() > chan.queue.maxsize // 2 for chan in channels
    ):
        await asyncio.sleep(0.002)
