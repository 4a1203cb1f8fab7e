"""The alert stage's batch handler: region rows (key region) -> per (region, scope) day
series -> alert transitions (rules and their state machine: ``streams.alerts.rules``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson

from streams.alerts.rules import REGION_METRICS, Rule, Step, new_transitions
from streams.runtime.state import KEY_SEP, Out, Result, TableState, Topics, Versions, unpack

ALERT_SCOPE = ("level", "province", "city", "district", "sector", "above_scale_only")


class AlertProcessor:
    """region rows (key region) -> per (region, scope) day series -> alert transitions.

    After every change the rules are evaluated over the whole series again, and the
    transitions not emitted yet are emitted: the alerts firing now always equal the
    evaluation of the current data. An alert that a correction undoes (it would never have
    fired) is resolved.
    """

    def __init__(self, topics: Topics, table: Any, rules: Sequence[Rule]) -> None:
        self.topics = topics
        self.state = TableState(table)
        self.by_scope: dict[tuple[str, str, int], list[Rule]] = {}
        for rule in rules:
            if rule.metric in REGION_METRICS:
                key = (rule.level, rule.sector, rule.above_scale_only)
                self.by_scope.setdefault(key, []).append(rule)

    def process(self, events: Sequence[Any]) -> Result:
        out: list[Out] = []
        changed: dict[bytes, tuple[int, dict[str, Any], list[Rule], dict[str, Any]]] = {}
        for p, region, d in unpack(events):
            rules = self.by_scope.get((d["level"], d["sector"], d["above_scale_only"]))
            if not rules:
                continue
            key = f"{region}{KEY_SEP}{d['sector']}{KEY_SEP}{d['above_scale_only']}"
            skey = key.encode()
            entry = changed.get(skey)
            if entry is None:
                st = self.state.get(skey) or {"d": {}, "e": {}}
                scope = {k: d[k] for k in ALERT_SCOPE}
                entry = changed[skey] = (p, st, rules, scope)
            series = entry[1]["d"]
            if d.get("deleted"):
                series.pop(d["day"], None)
            else:
                series[d["day"]] = [d["enterprises"], {r.metric: d[r.metric] for r in rules}]
        transitions: list[dict[str, Any]] = []
        at = datetime.now(UTC).replace(microsecond=0).isoformat()
        versions = Versions(self.state)  # also orders the transitions within the batch
        for skey, (p, st, rules, scope) in changed.items():
            for rule in rules:
                for record in self._evaluate(rule, st, scope, at):
                    record["version"] = versions.take(p)
                    transitions.append(record)
                    out.append(
                        Out(self.topics.alerts, record["alert_id"].encode(), orjson.dumps(record))
                    )
            self.state.put(p, skey, st, out)
        versions.save(out)
        return Result(out, transitions)

    def _evaluate(
        self, rule: Rule, st: dict[str, Any], scope: dict[str, Any], at: str
    ) -> Iterator[dict[str, Any]]:
        days = sorted(st["d"])
        series = [
            (date.fromisoformat(day).toordinal(), st["d"][day][1].get(rule.metric), st["d"][day][0])
            for day in days
        ]
        scope_key = tuple(str(scope[k]) for k in ALERT_SCOPE) + ("",)
        for aid, step in new_transitions(rule, series, scope_key, st["e"]):
            yield alert_record(rule, aid, step, {**scope, "enterprise_id": ""}, at)


def alert_record(
    rule: Rule, aid: str, step: Step, scope: dict[str, Any], at: str
) -> dict[str, Any]:
    return {
        "alert_id": aid,
        "rule": rule.name,
        "state": step.state,
        **scope,
        "day": date.fromordinal(step.day).isoformat(),
        "metric": rule.metric,
        "value": step.value,
        "threshold": rule.threshold,
        "at": at,
    }
