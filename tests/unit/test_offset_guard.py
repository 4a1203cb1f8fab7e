"""OffsetGuard: each source message is processed once, in offset order, even when the
consumer skips or repeats messages."""

from __future__ import annotations

import pytest

from streams.runtime.checkpoint import OffsetGuard
from streams.runtime.state import Out, TableState
from tests.unit.harness import Ev, FakeTable, Msg


def batch(*offsets: int, partition: int = 0) -> list[Ev]:
    return [Ev(Msg("in", partition, o, b"k", b"{}")) for o in offsets]


def offsets(events: list[Ev]) -> list[int]:
    return [e.message.offset for e in events]


def test_in_order_messages_pass_and_repeats_are_dropped() -> None:
    guard = OffsetGuard(TableState(FakeTable("c")))
    assert guard.gaps(batch(0, 1, 2)) == {}
    assert offsets(guard.admit(batch(0, 1, 2))) == [0, 1, 2]
    assert guard.gaps(batch(1, 2, 3)) == {}
    assert offsets(guard.admit(batch(1, 2, 3))) == [3]


def test_gaps_are_found_per_partition_and_must_be_filled_before_admitting() -> None:
    guard = OffsetGuard(TableState(FakeTable("c")))
    guard.admit(batch(0, 1))
    events = batch(2, 5, 6, 9) + batch(0, 1, partition=1)
    assert guard.gaps(events) == {("in", 0): (3, 5)}
    with pytest.raises(RuntimeError, match=r"in\[0\]: offsets 3 to 4 missing"):
        guard.admit(events)
    filled = batch(2, 3, 4, 5, 6) + batch(0, 1, partition=1)
    assert guard.gaps(filled) == {}


def test_the_first_message_must_be_the_partitions_first() -> None:
    guard = OffsetGuard(TableState(FakeTable("c")))
    assert guard.gaps(batch(4, 5)) == {("in", 0): (0, 4)}
    guard.skip_to(("in", 0), 4)  # retention kept offsets from 4 on
    assert offsets(guard.admit(batch(4, 5))) == [4, 5]


def test_the_next_offset_survives_a_restart_through_the_changelog() -> None:
    table = FakeTable("c")
    guard = OffsetGuard(TableState(table))
    guard.admit(batch(0, 1, 2))
    out: list[Out] = []
    guard.save({("in", 0)}, out)
    assert [(r.partition, r.changelog) for r in out] == [(0, True)]
    # A restarted worker whose consumer resumes past offset 3 (committed too far).
    restarted = OffsetGuard(TableState(table))
    assert restarted.gaps(batch(6, 7)) == {("in", 0): (3, 6)}
    assert offsets(restarted.admit(batch(3, 4, 5, 6, 7))) == [3, 4, 5, 6, 7]


def test_a_commit_held_back_by_skipped_processed_offsets_is_let_through() -> None:
    from streams.runtime.checkpoint import commit_hole

    # Committed 687; acknowledged from 700 on; the agent processed up to 2599.
    assert commit_hole(687, 700, 2600) == (687, 699)
    # Nothing held back: acknowledged right after the commit, or nothing acknowledged.
    assert commit_hole(687, 688, 2600) is None
    assert commit_hole(687, None, 2600) is None
    assert commit_hole(None, 700, 2600) is None
    # The missing offsets are not processed yet: the guard's fill is what reads them.
    assert commit_hole(687, 700, 690) is None
    assert commit_hole(687, 700, 699) is None
