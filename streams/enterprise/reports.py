"""An enterprise's held reports: one per report day, the one that counts for that day (the
latest occurred_at wins), kept while a correction may still come (the grace) and settled after.
"""

from __future__ import annotations

from typing import Any

from producers.events import DailyReport
from streams.core import fen, identity, ts_us


class Reports:
    """An enterprise's held reports, one per day, as ``pack_report`` texts in one string:
    per day a line feed, the day, "|" and the text (a line feed or backslash in it escaped).
    Finding, replacing or adding one day's report is a search in the string, not a parse of
    every report the enterprise holds, and the string is one object in memory."""

    __slots__ = ("text",)

    def __init__(self, text: str = "") -> None:
        self.text = text

    def get(self, day: int) -> str | None:
        text = self.text
        marker = f"\n{day}|"
        at = text.find(marker)
        if at < 0:
            return None
        start = at + len(marker)
        end = text.find("\n", start)
        return _unescape(text[start:] if end < 0 else text[start:end])

    def set(self, day: int, held: str) -> None:
        text = self.text
        marker = f"\n{day}|"
        line = marker + _escape(held)
        at = text.find(marker)
        if at < 0:
            self.text = text + line
            return
        end = text.find("\n", at + len(marker))
        self.text = text[:at] + line + ("" if end < 0 else text[end:])

    def items(self) -> list[tuple[int, str]]:
        out = []
        for line in self.text.split("\n")[1:]:
            day, _, held = line.partition("|")
            out.append((int(day), _unescape(held)))
        return out

    def days(self) -> list[int]:
        return [int(line.partition("|")[0]) for line in self.text.split("\n")[1:]]

    def __len__(self) -> int:
        return self.text.count("\n")


def _escape(held: str) -> str:
    # Only an identity can hold either character (an event_id may be any text).
    if "\\" in held or "\n" in held:
        return held.replace("\\", "\\1").replace("\n", "\\2")
    return held


def _unescape(held: str) -> str:
    if "\\" in held:  # every backslash starts an escape: \2 is a line feed, \1 itself
        return held.replace("\\2", "\n").replace("\\1", "\\")
    return held


def keep_reports(
    reports: Reports, changed: dict[int, list[Any]], newest: int, grace: int, before: int
) -> None:
    """Store the ``changed`` report rows in ``reports``. ``newest`` is the newest accepted
    report day, counting them; it was ``before`` until they came. Reports of days more than
    ``grace`` behind the newest are settled: no report can correct them any more, so their
    identity is dropped, but their figures stay, because a late registration may still move
    them to another district or sector."""
    for day, rep in changed.items():
        reports.set(day, pack_report(rep))
    if newest == before:
        return  # no day left the grace (an accepted report is never older than it)
    # Days before ``before - grace`` were settled when ``before`` came, and a report of this
    # batch is never older than that: only the days since can be left to settle.
    cut = newest - grace
    low = before - grace if before else min(changed)
    if cut - low > len(reports):  # a long jump: fewer held days than days in between
        days = [day for day in reports.days() if low <= day < cut]
    else:
        days = list(range(low, cut))
    for day in days:
        held = reports.get(day)
        if held is not None and not held.endswith(","):
            reports.set(day, _settle(held))


def _settle(held: str) -> str:
    """A packed report without its identity (the text after the sixth comma)."""
    return ",".join(held.split(",", 6)[:6]) + ","


def pack_report(rep: list[Any]) -> str:
    """A report row as one string, the identity last: the enterprise's value is read and
    written whole on every change, and a string is one object to parse instead of eight."""
    ts, ident, staff, output, planned, masks, zero = rep
    return (
        f"{ts},{staff},{output},{'' if planned is None else planned},"
        f"{'' if masks is None else masks},{zero},{ident}"
    )


def unpack_report(held: str | list[Any]) -> list[Any]:
    """The report row of ``pack_report``'s string (or a row stored as a list)."""
    if not isinstance(held, str):
        return held
    ts, staff, output, planned, masks, zero, ident = held.split(",", 6)
    return [
        int(ts),
        ident,
        int(staff),
        int(output),
        int(planned) if planned else None,
        int(masks) if masks else None,
        int(zero),
    ]


def apply_report(held: list[Any] | None, ev: DailyReport) -> list[Any] | None:
    """The report row [ts_us, ident, staff, output_fen, planned_fen, masks, zero] that
    replaces ``held`` for the report's day, or None when ``held`` stays (a later report for
    the same day is a correction: the latest occurred_at wins; at the same instant, the
    greater (source, event_id))."""
    ts = ts_us(ev)
    ident = identity(ev)
    if held is not None and (ts, ident) <= (held[0], held[1]):
        return None
    return [
        ts,
        ident,
        ev.staff_on_duty,
        fen(ev.output_value),
        None if ev.planned_output_value is None else fen(ev.planned_output_value),
        ev.masks_in_stock,
        int(ev.zero_report),
    ]
