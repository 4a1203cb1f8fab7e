from __future__ import annotations

from datetime import date, datetime

import orjson

from sinks.writer import (
    DEAD_LETTER_COLUMNS,
    REGION_COLUMNS,
    Batcher,
    MemorySink,
    dead_letter_row,
    region_row,
)


def test_batcher_writes_one_insert_per_table() -> None:
    sink = MemorySink()
    b = Batcher(sink)
    value = orjson.dumps(
        {
            "day": "2020-02-10",
            "level": "district",
            "province": "P",
            "city": "C",
            "district": "D",
            "sector": "*",
            "above_scale_only": 0,
            "enterprises": 4,
            "resumed": 1,
            "filed": 1,
            "suspended": 2,
            "resumption_rate": 0.25,
            "version": 1_581_292_800_000_000_000,
        }
    )
    for _ in range(3):
        b.add("region_metrics", REGION_COLUMNS, region_row(value))
    b.add(
        "dead_letters",
        DEAD_LETTER_COLUMNS,
        dead_letter_row(
            b"k",
            b"\xffraw",
            [
                ("reason", b"bad"),
                ("received_at", b"2020-02-10T00:00:00+00:00"),
                ("topic", b"t"),
                ("partition", b"2"),
                ("offset", b"7"),
            ],
        ),
    )
    assert len(b) == 4
    assert b.flush() == {"region_metrics": 3, "dead_letters": 1}
    assert sink.inserts == [3, 1]
    row = sink.tables["region_metrics"][0]
    assert row["day"] == date(2020, 2, 10) and row["resumption_rate"] == 0.25
    assert row["updated_at"] == datetime(2020, 2, 10, 0, 0)
    dl = sink.tables["dead_letters"][0]
    assert dl["raw"] == b"\xffraw" and dl["reason"] == "bad" and dl["offset"] == 7
    assert len(b) == 0
