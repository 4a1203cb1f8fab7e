"""Webhooks never block: a dead receiver costs retries and a counted failure, nothing else."""

from __future__ import annotations

import asyncio
import socket

from streams.webhooks import Webhooks


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_receiver_is_retried_counted_and_never_blocks() -> None:
    async def run() -> Webhooks:
        hooks = Webhooks(
            [f"http://127.0.0.1:{_closed_port()}/x"],
            timeout=1.0,
            attempts=3,
            backoff=0.01,
            max_backoff=0.02,
        )
        sender = asyncio.create_task(hooks.run())
        hooks.submit([{"alert_id": "a", "state": "firing"}, {"alert_id": "b", "state": "firing"}])
        # submit() returned at once; the sender works through the queue on its own.
        queue = next(iter(hooks.queues.values()))
        await asyncio.wait_for(queue.join(), timeout=30)
        sender.cancel()
        return hooks

    hooks = asyncio.run(run())
    assert hooks.stats["failed"] == 2 and hooks.stats["sent"] == 0
    assert hooks.stats["failed_attempts"] == 6


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    async def run() -> Webhooks:
        hooks = Webhooks(["http://127.0.0.1:9/x"], timeout=1.0, attempts=1, queue_size=2)
        hooks.submit([{"alert_id": str(i)} for i in range(5)])
        return hooks

    hooks = asyncio.run(run())
    assert hooks.stats["dropped"] == 3
