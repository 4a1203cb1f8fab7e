"""The peer baseline: an idiomatic Faust agent, one event at a time, a table update per event.

BENCH_BROKER=... BENCH_TOPIC=... BENCH_APP=... python -m benchmarks.baseline worker
"""

from __future__ import annotations

import os
from typing import Any

import faust
import orjson

app = faust.App(
    os.environ.get("BENCH_APP", "bench-baseline"),
    broker=f"kafka://{os.environ.get('BENCH_BROKER', '127.0.0.1:19092')}",
    store="memory://",
    datadir=os.environ.get("BENCH_DATADIR", ".state/bench/baseline-data"),
    topic_partitions=int(os.environ.get("BENCH_PARTITIONS", "4")),
    topic_replication_factor=1,
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ.get("BENCH_TOPIC", "enterprise-status"), value_serializer="raw")
events_per_enterprise = app.Table("events_per_enterprise", default=int)


@app.agent(source)
async def count(stream: Any) -> None:
    async for event in stream.events():
        try:
            doc = orjson.loads(event.value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("enterprise_id"), str):
            events_per_enterprise[doc["enterprise_id"]] += 1


if __name__ == "__main__":
    app.main()
