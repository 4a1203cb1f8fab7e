from __future__ import annotations

import pytest

from streams.alerts import Rule, RulesError, Step, alert_id, evaluate, parse_rules

GOOD = """
rules:
  - name: district_resumption_low
    metric: resumption_rate
    level: district
    below: 0.9
    clear: 0.92
    min_enterprises: 10
  - name: district_resumption_drop
    metric: resumption_rate
    level: district
    drop: 0.05
"""


def test_parse_good_rules_with_defaults() -> None:
    low, drop = parse_rules(GOOD)
    assert low == Rule(
        "district_resumption_low", "resumption_rate", "district", "*", 0, 0.9, 0.92, None, 10
    )
    assert drop.drop == 0.05 and drop.sector == "*" and drop.min_enterprises == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: [", "rules.yaml line 1: not valid YAML"),
        ("- a\n- b\n", "rules.yaml line 1: the file must be a mapping"),
        (
            "rules:\n  - name: Bad-Name\n    metric: resumed\n    below: 1\n",
            "rules.yaml line 2: rule Bad-Name: name must match [a-z0-9_]+",
        ),
        (
            "rules:\n  - name: a\n    metric: happiness\n    below: 1\n",
            "rules.yaml line 3: rule a: metric must be one of",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    level: street\n    below: 1\n",
            "rules.yaml line 4: rule a: level must be province, city or district",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n",
            "rules.yaml line 2: rule a: give exactly one",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    below: 1\n    drop: 2\n",
            "rules.yaml line 2: rule a: give exactly one",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    below: 0.9\n    clear: 0.8\n",
            "rules.yaml line 5: rule a: clear (0.8) must be >= below (0.9)",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    below: x\n",
            "rules.yaml line 4: rule a: below must be a number, got 'x'",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    drop: -1\n",
            "rules.yaml line 4: rule a: drop must be > 0",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    below: 1\n    min_enterprises: -2\n",
            "rules.yaml line 5: rule a: min_enterprises must be an integer >= 0",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    below: 1\n    colour: red\n",
            "rules.yaml line 5: rule a: unknown field `colour`",
        ),
        (
            "rules:\n  - name: a\n    metric: resumed\n    below: 1\n"
            "  - name: a\n    metric: resumed\n    below: 1\n",
            "rules.yaml line 5: rule a: name 'a' is used twice",
        ),
    ],
)
def test_invalid_rules_name_the_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "rules.yaml")
    assert str(exc.value).startswith(message), str(exc.value)


def low(min_enterprises: int = 0) -> Rule:
    return Rule("low", "resumption_rate", below=0.9, clear=0.92, min_enterprises=min_enterprises)


def test_below_fires_once_and_resolves_with_hysteresis() -> None:
    series = [(1, 0.95, 20), (2, 0.85, 20), (3, 0.8, 20), (4, 0.91, 20), (5, 0.93, 20)]
    assert evaluate(low(), series) == [
        Step("firing", 2, 2, 0.85),
        Step("resolved", 2, 5, 0.93),  # 0.91 is above `below` but under `clear`: still firing
    ]


def test_null_and_small_scopes_leave_the_state_as_it_was() -> None:
    series = [(1, 0.5, 20), (2, None, 0), (3, 0.95, 5), (4, 0.95, 20)]
    assert evaluate(low(min_enterprises=10), series) == [
        Step("firing", 1, 1, 0.5),
        Step("resolved", 1, 4, 0.95),
    ]
    assert evaluate(low(), [(1, None, 0), (2, None, 0)]) == []


def test_drop_compares_with_the_previous_day() -> None:
    rule = Rule("drop", "resumption_rate", drop=0.05)
    series = [(1, 0.9, 9), (2, 0.84, 9), (3, 0.80, 9), (4, 0.79, 9), (5, 0.70, 9)]
    assert evaluate(rule, series) == [
        Step("firing", 2, 2, 0.84),
        Step("resolved", 2, 3, 0.80),  # day 3 fell only 0.04
        Step("firing", 5, 5, 0.70),
    ]


def test_late_data_re_evaluation_is_a_function_of_the_series() -> None:
    before = [(1, 0.95, 20), (2, 0.85, 20), (3, 0.95, 20)]
    after = [(1, 0.95, 20), (2, 0.91, 20), (3, 0.95, 20)]  # day 2 corrected upwards
    assert evaluate(low(), before) == [Step("firing", 2, 2, 0.85), Step("resolved", 2, 3, 0.95)]
    assert evaluate(low(), after) == []


def test_alert_ids_are_deterministic() -> None:
    scope = ("district", "Hubei", "Wuhan", "Hanyang", "*", "0", "")
    assert alert_id("low", scope, 737000) == alert_id("low", scope, 737000)
    assert alert_id("low", scope, 737000) != alert_id("low", scope, 737001)
    assert len(alert_id("low", scope, 737000)) == 20


def test_drop_of_exactly_the_threshold_fires_despite_binary_fractions() -> None:
    rule = Rule("drop", "resumption_rate", drop=0.05)
    assert evaluate(rule, [(1, 0.85, 9), (2, 0.80, 9)]) == [Step("firing", 2, 2, 0.80)]
