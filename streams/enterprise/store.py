"""The enterprise table: each enterprise's whole state in memory, only what changed on the
changelog.

The handler reads and writes an enterprise's state whole (one value per enterprise in
memory). Its changelog holds one record per part instead: the key ``enterprise_id`` holds
the core (profile rows, statuses, appeals, change count), ``enterprise_id<KEY_SEP><day>``
the report held for that day. A daily report, by far the commonest event, so writes one
small record rather than the whole state with every report of the grace. On recovery the
store folds the parts back into whole states; a record of the whole state (as written
before the parts were split) folds in as a core that carries its reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import orjson
from faust.stores import STORES

from streams.enterprise.state import new_state
from streams.runtime.state import KEY_SEP, META, Out, TableState
from streams.runtime.store import GroupedStore

SEP = KEY_SEP.encode()
CORE = ("prof", "st", "ap", "seq")
# With a host: a table takes the app's store when its own URL is false, and an URL of a
# scheme alone is.
URL = "enterprises://table"


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
    # orjson's result keeps the capacity of its output buffer: keep a copy (TableState.put).
    store[key] = memoryview(orjson.dumps(state)).tobytes()
    store.place(key, partition)
    changelog = table.changelog
    if core:
        value = orjson.dumps({k: state[k] for k in CORE})
        out.append(Out(changelog, key, value, partition, changelog=True))
    reports = state["r"]
    for day in days:
        part = key + SEP + str(day).encode()
        out.append(Out(changelog, part, reports[str(day)].encode(), partition, changelog=True))


def apply(
    data: MutableMapping[bytes, bytes], records: Iterable[tuple[bytes, bytes | None]]
) -> None:
    """Fold changelog records (key, value) into ``data``, in their order."""
    parts: dict[bytes, tuple[list[Any], dict[str, str]]] = {}
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
        held = parts.get(eid)
        if held is None:
            held = parts[eid] = ([], {})
        if sep:
            held[1][day.decode()] = value.decode()
        else:
            held[0].append(orjson.loads(value))
    for eid, (cores, reports) in parts.items():
        raw = data.get(eid)
        st = orjson.loads(raw) if raw is not None else new_state()
        for core in cores:
            st.update(core)
        held_reports = st.setdefault("r", {})
        held_reports.update(reports)
        st["nr"] = max(map(int, held_reports), default=0)
        data[eid] = memoryview(orjson.dumps(st)).tobytes()


class EnterpriseStore(GroupedStore):
    """``grouped://`` whose changelog records are folded into whole enterprise states."""

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
