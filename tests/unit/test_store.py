"""The tables' store keeps one partition per key group and drops moved partitions' keys."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.runtime.store import URL, GroupedStore, group_of, register


def _store(tmp_path) -> GroupedStore:  # type: ignore[no-untyped-def]
    register()
    app = faust.App("store-test", store=URL, datadir=str(tmp_path))
    table = app.Table("t", partitions=4, key_type=bytes, value_type=bytes)
    store = table.data
    assert isinstance(store, GroupedStore)
    return store


def _changelog(partition: int, key: bytes, value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(
        key=key, value=value, message=SimpleNamespace(partition=partition, value=value)
    )


def test_group_is_the_key_up_to_the_first_separator() -> None:
    assert group_of(b"E1") == b"E1"
    assert group_of(b"E1\x1e739949") == b"E1"
    assert group_of(b"district\x1fP\x1fC\x1fD\x1eE1\x1e739949") == b"district\x1fP\x1fC\x1fD"


def test_recovery_applies_writes_and_deletes_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = _store(tmp_path)
    batch = [
        _changelog(0, b"E1", b"a"),
        _changelog(0, b"E1\x1e5", b"r"),
        _changelog(0, b"E1\x1e5", None),
        _changelog(1, b"E2", b"b"),
        _changelog(1, b"E2", b"c"),
    ]
    store.apply_changelog_batch(batch, lambda k: k, lambda v: v)
    assert dict(store.data) == {b"E1": b"a", b"E2": b"c"}
    assert store.groups == {b"E1": 0, b"E2": 1}


def test_keys_of_partitions_no_longer_assigned_are_dropped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = _store(tmp_path)
    for key, partition in [
        (b"E1", 0),
        (b"E1\x1e5", 0),
        (b"E2", 1),
        (b"E2\x1e5", 1),
        (b"E3\x1e7", 2),
    ]:
        store.data[key] = b"x"
        store.place(key, partition)
    tp = TP("t-changelog", 1)
    asyncio.run(store.on_recovery_completed({tp}, set()))
    assert set(store.data) == {b"E2", b"E2\x1e5"}
    assert store.groups == {b"E2": 1}


def test_enterprise_changelog_parts_fold_into_whole_states(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import orjson

    from streams.enterprise import store as enterprise_store
    from streams.enterprise.store import EnterpriseStore

    enterprise_store.register()
    app = faust.App("ent-store-test", datadir=str(tmp_path))
    table = app.Table(
        "e", partitions=4, key_type=bytes, value_type=bytes, store=enterprise_store.URL
    )
    store = table.data
    assert isinstance(store, EnterpriseStore)
    old_whole = {"prof": [], "st": [], "ap": {}, "seq": 1, "r": {"739949": "old"}, "nr": 739949}
    core = {"prof": [["p"]], "st": [["s"]], "ap": {}, "seq": 2}
    store.apply_changelog_batch(
        [
            _changelog(1, b"E1", orjson.dumps(old_whole)),  # as written before the split
            _changelog(1, b"E1\x1e739950", b"new"),
            _changelog(1, b"E1", orjson.dumps(core)),
            _changelog(1, b"E1\x1e739949", b"fixed"),
            _changelog(2, b"E2\x1e739940", b"only a report"),
            _changelog(1, b"\x00clock1", b"739950"),
        ],
        to_key=lambda k: k,
        to_value=lambda v: v,
    )

    def state(key: bytes) -> dict[str, object]:
        st = enterprise_store.state_of(store.data[key])
        return {**{k: st[k] for k in (*enterprise_store.CORE, "nr")}, "r": dict(st["r"].items())}

    assert state(b"E1") == {**core, "r": {739949: "fixed", 739950: "new"}, "nr": 739950}
    e2 = state(b"E2")
    assert e2["r"] == {739940: "only a report"} and e2["nr"] == 739940 and e2["prof"] == []
    assert store.data[b"\x00clock1"] == b"739950"
    assert store.partition_of(b"E1") == 1 and store.partition_of(b"E2\x1e739940") == 2
    # A later batch folds into what is held.
    store.apply_changelog_batch(
        [_changelog(1, b"E1\x1e739951", b"next")], to_key=lambda k: k, to_value=lambda v: v
    )
    assert state(b"E1")["nr"] == 739951
    assert state(b"E1")["prof"] == [["p"]]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(719_163, 999_999), st.text(max_size=12), max_size=12))
def test_held_reports_keep_any_text_per_day(reports: dict[int, str]) -> None:
    from streams.enterprise.reports import Reports

    held = Reports()
    for day, text in reports.items():
        held.set(day, "x")  # then replaced
        held.set(day, text)
    assert dict(held.items()) == reports
    assert sorted(held.days()) == sorted(reports) and len(held) == len(reports)
    for day, text in reports.items():
        assert held.get(day) == text
    assert held.get(719_162) is None


def test_held_reports_escape_line_feeds_and_backslashes() -> None:
    from streams.enterprise.reports import Reports

    texts = ["a\\2b", "a\\1\n", "\\", "\n", "\\\\n\n2|", "|\n737001|x", ""]
    held = Reports()
    for i, text in enumerate(texts):
        held.set(737_000 + i, text)
    assert [held.get(737_000 + i) for i in range(len(texts))] == texts
    assert held.days() == [737_000 + i for i in range(len(texts))]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 40), st.text(max_size=6)),
        max_size=60,
    ),
    st.sampled_from([1, 30, 40_000]),
)
def test_held_reports_behave_as_a_dict_through_folds(
    ops: list[tuple[int, int, str]], spread: int
) -> None:
    """Reports folded into the compressed part (a bitmap or a list of days indexes it) read
    back as a plain dict of day -> text would, before and after their hot lines shadow them."""
    from streams.enterprise.reports import Reports

    held, model = Reports(), {}
    for op, n, text in ops:
        day = 730_000 + n * spread
        if op == 3:
            held.fold()
            assert held.hot == ""
        else:
            held.set(day, text)
            model[day] = text
        again = Reports(held.hot, held.cold)  # as the store keeps it, opened anew
        for reports in (held, again):
            assert dict(reports.items()) == model
            assert reports.days() == sorted(model) and len(reports) == len(model)
            assert reports.get(day) == model.get(day)
            assert reports.get(729_999) is None and reports.get(day + 1) == model.get(day + 1)


def test_enterprises_of_partitions_no_longer_assigned_are_dropped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An enterprise's value carries its partition; the bookkeeping keys are placed as in
    every grouped store."""
    import orjson

    from streams.enterprise import store as enterprise_store

    enterprise_store.register()
    app = faust.App("ent-store-moved", datadir=str(tmp_path))
    table = app.Table(
        "e", partitions=4, key_type=bytes, value_type=bytes, store=enterprise_store.URL
    )
    store = table.data
    core = orjson.dumps({"prof": [], "st": [], "ap": {}, "seq": 1})
    store.apply_changelog_batch(
        [
            _changelog(1, b"E1", core),
            _changelog(2, b"E2", core),
            _changelog(2, b"E2\x1e739940", b"r"),
            _changelog(1, b"\x00clock1", b"739950"),
            _changelog(2, b"\x00clock2", b"739950"),
        ],
        to_key=lambda k: k,
        to_value=lambda v: v,
    )
    assert [store.partition_of(k) for k in (b"E1", b"E2", b"E2\x1e739940")] == [1, 2, 2]
    assert store.groups == {b"\x00clock1": 1, b"\x00clock2": 2}
    asyncio.run(store.on_recovery_completed({TP("e-changelog", 1)}, set()))
    assert set(store.data) == {b"E1", b"\x00clock1"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"district\x1fP\x1fC\x1fD", b"district\x1fP\x1fC\x1fE"]),
            st.integers(0, 3),
            st.integers(739_000, 739_003),
            st.sampled_from(["*\x1f0", "steel\x1f1", "a|b\x1f0", "b\x1f0", "x\\2\n\x1f1"]),
            st.none() | st.binary(min_size=1, max_size=8).map(lambda b: b.hex().encode()),
        ),
        max_size=60,
    )
)
def test_region_cells_behave_as_a_dict(
    ops: list[tuple[bytes, int, int, str, bytes | None]],
) -> None:
    """Cells held as lines of one string per (district, partition, day) read back as
    separate keys would, whatever their scope's text."""
    from streams.regions.store import apply, cells, get_cell, put_cell

    data: dict[bytes, object] = {b"\x00clock1": b"739001"}
    model: dict[bytes, bytes] = {}
    for district, partition, day, scope, raw in ops:
        key = b"\x1e".join((district, str(partition).encode(), str(day).encode(), scope.encode()))
        put_cell(data, key, raw)
        if raw is None:
            model.pop(key, None)
        else:
            model[key] = raw
        assert get_cell(data, key) == raw
    assert dict(cells(data)) == model
    assert all(get_cell(data, k) == v for k, v in model.items())
    again: dict[bytes, object] = {}
    apply(again, [(b"\x00clock1", b"739001"), *model.items()])
    assert dict(cells(again)) == model and again[b"\x00clock1"] == b"739001"


