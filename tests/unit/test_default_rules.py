"""The rules that ship: the README promises them, and the worker runs them by default."""

from __future__ import annotations

from pathlib import Path

import resumewatch
from resumewatch.settings import Settings
from streams.alerts.rules import Rule, load_rules

DEFAULT = Path(resumewatch.__file__).with_name("default_rules.yaml")


def test_the_worker_uses_the_shipped_file_by_default() -> None:
    assert Settings(alert_rules_file=None).rules_path == DEFAULT


def test_the_shipped_rules() -> None:
    rules = {r.name: r for r in load_rules(DEFAULT)}
    assert rules == {
        # District resumption under 90 %, resolving at 92 %, for districts of 10 or more.
        "district_resumption_low": Rule(
            "district_resumption_low",
            "resumption_rate",
            level="district",
            below=0.9,
            clear=0.92,
            min_enterprises=10,
        ),
        # A drop of 5 points in a day.
        "district_resumption_drop": Rule(
            "district_resumption_drop",
            "resumption_rate",
            level="district",
            drop=0.05,
            min_enterprises=10,
        ),
        "district_report_compliance_low": Rule(
            "district_report_compliance_low",
            "report_compliance",
            level="district",
            below=0.95,
            min_enterprises=10,
        ),
        "city_appeal_resolution_low": Rule(
            "city_appeal_resolution_low", "appeal_resolution_rate", level="city", below=0.9
        ),
        # Any supplier not resumed yet.
        "supplier_readiness_low": Rule("supplier_readiness_low", "supplier_readiness", below=1.0),
    }
    for rule in rules.values():
        assert rule.sector == "*" and rule.above_scale_only == 0
    assert rules["district_resumption_low"].clear_at == 0.92
    assert rules["supplier_readiness_low"].clear_at == 1.0
