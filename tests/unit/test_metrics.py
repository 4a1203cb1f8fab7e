"""The streaming code, run in memory, against the brute-force reference."""

from __future__ import annotations

import random
from datetime import date

import orjson
import pytest

from producers.events import encode
from producers.simulator import simulate
from resumewatch.settings import Settings
from streams.enterprise import store as enterprise_store
from tests.reference import expected_rows
from tests.unit.harness import Harness


def _event(**kw: object) -> bytes:
    base = {"source": "test", "occurred_at": "2020-02-10T09:00:00+08:00"}
    base.update(kw)
    return orjson.dumps(base)


def _reg(
    eid: str,
    at: str,
    district: str = "D1",
    above: bool = False,
    sector: str = "steel",
    event_id: str | None = None,
) -> bytes:
    return _event(
        event_id=event_id or f"{eid}-reg-{at}",
        type="enterprise_registered",
        enterprise_id=eid,
        occurred_at=at,
        name=eid,
        province="P",
        city="C",
        district=district,
        sector=sector,
        above_scale=above,
        employees=10,
        normal_daily_output_value=100.0,
    )


def _status(eid: str, at: str, status: str, event_id: str | None = None) -> bytes:
    return _event(
        event_id=event_id or f"{eid}-{status}-{at}",
        type="status_changed",
        enterprise_id=eid,
        occurred_at=at,
        status=status,
    )


def _keyed(raws: list[bytes]) -> list[tuple[bytes | None, bytes]]:
    out = []
    for raw in raws:
        try:
            key = orjson.loads(raw)["enterprise_id"].encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = b"garbage"
        out.append((key, raw))
    return out


def test_small_history_exact_rows() -> None:
    raws = [
        _reg("A", "2020-02-10T09:00:00+08:00", above=True),
        _reg("B", "2020-02-10T10:00:00+08:00", district="D2"),
        _status("A", "2020-02-11T09:00:00+08:00", "filed"),
        _status("A", "2020-02-12T09:00:00+08:00", "resumed"),
        # Before B's registration: counts from the day B is registered.
        _status("B", "2020-02-09T09:00:00+08:00", "resumed"),
        # 23:30 UTC on the 11th is the 12th in Shanghai.
        _status("B", "2020-02-11T23:30:00+00:00", "filed"),
    ]
    h = Harness()
    h.feed(_keyed(raws))
    got = h.table()
    assert got == expected_rows(raws)

    d1 = ("district", "P", "C", "D1", "*", 0)
    d2 = ("district", "P", "C", "D2", "*", 0)
    assert got[(date(2020, 2, 10), *d1)][:4] == (1, 0, 0, 1)
    assert got[(date(2020, 2, 11), *d1)][:4] == (1, 0, 1, 0)
    assert got[(date(2020, 2, 12), *d1)][:4] == (1, 1, 0, 0)
    assert got[(date(2020, 2, 10), *d2)][:4] == (1, 1, 0, 0)
    assert got[(date(2020, 2, 12), *d2)][:4] == (1, 0, 1, 0)
    assert got[(date(2020, 2, 12), "province", "P", "", "", "*", 0)][:4] == (2, 1, 1, 0)
    assert got[(date(2020, 2, 12), "province", "P", "", "", "*", 1)][:4] == (1, 1, 0, 0)


def test_duplicates_and_replays_change_nothing() -> None:
    sim = simulate(enterprises=60, days=4, seed=3)
    raws = [encode(e) for e in sim.events]
    h = Harness()
    h.feed(_keyed(raws))
    once = h.table()
    h.feed(_keyed(raws[:40]))  # a replay of already-processed messages
    assert h.table() == once == expected_rows(raws)


def test_restart_from_changelog_then_replay_is_exact() -> None:
    sim = simulate(enterprises=80, days=5, seed=11)
    raws = [encode(e) for e in sim.events]
    h = Harness()
    half = len(raws) // 2
    h.feed(_keyed(raws[:half]))
    h.restore_from_changelog()
    # The crash lost the offsets of the last 30 processed messages: they come again.
    h.feed(_keyed(raws[half - 30 :]))
    assert h.table() == expected_rows(raws)


