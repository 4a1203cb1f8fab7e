"""The enterprise table: each enterprise's state in memory, only what changed on the
changelog.

In memory an enterprise's value is one bytes object (``Held``): a header (the changelog
partition, the newest accepted report day, two lengths), the core (profile rows, statuses,
appeals, change count) as JSON, and the held reports, the latest few as text and the others
compressed (``streams.enterprise.reports.Reports``). One object instead of a tuple of
four, and the partition inside it instead of in a dict beside the table: at 1 M
enterprises that is ~200 MB less. A daily report, by far the commonest event, neither
rewrites the core nor opens the compressed reports. The changelog holds one record per
part: the key ``enterprise_id`` holds the core, ``enterprise_id<KEY_SEP><day>`` the report
held for that day. On recovery the store folds the parts back into values; a record of the
whole state (as written before the parts were split) folds in as a core that carries its
reports.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, MutableMapping
from typing import Any

import orjson
from faust.stores import STORES

from streams.enterprise.reports import Reports
from streams.enterprise.state import new_state
from streams.runtime.state import KEY_SEP, META, Out, TableState
from streams.runtime.store import GroupedStore, group_of

SEP = KEY_SEP.encode()
CORE = ("prof", "st", "ap", "seq")
RAW_CORE = "core"  # the state's core as held (JSON bytes), until the core changes
# With a host: a table takes the app's store when its own URL is false, and an URL of a
# scheme alone is.
URL = "enterprises://table"

# Held: partition, newest report day, core length, hot length; then core JSON, hot text
# (UTF-8), cold reports
_HEADER = struct.Struct("<IIII")
Held = bytes


def state_of(held: Held) -> dict[str, Any]:
    """The handler's state (``streams.enterprise.state.new_state``) of a held value."""
    _p, nr, n_core, n_hot = _HEADER.unpack_from(held)
    at = _HEADER.size
    core = held[at : at + n_core]
    at += n_core
    st: dict[str, Any] = orjson.loads(core)
    st["nr"] = nr
    st["r"] = Reports(held[at : at + n_hot].decode(), held[at + n_hot :])
    st[RAW_CORE] = core
    return st


def partition_of(held: Held) -> int:
    """The changelog partition of a held value."""
    return int(_HEADER.unpack_from(held)[0])


def load(table: TableState, key: bytes) -> dict[str, Any] | None:
    held = table.table.data.get(key)
    return None if held is None else state_of(held)


def _held(state: dict[str, Any], core: bool, partition: int) -> Held:
    raw = state.get(RAW_CORE)
    if core or raw is None:
        raw = state[RAW_CORE] = orjson.dumps({k: state[k] for k in CORE})
    reports: Reports = state["r"]
    hot = reports.hot.encode()
    header = _HEADER.pack(partition, state["nr"], len(raw), len(hot))
    return b"".join((header, raw, hot, reports.cold))


def write(
    table: TableState,
    partition: int,
    eid: str,
    state: dict[str, Any],
    *,
    core: bool,
    days: Iterable[int],
    out: list[Out],
) -> None:
    """Keep ``state`` as the enterprise's value; send its core (if ``core`` changed) and
    its reports of ``days`` to the changelog."""
    key = eid.encode()
    store = table.table.data
    store[key] = _held(state, core, partition)
    store.place(key, partition)
    changelog = table.changelog
    if core:
        out.append(Out(changelog, key, state[RAW_CORE], partition, changelog=True))
    reports: Reports = state["r"]
    for day in days:
        text = reports.get(day)
        assert text is not None
        part = key + SEP + str(day).encode()
        out.append(Out(changelog, part, text.encode(), partition, changelog=True))


def apply(
    data: MutableMapping[bytes, Any], records: Iterable[tuple[bytes, bytes | None, int]]
) -> None:
    """Fold changelog records (key, value, partition) into ``data``, in their order."""
    parts: dict[bytes, tuple[list[Any], dict[int, str]]] = {}
    partitions: dict[bytes, int] = {}
    for key, value, partition in records:
        if key.startswith(META):  # the stage's bookkeeping: plain values
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            continue
        eid, sep, day = key.partition(SEP)
        if value is None:  # not written by the stage; an operator's tombstone
            data.pop(eid, None)
            parts.pop(eid, None)
            continue
        partitions[eid] = partition
        got = parts.get(eid)
        if got is None:
            got = parts[eid] = ([], {})
        if sep:
            got[1][int(day)] = value.decode()
        else:
            got[0].append(orjson.loads(value))
    for eid, (cores, reports) in parts.items():
        held = data.get(eid)
        st = state_of(held) if held is not None else new_state()
        for core in cores:
            whole = core.pop("r", None)  # a whole state, as written before the split
            core.pop("nr", None)
            st.update(core)
            if whole is not None:
                st["r"] = Reports()
                for d, text in whole.items():
                    st["r"].set(int(d), text)
        for d, text in reports.items():
            st["r"].set(d, text)
        st["nr"] = max(st["r"].days(), default=0)
        data[eid] = _held(st, core=bool(cores), partition=partitions[eid])


class EnterpriseStore(GroupedStore):
    """``grouped://`` whose changelog records are folded into enterprise values, which
    carry their own partition (only the bookkeeping keys are placed in ``groups``)."""

    def place(self, key: bytes, partition: int) -> None:
        if key.startswith(META):
            super().place(key, partition)

    def partition_of(self, key: bytes) -> int | None:
        if key.startswith(META):
            return super().partition_of(key)
        held = self.data.get(group_of(key))
        return None if held is None else partition_of(held)

    async def on_recovery_completed(self, active_tps: set[Any], standby_tps: set[Any]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)  # the bookkeeping keys
        partitions = {tp.partition for tp in active_tps}
        data = self.data
        gone = [
            k
            for k, held in data.items()
            if not k.startswith(META) and partition_of(held) not in partitions
        ]
        for key in gone:
            del data[key]

    def fold(self, records: list[tuple[bytes, Any, int]]) -> None:
        apply(self.data, records)


def register() -> None:
    """Let Faust build an EnterpriseStore for tables whose store is ``URL``."""
    STORES.aliases.setdefault(URL.split(":")[0], f"{__name__}:EnterpriseStore")
