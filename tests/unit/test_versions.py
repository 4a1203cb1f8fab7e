"""Row versions: above every earlier one of the partition, whatever the host's clock says."""

from __future__ import annotations

from unittest import mock

import orjson

from streams.runtime.state import TableState, Versions
from tests.unit.harness import FakeTable


def test_versions_grow_even_when_the_clock_goes_back() -> None:
    state = TableState(FakeTable("t-changelog"))
    out: list = []
    with mock.patch("streams.runtime.state.time.time_ns", return_value=5_000):
        first = Versions(state)
        a, b = first.take(1), first.take(1)
        assert (a, b) == (5_000, 5_001) and first.of(2) == 5_000
        first.save(out)
    # The partition moved to a host whose clock is far behind.
    with mock.patch("streams.runtime.state.time.time_ns", return_value=100):
        later = Versions(state)
        assert later.of(1) > b and later.of(2) > 5_000 and later.of(3) == 100
    # Saved as changelog records sent ahead of the batch's derived records.
    assert all(r.changelog and r.early for r in out)
    assert sorted(orjson.loads(r.value) for r in out) == [5_000, 5_002]
