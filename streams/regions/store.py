"""The region table: one changelog record per cell, one string per (district, source
partition, day) in memory.

A cell is a source partition's partial sums of one district, day and scope, and its key is
``district<KEY_SEP>partition<KEY_SEP>day<KEY_SEP>scope``. A large data set reaches millions
of cells, and as a key and a value of their own they took about 180 bytes each in memory.
The cells of a (district, partition, day) are therefore lines of one string, per scope a
line feed, the scope (escaped), "|" and the cell (about 80 bytes a cell); reading or
replacing one is a search in that string. The changelog keeps one record per cell, so a
changed cell still writes only itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from faust.stores import STORES

from streams.core import escape_line, unescape_line
from streams.runtime.state import KEY_SEP, META, Out, TableState
from streams.runtime.store import GroupedStore

SEP = KEY_SEP.encode()
URL = "regions://table"

# The scope's marker in a group's string, per scope (a handful of scopes, used per cell).
_MARKERS: dict[bytes, str] = {}


def _split(key: bytes) -> tuple[bytes, str]:
    """(group key, the scope's marker) of a cell key."""
    at = key.rfind(SEP)
    scope = key[at + 1 :]
    marker = _MARKERS.get(scope)
    if marker is None:
        marker = _MARKERS[scope] = "\n" + escape_line(scope.decode()) + "|"
    return key[:at], marker


def get_cell(data: MutableMapping[bytes, Any], key: bytes) -> bytes | None:
    """The cell's value (``version,values…``), or None."""
    group, marker = _split(key)
    text: str | None = data.get(group)
    if text is None:
        return None
    at = text.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    end = text.find("\n", start)
    return (text[start:] if end < 0 else text[start:end]).encode()


def put_cell(data: MutableMapping[bytes, Any], key: bytes, raw: bytes | None) -> None:
    """Set (``raw`` None: remove) a cell."""
    group, marker = _split(key)
    text = data.get(group, "")
    at = text.find(marker)
    if at >= 0:
        end = text.find("\n", at + len(marker))
        text = text[:at] + ("" if end < 0 else text[end:])
    if raw is not None:
        text += marker + raw.decode()
    if text:
        data[group] = text
    else:
        data.pop(group, None)


def cells(data: MutableMapping[bytes, Any]) -> Iterator[tuple[bytes, bytes]]:
    """Every cell (key, value) held in ``data``."""
    for group, text in list(data.items()):
        if group.startswith(META):
            continue
        for line in text.split("\n")[1:]:
            scope, _, raw = line.partition("|")
            yield group + SEP + unescape_line(scope).encode(), raw.encode()


def apply(data: MutableMapping[bytes, Any], records: Iterable[tuple[bytes, bytes | None]]) -> None:
    """Fold changelog records (key, value) into ``data``, in their order."""
    for key, value in records:
        if key.startswith(META):  # the stage's bookkeeping: plain values
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        else:
            put_cell(data, key, value)


class CellState(TableState):
    """``TableState`` of the region table: cells through ``get_cell``/``put_cell``, the
    bookkeeping keys as in every table."""

    def get_raw(self, key: bytes) -> bytes | None:
        if key.startswith(META):
            return super().get_raw(key)
        return get_cell(self.table.data, key)

    def put_raw(
        self, partition: int, key: bytes, raw: bytes, out: list[Out], early: bool = False
    ) -> None:
        if key.startswith(META):
            super().put_raw(partition, key, raw, out, early)
            return
        store = self.table.data
        put_cell(store, key, raw)
        store.place(key, partition)
        out.append(Out(self.changelog, key, raw, partition, changelog=True, early=early))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        data = self.table.data
        yield from cells(data)
        yield from [(k, v) for k, v in data.items() if k.startswith(META)]


class RegionStore(GroupedStore):
    """``grouped://`` whose cell records are folded into one string per group of cells."""

    def fold(self, records: list[tuple[bytes, Any, int]]) -> None:
        apply(self.data, ((key, value) for key, value, _partition in records))


def register() -> None:
    """Let Faust build a RegionStore for tables whose store is ``URL``."""
    STORES.aliases.setdefault(URL.split(":")[0], f"{__name__}:RegionStore")