def test_profile_move_between_districts() -> None:
    raws = [
        _reg("A", "2020-02-10T09:00:00+08:00", district="D1"),
        _status("A", "2020-02-10T10:00:00+08:00", "resumed"),
        _reg("A", "2020-02-12T09:00:00+08:00", district="D2", event_id="A-move"),
        _status("X", "2020-02-13T09:00:00+08:00", "filed"),  # moves the newest day on
    ]
    h = Harness()
    h.feed(_keyed(raws))
    assert h.table() == expected_rows(raws)
    # Now deliver the move late and out of order: the result is the same.
    h2 = Harness()
    h2.feed(_keyed([raws[0], raws[3], raws[1], raws[2]]), batch=1)
    assert h2.table() == expected_rows(raws)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_random_shuffles_and_batches_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    sim = simulate(enterprises=40, days=6, seed=seed)
    raws = [encode(e) for e in sim.events]
    raws += rng.sample(raws, 15)  # duplicates
    raws.append(b"{not json")
    rng.shuffle(raws)
    h = Harness()
    h.feed(_keyed(raws), batch=rng.choice([1, 7, 64, 500]))
    assert h.table() == expected_rows(raws)
    assert len(h.dead) == 1


def test_invalid_and_too_late_go_to_dead_letters() -> None:
    raws = [
        _reg("A", "2020-03-20T09:00:00+08:00"),
        _report("A", "2020-03-20T20:00:00+08:00", "2020-03-20", 5, 50.0),
        b"\xff\xfe not json",
        # Older than A's newest report by more than the grace: too late.
        _report("A", "2020-03-21T09:00:00+08:00", "2020-02-10", 5, 50.0),
        _event(event_id="x", type="status_changed", enterprise_id="A", status="open"),
    ]
    h = Harness(settings=__import__("resumewatch.settings").settings.Settings(partitions=1))
    h.feed([(b"A", r) for r in raws], batch=1)
    reasons = [dict(r.headers or [])["reason"].decode() for r in h.dead]
    assert reasons[0].startswith("message is not valid UTF-8 JSON")
    assert reasons[1] == (
        "too late: daily_report.report_date 2020-02-10 is more than 31 days before A's "
        "newest accepted report_date 2020-03-20"
    )
    assert reasons[2] == (
        'status_changed.status must be one of suspended, filed, resumed, got "open"'
    )
    assert [r.value for r in h.dead] == raws[2:]
    assert h.counts == {
        "events": 5,
        "dead_letter:invalid": 2,
        "dead_letter:too_late": 1,
    }


def test_only_a_report_behind_its_own_enterprise_is_too_late() -> None:
    """CONTRACT v2 §3: statuses, registrations and appeals are never too late, and one
    enterprise's reports never make another's too late."""
    raws = [
        _reg("A", "2020-03-20T09:00:00+08:00"),
        _report("A", "2020-03-20T20:00:00+08:00", "2020-03-20", 5, 50.0),
        # Weeks older than anything seen: a backfill of B, and an old status of A.
        _reg("B", "2020-01-02T09:00:00+08:00", district="D2"),
        _report("B", "2020-01-02T20:00:00+08:00", "2020-01-02", 7, 70.0),
        _status("B", "2020-01-03T09:00:00+08:00", "resumed"),
        _status("A", "2020-01-05T09:00:00+08:00", "filed"),
        _event(
            event_id="ap-1",
            type="appeal_opened",
            enterprise_id="B",
            occurred_at="2020-01-04T09:00:00+08:00",
            appeal_id="AP1",
            category="funding",
            summary="",
        ),
    ]
    h = Harness(settings=Settings(partitions=2))
    h.feed(_keyed(raws), batch=2)
    assert h.dead == []
    assert h.table() == expected_rows(raws)


