"""Typed records of the internal edges: both sides import them from here.

The enterprise stage sends, per batch, the partial sums its source partition holds for every
(district, scope, day) cell the batch touched, as absolute values with a version (the offset
of the partition's last message in the batch). The region stage keeps the newest version of
each cell per source partition and adds the partitions up: a replayed batch sends the same
values with the same version again, so nothing is ever counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.core import WIDTH

# A cell's values, all integers (``streams.core``'s metric vector, then one more):
#   0..5   the carried values' changes on that day (a difference array over the days)
#   6..10  the reported values of that day
#   11     how many enterprise day segments start that day (a scope's rows start at its
#          first such day)
STARTS = WIDTH
CELL = WIDTH + 1


@dataclass(slots=True)
class PartialSums:
    """The partial sums of one source partition for one district, or (``district`` empty,
    no cells) only the partition's newest event day."""

    partition: int  # the source (input topic) partition the sums are of
    version: int  # offset of that partition's last message in the batch
    clock: int  # the partition's newest event day (an ordinal; 0: none yet)
    district: str = ""  # district key (``streams.core.region_key``)
    cells: list[tuple[str, int, list[int]]] = field(default_factory=list)  # scope, day, values

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def of(cls, value: Any) -> PartialSums:
        """From the decoded JSON object (``streams.runtime.state.unpack`` decodes it)."""
        return cls(
            value["partition"],
            value["version"],
            value["clock"],
            value["district"],
            value["cells"],
        )


# The enterprise stage's rows for the sink that come one per input event, sent per batch as
# columns (one JSON document for hundreds of rows, no per-row object on either side). Days
# are ordinals, times Unix seconds; the sink's tables have these columns (a unit test checks).
EVENT_COLUMNS = (
    "event_id",
    "type",
    "enterprise_id",
    "occurred_at",
    "first_day",
    "source",
    "schema_version",
    "raw",
    "received_at",
)
REPORT_COLUMNS = (
    "enterprise_id",
    "report_date",
    "event_id",
    "source",
    "occurred_at",
    "staff_on_duty",
    "output_value",
    "planned_output_value",
    "masks_in_stock",
    "zero_report",
    "version",
)
# Rows per block, and the text a block's rows may carry before the next one starts (raw
# events are up to a megabyte each): a packed message of blocks stays far below Kafka's
# 1 MB limit.
BLOCK_ROWS = 500
BLOCK_BYTES = 192 * 1024


@dataclass(slots=True)
class RowBlock:
    """Rows of one sink table (``events`` or ``enterprise_reports``) as columns."""

    table: str
    columns: dict[str, list[Any]]

    @classmethod
    def of_rows(
        cls,
        table: str,
        names: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        sizes: list[int] | None = None,
    ) -> list[RowBlock]:
        """``rows`` (tuples in the order of ``names``) in blocks of at most ``BLOCK_ROWS``
        rows and, by ``sizes`` (bytes per row), about ``BLOCK_BYTES``."""
        blocks = []
        start = 0
        while start < len(rows):
            end = min(start + BLOCK_ROWS, len(rows))
            if sizes is not None:
                total = 0
                for i in range(start, end):
                    total += sizes[i]
                    if total >= BLOCK_BYTES:
                        end = i + 1  # at least one row
                        break
            columns = zip(*rows[start:end], strict=True)  # rows -> columns
            blocks.append(cls(table, dict(zip(names, map(list, columns), strict=True))))
            start = end
        return blocks

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), ()))

    def rows(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        """The rows, as tuples in the order of ``names``."""
        return list(zip(*(self.columns[name] for name in names), strict=True))

    def to_json(self) -> bytes:
        return orjson.dumps({"t": "block", "table": self.table, "cols": self.columns})
