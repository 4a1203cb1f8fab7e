"""The enterprise stage's partial sums in int64 day blocks, against plain per-cell lists."""

from __future__ import annotations

import random
from array import array
from typing import Any

import pytest

from streams.core import scopes
from streams.enterprise.partials import BLOCK, Partials
from streams.wire import CELL, STARTS


class Plain:
    """Every cell a list of Python integers: what the blocks must add up to."""

    def __init__(self) -> None:
        self.sums: dict[int, dict[tuple[str, str, int], list[int]]] = {}
        self.touched: dict[int, set[tuple[str, str, int]]] = {}

    def _cell(self, p: int, key: tuple[str, str, int]) -> list[int]:
        self.touched.setdefault(p, set()).add(key)
        return self.sums.setdefault(p, {}).setdefault(key, [0] * CELL)

    def segments(self, p: int, district: str, segs: list[list[Any]], sign: int) -> None:
        for a, b, sector, above, status, opened, resolved in segs:
            for scope in scopes(sector, above):
                v = self._cell(p, (district, scope, a))
                for i, d in ((0, 1), (1 + status, 1), (4, opened), (5, resolved), (STARTS, 1)):
                    v[i] += sign * d
                if b is not None:
                    w = self._cell(p, (district, scope, b))
                    for i, d in ((0, 1), (1 + status, 1), (4, opened), (5, resolved)):
                        w[i] -= sign * d

    def report(self, p: int, district: str, day: int, vec: list[Any], sign: int) -> None:
        sector, above, *values = vec
        for scope in scopes(sector, above):
            v = self._cell(p, (district, scope, day))
            for i, x in enumerate([1, *values]):
                v[6 + i] += sign * x

    def take(self) -> dict[int, dict[str, list[tuple[str, int, list[int]]]]]:
        out: dict[int, dict[str, list[tuple[str, int, list[int]]]]] = {}
        for p, touched in self.touched.items():
            if touched:
                by: dict[str, list[tuple[str, int, list[int]]]] = {}
                for district, scope, day in sorted(touched):
                    v = list(self.sums[p][(district, scope, day)])
                    by.setdefault(district, []).append((scope, day, v))
                out[p] = by
            touched.clear()
        return out


def _random_ops(rng: random.Random, n: int) -> list[tuple[Any, ...]]:
    """Contributions added and later taken out again, on days near and far apart."""
    ops: list[tuple[Any, ...]] = []
    for _ in range(n):
        p = rng.randrange(3)
        district = f"P\x1fC\x1fD{rng.randrange(4)}"
        day = rng.choice([719_163, 739_000 + rng.randrange(40), 739_500 + rng.randrange(3)])
        sector, above = rng.choice(["steel", "food"]), rng.randrange(2)
        if rng.random() < 0.5:
            end = rng.choice([None, day + rng.randrange(1, 20)])
            seg = [day, end, sector, above, rng.randrange(3), rng.randrange(3), rng.randrange(2)]
            ops.append(("segments", p, district, [seg]))
        else:
            vec = [sector, above, rng.randrange(100), rng.randrange(100), rng.randrange(10**9), 5]
            ops.append(("report", p, district, day, vec))
    return ops


@pytest.mark.parametrize("seed", range(10))
def test_blocks_add_up_like_plain_cells_and_empty_blocks_go(seed: int) -> None:
    rng = random.Random(seed)
    ops = _random_ops(rng, 300)
    blocks, plain = Partials(), Plain()
    for sign, batch in ((1, ops), (-1, rng.sample(ops, len(ops)))):
        for i in range(0, len(batch), 37):
            for name, *args in batch[i : i + 37]:
                getattr(blocks, name)(*args, sign)
                getattr(plain, name)(*args, sign)
            assert blocks.take() == plain.take()
    # Everything taken out again: every block went to zero and is gone.
    assert all(not sums for sums in blocks.sums.values())


def test_touch_all_sends_every_cell_that_holds_a_value() -> None:
    blocks, plain = Partials(), Plain()
    for name, *args in _random_ops(random.Random(7), 200):
        getattr(blocks, name)(*args, 1)
        getattr(plain, name)(*args, 1)
    blocks.take()
    for p in range(3):
        blocks.touch_all(p)
    sent = blocks.take()
    expected = {p: {k for k, v in sums.items() if any(v)} for p, sums in plain.sums.items()}
    got = {
        p: {(d, scope, day) for d, cells in by.items() for scope, day, _v in cells}
        for p, by in sent.items()
    }
    assert got == expected


def test_sums_beyond_int64_stay_exact() -> None:
    blocks = Partials()
    big = 2**62
    day = 739_001
    for _ in range(3):  # 3 × 2**62 is beyond int64
        blocks.report(0, "P\x1fC\x1fD", day, ["steel", 0, 1, 1, big, big], 1)
    blocks.segments(0, "P\x1fC\x1fD", [[day, None, "steel", 0, 2, 1, 0]], 1)
    cells = {(scope, d): v for scope, d, v in blocks.take()[0]["P\x1fC\x1fD"]}
    v = cells[(scopes("steel", 0)[0], day)]
    assert v[6:11] == [3, 3, 3, 3 * big, 3 * big]
    assert v[0] == 1 and v[3] == 1 and v[4] == 1 and v[STARTS] == 1
    # The other days of the widened block are untouched, and it still subtracts exactly.
    for _ in range(3):
        blocks.report(0, "P\x1fC\x1fD", day, ["steel", 0, 1, 1, big, big], -1)
    blocks.segments(0, "P\x1fC\x1fD", [[day, None, "steel", 0, 2, 1, 0]], -1)
    assert all(not any(v) for _scope, _d, v in blocks.take()[0]["P\x1fC\x1fD"])
    assert not blocks.sums[0]
    assert BLOCK & (BLOCK - 1) == 0  # days map to blocks by shifting


def test_blocks_start_as_int32_and_widen_one_step_at_a_time() -> None:
    blocks = Partials()
    day, district = 739_001, "P\x1fC\x1fD"
    blocks.report(0, district, day, ["steel", 0, 1, 1, 500, 500], 1)
    assert all(isinstance(v, array) and v.typecode == "i" for v in blocks.sums[0].values())
    blocks.report(0, district, day, ["steel", 0, 1, 1, 2**31, 0], 1)  # beyond int32
    assert all(isinstance(v, array) and v.typecode == "q" for v in blocks.sums[0].values())
    blocks.report(0, district, day, ["steel", 0, 1, 1, 2**63, 0], 1)  # beyond int64
    assert all(isinstance(v, list) for v in blocks.sums[0].values())
    cells = {(scope, d): v for scope, d, v in blocks.take()[0][district]}
    assert cells[(scopes("steel", 0)[0], day)][6:10] == [3, 3, 3, 500 + 2**31 + 2**63]