def test_the_same_event_id_from_two_sources_is_two_events() -> None:
    """CONTRACT v2 §1: identity is (source, event_id)."""
    a = _reg("A", "2020-02-10T09:00:00+08:00", event_id="1")
    b = orjson.loads(_reg("A", "2020-02-12T09:00:00+08:00", district="D2", event_id="1"))
    b["source"] = "other"
    s1 = _status("A", "2020-02-11T09:00:00+08:00", "resumed", event_id="7")
    s2 = orjson.loads(_status("A", "2020-02-13T09:00:00+08:00", "filed", event_id="7"))
    s2["source"] = "other"
    raws = [a, orjson.dumps(b), s1, orjson.dumps(s2), a, s1]  # the last two re-sent
    h = Harness(settings=Settings(partitions=1))
    h.feed(_keyed(raws), batch=1)
    got = h.table()
    assert got == expected_rows(raws)
    district = ("district", "P", "C")
    assert got[(date(2020, 2, 12), *district, "D2", "*", 0)][:3] == (1, 1, 0)  # moved, resumed
    assert got[(date(2020, 2, 13), *district, "D2", "*", 0)][:3] == (1, 0, 1)  # then filed
    assert h.counts["duplicates"] == 2


def test_the_worker_counts_events_duplicates_and_dead_letters() -> None:
    from prometheus_client import generate_latest

    from streams.metrics import WorkerMetrics

    sim = simulate(enterprises=30, days=3, seed=5)
    raws = [encode(e) for e in sim.events]
    h = Harness()
    h.feed(_keyed(raws))
    h.feed(_keyed(raws[:25]))  # re-sent: valid, and they change nothing
    h.feed([(b"Z", b"{}")])
    assert h.counts["events"] == len(raws) + 26
    assert h.counts["duplicates"] == 25
    assert h.counts["dead_letter:invalid"] == 1
    m = WorkerMetrics()
    m.counted(h.counts)
    assert not h.counts  # carried over and cleared
    m.transitions(["firing", "firing", "resolved"])
    m.lag.set({("in", 0): 5, ("in", 1): 0})
    m.lag.set({("in", 1): 2})  # partition 0 moved to another worker
    text = generate_latest(m.registry).decode()
    assert f"resumewatch_worker_events_total {float(len(raws) + 26)}" in text
    assert "resumewatch_worker_duplicates_total 25.0" in text
    assert 'resumewatch_worker_dead_letters_total{kind="invalid"} 1.0' in text
    assert 'resumewatch_worker_alerts_total{state="firing"} 2.0' in text
    assert 'resumewatch_worker_consumer_lag{partition="1",topic="in"} 2.0' in text
    assert 'partition="0"' not in text


def _report(
    eid: str,
    at: str,
    day: str,
    staff: int,
    output: float,
    event_id: str | None = None,
    zero: bool = False,
) -> bytes:
    return _event(
        event_id=event_id or f"{eid}-rep-{day}-{at}",
        type="daily_report",
        enterprise_id=eid,
        occurred_at=at,
        report_date=day,
        staff_on_duty=staff,
        output_value=output,
        zero_report=zero,
    )


def _appeal(eid: str, at: str, appeal_id: str, resolved: bool = False) -> bytes:
    if resolved:
        return _event(
            event_id=f"{appeal_id}-done",
            type="appeal_resolved",
            enterprise_id=eid,
            occurred_at=at,
            appeal_id=appeal_id,
        )
    return _event(
        event_id=f"{appeal_id}-open",
        type="appeal_opened",
        enterprise_id=eid,
        occurred_at=at,
        appeal_id=appeal_id,
        category="funding",
        summary="help",
    )


