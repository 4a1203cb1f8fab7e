"""Random histories through the real pipeline, with one worker and with two sharing the
partitions: every row of region_metrics FINAL, enterprise_daily and supply_chain equals the
reference, and nothing else is there."""

from __future__ import annotations

import orjson
import pytest

from tests.histories import random_history
from tests.reference import (
    expected_enterprise_daily,
    expected_rows,
    expected_supply_chain,
    too_late,
)


@pytest.mark.parametrize(("workers", "seed"), [(1, 101), (2, 202)])
def test_random_history_is_exact(pipeline, workers: int, seed: int) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=4)
    for _ in range(workers):
        p.start("worker")
    p.start("sink")
    p.wait_for_workers(workers)
    raws = random_history(seed, enterprises=120, days=12)
    p.publish_raw(raws)
    client = p.clickhouse()
    want = expected_rows(raws)
    p.wait_for(lambda: p.region_rows(client) == want, 240, "region_metrics to equal the reference")

    want_daily = expected_enterprise_daily(raws)

    # Enterprise rows travel on their own topic: wait for them too.
    p.wait_for(
        lambda: p.enterprise_daily(client) == want_daily,
        60,
        "enterprise_daily to equal the reference",
    )
    got_chain = client.execute(
        "SELECT enterprise_id, day, suppliers, suppliers_resumed FROM supply_chain"
    )
    assert {(r[0], r[1]): (r[2], r[3]) for r in got_chain} == expected_supply_chain(raws)
    # Reports far behind their enterprise's newest: too late, and nothing else changes.
    # (Their enterprises are never registered, and the first report of each is on the
    # history's first day, so neither moves a row.)
    late = []
    for i in range(4):
        for day in ("2020-02-10", "2019-12-20"):
            late.append(
                orjson.dumps(
                    {
                        "event_id": f"late-{seed}-{i}-{day}",
                        "type": "daily_report",
                        "enterprise_id": f"LATE{seed}-{i}",
                        "occurred_at": "2020-02-10T21:00:00+08:00",
                        "source": "prop",
                        "report_date": day,
                        "staff_on_duty": 1,
                        "output_value": 1.0,
                    }
                )
            )

    def late_letters() -> int:
        return int(
            client.execute(
                "SELECT count() FROM dead_letters FINAL WHERE startsWith(reason, 'too late')"
            )[0][0]
        )

    # The history's own too-late reports (reference.too_late), then these four.
    before = len(too_late(raws))
    p.wait_for(lambda: late_letters() == before, 60, "the history's too-late reports")
    p.publish_raw(late)
    p.wait_for(lambda: late_letters() == before + 4, 60, "the too-late events in dead_letters")
    assert p.region_rows(client) == want
    if workers == 2:
        assert all(proc.poll() is None for proc in p.procs), "both workers kept running"
