"""Alert webhooks: every transition is POSTed as JSON to each configured URL.

Each URL has its own bounded queue and sender task, so a slow or dead receiver never blocks
the agents or the other receivers. A request is retried with exponential backoff; a
transition that still fails after the configured attempts is counted and logged. If a queue
is full (a receiver has been down for long), new transitions for it are counted as dropped.
Each count also goes to ``on_count`` (the worker's Prometheus metrics), if given.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import orjson

log = logging.getLogger("resumewatch.webhooks")


class Webhooks:
    def __init__(
        self,
        urls: Sequence[str],
        timeout: float,
        attempts: int,
        queue_size: int = 10_000,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_count: Callable[[str], None] | None = None,
    ) -> None:
        self.urls = list(urls)
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.queues: dict[str, asyncio.Queue[bytes]] = {
            url: asyncio.Queue(maxsize=queue_size) for url in self.urls
        }
        # sent, failed and dropped (one of them per alert and URL), and failed_attempts.
        self.stats: Counter[str] = Counter()
        self.on_count = on_count

    def _count(self, what: str) -> None:
        self.stats[what] += 1
        if self.on_count is not None:
            self.on_count(what)

    def submit(self, transitions: Sequence[dict[str, Any]]) -> None:
        """Queue transitions for every URL; never waits."""
        for record in transitions:
            body = orjson.dumps(record)
            for url, queue in self.queues.items():
                try:
                    queue.put_nowait(body)
                except asyncio.QueueFull:
                    self._count("dropped")
                    log.warning(
                        "webhook queue for %s is full; dropped alert %s",
                        url,
                        record.get("alert_id"),
                    )

    async def run(self) -> None:
        """Send until cancelled (one task per URL)."""
        if not self.urls:
            return
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._sender(session, url) for url in self.urls))

    async def _sender(self, session: Any, url: str) -> None:
        queue = self.queues[url]
        while True:
            body = await queue.get()
            delay = self.backoff
            for attempt in range(1, self.attempts + 1):
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/json"}
                    ) as resp:
                        if resp.status < 300:
                            self._count("sent")
                            break
                        problem = f"HTTP {resp.status}"
                except (TimeoutError, OSError, Exception) as exc:  # noqa: BLE001
                    problem = f"{type(exc).__name__}: {exc}"
                self._count("failed_attempts")
                if attempt == self.attempts:
                    self._count("failed")
                    log.error(
                        "webhook %s failed %d times (%s); giving up on one alert",
                        url,
                        attempt,
                        problem,
                    )
                    break
                log.warning("webhook %s: %s; retrying in %.1f s", url, problem, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            queue.task_done()
