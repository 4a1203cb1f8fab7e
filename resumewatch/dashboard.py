"""``resumewatch dashboard``: one web page over the analyst's view of ClickHouse.

``GET /`` is the page (``dashboard.html``: plain HTML, CSS and JavaScript, charts drawn as
SVG, nothing loaded from the internet); it asks ``GET /api/data?sector=S&above=0|1`` for its
figures and refreshes itself. ``GET /health`` answers 200 while ClickHouse answers.
Every query runs as the read-only analyst user.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from resumewatch.settings import Settings
from sinks.runner import analyst_client

log = logging.getLogger("resumewatch.dashboard")

PAGE = Path(__file__).with_name("dashboard.html")
TREND_DAYS = 14  # days in a district's trend line
MISSING_LIMIT = 200  # enterprises listed as not reported (the count is always complete)
ALERTS_LIMIT = 100
EMPTY_DAY = date(1970, 1, 1)  # what ClickHouse's max() of a Date column gives for no rows


def _rate(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def load(client: Any, sector: str, above: int) -> dict[str, Any]:
    """Everything the page shows for one filter, read with plain SQL that ClickHouse 18.16
    and current releases both run."""
    scope = {"sector": sector, "above": above}
    newest = client.execute(
        "SELECT max(day) FROM region_metrics WHERE sector = %(sector)s "
        "AND above_scale_only = %(above)s",
        scope,
    )[0][0]
    sectors = [
        r[0]
        for r in client.execute(
            "SELECT DISTINCT sector FROM region_metrics "
            "WHERE level = 'province' AND sector != '*' ORDER BY sector"
        )
    ]
    if newest is None or newest == EMPTY_DAY:
        return {
            "newest_day": None,
            "sectors": sectors,
            "provinces": [],
            "districts": [],
            "alerts": _alerts(client),
            "missing": {"day": None, "count": 0, "rows": []},
        }
    series: dict[str, list[dict[str, Any]]] = {}
    for province, day, n, rate, attainment in client.execute(
        "SELECT province, day, enterprises, resumption_rate, capacity_attainment "
        "FROM region_metrics FINAL WHERE level = 'province' AND sector = %(sector)s "
        "AND above_scale_only = %(above)s ORDER BY province, day",
        scope,
    ):
        series.setdefault(province, []).append(
            {
                "day": day.isoformat(),
                "enterprises": n,
                "resumption_rate": _rate(rate),
                "capacity_attainment": _rate(attainment),
            }
        )
    since = newest - timedelta(days=TREND_DAYS - 1)
    trend_days = [since + timedelta(days=i) for i in range(TREND_DAYS)]
    trends: dict[tuple[str, str], dict[date, float | None]] = {}
    districts: dict[tuple[str, str], dict[str, Any]] = {}
    for city, district, day, n, resumed, rate, compliance, attainment in client.execute(
        "SELECT city, district, day, enterprises, resumed, resumption_rate, "
        "report_compliance, capacity_attainment FROM region_metrics FINAL "
        "WHERE level = 'district' AND sector = %(sector)s AND above_scale_only = %(above)s "
        "AND day >= %(since)s ORDER BY city, district, day",
        {**scope, "since": since},
    ):
        trends.setdefault((city, district), {})[day] = _rate(rate)
        if day == newest:  # the table shows the districts as of the newest day
            districts[(city, district)] = {
                "city": city,
                "district": district,
                "enterprises": n,
                "resumed": resumed,
                "resumption_rate": _rate(rate),
                "report_compliance": _rate(compliance),
                "capacity_attainment": _rate(attainment),
            }
    for key, d in districts.items():
        # One value per day of the window (None where the district had no row yet).
        d["trend"] = [trends[key].get(day) for day in trend_days]
    rows = sorted(
        districts.values(),
        key=lambda d: (d["resumption_rate"] is None, d["resumption_rate"] or 0, d["district"]),
    )
    return {
        "newest_day": newest.isoformat(),
        "sectors": sectors,
        "provinces": [{"province": p, "days": days} for p, days in series.items()],
        "districts": rows,
        "alerts": _alerts(client),
        "missing": _missing(client, sector, above),
    }


def _alerts(client: Any) -> list[dict[str, Any]]:
    rows, cols = client.execute(
        "SELECT rule, level, province, city, district, sector, above_scale_only, "
        "enterprise_id, fired_day, metric, value, threshold FROM alerts_firing "
        f"ORDER BY at DESC, fired_day DESC, alert_id LIMIT {ALERTS_LIMIT}",
        with_column_types=True,
    )
    names = [c[0] for c in cols]
    out = []
    for r in rows:
        d = dict(zip(names, r, strict=True))
        d["fired_day"] = d["fired_day"].isoformat()
        d["value"] = _rate(d["value"])
        out.append(d)
    return out


def _missing(client: Any, sector: str, above: int) -> dict[str, Any]:
    """The enterprises without a daily report on the newest day the pipeline has seen."""
    day = client.execute("SELECT max(newest_day) FROM pipeline_clock FINAL")[0][0]
    if day is None or day == EMPTY_DAY:  # max() of no rows: 1970-01-01
        return {"day": None, "count": 0, "rows": []}
    where = "day = %(day)s AND reported = 0"
    if sector != "*":
        where += " AND sector = %(sector)s"
    if above:
        where += " AND above_scale = 1"
    params = {"day": day, "sector": sector}
    rows = client.execute(
        "SELECT enterprise_id, city, district, sector, status FROM enterprise_daily "
        f"WHERE {where} ORDER BY city, district, enterprise_id LIMIT {MISSING_LIMIT}",
        params,
    )
    count = client.execute(f"SELECT count() FROM enterprise_daily WHERE {where}", params)[0][0]
    names = ("enterprise_id", "city", "district", "sector", "status")
    return {
        "day": day.isoformat(),
        "count": count,
        "rows": [dict(zip(names, r, strict=True)) for r in rows],
    }


def create_app(settings: Settings, connect: Callable[[], Any] | None = None) -> web.Application:
    connect = connect or (lambda: analyst_client(settings, send_receive_timeout=30))
    page = PAGE.read_text().replace("{{REFRESH_SECONDS}}", f"{settings.dashboard_refresh:g}")

    def query(sector: str, above: int) -> dict[str, Any]:
        client = connect()
        try:
            return load(client, sector, above)
        finally:
            client.disconnect()

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def data(request: web.Request) -> web.Response:
        sector = request.query.get("sector", "*") or "*"
        above_text = request.query.get("above", "0")
        if above_text not in ("0", "1"):
            raise web.HTTPBadRequest(text="above must be 0 or 1")
        loop = asyncio.get_running_loop()
        try:
            payload = await loop.run_in_executor(None, query, sector, int(above_text))
        except Exception as exc:  # noqa: BLE001 - the page shows one sentence, the log the rest
            log.warning("dashboard query failed: %s", exc)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return web.json_response({"error": f"ClickHouse did not answer: {first}"}, status=503)
        payload["refresh_seconds"] = settings.dashboard_refresh
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def health(_request: web.Request) -> web.Response:
        def ping() -> None:
            client = connect()
            try:
                client.execute("SELECT 1")
            finally:
                client.disconnect()

        try:
            await asyncio.get_running_loop().run_in_executor(None, ping)
        except Exception as exc:  # noqa: BLE001 - a health check answers, it does not raise
            return web.json_response({"ok": False, "error": str(exc)[:200]}, status=503)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/api/data", data)
    app.router.add_get("/health", health)
    return app


def run_dashboard(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(message)s")
    url = f"http://{settings.dashboard_host}:{settings.dashboard_port}/"
    log.info("dashboard on %s (ClickHouse as %s)", url, settings.clickhouse_analyst_user)
    web.run_app(
        create_app(settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        print=None,
        access_log=None,
    )
