"""Crashes at random points of the commit protocol, with random batch boundaries: after the
replay, every row equals an uninterrupted run's and the reference's.

A crash hits the enterprise stage's batch, or the region stage's batch of the partial sums
that follow from it, in one of the protocol's phases (streams.runtime.checkpoint, step 5):
- before its derived records went out: nothing reached the next stages;
- after them, before the changelog: the next stages saw the records, the state is old;
- while the changelog was written: the writes of some partitions are in, the others lost.
The restarted worker rebuilds every table from its changelog (and the in-memory sums from the
tables) and replays what its offset guard did not see saved: the whole batch, or the messages
of the partitions whose changelog writes were lost.
"""

from __future__ import annotations

import random
import zlib

import orjson
import pytest

from resumewatch.settings import Settings
from streams.runtime.state import Out
from tests.histories import random_history
from tests.reference import expected_rows
from tests.unit.harness import Harness

PHASES = ("before_derived", "before_changelog", "during_changelog")
STAGES = ("enterprise", "region")


def _keyed(raws: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    return [(orjson.loads(r)["enterprise_id"].encode(), r) for r in raws]


def _crash(h: Harness, batch: list[tuple[bytes | None, bytes]], rng: random.Random) -> str:
    """Handle ``batch`` and crash one of the stages in a random phase; then restart and
    replay."""
    n = h.settings.partitions
    phase = rng.choice(PHASES)
    chunk = [(k, v, zlib.crc32(k or b"") % n) for k, v in batch]
    result = h.ent.process(h._events(h.settings.input_topic, chunk))
    if rng.choice(STAGES) == "region":
        return "region:" + _crash_region(h, result.records, phase, rng)
    replay = batch
    if phase == "before_derived":
        pass  # nothing left the worker
    elif phase == "before_changelog":
        h._route([r for r in result.records if not r.changelog])
    else:
        mark = len(h.changelog)
        h._route(result.records)
        # Each partition's changelog writes (its offset among them) land together or not.
        lost = {p for p in range(n) if rng.random() < 0.5}
        h.changelog[mark:] = [
            r
            for r in h.changelog[mark:]
            if not (r.topic == "ent-changelog" and r.partition in lost)
        ]
        replay = [(k, v) for k, v, p in chunk if p in lost]
    h.restore_from_changelog()
    h.feed(replay, batch=max(1, len(replay)))
    return phase


def _crash_region(h: Harness, records: list[Out], phase: str, rng: random.Random) -> str:
    """The enterprise stage's batch goes through; the region stage crashes on its partial
    sums, restarts and reads the same messages again (its offsets were not committed)."""
    topic = h.settings.partials_topic
    h._route([r for r in records if r.topic != topic])
    partials = [(r.key, r.value, r.partition) for r in records if r.topic == topic]
    events = h._events(topic, partials)  # type: ignore[arg-type]
    result = h.regions.process(events)
    if phase == "before_changelog":
        h._route([r for r in result.records if not r.changelog])
    elif phase == "during_changelog":
        h._route([r for r in result.records if not r.changelog])
        # Some of the writes land, any of them (harsher than Kafka, which keeps the order
        # of each partition's writes).
        h.changelog += [r for r in result.records if r.changelog and rng.random() < 0.5]
    h.restore_from_changelog()
    h._route(h.regions.process(events).records)
    return phase


@pytest.mark.parametrize("seed", range(12))
def test_crashes_at_random_points_replay_to_identical_rows(seed: int) -> None:
    rng = random.Random(seed)
    raws = random_history(seed, enterprises=40, days=10)
    settings = Settings(partitions=1 + seed % 4)
    calm = Harness(settings=settings)
    calm.feed(_keyed(raws), batch=rng.choice([7, 50, 400]))

    h = Harness(settings=settings)
    messages = _keyed(raws)
    i, phases = 0, set()
    while i < len(messages):
        size = rng.randrange(1, 60)
        batch = messages[i : i + size]
        last = i + size >= len(messages)
        if rng.random() < 0.3 or (last and not phases):
            phases.add(_crash(h, batch, rng))
        else:
            h.feed(batch, batch=size)
        i += size
    assert h.table() == calm.table() == expected_rows(raws)
