"""The operator console in a real headless Chromium (Playwright, the peers' browser): sign-in,
live updates, acknowledgements across tabs and into Alertmanager, saved views, scopes, and
forgery from another site. Every page is captured in test-artifacts/console/."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from exporter.config import parse_config
from exporter.demo import demo_config
from tests.conftest import MakeClient, eventually
from tests.support import peers
from tests.support.alertmanager import alert, alertmanagers, free_port, post_alerts, route_config
from tests.support.alertmanager import silence as am_silence
from tests.test_alertmanager_webhook import am_alert, notification

ARTIFACTS = peers.REPO / "test-artifacts" / "console"
TOKENS = {
    "tokens": [
        {"name": "alertmanager", "token": "am-token", "scopes": ["write"]},
        {"name": "ann", "token": "ann-token", "scopes": ["read", "ack"]},
        {"name": "bob", "token": "bob-token", "scopes": ["read", "ack"]},
        {"name": "viewer", "token": "viewer-token", "scopes": ["read"]},
        {"name": "ops", "token": "ops-token", "scopes": ["admin"]},
    ]
}
CONFIG: dict[str, Any] = {"auth": TOKENS, "host": {"enabled": False}}
WRITE = {"Authorization": "Bearer am-token"}
ANN = {"Authorization": "Bearer ann-token"}


class Console:
    """A browser context on the service, and every console error its pages logged."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        self.context, self.base = context, base
        self.errors: list[str] = []

    async def page(self, *, width: int = 1280) -> Page:
        page = await self.context.new_page()
        await page.set_viewport_size({"width": width, "height": 900})
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        return page

    async def sign_in(self, page: Page, token: str) -> None:
        await page.goto(self.base + "/")
        await page.get_by_label("API token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#whoami")).not_to_be_empty()

    async def shot(self, page: Page, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = peers.peer("chromium")
    async with async_playwright() as p:
        launched = await p.chromium.launch(
            executable_path=chromium.path,
            env=dict[str, str | float | bool](chromium.env),
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        yield launched
        await launched.close()


async def open_console(browser: Browser, client: TestClient[Any, Any]) -> Console:
    context = await browser.new_context()
    return Console(context, f"http://127.0.0.1:{client.port}")


async def webhook(client: TestClient[Any, Any], *alerts: dict[str, Any]) -> None:
    resp = await client.post("/api/v1/alertmanager", json=notification(*alerts), headers=WRITE)
    assert resp.status == 200, await resp.text()


async def status_of(db: asyncpg.Connection, title: str) -> str | None:
    found: str | None = await db.fetchval(
        "SELECT status FROM monitoring.system_alerts WHERE title = $1", title
    )
    return found


def row(page: Page, title: str) -> Any:
    return page.locator("#incidents tbody tr", has_text=title)


async def test_sign_in_and_a_posted_webhook_appears_without_a_reload(
    make_client: MakeClient, browser: Browser
) -> None:
    client = await make_client(CONFIG)
    console = await open_console(browser, client)
    page = await console.page()
    await page.goto(console.base + "/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await console.shot(page, "sign-in")
    await console.sign_in(page, "ann-token")
    await expect(page.locator("#whoami")).to_have_text("ann")
    await page.goto(console.base + "/#/incidents")
    await expect(page.locator("#no-incidents")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("live")
    await webhook(client, am_alert("live1", service="checkout"))
    await expect(row(page, "summary live1")).to_be_visible(timeout=2000)
    await expect(row(page, "summary live1").locator(".status")).to_have_text("active")
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert console.errors == []


async def test_acknowledge_in_one_tab_changes_the_state_in_a_second_tab(
    make_client: MakeClient, browser: Browser, db: asyncpg.Connection
) -> None:
    client = await make_client(CONFIG)
    await webhook(client, am_alert("tab1", service="db"), am_alert("tab2", service="web"))
    console = await open_console(browser, client)
    first = await console.page()
    await console.sign_in(first, "ann-token")
    second = await console.page()
    await second.goto(console.base + "/#/incidents")
    await expect(second.locator("#live")).to_have_text("live")
    for title in ("summary tab1", "summary tab2"):
        await expect(row(second, title).locator(".status")).to_have_text("active")
    await first.goto(console.base + "/#/incidents")
    await first.get_by_role("link", name="summary tab1").click()
    await expect(first.locator("#incident-status")).to_have_text("active")
    await first.get_by_role("button", name="Acknowledge", exact=True).click()
    await expect(first.locator("#incident-status")).to_have_text("acknowledged")
    await expect(row(second, "summary tab1").locator(".status")).to_have_text("acknowledged")
    await expect(row(second, "summary tab2").locator(".status")).to_have_text("active")
    # acknowledging several at once, from the second tab; the first follows
    await first.goto(console.base + "/#/incidents")
    await row(second, "summary tab2").get_by_role("checkbox").check()
    await second.get_by_role("button", name="Acknowledge selected").click()
    await expect(row(first, "summary tab2").locator(".status")).to_have_text("acknowledged")
    assert await status_of(db, "summary tab2") == "acknowledged"
    actors = await db.fetch(
        "SELECT DISTINCT actor FROM monitoring.system_alert_events WHERE to_status = 'acknowledged'"
    )
    assert [r["actor"] for r in actors] == ["ann"]
    assert console.errors == []


async def test_acknowledging_in_the_console_makes_the_silence_in_alertmanager(
    make_client: MakeClient, browser: Browser, tmp_path: Path, db: asyncpg.Connection
) -> None:
    port = free_port()
    client = await make_client(
        CONFIG
        | {
            "alerts": {
                "alertmanager_urls": [f"http://127.0.0.1:{port}"],
                "reconcile_interval": "500ms",
                "reconcile_startup_grace": "0s",
                "sync_interval": "300ms",
                "request_timeout": "1s",
            }
        }
    )
    hook = f"http://127.0.0.1:{client.server.port}/api/v1/alertmanager"
    async with alertmanagers(tmp_path, route_config(hook, "am-token"), ports=[port]) as [url]:
        labels = {"alertname": "ConsoleDiskFull", "severity": "critical", "service": "db"}
        await post_alerts(url, [alert(labels, annotations={"summary": "Disk full on db-7"})])
        await eventually(lambda: _exists(db, "Disk full on db-7"), timeout=20)
        alert_id = await db.fetchval(
            "SELECT id FROM monitoring.system_alerts WHERE title = 'Disk full on db-7'"
        )
        console = await open_console(browser, client)
        first = await console.page()
        await console.sign_in(first, "ann-token")
        second = await console.page()
        await second.goto(console.base + "/#/incidents")
        await expect(row(second, "Disk full on db-7").locator(".status")).to_have_text("active")
        await expect(second.locator("#live")).to_have_text("live")

        await first.goto(f"{console.base}/#/incidents/{alert_id}")
        await expect(first.locator("#incident-status")).to_have_text("active")
        await console.shot(first, "incident")
        await first.get_by_label("Note (optional)").fill("looking at it")
        await first.get_by_role("button", name="Acknowledge", exact=True).click()
        await expect(first.locator("#incident-status")).to_have_text("acknowledged")
        # the other tab follows, without a reload
        await expect(row(second, "Disk full on db-7").locator(".status")).to_have_text(
            "acknowledged", timeout=5000
        )
        assert await status_of(db, "Disk full on db-7") == "acknowledged"
        silence_id = await db.fetchval(
            "SELECT silence_id FROM monitoring.system_alerts WHERE id = $1", alert_id
        )
        assert silence_id
        made = await am_silence(url, silence_id)
        assert made["status"]["state"] == "active" and made["createdBy"] == "ann"
        await expect(first.locator("#silence")).to_contain_text(silence_id)
        await console.shot(second, "incidents-after-acknowledge")
        assert console.errors == []


async def _exists(db: asyncpg.Connection, title: str) -> bool:
    return await status_of(db, title) is not None


async def test_a_saved_view_survives_sign_out_and_another_person_does_not_see_it(
    make_client: MakeClient, browser: Browser
) -> None:
    client = await make_client(CONFIG)
    console = await open_console(browser, client)
    page = await console.page()
    await console.sign_in(page, "ann-token")
    await page.goto(console.base + "/#/incidents?status=active&severity=critical&text=disk")
    await page.get_by_label("View name").fill("critical disks")
    await page.get_by_role("button", name="Save view").click()
    await expect(page.locator("#toast")).to_contain_text("saved")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin-error")).to_have_text("You are signed out.")

    await console.sign_in(page, "ann-token")
    await page.goto(console.base + "/#/views")
    link = page.get_by_role("link", name="critical disks")
    await expect(link).to_be_visible()
    await console.shot(page, "saved-views")
    await link.click()
    await expect(page.get_by_label("Text")).to_have_value("disk")
    assert await page.locator("select[name=severity]").evaluate(
        "s => [...s.selectedOptions].map(o => o.value)"
    ) == ["critical"]
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#signin-error")).to_have_text("You are signed out.")

    await console.sign_in(page, "bob-token")
    await page.goto(console.base + "/#/views")
    await expect(page.locator("#no-views")).to_be_visible()
    resp = await client.get(
        "/api/v1/dashboards/critical disks?owner=ann", headers={"Authorization": "Bearer bob-token"}
    )
    assert resp.status == 404
    assert console.errors == []


async def test_a_read_only_token_sees_no_actions_and_a_forged_post_is_403(
    make_client: MakeClient, browser: Browser, db: asyncpg.Connection
) -> None:
    client = await make_client(CONFIG)
    await webhook(client, am_alert("ro1"))
    alert_id = await db.fetchval("SELECT id FROM monitoring.system_alerts")
    console = await open_console(browser, client)
    page = await console.page()
    await console.sign_in(page, "viewer-token")
    await page.goto(console.base + "/#/incidents")
    await expect(row(page, "summary ro1")).to_be_visible()
    await expect(page.locator("#bulk-ack")).to_have_count(0)
    await expect(page.locator("#incidents input[type=checkbox]")).to_have_count(0)
    await page.goto(f"{console.base}/#/incidents/{alert_id}")
    await expect(page.locator("#incident-status")).to_have_text("active")
    for action in ("Acknowledge", "Resolve", "Add note", "Open maintenance window"):
        await expect(page.get_by_role("button", name=action)).to_have_count(0)
    await page.goto(console.base + "/#/services")
    await expect(page.get_by_text("Edit threshold")).to_have_count(0)
    assert console.errors == []
    # the page's own session, anti-forgery token and all: the scope still says no
    forged = await page.evaluate(
        """async (id) => {
            const session = await (await fetch('/api/v1/session')).json();
            const resp = await fetch(`/api/v1/alerts/${id}/acknowledge`, {
                method: 'POST',
                headers: {'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf_token},
                body: JSON.stringify({by: 'viewer'}),
            });
            return [resp.status, await resp.json()];
        }""",
        alert_id,
    )
    assert forged[0] == 403 and forged[1]["error"]["code"] == "forbidden"
    assert await db.fetchval("SELECT status FROM monitoring.system_alerts") == "active"
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_alert_events") == 1


async def test_a_cross_site_post_without_the_anti_forgery_token_is_refused(
    make_client: MakeClient, browser: Browser, db: asyncpg.Connection
) -> None:
    client = await make_client(CONFIG)
    await webhook(client, am_alert("x1"))
    alert_id = await db.fetchval("SELECT id FROM monitoring.system_alerts")
    target = f"http://127.0.0.1:{client.port}/api/v1/alerts/{alert_id}/acknowledge"
    # another origin on the same host: the SameSite=Strict cookie travels (same site), so
    # what refuses the request is the anti-forgery check itself
    evil = web.Application()
    form = (
        f'<form method="post" action="{target}" enctype="text/plain">'
        '<input name=\'{"by":"mallory","x":"\' value=\'"}\'><button>go</button></form>'
    )

    async def attack_page(_: web.Request) -> web.Response:
        return web.Response(text=form, content_type="text/html")

    evil.router.add_get("/", attack_page)
    server = TestServer(evil, host="127.0.0.1")
    await server.start_server()
    try:
        console = await open_console(browser, client)
        page = await console.page()
        await console.sign_in(page, "ann-token")
        attacker = await console.context.new_page()
        await attacker.goto(f"http://127.0.0.1:{server.port}/")
        answer = await attacker.evaluate(
            """async (target) => {
                const resp = await fetch(target, {method: 'POST', credentials: 'include',
                    mode: 'no-cors', headers: {'Content-Type': 'text/plain'},
                    body: '{"by": "mallory"}'});
                return resp.type;
            }""",
            target,
        )
        assert answer == "opaque"  # no CORS: the attacker cannot even read the answer
        async with attacker.expect_navigation():
            await attacker.get_by_role("button", name="go").click()
        refused = json.loads(await attacker.locator("body").inner_text())
        assert refused["error"]["code"] == "csrf_failed"
    finally:
        await server.close()
    assert await db.fetchval("SELECT status FROM monitoring.system_alerts") == "active"
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_alert_events") == 1


async def test_a_tampered_or_expired_cookie_goes_back_to_sign_in_with_a_message(
    make_client: MakeClient, browser: Browser, db: asyncpg.Connection
) -> None:
    client = await make_client(CONFIG)
    console = await open_console(browser, client)
    page = await console.page()
    await console.sign_in(page, "ann-token")
    [cookie] = await console.context.cookies()
    assert (
        cookie["name"] == "mexp_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    )
    assert await page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
    tampered: Any = {**cookie, "value": cookie["value"][:-3] + "abc"}
    await console.context.add_cookies([tampered])
    message = "Your session has ended or is not valid. Sign in again."
    # a page already open, on its next call
    await page.goto(console.base + "/#/incidents")
    await expect(page.locator("#signin-error")).to_have_text(message)
    await expect(page.locator("#top")).to_be_hidden()
    # a page opened with the tampered cookie
    await console.context.add_cookies([tampered])
    fresh = await console.page()
    await fresh.goto(console.base + "/#/incidents")
    await expect(fresh.locator("#signin-error")).to_have_text(message)
    await console.shot(fresh, "sign-in-expired")
    # an expired session, the same
    await console.sign_in(page, "ann-token")
    await db.execute(
        "UPDATE monitoring.console_sessions SET created_at = now() - interval '13 hours',"
        " expires_at = now() - interval '1 hour'"
    )
    await page.goto(console.base + "/#/quality")
    await expect(page.locator("#signin-error")).to_have_text(message)
    # the browser reports each refused request; nothing else went wrong
    assert console.errors and all("401" in e for e in console.errors), console.errors


async def test_every_page_in_demo_mode_without_sign_in_at_two_widths(
    make_client: MakeClient, browser: Browser, database_url: str
) -> None:
    config = demo_config(parse_config({"host": {"enabled": False}}), database_url, "127.0.0.1:0")
    client = await make_client(config, dsn=database_url)
    console = await open_console(browser, client)

    async def demo_ready() -> bool:
        resp = await client.get("/api/v1/alerts")
        return len((await resp.json())["items"]) > 0

    await eventually(demo_ready, timeout=30)
    pages = {
        "overview": "Overview",
        "incidents": "Incidents",
        "incidents/1": "Incident 1",
        "quality": "Data quality",
        "services": "Services",
        "views": "Saved views",
        "grafana": "Grafana",
    }
    for width in (1280, 360):
        page = await console.page(width=width)
        for path, heading in pages.items():
            await page.goto(f"{console.base}/#/{path}")
            await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            await expect(page.locator("#data")).not_to_be_empty()
            # nothing wider than the screen but what scrolls inside its own box
            overflow = await page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, (path, width, overflow)
            await console.shot(page, f"{path.replace('/', '-')}-{width}")
        await expect(page.locator("#whoami")).to_have_text("demo (no sign-in)")
        await expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    # keyboard: the first Tab reaches the skip link, and focus is visible
    page = await console.page()
    await page.goto(console.base + "/#/overview")
    await expect(page.locator("#data")).not_to_be_empty()
    await page.keyboard.press("Tab")
    focused = await page.evaluate(
        "[document.activeElement.className, getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["skip", "solid"]
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Overview"
    await page.keyboard.press("Tab")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Incidents")
    assert console.errors == []


async def test_an_admin_edits_a_threshold_and_opens_a_maintenance_window_from_an_incident(
    make_client: MakeClient, browser: Browser, db: asyncpg.Connection
) -> None:
    client = await make_client(CONFIG)
    resp = await client.post(
        "/api/v1/health-metrics",
        json={"service": "db", "metric_type": "response_time", "value": 0.2, "unit": "s"},
        headers=WRITE,
    )
    assert resp.status == 201, await resp.text()
    await webhook(client, am_alert("adm1", service="db"))
    alert_id = await db.fetchval("SELECT id FROM monitoring.system_alerts")
    console = await open_console(browser, client)
    page = await console.page()
    await console.sign_in(page, "ops-token")
    await page.goto(console.base + "/#/services")
    await page.get_by_text("Edit threshold").click()
    await page.get_by_label("Warning").fill("0.3")
    await page.get_by_label("Critical").fill("0.6")
    await page.get_by_role("button", name="Save threshold").click()
    await expect(page.locator("#toast")).to_contain_text("saved")
    rules = await (await client.get("/api/v1/thresholds", headers=ANN)).json()
    [rule] = [r for r in rules["items"] if r["service"] == "db"]
    assert (rule["warning"], rule["critical"], rule["origin"], rule["version"]) == (
        0.3, 0.6, "api", 1)  # fmt: skip
    await expect(page.get_by_text("warning 0.3, critical 0.6")).to_be_visible()

    await page.goto(f"{console.base}/#/incidents/{alert_id}")
    await page.get_by_role("button", name="Open maintenance window").click()
    await expect(page.locator("#toast")).to_contain_text("opened")
    windows = await (await client.get("/api/v1/maintenance", headers=ANN)).json()
    [window] = windows["items"]
    assert window["matchers"] == {"service": "db"} and window["author"] == "ops"
    await page.goto(console.base + "/#/overview")
    await expect(page.get_by_text("service=db until")).to_be_visible()
    await console.shot(page, "overview-maintenance")
    assert console.errors == []
