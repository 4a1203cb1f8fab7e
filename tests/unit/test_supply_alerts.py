"""Supplier readiness alerts, streamed in memory, against the reference's supply chain."""

from __future__ import annotations

import random
from datetime import date, timedelta

import orjson
import pytest

from resumewatch.settings import Settings
from streams.alerts import alert_id, evaluate, parse_rules
from tests.histories import random_history
from tests.reference import enterprise_days, expected_supply_chain
from tests.unit.harness import Harness

RULES = parse_rules(
    """
rules:
  - name: suppliers_not_ready
    metric: supplier_readiness
    below: 1.0
  - name: suppliers_collapse
    metric: supplier_readiness
    drop: 0.3
"""
)


def expected_final_states(raws: list[bytes]) -> dict[str, str]:
    chain = expected_supply_chain(raws)
    _, newest = enterprise_days(raws)
    assert newest is not None
    by_ent: dict[str, dict[date, tuple[int, int]]] = {}
    for (eid, day), v in chain.items():
        by_ent.setdefault(eid, {})[day] = v
    out: dict[str, str] = {}
    for eid, days in by_ent.items():
        day, series = min(days), []
        while day <= newest:
            n, resumed = days.get(day, (0, 0))
            series.append((day.toordinal(), resumed / n if n else None, n))
            day += timedelta(days=1)
        for rule in RULES:
            for step in evaluate(rule, series):
                out[alert_id(rule.name, ("enterprise", eid), step.fired_day)] = step.state
    return out


@pytest.mark.parametrize("seed", range(12))
def test_supplier_alerts_firing_now_equal_the_reference(seed: int) -> None:
    raws = random_history(seed, enterprises=30, days=8)
    keyed = [(orjson.loads(r)["enterprise_id"].encode(), r) for r in raws]
    h = Harness(settings=Settings(partitions=1 + seed % 3), rules=RULES)
    h.feed(keyed, batch=random.Random(seed).choice([1, 9, 50, 1000]))
    final: dict[str, str] = {}
    for t in h.alerts:
        # Each alert's transitions alternate, starting with firing: no repeats. (Late data may
        # re-open a resolved alert: that is a change of state, not a repeat.)
        expected = "resolved" if final.get(t["alert_id"]) == "firing" else "firing"
        assert t["state"] == expected, t
        final[t["alert_id"]] = t["state"]
        assert t["enterprise_id"] and t["metric"] == "supplier_readiness"
    want = expected_final_states(raws)
    assert {a for a, s in final.items() if s == "firing"} == {
        a for a, s in want.items() if s == "firing"
    }
    assert all(final.get(a) == s for a, s in want.items())
