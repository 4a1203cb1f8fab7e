"""Region alert rules over the region stage's day series -> alert transitions (rules and
their state machine: ``streams.alerts.rules``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson

from streams.alerts.rules import REGION_METRICS, Point, Rule, Step, new_transitions
from streams.core import METRICS, SEP, scope_columns
from streams.runtime.state import KEY_SEP, Out, TableState, Topics, Versions

ALERT_SCOPE = ("level", "province", "city", "district", "sector", "above_scale_only")
Series = list[tuple[int, tuple[int, ...]]]  # (day, metric vector), in day order


class RegionAlerts:
    """Per (region, sector, above-size) scope with rules: after any change of its rows the
    rules are evaluated over the scope's whole day series again, and the transitions not
    emitted yet are emitted, so the alerts firing now always equal the evaluation of the
    current data. An alert that a correction undoes (it would never have fired) is resolved.
    The table keeps, per scope, the transitions emitted so far."""

    def __init__(self, topics: Topics, table: Any, rules: Sequence[Rule]) -> None:
        self.topics = topics
        self.state = TableState(table)
        self.by_scope: dict[tuple[str, str, int], list[Rule]] = {}
        for rule in rules:
            if rule.metric in REGION_METRICS:
                key = (rule.level, rule.sector, rule.above_scale_only)
                self.by_scope.setdefault(key, []).append(rule)

    def rules(self, region: str, scope: str) -> list[Rule]:
        """The rules of a region key's scope ("sector<SEP>above")."""
        sector, above = scope.split(SEP)
        return self.by_scope.get((region.split(SEP, 1)[0], sector, int(above)), [])

    def evaluate(
        self,
        partition: int,
        region: str,
        scope: str,
        series: Series,
        versions: Versions,
        out: list[Out],
    ) -> list[dict[str, Any]]:
        """The new transitions of a scope's rules over its ``series`` (records in ``out``,
        with versions from ``versions``), its state saved to ``partition``."""
        rules = self.rules(region, scope)
        if not rules:
            return []
        key = f"{region}{KEY_SEP}{scope.replace(SEP, KEY_SEP)}".encode()
        st = self.state.get(key) or {"e": {}}
        emitted = st["e"]
        where = scope_columns(region, scope)
        at = datetime.now(UTC).replace(microsecond=0).isoformat()
        scope_key = tuple(str(where[k]) for k in ALERT_SCOPE) + ("",)
        transitions = []
        for rule in rules:
            metric = METRICS[rule.metric]
            points: list[Point] = [(day, metric(v), v[0]) for day, v in series]
            for aid, step in new_transitions(rule, points, scope_key, emitted):
                record = alert_record(rule, aid, step, {**where, "enterprise_id": ""}, at)
                record["version"] = versions.take(partition)
                transitions.append(record)
                out.append(Out(self.topics.alerts, aid.encode(), orjson.dumps(record)))
        if transitions:  # ``emitted`` changes only with them
            self.state.put(partition, key, {"e": emitted}, out)
        return transitions


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