def test_reports_corrections_and_appeals() -> None:

    raws = [
        _reg("A", "2020-02-10T09:00:00+08:00"),  # employees 10, capacity 100.00
        # The correction (later occurred_at) arrives first; the original must not win.
        _report("A", "2020-02-11T08:00:00+08:00", "2020-02-10", 7, 55.55, event_id="fix"),
        _report("A", "2020-02-10T20:00:00+08:00", "2020-02-10", 3, 20.0, event_id="orig"),
        # A report for a day before registration counts nowhere.
        _report("A", "2020-02-10T09:30:00+08:00", "2020-02-09", 9, 9.0),
        # Resolved before it was opened: counts once both are there (the 12th).
        _appeal("A", "2020-02-11T10:00:00+08:00", "ap1", resolved=True),
        _appeal("A", "2020-02-12T10:00:00+08:00", "ap1"),
        _appeal("A", "2020-02-12T11:00:00+08:00", "ap2"),
        _report("A", "2020-02-13T21:00:00+08:00", "2020-02-13", 0, 0, zero=True),
    ]
    h = Harness()
    h.feed(_keyed(raws), batch=2)
    got = h.table()
    assert got == expected_rows(raws)
    d1 = ("district", "P", "C", "D1", "*", 0)
    # enterprises, resumed, filed, suspended, reports, staff, staff_normal, output, capacity,
    # appeals opened, appeals resolved
    assert got[(date(2020, 2, 10), *d1)] == (1, 0, 0, 1, 1, 7, 10, 5555, 10000, 0, 0)
    assert got[(date(2020, 2, 11), *d1)] == (1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0)
    assert got[(date(2020, 2, 12), *d1)] == (1, 0, 0, 1, 0, 0, 0, 0, 0, 2, 1)
    assert got[(date(2020, 2, 13), *d1)] == (1, 0, 0, 1, 1, 0, 10, 0, 10000, 2, 1)
    row = h.rows[("2020-02-10", *d1)]
    assert row["report_compliance"] == 1.0 and row["workforce_rate"] == 0.7
    assert row["capacity_attainment"] == 0.5555 and row["appeal_resolution_rate"] is None
    assert h.rows[("2020-02-12", *d1)]["appeal_resolution_rate"] == 0.5


def test_reports_beyond_the_grace_are_settled_and_still_move_with_a_registration() -> None:
    from datetime import timedelta

    grace = 3
    first = date(2020, 2, 10)
    raws = [_reg("A", "2020-02-10T09:00:00+08:00"), _reg("B", "2020-02-10T09:00:00+08:00")]
    for i in range(8):
        day = (first + timedelta(days=i)).isoformat()
        raws += [_report(e, f"{day}T20:00:00+08:00", day, 5, 50.0) for e in ("A", "B")]
    h = Harness(settings=Settings(partitions=3, grace_days=grace))
    h.feed(_keyed(raws), batch=3)
    assert h.table() == expected_rows(raws, grace=grace)
    keys = sorted(k for k in h.ent_table.data if not k.startswith(b"\x00"))
    assert keys == [b"A", b"B"]  # report days live in the enterprise's own key
    newest = (first + timedelta(days=7)).toordinal()
    for key in keys:
        state = enterprise_store.state_of(h.ent_table.data[key])
        assert state["nr"] == newest
        held = dict(state["r"].items())
        assert sorted(held) == list(range(first.toordinal(), newest + 1))
        # Settled days keep their figures, not the identity of the report.
        assert [d for d, v in held.items() if v.endswith(",")] == list(
            range(first.toordinal(), newest - grace)
        )
    # A correction within the grace still replaces the report it corrects; one beyond it is
    # too late; a late registration moves settled days too.
    fix = _report("A", "2020-02-18T08:00:00+08:00", "2020-02-15", 9, 90.0)
    late = _report("A", "2020-02-18T08:00:00+08:00", "2020-02-12", 9, 90.0)
    moved = _reg("B", "2020-02-11T09:00:00+08:00", district="D2", event_id="B-moved")
    h.feed(_keyed([fix, late, moved]))
    assert h.table() == expected_rows([*raws, fix, late, moved], grace=grace)
    assert [r.value for r in h.dead] == [late]


