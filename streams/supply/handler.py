"""The supply stage's batch handler: enterprises' status and supplier timelines (key
enterprise) -> supplier readiness per enterprise (``streams.supply.readiness``) -> supplier
alerts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.alerts.handler import alert_record
from streams.alerts.rules import Rule, new_transitions
from streams.runtime.state import (
    META,
    Clocks,
    Out,
    Result,
    TableState,
    Topics,
    Versions,
    pack,
    unpack,
)
from streams.supply.readiness import readiness_series

WATCHED = META + b"watched"  # + partition: enterprises whose drop alert fires


class SupplyProcessor:
    """supply (key enterprise) -> supplier readiness per enterprise -> supplier alerts.

    Each enterprise's partition holds its status timeline and the enterprises that depend on
    it; a change of status is forwarded to the dependents' partitions, which evaluate the
    supplier_readiness rules over their suppliers' statuses.
    """

    def __init__(
        self, topics: Topics, table: Any, rules: Sequence[Rule], *, partitions: int
    ) -> None:
        self.topics = topics
        self.partitions = partitions
        self.state = TableState(table)
        self.rules = [r for r in rules if r.metric == "supplier_readiness"]
        self.drop_rules = {r.name for r in self.rules if r.drop is not None}

    def _send(self, out: list[Out], to: str, body: dict[str, Any]) -> None:
        # ``pack`` routes it to the partition of ``to``.
        out.append(Out(self.topics.supply, to.encode(), orjson.dumps(body)))

    def process(self, events: Sequence[Any]) -> Result:
        out: list[Out] = []
        loaded: dict[str, tuple[int, dict[str, Any]]] = {}
        evaluate_for: set[str] = set()

        def load(x: str, p: int) -> dict[str, Any]:
            if x not in loaded:
                st = self.state.get(x.encode()) or {
                    "st": [-1, []],
                    "sl": [],
                    "deps": [],
                    "subs": [],
                    "sups": {},
                    "al": {},
                }
                loaded[x] = (p, st)
            return loaded[x][1]

        clocks = Clocks(self.state)
        for p, _key, body in unpack(events):
            if "tick" in body:
                clocks.advance(p, body["tick"])
                continue
            kind = body["k"]
            if kind == "ent":
                x = body["e"]
                st = load(x, p)
                if body["q"] < st["st"][0]:
                    continue  # a stale copy
                if st["st"][1] != body["st"]:
                    for dep in st["deps"]:
                        self._send(
                            out,
                            dep,
                            {"k": "sup", "s": x, "e": dep, "q": body["q"], "st": body["st"]},
                        )
                st["st"] = [body["q"], body["st"]]
                st["sl"] = body["sl"]
                wanted = sorted({s for row in body["sl"] for s in row[1]})
                for s in set(wanted) - set(st["subs"]):
                    self._send(out, s, {"k": "sub", "e": x, "s": s, "on": 1})
                for s in set(st["subs"]) - set(wanted):
                    self._send(out, s, {"k": "sub", "e": x, "s": s, "on": 0})
                    st["sups"].pop(s, None)
                st["subs"] = wanted
                evaluate_for.add(x)
            elif kind == "sub":
                st = load(body["s"], p)
                deps = set(st["deps"])
                if body["on"]:
                    deps.add(body["e"])
                    self._send(
                        out,
                        body["e"],
                        {
                            "k": "sup",
                            "s": body["s"],
                            "e": body["e"],
                            "q": st["st"][0],
                            "st": st["st"][1],
                        },
                    )
                else:
                    deps.discard(body["e"])
                st["deps"] = sorted(deps)
            elif kind == "sup":
                st = load(body["e"], p)
                if body["s"] not in st["subs"]:
                    continue  # no longer a supplier
                held = st["sups"].get(body["s"])
                if held is None or body["q"] >= held[0]:
                    st["sups"][body["s"]] = [body["q"], body["st"]]
                    evaluate_for.add(body["e"])
        # A new newest day moves every series on by days that repeat the last one: that
        # changes an evaluation only where a drop alert fires (it resolves on the first day
        # without a drop). Those enterprises are listed per partition; no other is read.
        watched = _Watched(self.state)
        for p in clocks.advanced:
            for x in watched.of(p):
                load(x, p)
                evaluate_for.add(x)
        clocks.save(out)
        transitions: list[dict[str, Any]] = []
        at = datetime.now(UTC).replace(microsecond=0).isoformat()
        versions = Versions(self.state)
        for x in sorted(evaluate_for):
            p, st = loaded[x]
            for record in self._evaluate(x, st, clocks.get(p), at):
                record["version"] = versions.take(p)
                transitions.append(record)
                out.append(
                    Out(self.topics.alerts, record["alert_id"].encode(), orjson.dumps(record))
                )
        for x in evaluate_for:
            p, st = loaded[x]
            watched.set(p, x, self._drop_firing(st))
        watched.save(out)
        for x, (p, st) in loaded.items():
            self.state.put(p, x.encode(), st, out)
        versions.save(out)
        return Result(pack(out, self.topics.packed, self.partitions), transitions)

    def _drop_firing(self, st: dict[str, Any]) -> bool:
        """Whether an alert of a ``drop`` rule fires for the enterprise."""
        return any(
            state == "firing" and name in self.drop_rules for name, state in st["al"].values()
        )

    def _evaluate(
        self, x: str, st: dict[str, Any], newest: int, at: str
    ) -> Iterator[dict[str, Any]]:
        if any(s not in st["sups"] for s in st["subs"]):
            return  # a supplier has not answered its subscription yet: its status is unknown
        statuses = {s: v[1] for s, v in st["sups"].items()}
        full = readiness_series(st["sl"], statuses, newest)
        if not full:
            if not any(state == "firing" for _rule, state in st["al"].values()):
                return
            # It lists no suppliers any more: what fired is resolved on the newest day.
            last: list[Any] = st["sl"][-1] if st["sl"] else [newest, [], "", 0, "", "", ""]
            full = [(max(newest, int(last[0])), 0, 0, last)]
        profile = full[-1][3]
        for rule in self.rules:
            if rule.sector != "*" and rule.sector != profile[2]:
                continue
            if rule.above_scale_only and not profile[3]:
                continue
            series = [(d, r / n if n else None, n) for d, n, r, _ in full]
            for aid, step in new_transitions(rule, series, ("enterprise", x), st["al"]):
                row = next(r[3] for r in full if r[0] == step.day)
                scope = {
                    "level": "",
                    "province": row[4],
                    "city": row[5],
                    "district": row[6],
                    "sector": row[2],
                    "above_scale_only": 0,
                    "enterprise_id": x,
                }
                yield alert_record(rule, aid, step, scope, at)


class _Watched:
    """The enterprises of each partition whose drop alert fires, in one bookkeeping key per
    partition of the supply table."""

    def __init__(self, state: TableState) -> None:
        self.state = state
        self.sets: dict[int, set[str]] = {}
        self.changed: set[int] = set()

    def of(self, p: int) -> set[str]:
        got = self.sets.get(p)
        if got is None:
            got = self.sets[p] = set(self.state.get(WATCHED + str(p).encode()) or ())
        return got

    def set(self, p: int, x: str, on: bool) -> None:
        members = self.of(p)
        if on and x not in members:
            members.add(x)
            self.changed.add(p)
        elif not on and x in members:
            members.discard(x)
            self.changed.add(p)

    def save(self, out: list[Out]) -> None:
        for p in self.changed:
            self.state.put(p, WATCHED + str(p).encode(), sorted(self.sets[p]), out)
