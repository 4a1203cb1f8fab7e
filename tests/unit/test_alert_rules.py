from __future__ import annotations

import pytest

from streams.alerts.rules import (
    Rule,
    RulesError,
    Step,
    alert_id,
    evaluate,
    load_rules,
    parse_rules,
)

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


A = "rules:\n  - name: a\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # What the safe loader refuses: the line of the problem, never a traceback.
        (
            "rules:\n  - !!python/object:os.system x\n",
            "rules.yaml line 2: refused by the safe YAML loader: could not determine a "
            "constructor for the tag 'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            A + "    metric: resumed\n    [x]: 1\n",
            "rules.yaml line 4: refused by the safe YAML loader: found unhashable key",
        ),
        (
            A + "    metric: resumed\n    below: 1\n  - name: b\n    metric: [\n",
            "rules.yaml line 7: not valid YAML",
        ),
        (
            "rules: []\nx: \x00\n",
            "rules.yaml line 2: not valid YAML: unacceptable character #x0000",
        ),
        ("rules: []\n---\nrules: []\n", "rules.yaml line 2: not valid YAML"),
        # Keys given twice: the YAML loader would keep the last one silently.
        (
            A + "    metric: resumed\n    below: 1\nrules:\n  - name: b\n",
            "rules.yaml line 5: key `rules` given twice",
        ),
        ("rules: []\nrules:\n", "rules.yaml line 2: key `rules` given twice"),
        (
            A + "    metric: resumed\n    below: 1\n    metric: resumption_rate\n",
            "rules.yaml line 5: rule a: field `metric` given twice",
        ),
        (
            A + "    metric: resumed\n    below: 1\n  - name: b\n    below: 1\n    below: 2\n",
            "rules.yaml line 7: rule b: field `below` given twice",
        ),
        ("rules: []\nrule:\n", "rules.yaml line 2: unknown key `rule` (only `rules` is allowed)"),
        ("defaults: {}\nrules: []\n", "rules.yaml line 1: unknown key `defaults`"),
        ("!!set {rules}\n", "rules.yaml line 1: the file must be a mapping"),
        ("rules: 3\n", "rules.yaml line 1: `rules:` must be a list of rules"),
        # Thresholds that can never mean what was meant.
        (
            A + "    metric: resumed\n    below: .nan\n",
            "rules.yaml line 4: rule a: below must be a finite",
        ),
        (
            A + "    metric: resumed\n    below: .inf\n",
            "rules.yaml line 4: rule a: below must be a finite",
        ),
        (
            A + "    metric: resumed\n    below: 1\n    clear: .inf\n",
            "rules.yaml line 5: rule a: clear must be a finite number, got inf",
        ),
        (
            A + "    metric: resumed\n    drop: -.inf\n",
            "rules.yaml line 4: rule a: drop must be a finite",
        ),
        (
            A + "    metric: resumed\n    below: 1" + "0" * 400 + "\n",
            "rules.yaml line 4: rule a: below must be a finite number, got 1000",
        ),
        (
            A + "    metric: resumption_rate\n    below: 90\n",
            "rules.yaml line 4: rule a: below must be between 0 and 1 for resumption_rate",
        ),
        (
            A + "    metric: report_compliance\n    below: 0.9\n    clear: 1.5\n",
            "rules.yaml line 5: rule a: clear must be between 0 and 1 for report_compliance",
        ),
        (
            A + "    metric: appeal_resolution_rate\n    below: -0.1\n",
            "rules.yaml line 4: rule a: below must be between 0 and 1 for appeal_resolution_rate",
        ),
        (
            A + "    metric: supplier_readiness\n    below: 100\n",
            "rules.yaml line 4: rule a: below must be between 0 and 1 for supplier_readiness",
        ),
        (
            A + "    metric: resumption_rate\n    drop: 5\n",
            "rules.yaml line 4: rule a: drop must be between 0 and 1 for resumption_rate",
        ),
        (
            A + "    metric: resumption_rate\n    drop: 0\n",
            "rules.yaml line 4: rule a: drop must be > 0",
        ),
        (
            A + "    metric: resumed\n    below: 1\n    above_scale_only: true\n",
            "rules.yaml line 5: rule a: above_scale_only must be 0 or 1, got True",
        ),
        (
            A + "    metric: resumed\n    below: 1\n    above_scale_only: 1.0\n",
            "rules.yaml line 5: rule a: above_scale_only must be 0 or 1, got 1.0",
        ),
        (
            A + "    metric: resumed\n    below: 1\n    above_scale_only: 2\n",
            "rules.yaml line 5: rule a: above_scale_only must be 0 or 1, got 2",
        ),
        (
            A + "    metric: resumed\n    below: 1\n    1: x\n    colour: red\n",
            "rules.yaml line 5: rule a: unknown field `1`",
        ),
    ],
)
def test_more_invalid_rules_name_the_line_and_reason(text: str, message: str) -> None:
    with pytest.raises(RulesError) as exc:
        parse_rules(text, "rules.yaml")
    assert str(exc.value).startswith(message), str(exc.value)


def test_shares_of_more_than_one_are_fine_where_they_can_happen() -> None:
    # More staff or output than normal is possible: no [0, 1] bound on these.
    workforce, capacity = parse_rules(
        "rules:\n"
        "  - {name: w, metric: workforce_rate, below: 1.2, clear: 1.5}\n"
        "  - {name: c, metric: capacity_attainment, below: 1.1, drop: null}\n"
    )
    assert (workforce.below, workforce.clear, capacity.below) == (1.2, 1.5, 1.1)
    edge = parse_rules("rules:\n  - {name: s, metric: supplier_readiness, below: 1, clear: 1}\n")
    assert edge[0].below == edge[0].clear == 1.0


def test_above_scale_only_one_is_accepted() -> None:
    (rule,) = parse_rules(A + "    metric: resumed\n    below: 1\n    above_scale_only: 1\n")
    assert rule.above_scale_only == 1


@pytest.mark.parametrize(
    "text", ["rules: []\n", "rules:\n", "# alerting is off\nrules: []\n", "", "# nothing\n", "{}"]
)
def test_a_file_without_rules_switches_alerting_off(text: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert parse_rules(text, "rules.yaml") == []
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    assert load_rules(path) == []


def test_load_rules_refuses_bytes_that_are_not_utf8(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"rules:\n  - name: a\n    sector: \xb8\xd6\xcc\xfa\n")  # GBK
    with pytest.raises(RulesError) as exc:
        load_rules(path)
    assert str(exc.value) == (f"{path} line 3: not UTF-8 text (byte 0xb8); save the file as UTF-8")


def test_load_rules_reads_utf8_and_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rules.yaml"
    path.write_text(
        "# 復工率\nrules:\n  - name: a\n    metric: resumed\n    sector: 鋼鐵\n    below: 1\n",
        encoding="utf-8",
    )
    assert load_rules(path)[0].sector == "鋼鐵"
    path.write_text("rules:\n  - name: a\n    metric: resumed\n    metric: resumed\n")
    with pytest.raises(RulesError, match=f"^{path} line 4: rule a: field `metric` given twice$"):
        load_rules(path)
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.yaml")


def test_anchors_and_merge_keys_still_work() -> None:
    text = (
        "rules:\n"
        "  - &base {name: a, metric: resumption_rate, level: city, below: 0.8}\n"
        "  - <<: *base\n"
        "    name: b\n"
        "    below: 0.7\n"
    )
    a, b = parse_rules(text)
    assert (b.name, b.level, b.below) == ("b", "city", 0.7)
    assert a.below == 0.8


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