def test_a_stale_partial_sum_never_overwrites_a_newer_one() -> None:
    from streams.core import region_key
    from streams.regions.handler import RegionProcessor
    from streams.runtime.state import Topics
    from streams.wire import CELL, PartialSums
    from tests.unit.harness import Ev, FakeTable, Msg

    settings = Settings(partitions=1)
    regions = RegionProcessor(Topics.of(settings), FakeTable("r"), FakeTable("a"), [], partitions=1)
    district = region_key("district", "P", "C", "D")
    day = 737000
    offsets = iter(range(100))

    def send(version: int, resumed: int, reports: int) -> dict[str, tuple[int, ...]]:
        cell = [0] * CELL
        cell[0], cell[3], cell[6], cell[11] = 1, resumed, reports, 1
        sums = PartialSums(0, version, day, district, [("*\x1f0", day, cell)])
        packed = orjson.dumps([[region_key("province", "P"), orjson.Fragment(sums.to_json())]])
        result = regions.process([Ev(Msg("partials", 0, next(offsets), None, packed))])
        rows = [orjson.loads(r.value) for r in result.records if r.topic.endswith("metrics")]
        return {
            d["level"]: (d["resumed"], d["reports_received"])
            for _key, d in (row for packed in rows for row in packed)
        }

    assert send(5, 1, 1) == {"district": (1, 1), "city": (1, 1), "province": (1, 1)}
    assert send(4, 0, 0) == {}  # older: ignored, nothing changes
    assert send(5, 1, 1) == {}  # the same version again (a replay): nothing changes
    assert send(6, 0, 1) == {"district": (0, 1), "city": (0, 1), "province": (0, 1)}


@pytest.mark.parametrize("seed", range(20))
def test_random_histories_match_reference(seed: int) -> None:
    from tests.histories import random_history

    raws = random_history(seed)
    h = Harness(settings=Settings(partitions=1 + seed % 4))
    h.feed(_keyed(raws), batch=random.Random(seed).choice([1, 5, 33, 1000]))
    assert h.table() == expected_rows(raws)
    if seed % 3 == 0:  # a restart from the changelogs in the middle, with a replay
        h2 = Harness(settings=Settings(partitions=2))
        half = len(raws) // 2
        h2.feed(_keyed(raws[:half]))
        h2.restore_from_changelog()
        h2.feed(_keyed(raws[half - 10 :]))
        assert h2.table() == expected_rows(raws)


def test_crash_between_outputs_and_changelog_replays_exactly() -> None:
    from tests.histories import random_history

    raws = _keyed(random_history(42))
    h = Harness()
    third = len(raws) // 3
    h.feed(raws[:third])
    h.crash_before_changelog(raws[third : 2 * third])
    h.feed(raws[2 * third :])
    assert h.table() == expected_rows([v for _, v in raws])


def test_same_day_registrations_out_of_order_leave_no_phantom_rows() -> None:
    raws = [
        # The later registration of the same day (Hanyang) arrives last: Wuchang had A only
        # until then, so no Wuchang row may remain.
        _reg("A", "2020-02-10T10:00:00+08:00", district="Wuchang", event_id="r1"),
        _reg("A", "2020-02-10T15:00:00+08:00", district="Hanyang", event_id="r2"),
        _status("A", "2020-02-12T09:00:00+08:00", "resumed"),
    ]
    h = Harness()
    h.feed(_keyed([raws[0], raws[2]]))
    assert any(k[4] == "Wuchang" for k in h.table())
    h.feed(_keyed([raws[1]]))
    assert h.table() == expected_rows(raws)
    assert not any(k[4] == "Wuchang" for k in h.table())


def test_report_rows_pack_into_one_string_and_back() -> None:
    from streams.enterprise.reports import pack_report, unpack_report

    rows = [
        [1_581_300_000_000_000, "r,1,with,commas", 12, 345_600, None, None, 0],
        [1_581_300_000_000_001, "e-2", 0, 0, 99, 1_000, 1],
    ]
    for row in rows:
        packed = pack_report(row)
        assert isinstance(packed, str) and unpack_report(packed) == row
    # A row stored as a list (a state written before rows were packed) reads the same.
    assert unpack_report(rows[1]) == rows[1]
