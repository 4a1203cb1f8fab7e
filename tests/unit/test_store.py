"""The tables' store keeps one partition per key group and drops moved partitions' keys."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
from faust.types import TP

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
    assert orjson.loads(store.data[b"E1"]) == {
        **core,
        "r": {"739949": "fixed", "739950": "new"},
        "nr": 739950,
    }
    e2 = orjson.loads(store.data[b"E2"])
    assert e2["r"] == {"739940": "only a report"} and e2["nr"] == 739940 and e2["prof"] == []
    assert store.data[b"\x00clock1"] == b"739950"
    assert store.partition_of(b"E1") == 1 and store.partition_of(b"E2\x1e739940") == 2
    # A later batch folds into what is held.
    store.apply_changelog_batch(
        [_changelog(1, b"E1\x1e739951", b"next")], to_key=lambda k: k, to_value=lambda v: v
    )
    assert orjson.loads(store.data[b"E1"])["nr"] == 739951
    assert orjson.loads(store.data[b"E1"])["prof"] == [["p"]]
