"""Webhooks never block: a dead receiver costs retries and a counted failure, nothing else."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from streams.metrics import WorkerMetrics
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


def _sample(m: WorkerMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_failures_and_drops_are_worker_metrics() -> None:
    m = WorkerMetrics()
    for outcome in ("sent", "failed", "dropped"):  # there from the start, at 0
        assert _sample(m, "resumewatch_worker_webhook_deliveries_total", outcome=outcome) == 0

    async def run() -> None:
        hooks = Webhooks(
            [f"http://127.0.0.1:{_closed_port()}/x"],
            timeout=1.0,
            attempts=2,
            queue_size=1,
            backoff=0.01,
            on_count=m.webhook,
        )
        hooks.submit([{"alert_id": "a"}, {"alert_id": "b"}])  # b: the queue is full
        sender = asyncio.create_task(hooks.run())
        await asyncio.wait_for(next(iter(hooks.queues.values())).join(), timeout=30)
        sender.cancel()

    asyncio.run(run())
    assert _sample(m, "resumewatch_worker_webhook_deliveries_total", outcome="failed") == 1
    assert _sample(m, "resumewatch_worker_webhook_deliveries_total", outcome="dropped") == 1
    assert _sample(m, "resumewatch_worker_webhook_deliveries_total", outcome="sent") == 0
    assert _sample(m, "resumewatch_worker_webhook_failed_attempts_total") == 2


def test_a_retried_delivery_counts_one_failed_attempt_and_one_sent() -> None:
    m = WorkerMetrics()
    bodies: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.Response(status=503 if len(bodies) == 1 else 204)

    async def run() -> Webhooks:
        server = web.Application()
        server.router.add_post("/hook", receive)
        runner = web.AppRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        hooks = Webhooks(
            [f"http://127.0.0.1:{port}/hook"],
            timeout=5.0,
            attempts=3,
            backoff=0.01,
            on_count=m.webhook,
        )
        sender = asyncio.create_task(hooks.run())
        hooks.submit([{"alert_id": "a", "state": "firing"}])
        await asyncio.wait_for(next(iter(hooks.queues.values())).join(), timeout=30)
        sender.cancel()
        await runner.cleanup()
        return hooks

    hooks = asyncio.run(run())
    assert bodies == [b'{"alert_id":"a","state":"firing"}'] * 2
    assert hooks.stats == {"failed_attempts": 1, "sent": 1}
    assert _sample(m, "resumewatch_worker_webhook_deliveries_total", outcome="sent") == 1
    assert _sample(m, "resumewatch_worker_webhook_deliveries_total", outcome="failed") == 0
    assert _sample(m, "resumewatch_worker_webhook_failed_attempts_total") == 1