def test_region_store_folds_cells_and_drops_moved_partitions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streams.regions import store as region_store
    from streams.regions.store import RegionStore, get_cell

    region_store.register()
    app = faust.App("region-store-test", datadir=str(tmp_path))
    table = app.Table("r", partitions=4, key_type=bytes, value_type=bytes, store=region_store.URL)
    store = table.data
    assert isinstance(store, RegionStore)
    a, b = b"district\x1fP\x1fC\x1fA", b"district\x1fQ\x1fC\x1fB"
    store.apply_changelog_batch(
        [
            _changelog(1, a + b"\x1e0\x1e739000\x1e*\x1f0", b"5,1,2"),
            _changelog(1, a + b"\x1e0\x1e739000\x1esteel\x1f1", b"5,3,4"),
            _changelog(1, a + b"\x1e0\x1e739000\x1e*\x1f0", b"6,1,3"),
            _changelog(2, b + b"\x1e3\x1e739000\x1e*\x1f0", b"9,9,9"),
            _changelog(2, b + b"\x1e3\x1e739000\x1e*\x1f0", None),
            _changelog(2, b + b"\x1e3\x1e739001\x1e*\x1f0", b"9,9,8"),
            _changelog(1, b"\x00clock1", b"739000"),
        ],
        to_key=lambda k: k,
        to_value=lambda v: v,
    )
    assert get_cell(store.data, a + b"\x1e0\x1e739000\x1e*\x1f0") == b"6,1,3"
    assert get_cell(store.data, a + b"\x1e0\x1e739000\x1esteel\x1f1") == b"5,3,4"
    assert get_cell(store.data, b + b"\x1e3\x1e739000\x1e*\x1f0") is None
    assert len(store.data) == 3  # A's cells of the day, B's of the next day, the clock
    assert store.partition_of(b + b"\x1e3\x1e739001\x1e*\x1f0") == 2
    asyncio.run(store.on_recovery_completed({TP("r-changelog", 1)}, set()))
    assert set(store.data) == {a + b"\x1e0\x1e739000", b"\x00clock1"}
