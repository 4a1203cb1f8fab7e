"""A cheaper hand-over of fetched messages to Faust's streams.

Faust's fetcher loop passes every message to the conductor through
``Service.wait_first(callback(message), suspend_flow.wait())``: four tasks and an
``asyncio.wait`` per message, about 30-50 µs, a tenth of the worker's time per event. The wait
matters only when the callback can block: while flow control is suspended (a rebalance), while
the conductor's index is being rebuilt, or when a subscribing stream's buffer is full. In every
other case the callback completes without yielding to the event loop, so this loop awaits it
directly, and takes Faust's wait otherwise. A stream whose buffer is full is left to take half
of it before more is handed over. Offsets, gaps and commits are handled as Faust
does (faust-streaming 0.11, ``Consumer._drain_messages``).
"""

from __future__ import annotations

import asyncio
from typing import Any

_INSTALLED = "_resumewatch_drain"


def install() -> None:
    """Make every Faust consumer in this process use the loop below."""
    from faust.transport.consumer import Consumer

    if not getattr(Consumer._drain_messages, _INSTALLED, False):
        Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]


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
    since_yield = 0
    try:
        while not (stopped() or fetcher_stopped()):
            self.diag.set_flag(CONSUMER_FETCHING)
            records = self.getmany(timeout=1.0)
            await self.sleep(0)  # getmany may return at once, again and again
            if self.should_stop:
                continue
            async for tp, message in records:
                since_yield += 1
                if since_yield > 100:
                    await asyncio.sleep(0)
                    since_yield = 0
                offset = message.offset
                last = read_offset[tp]
                if last is not None and offset < last:
                    continue  # read already (a seek back); Faust drops these too
                if last and offset - last > 1 and conductor.acks_enabled_for(message.topic):
                    await self._add_gap(tp, last + 1, offset)
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
                read_offset[tp] = offset
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
