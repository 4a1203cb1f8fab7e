"""`resumewatch publish` from an NDJSON file into the real Kafka, helper processes included."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from producers.events import InvalidEvent, decode
from producers.publisher import CHUNK_LINES
from producers.simulator import SimConfig, stream


def test_publish_sends_each_valid_line_once_keyed_by_enterprise(pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaConsumer, TopicPartition

    p = pipeline()
    cfg = SimConfig(enterprises=800, days=6, seed=5, bad_share=0.02, duplicate_share=0.02)
    lines = [r.value for r in stream(cfg)]
    assert len(lines) > 2 * CHUNK_LINES  # helper processes validate all but the first chunk
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")

    want: dict[str, tuple[bytes, bytes]] = {}  # event_id -> (key, value), first one sent
    rejected = []
    for n, line in enumerate(lines, start=1):
        try:
            ev = decode(line)
        except InvalidEvent:
            rejected.append(n)
            continue
        want.setdefault(ev.event_id, (ev.enterprise_id.encode(), line))
    assert rejected and len(want) < len(lines) - len(rejected)  # some of each kind

    proc = subprocess.run(
        [sys.executable, "-m", "resumewatch", "publish", "--jobs", "2", str(path)],
        env=p.full_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr  # 1: some lines were rejected
    duplicates = len(lines) - len(rejected) - len(want)
    assert proc.stdout.startswith(
        f"sent {len(want)}, rejected {len(rejected)}, duplicates {duplicates}\n"
    )
    assert [int(x.split()[1].rstrip(":")) for x in proc.stdout.splitlines()[1:51]] == (
        rejected[:50]
    )

    consumer = KafkaConsumer(
        bootstrap_servers=p.settings.kafka_bootstrap.split(","), enable_auto_commit=False
    )
    parts = [TopicPartition(p.settings.input_topic, n) for n in range(p.settings.partitions)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    got: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(want) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend((r.key, r.value) for r in records)
    finally:
        consumer.close()
    assert sorted(got) == sorted(want.values())
