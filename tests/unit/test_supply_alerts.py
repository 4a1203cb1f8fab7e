"""Supplier readiness alerts, streamed in memory, against the reference's supply chain."""

from __future__ import annotations

import random
from datetime import date, timedelta

import orjson
import pytest

from resumewatch.settings import Settings
from streams.alerts.rules import alert_id, evaluate, parse_rules
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


def _ev(eid: str, etype: str, at: str, **kw: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"{eid}-{etype}-{at}",
            "type": etype,
            "enterprise_id": eid,
            "occurred_at": f"{at}T09:00:00+08:00",
            "source": "t",
            **kw,
        }
    )


def _registered(eid: str, suppliers: list[str]) -> bytes:
    return _ev(
        eid,
        "enterprise_registered",
        "2020-02-10",
        name=eid,
        province="P",
        city="C",
        district="D",
        sector="steel",
        above_scale=False,
        employees=1,
        normal_daily_output_value=1.0,
        suppliers=suppliers,
    )


def test_a_drop_alert_resolves_when_only_the_newest_day_moves_on() -> None:
    """A's suppliers collapse on the 12th; nothing about A changes after that, but the
    newest day moves on (another enterprise's event of the 14th): the drop alert resolves
    on the 13th, a day without a further drop."""
    raws = [
        _registered("S1", []),
        _registered("S2", []),
        _registered("A", ["S1", "S2"]),
        _ev("S1", "status_changed", "2020-02-10", status="resumed"),
        _ev("S2", "status_changed", "2020-02-10", status="resumed"),
        _ev("S1", "status_changed", "2020-02-12", status="suspended"),
    ]
    later = [_registered("Z", []), _ev("Z", "status_changed", "2020-02-14", status="filed")]
    h = Harness(settings=Settings(partitions=2), rules=RULES)
    h.feed([(orjson.loads(r)["enterprise_id"].encode(), r) for r in raws], batch=100)
    drops = [t for t in h.alerts if t["rule"] == "suppliers_collapse"]
    assert [(t["state"], t["day"]) for t in drops] == [("firing", "2020-02-12")]
    h.feed([(orjson.loads(r)["enterprise_id"].encode(), r) for r in later], batch=100)
    drops = [t for t in h.alerts if t["rule"] == "suppliers_collapse"]
    assert [(t["state"], t["day"]) for t in drops] == [
        ("firing", "2020-02-12"),
        ("resolved", "2020-02-13"),
    ]
    want = expected_final_states([*raws, *later])
    assert {a for a, s in want.items() if s == "firing"} == {
        t["alert_id"] for t in h.alerts if t["rule"] == "suppliers_not_ready"
    } - {t["alert_id"] for t in h.alerts if t["state"] == "resolved"}
