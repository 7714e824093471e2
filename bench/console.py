"""The operator console's first page: bytes transferred and time to first render with the demo
data, in the peers' headless Chromium (Playwright), each round in a fresh browser context (an
empty cache, as a first visit).

Bytes are what the network carried for the page, its script and style sheet and the API
answers the overview fetches (Chrome's ``encodedDataLength``; the live feed's WebSocket
frames are not counted). Time is from the navigation to the overview's data in the page. The
baseline is a blank HTML page served by the same aiohttp server in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import BrowserContext, async_playwright

from bench.harness import Figure, scratch_database
from exporter.config import parse_config
from exporter.demo import demo_config
from exporter.features.core import LIFECYCLE
from exporter.web.app import create_app
from tests.support import peers

BLANK = "<!doctype html><html lang=en><title>blank</title><p>blank</p></html>"
MAX_BYTES = 300_000
MAX_SECONDS = 1.0


async def _blank(_: web.Request) -> web.Response:
    return web.Response(text=BLANK, content_type="text/html")


async def _load(context: BrowserContext, url: str, ready: str) -> tuple[float, int]:
    """(seconds to ``ready``, bytes transferred) of one first visit."""
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    await cdp.send("Network.enable")
    sizes: dict[str, float] = {}
    cdp.on(
        "Network.loadingFinished",
        lambda e: sizes.__setitem__(e["requestId"], e["encodedDataLength"]),
    )
    started = time.perf_counter()
    await page.goto(url)
    await page.wait_for_selector(ready)
    elapsed = time.perf_counter() - started
    await page.wait_for_load_state("networkidle")
    await page.close()
    return elapsed, int(sum(sizes.values()))


async def run(rounds: int) -> list[Figure]:
    """Serve the demo console, then visit it and a blank page ``rounds`` times each."""
    async with scratch_database() as dsn:
        config = demo_config(parse_config({"host": {"enabled": False}}), dsn, "127.0.0.1:0")
        app = create_app(config, dsn=dsn)
        app.router.add_get("/bench-blank", _blank)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        app[LIFECYCLE].serving.set()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        try:
            await _demo_seeded(base)
            return await _measure(base, rounds)
        finally:
            await runner.cleanup()


async def _demo_seeded(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            async with http.get(f"{base}/api/v1/alerts") as resp:
                if resp.status == 200 and (await resp.json())["items"]:
                    return
            await asyncio.sleep(0.05)
    raise RuntimeError("the demo data set was not seeded within 30 s")


async def _measure(base: str, rounds: int) -> list[Figure]:
    chromium = peers.find("chromium")
    env: Any = dict(chromium.env)
    console: list[tuple[float, int]] = []
    blank: list[tuple[float, int]] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium.path, env=env, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            for _ in range(rounds):
                for url, ready, into in (
                    (f"{base}/#/overview", "#data > *", console),
                    (f"{base}/bench-blank", "p", blank),
                ):
                    context = await browser.new_context()
                    into.append(await _load(context, url, ready))
                    await context.close()
        finally:
            await browser.close()
    seconds = statistics.median(t for t, _ in console)
    sent = statistics.median(b for _, b in console)
    blank_seconds = statistics.median(t for t, _ in blank)
    blank_sent = statistics.median(b for _, b in blank)
    return [
        Figure("first page: bytes transferred (demo data)", sent / 1000, "kB",
               f"< {MAX_BYTES // 1000} kB", blank_sent / 1000, "blank page", sent < MAX_BYTES),
        Figure("first page: time to first render (demo data)", seconds * 1000, "ms",
               f"< {MAX_SECONDS * 1000:.0f} ms", blank_seconds * 1000, "blank page",
               seconds < MAX_SECONDS),
    ]  # fmt: skip
