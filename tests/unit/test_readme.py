"""The README's examples are real: every example event passes validation."""

from __future__ import annotations

import json
import pathlib
from datetime import UTC, datetime

from producers.events import from_dict

README = (pathlib.Path(__file__).parents[2] / "README.md").read_text()


def test_one_valid_example_per_event_type() -> None:
    block = README.split("One example per\ntype:\n\n```json\n", 1)[1].split("```", 1)[0]
    decoder = json.JSONDecoder()
    events, pos = [], 0
    while pos < len(block.strip()):
        while block[pos].isspace():
            pos += 1
        obj, pos = decoder.raw_decode(block, pos)
        events.append(from_dict(obj, datetime(2020, 3, 1, tzinfo=UTC)))
    assert sorted(e.type for e in events) == sorted(
        [
            "enterprise_registered",
            "status_changed",
            "daily_report",
            "appeal_opened",
            "appeal_resolved",
        ]
    )
