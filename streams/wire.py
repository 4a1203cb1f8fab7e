"""Typed records of the internal edge between the stages: both sides import them from here.

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
