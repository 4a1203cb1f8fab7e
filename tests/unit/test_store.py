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
