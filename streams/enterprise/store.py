"""The enterprise table: each enterprise's state in memory, only what changed on the
changelog.

In memory an enterprise's value is ``(core, nr, reports)``: the core (profile rows,
statuses, appeals, change count) as JSON bytes, the newest accepted report day, and the
held reports as one string (``streams.enterprise.reports.Reports``). A daily report, by far
the commonest event, so neither parses nor rewrites the core or the other reports. The
changelog holds one record per part: the key ``enterprise_id`` holds the core,
``enterprise_id<KEY_SEP><day>`` the report held for that day. On recovery the store folds
the parts back into values; a record of the whole state (as written before the parts were
split) folds in as a core that carries its reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import orjson
from faust.stores import STORES

from streams.enterprise.reports import Reports
from streams.enterprise.state import new_state
from streams.runtime.state import KEY_SEP, META, Out, TableState
from streams.runtime.store import GroupedStore

SEP = KEY_SEP.encode()
CORE = ("prof", "st", "ap", "seq")
RAW_CORE = "core"  # the state's core as held (JSON bytes), until the core changes
# With a host: a table takes the app's store when its own URL is false, and an URL of a
# scheme alone is.
URL = "enterprises://table"

Held = tuple[bytes, int, str]  # core JSON, newest report day, Reports.text


def state_of(held: Held) -> dict[str, Any]:
    """The handler's state (``streams.enterprise.state.new_state``) of a held value."""
    core, nr, reports = held
    st: dict[str, Any] = orjson.loads(core)
    st["nr"] = nr
    st["r"] = Reports(reports)
    st[RAW_CORE] = core
    return st


def load(table: TableState, key: bytes) -> dict[str, Any] | None:
    held = table.table.data.get(key)
    return None if held is None else state_of(held)


def _held(state: dict[str, Any], core: bool) -> Held:
    raw = state.get(RAW_CORE)
    if core or raw is None:
        # orjson's result keeps the capacity of its output buffer: keep a copy.
        raw = state[RAW_CORE] = memoryview(orjson.dumps({k: state[k] for k in CORE})).tobytes()
    return raw, state["nr"], state["r"].text


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
    held = store[key] = _held(state, core)
    store.place(key, partition)
    changelog = table.changelog
    if core:
        out.append(Out(changelog, key, held[0], partition, changelog=True))
    reports: Reports = state["r"]
    for day in days:
        text = reports.get(day)
        assert text is not None
        part = key + SEP + str(day).encode()
        out.append(Out(changelog, part, text.encode(), partition, changelog=True))


def apply(data: MutableMapping[bytes, Any], records: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Fold changelog records (key, value) into ``data``, in their order."""
    parts: dict[bytes, tuple[list[Any], dict[int, str]]] = {}
    for key, value in records:
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
        data[eid] = _held(st, core=bool(cores))


class EnterpriseStore(GroupedStore):
    """``grouped://`` whose changelog records are folded into enterprise values."""

    def apply_changelog_batch(
        self,
        batch: Iterable[Any],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        records = []
        for event in batch:
            key = to_key(event.key)
            self.place(key, event.message.partition)
            value = None if event.message.value is None else to_value(event.value)
            records.append((key, value))
        apply(self.data, records)


def register() -> None:
    """Let Faust build an EnterpriseStore for tables whose store is ``URL``."""
    STORES.aliases.setdefault(URL.split(":")[0], f"{__name__}:EnterpriseStore")
