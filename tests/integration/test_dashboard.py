"""The dashboard end to end: the pipeline's results in ClickHouse, `resumewatch dashboard`, and
the page in headless Chromium (Debian's package), driven over the DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from producers.simulator import simulate
from tests.integration.conftest import free_port
from tests.reference import expected_enterprise_daily, expected_rows


class Browser:
    """One Chromium tab, spoken to over the DevTools protocol's WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        request = {"id": self.next_id, "method": method, "params": params}
        await self.ws.send_str(orjson.dumps(request).decode())
        while True:
            frame = await self.ws.receive()
            assert frame.type == aiohttp.WSMsgType.TEXT, f"DevTools closed: {frame}"
            msg = orjson.loads(frame.data)
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]  # type: ignore[no-any-return]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.2)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: `make install` installs Debian's chromium package"
    return found


def wait_http(url: str, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return bytes(answer.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_dashboard_shows_the_pipeline_results(pipeline, base_settings) -> None:  # type: ignore[no-untyped-def]
    p = pipeline(partitions=2)
    p.start("worker")
    p.start("sink")
    records = simulate(enterprises=300, days=5, tz=p.settings.timezone).records  # the demo's
    p.publish(records)
    raws = [r.value for r in records]
    want = expected_rows(raws)
    client = p.clickhouse()
    p.wait_for(lambda: p.region_rows(client) == want, 180, "region_metrics")
    daily = expected_enterprise_daily(raws)
    p.wait_for(
        lambda: p.enterprise_daily(client) == daily, 60, "enterprise_daily to equal the reference"
    )

    port = free_port()
    # The analyst user may read only the `resumewatch` database (test_analyst.py checks its
    # rights); this test's own database is read with the writer's credentials.
    s = p.settings
    p.start(
        "dashboard",
        RESUMEWATCH_DASHBOARD_PORT=str(port),
        RESUMEWATCH_CLICKHOUSE_ANALYST_USER=s.clickhouse_user,
        RESUMEWATCH_CLICKHOUSE_ANALYST_PASSWORD=s.clickhouse_password.get_secret_value(),
        RESUMEWATCH_DASHBOARD_REFRESH="600",
    )
    url = f"http://127.0.0.1:{port}/"
    assert orjson.loads(wait_http(url + "health", 30)) == {"ok": True}

    newest = max(k[0] for k in want)
    days = sorted({k[0] for k in want})
    province = {
        k[0]: m for k, m in want.items() if k[1] == "province" and k[5] == "*" and k[6] == 0
    }

    def districts(sector: str) -> dict[str, int]:
        return {
            k[4]: m[0]
            for k, m in want.items()
            if k[0] == newest and k[1] == "district" and k[5] == sector and k[6] == 0
        }

    everyone = districts("*")
    sector = sorted({k[5] for k in want if k[5] != "*"})[0]
    in_sector = districts(sector)
    assert in_sector != everyone
    not_reported = sum(1 for (_e, day), v in daily.items() if day == newest and not v[2])
    artifacts = base_settings.state_dir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "dashboard.png"

    async def drive() -> None:
        devtools = free_port()
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.Popen(
                [
                    chromium(),
                    "--headless",
                    "--no-sandbox",  # CI runs as root
                    "--disable-gpu",
                    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
                    "--hide-scrollbars",
                    f"--user-data-dir={profile}",
                    f"--remote-debugging-port={devtools}",
                    "--window-size=1400,1500",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                targets = orjson.loads(wait_http(f"http://127.0.0.1:{devtools}/json/list", 30))
                page = next(t for t in targets if t["type"] == "page")
                async with (
                    aiohttp.ClientSession() as session,
                    session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws,
                ):
                    await check_page(Browser(ws))
            finally:
                proc.terminate()
                proc.wait(timeout=30)

    async def check_page(b: Browser) -> None:
        await b.call("Page.enable")
        await b.call("Page.navigate", url=url)
        await b.until("document.body && document.body.dataset.state === 'ready'", 30, "the data")
        points = await b.js(
            "[...document.querySelectorAll('#chart-resumption circle.point')]"
            ".map(c => c.dataset.day)"
        )
        assert points == [d.isoformat() for d in days]
        attained = await b.js("document.querySelectorAll('#chart-attainment circle.point').length")
        assert attained == sum(1 for d in days if province[d][8] > 0)  # capacity_value > 0
        table = await b.js(
            "[...document.querySelectorAll('#districts tbody tr')]"
            ".map(r => [r.dataset.district, +r.cells[2].textContent])"
        )
        assert dict(table) == everyone
        rates = await b.js(
            "[...document.querySelectorAll('#districts tbody tr')]"
            ".map(r => parseFloat(r.cells[4].textContent))"
        )
        assert rates == sorted(rates)
        trends = await b.js("document.querySelectorAll('#districts svg.trend').length")
        assert trends == len(everyone)
        sub = await b.js("document.getElementById('missing-sub').textContent")
        assert sub.startswith(f"{not_reported} enterprises without a daily report for {newest}")
        await b.call("Page.captureScreenshot")  # the layout settles before the real one
        shot.write_bytes(base64.b64decode((await b.call("Page.captureScreenshot"))["data"]))

        # The sector filter reloads the table with that sector's districts only.
        chosen = orjson.dumps(sector).decode()
        await b.js(
            "(() => { const s = document.getElementById('sector'); "
            f"s.value = {chosen}; s.dispatchEvent(new Event('change')); }})()"
        )
        await b.until(
            "document.body.dataset.state === 'ready' && "
            f"document.getElementById('sector').value === {chosen}",
            30,
            "the filtered data",
        )
        table = await b.js(
            "[...document.querySelectorAll('#districts tbody tr')]"
            ".map(r => [r.dataset.district, +r.cells[2].textContent])"
        )
        assert dict(table) == in_sector

    asyncio.run(drive())
    assert shot.stat().st_size > 10_000
    print(f"dashboard screenshot: {shot}")


def test_dashboard_reports_clickhouse_down(tmp_path: Path, base_settings) -> None:  # type: ignore[no-untyped-def]
    """With no ClickHouse behind it, the data endpoint answers 503 with one sentence."""
    from aiohttp.test_utils import TestClient, TestServer

    from resumewatch.dashboard import create_app

    settings = base_settings.model_copy(update={"clickhouse_port": free_port()})

    async def go() -> None:
        async with TestClient(TestServer(create_app(settings))) as http:
            page = await http.get("/")
            assert page.status == 200
            assert "{{REFRESH_SECONDS}}" not in await page.text()
            answer = await http.get("/api/data")
            assert answer.status == 503
            assert (await answer.json())["error"].startswith("ClickHouse did not answer")
            assert (await http.get("/health")).status == 503
            assert (await http.get("/api/data?above=2")).status == 400

    asyncio.run(go())
