"""Region alerts over a scope's day series: transitions, dedup, late re-evaluation."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson

from resumewatch.settings import Settings
from streams.alerts.handler import RegionAlerts
from streams.alerts.rules import parse_rules
from streams.core import WIDTH, region_key
from streams.runtime.state import TableState, Topics, Versions
from tests.unit.harness import FakeTable

RULES = parse_rules(
    """
rules:
  - name: low
    metric: resumption_rate
    level: district
    below: 0.5
    clear: 0.6
    min_enterprises: 2
"""
)
KEY = region_key("district", "Hubei", "Wuhan", "Hanyang")
D0 = date(2020, 2, 10).toordinal()


Row = tuple[int, tuple[int, ...] | None]


def row(day: int, enterprises: int, resumed: int, deleted: bool = False) -> Row:
    v = [0] * WIDTH
    v[0], v[3] = enterprises, resumed
    return D0 + day, None if deleted else tuple(v)


class Run:
    """A scope's rows as the region stage holds them; every feed evaluates the series."""

    def __init__(self) -> None:
        self.table = FakeTable("alerts-changelog")
        self.proc = RegionAlerts(Topics.of(Settings()), self.table, RULES)
        self.series: dict[int, tuple[int, ...]] = {}
        self.versions = Versions(TableState(FakeTable("versions")))

    def feed(self, *rows: Row) -> list[dict[str, Any]]:
        for day, v in rows:
            if v is None:
                self.series.pop(day, None)
            else:
                self.series[day] = v
        out: list[Any] = []
        series = sorted(self.series.items())
        transitions = self.proc.evaluate(0, KEY, "*\x1f0", series, self.versions, out)
        for r in out:
            if r.changelog:
                assert r.key is not None and r.value is not None
                self.table.data[r.key] = r.value
        kafka = [orjson.loads(r.value) for r in out if r.topic == "alerts" and r.value]
        assert kafka == transitions
        return transitions


def brief(ts: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(t["state"], t["day"], t["value"]) for t in ts]


def test_fires_once_resolves_once_with_exact_records() -> None:
    run = Run()
    got = run.feed(row(0, 10, 6), row(1, 10, 4))
    assert brief(got) == [("firing", "2020-02-11", 0.4)]
    t = got[0]
    assert {
        k: t[k]
        for k in (
            "rule",
            "level",
            "province",
            "city",
            "district",
            "sector",
            "above_scale_only",
            "enterprise_id",
            "metric",
            "threshold",
        )
    } == {
        "rule": "low",
        "level": "district",
        "province": "Hubei",
        "city": "Wuhan",
        "district": "Hanyang",
        "sector": "*",
        "above_scale_only": 0,
        "enterprise_id": "",
        "metric": "resumption_rate",
        "threshold": 0.5,
    }
    assert run.feed(row(1, 10, 4)) == []  # the same row again: no repeat
    assert run.feed(row(2, 10, 5)) == []  # 0.5 is not below 0.5, but not >= clear 0.6 either
    resolved = run.feed(row(3, 10, 7))
    assert brief(resolved) == [("resolved", "2020-02-13", 0.7)]
    assert resolved[0]["alert_id"] == t["alert_id"]


def test_small_scopes_are_not_evaluated() -> None:
    assert Run().feed(row(0, 1, 0)) == []


def test_a_late_correction_that_undoes_an_alert_resolves_it() -> None:
    run = Run()
    fired = run.feed(row(0, 10, 6), row(1, 10, 4), row(2, 10, 4))
    assert brief(fired) == [("firing", "2020-02-11", 0.4)]
    # Late data: day 1 and 2 were fine after all.
    undone = run.feed(row(1, 10, 9), row(2, 10, 9))
    assert brief(undone) == [("resolved", "2020-02-12", 0.9)]
    assert undone[0]["alert_id"] == fired[0]["alert_id"]


def test_late_data_that_moves_the_firing_day_gives_a_new_alert() -> None:
    run = Run()
    first = run.feed(row(0, 10, 6), row(1, 10, 6), row(2, 10, 4))
    assert brief(first) == [("firing", "2020-02-12", 0.4)]
    moved = run.feed(row(1, 10, 3))  # it already fired on day 1
    assert sorted(brief(moved)) == [("firing", "2020-02-11", 0.3), ("resolved", "2020-02-12", 0.4)]
    assert {t["alert_id"] for t in moved} == {first[0]["alert_id"], moved[0]["alert_id"]}


def test_state_survives_a_restart_from_the_changelog() -> None:
    run = Run()
    run.feed(row(0, 10, 4))
    restarted = RegionAlerts(Topics.of(Settings()), run.table, RULES)
    run.proc = restarted
    assert run.feed(row(0, 10, 4)) == []  # neither repeated ...
    assert brief(run.feed(row(1, 10, 8))) == [("resolved", "2020-02-11", 0.8)]  # ... nor forgotten
