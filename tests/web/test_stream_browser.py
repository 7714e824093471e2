"""A real headless Chromium: a page served from another origin gets stream tickets through its
own backend, follows the stream over a WebSocket and over Server-Sent Events, resumes with its
cursors after its connection is cut, and a page from an origin that is not allowed is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, async_playwright

from exporter.features.stream import HUB
from tests.conftest import MakeClient, eventually
from tests.support.peers import peer
from tests.support.proxy import TcpProxy
from tests.test_stream import wait_subscribed

TOKENS = [
    {"name": "dashboard", "token": "dashboard-token", "scopes": ["read"]},
    {"name": "operator", "token": "operator-token", "scopes": ["write", "ack"]},
]
OPERATOR = {"Authorization": "Bearer operator-token"}
TICKETS = "/api/v1/stream/tickets"
COUNT_TICKETS = "SELECT count(*) FROM monitoring.stream_tickets"

# Both dashboards ask their own backend for a ticket (they never see the token).
TICKET = """<script>
async function ticket() {
  const resp = await fetch("/ticket", {method: "POST"});
  if (!resp.ok) throw new Error("ticket: " + resp.status);
  window.tickets++;
  return (await resp.json()).ticket;
}
</script>
"""

# The WebSocket dashboard: opens the stream, remembers the last cursor of each channel, and
# after any close starts over with a new ticket from those cursors.
PAGE = """<!doctype html>
<title>dashboard</title>
<script>
window.events = []; window.closes = []; window.opens = 0; window.tickets = 0;
const cursors = {};
async function connect() {
  let t;
  try { t = await ticket(); } catch (e) { setTimeout(connect, 100); return; }
  const ws = new WebSocket(STREAM + "?ticket=" + encodeURIComponent(t));
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    window.opens++;
    ws.send(JSON.stringify({type: "subscribe", channels: ["health_metrics", "system_alerts"],
                            after: {...cursors}, filter: {service: "browser"}}));
  };
  ws.onmessage = (m) => {
    const e = JSON.parse(typeof m.data === "string" ? m.data : new TextDecoder().decode(m.data));
    window.events.push(e);
    if (e.type === "event") cursors[e.channel] = e.cursor;
  };
  ws.onclose = (c) => { window.closes.push(c.code); if (window.reconnect) setTimeout(connect, 100); };
}
window.reconnect = true;
</script>
"""

# The EventSource dashboard: a ticket opens one stream once, so EventSource's own reconnect
# (the same URL, its ticket spent: 401, fatal) is no use; on any error the page closes it and
# opens a new one with a new ticket and ``after`` its last id (one cursor: ids are in commit
# order across channels).
EVENT_SOURCE_PAGE = """<!doctype html>
<title>dashboard (Server-Sent Events)</title>
<script>
window.events = []; window.errors = []; window.opens = 0; window.tickets = 0;
window.last = null;
async function connect() {
  let t;
  try { t = await ticket(); } catch (e) { setTimeout(connect, 100); return; }
  let url = STREAM + "?channels=health_metrics,system_alerts&service=browser&ticket="
    + encodeURIComponent(t);
  if (window.last !== null) url += "&after=" + encodeURIComponent(window.last);
  const source = new EventSource(url);
  source.onopen = () => { window.opens++; };
  for (const kind of ["event", "reset"]) {
    source.addEventListener(kind, (m) => {
      window.events.push({kind: kind, id: m.lastEventId, message: JSON.parse(m.data)});
      window.last = m.lastEventId;
    });
  }
  source.onerror = () => {
    window.errors.push(source.readyState);
    source.close();
    if (window.reconnect) setTimeout(connect, 100);
  };
}
window.reconnect = true;
</script>
"""


class Backend:
    """The dashboard's own server (another origin than the service's): serves the page and
    trades its token for tickets, server to server."""

    def __init__(self) -> None:
        self.service = ""  # the service's base URL, for the backend
        self.stream = ""  # the stream's URL, as the page reaches it
        self.html = PAGE  # the dashboard it serves
        self.app = web.Application()
        self.app.router.add_get("/", self.page)
        self.app.router.add_post("/ticket", self.ticket)
        self.server = TestServer(self.app, host="127.0.0.1")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def page(self, request: web.Request) -> web.Response:
        script = f"<script>const STREAM = {self.stream!r};</script>\n"
        return web.Response(text=script + TICKET + self.html, content_type="text/html")

    async def ticket(self, request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                self.service + TICKETS, headers={"Authorization": "Bearer dashboard-token"}
            ) as resp,
        ):
            return web.Response(
                status=resp.status, body=await resp.read(), content_type="application/json"
            )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium from the test peers (Debian's build; never `playwright install`)."""
    chromium = peer("chromium")
    env: dict[str, str | float | bool] = dict(chromium.env)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium.path,
            env=env,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield launched
        await launched.close()


@pytest.fixture
async def backends() -> AsyncIterator[tuple[Backend, Backend]]:
    """Two dashboards' backends: one on an allowed origin, one not."""
    allowed, other = Backend(), Backend()
    await allowed.server.start_server()
    await other.server.start_server()
    yield allowed, other
    await allowed.server.close()
    await other.server.close()


async def push_health(client: TestClient[Any, Any], ms: float) -> None:
    body = {"service": "browser", "metric_type": "response_time", "value": ms, "unit": "ms"}
    resp = await client.post("/api/v1/health-metrics", json=body, headers=OPERATOR)
    assert resp.status == 201


async def alertmanager(client: TestClient[Any, Any], status: str) -> None:
    alert = {
        "status": status,
        "labels": {"alertname": "SlowPage", "severity": "warning", "service": "browser"},
        "annotations": {"summary": "the dashboard is slow"},
        "startsAt": "2026-11-30T10:00:00Z",
        "fingerprint": "browser-slow",
    }
    body = {"version": "4", "status": status, "receiver": "x", "alerts": [alert]}
    resp = await client.post("/api/v1/alertmanager", json=body, headers=OPERATOR)
    assert resp.status == 200


async def events(page: Page) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = await page.evaluate("window.events")
    return got


async def wait_events(page: Page, n: int) -> list[dict[str, Any]]:
    async def arrived() -> bool:
        return len(await events(page)) >= n

    await eventually(arrived, timeout=15)
    return await events(page)


def seen(got: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """What a user of the dashboard notices: each health value and each alert transition."""
    out: list[tuple[str, Any]] = []
    for e in got:
        assert e["type"] == "event", e
        if e["channel"] == "health_metrics":
            out.append(("health", e["data"]["value"]))
        else:
            out.append(("alert", e["data"]["event"]["to_status"]))
    return out


async def _service(make_client: MakeClient, dashboard: Backend) -> TestClient[Any, Any]:
    """The service under test, allowing the dashboard's origin only."""
    return await make_client(
        {
            "auth": {"tokens": TOKENS},
            "host": {"enabled": False},
            "web": {"allowed_origins": [dashboard.origin]},
        }
    )


async def test_a_page_from_another_origin_follows_the_stream_and_resumes_after_a_cut(
    make_client: MakeClient,
    db: asyncpg.Connection,
    browser: Browser,
    backends: tuple[Backend, Backend],
) -> None:
    dashboard, _ = backends
    client = await _service(make_client, dashboard)
    # the page reaches the service through a proxy the test can cut, as a network would
    assert client.port is not None
    proxy = TcpProxy(("127.0.0.1", client.port))
    await proxy.start()
    proxy.enable()
    dashboard.service = str(client.make_url("")).rstrip("/")
    dashboard.stream = f"ws://127.0.0.1:{proxy.port}/api/v1/stream"
    page = await browser.new_page()
    try:
        await page.goto(dashboard.origin + "/")
        await page.evaluate("connect()")
        await wait_subscribed(client)
        await push_health(client, 100)
        await alertmanager(client, "firing")
        await wait_events(page, 2)

        # the connection drops; what is committed meanwhile must come after the resume
        await proxy.cut()

        async def closed() -> bool:
            return bool(await page.evaluate("window.closes.length"))

        await eventually(closed, timeout=10)
        await push_health(client, 200)
        alert_id = await db.fetchval("SELECT id FROM monitoring.system_alerts")
        resp = await client.post(
            f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ann"}, headers=OPERATOR
        )
        assert resp.status == 200
        proxy.enable()
        got = await wait_events(page, 4)
        await wait_subscribed(client)
        await push_health(client, 300)
        await alertmanager(client, "resolved")
        got = await wait_events(page, 6)

        expected = [
            ("health", 0.1),
            ("alert", "active"),
            ("health", 0.2),
            ("alert", "acknowledged"),
            ("health", 0.3),
            ("alert", "resolved"),
        ]
        # per channel in commit order, each once (the channels interleave as they may)
        assert sorted(seen(got), key=lambda s: s[0]) == sorted(expected, key=lambda s: s[0])
        assert len({(e["channel"], e["cursor"]) for e in got}) == 6
        opens, tickets = await page.evaluate("[window.opens, window.tickets]")
        assert opens >= 2
        # every stream took its own ticket and used it up; a ticket whose connection the cut
        # refused is still there (until it expires)
        assert await db.fetchval(COUNT_TICKETS) == tickets - opens

        # the page may ask the service itself too, with a token (a CORS preflight first)
        status = await page.evaluate(
            """async (url) => (await fetch(url, {method: "POST",
                 headers: {Authorization: "Bearer dashboard-token"}})).status""",
            dashboard.service + TICKETS,
        )
        assert status == 201
    finally:
        await page.evaluate("window.reconnect = false")
        await page.close()
        await proxy.close()


async def test_a_page_from_an_origin_not_allowed_is_refused(
    make_client: MakeClient,
    db: asyncpg.Connection,
    browser: Browser,
    backends: tuple[Backend, Backend],
) -> None:
    dashboard, stranger = backends
    client = await _service(make_client, dashboard)
    stranger.service = str(client.make_url("")).rstrip("/")
    stranger.stream = f"ws://127.0.0.1:{client.port}/api/v1/stream"
    page = await browser.new_page()
    # what Chromium itself reports of the handshake (a page's script only sees code 1006)
    origins: list[str] = []
    failures: list[str] = []
    cdp = await page.context.new_cdp_session(page)
    cdp.on(
        "Network.webSocketWillSendHandshakeRequest",
        lambda event: origins.append(event["request"]["headers"]["Origin"]),
    )
    cdp.on("Network.webSocketFrameError", lambda event: failures.append(event["errorMessage"]))
    urls: dict[str, str] = {}
    statuses: dict[str, int] = {}
    cors: dict[str, str] = {}
    cdp.on(
        "Network.requestWillBeSent",
        lambda event: urls.__setitem__(event["requestId"], event["request"]["url"]),
    )
    cdp.on(
        "Network.responseReceivedExtraInfo",
        lambda event: statuses.__setitem__(event["requestId"], event["statusCode"]),
    )
    cdp.on(
        "Network.loadingFailed",
        lambda event: cors.__setitem__(
            event["requestId"], event.get("corsErrorStatus", {}).get("corsError", "")
        ),
    )
    await cdp.send("Network.enable")
    try:
        await page.goto(stranger.origin + "/")
        await page.evaluate("window.reconnect = false; connect()")

        async def closed() -> bool:
            return bool(await page.evaluate("window.closes.length"))

        await eventually(closed, timeout=10)
        # the WebSocket never opened: refused at the handshake, before its ticket was used
        assert await page.evaluate("window.opens") == 0
        assert await page.evaluate("window.closes") == [1006]
        assert origins == [stranger.origin]
        assert failures == ["Error during WebSocket handshake: Unexpected response code: 403"]
        assert await db.fetchval(COUNT_TICKETS) == 1
        # a request the browser sends without a preflight: the service answers 403 without
        # CORS headers, so the page cannot read even that
        failed = await page.evaluate(
            """async (url) => { try { await fetch(url, {method: "POST"}); return false; }
                                catch (e) { return true; } }""",
            stranger.service + TICKETS,
        )
        assert failed
        [sent] = [r for r, url in urls.items() if url == stranger.service + TICKETS]

        async def answered() -> bool:
            return sent in statuses and sent in cors

        await eventually(answered, timeout=5)
        assert statuses[sent] == 403
        assert cors[sent] == "MissingAllowOriginHeader"
        assert await db.fetchval(COUNT_TICKETS) == 1
    finally:
        await page.close()


def cursor_key(cursor: str) -> tuple[int, int]:
    """A cursor's place in commit order (``<xid>-<id>``)."""
    xid, _, row = cursor.partition("-")
    return int(xid), int(row)


async def test_a_page_from_another_origin_follows_server_sent_events_and_resumes_after_a_cut(
    make_client: MakeClient,
    db: asyncpg.Connection,
    browser: Browser,
    backends: tuple[Backend, Backend],
) -> None:
    dashboard, _ = backends
    client = await _service(make_client, dashboard)
    assert client.port is not None
    proxy = TcpProxy(("127.0.0.1", client.port))
    await proxy.start()
    proxy.enable()
    dashboard.service = str(client.make_url("")).rstrip("/")
    dashboard.stream = f"http://127.0.0.1:{proxy.port}/api/v1/events"
    dashboard.html = EVENT_SOURCE_PAGE
    hub = client.app[HUB]
    page = await browser.new_page()
    try:
        await page.goto(dashboard.origin + "/")
        await page.evaluate("connect()")
        await wait_subscribed(client)
        await push_health(client, 100)
        await alertmanager(client, "firing")
        await wait_events(page, 2)

        # the connection drops; what is committed meanwhile must come after the resume
        await proxy.cut()

        async def failed() -> bool:
            return bool(await page.evaluate("window.errors.length")) and not hub.subscribers

        await eventually(failed, timeout=10)
        await push_health(client, 200)
        alert_id = await db.fetchval("SELECT id FROM monitoring.system_alerts")
        resp = await client.post(
            f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ann"}, headers=OPERATOR
        )
        assert resp.status == 200
        proxy.enable()
        await wait_events(page, 4)
        await wait_subscribed(client)
        await push_health(client, 300)
        await alertmanager(client, "resolved")
        got = await wait_events(page, 6)

        # one cursor for both channels: every change once, in commit order (the writes')
        assert seen([e["message"] for e in got]) == [
            ("health", 0.1),
            ("alert", "active"),
            ("health", 0.2),
            ("alert", "acknowledged"),
            ("health", 0.3),
            ("alert", "resolved"),
        ]
        assert [e["kind"] for e in got] == ["event"] * 6
        assert [e["id"] for e in got] == [e["message"]["cursor"] for e in got]
        ids = [cursor_key(e["id"]) for e in got]
        assert ids == sorted(set(ids))
        opens, tickets = await page.evaluate("[window.opens, window.tickets]")
        assert opens >= 2
        # every EventSource took its own ticket and used it up (none was reused: a reused one
        # would be a 401 and leave the page without events); the ones whose connection the
        # cut refused are still there
        assert await db.fetchval(COUNT_TICKETS) == tickets - opens
        # nothing else came, nor a second copy
        await asyncio.sleep(0.3)
        assert len(await events(page)) == 6
    finally:
        await page.evaluate("window.reconnect = false")
        await page.close()
        await proxy.close()


async def test_a_page_from_an_origin_not_allowed_cannot_open_an_event_source(
    make_client: MakeClient,
    db: asyncpg.Connection,
    browser: Browser,
    backends: tuple[Backend, Backend],
) -> None:
    dashboard, stranger = backends
    client = await _service(make_client, dashboard)
    stranger.service = str(client.make_url("")).rstrip("/")
    stranger.stream = f"http://127.0.0.1:{client.port}/api/v1/events"
    stranger.html = EVENT_SOURCE_PAGE
    page = await browser.new_page()
    # what Chromium itself reports of the request (a page's script only sees an error event)
    urls: dict[str, str] = {}
    origins: dict[str, str] = {}
    statuses: dict[str, int] = {}
    cors: dict[str, str] = {}
    cdp = await page.context.new_cdp_session(page)
    cdp.on(
        "Network.requestWillBeSent",
        lambda event: urls.__setitem__(event["requestId"], event["request"]["url"]),
    )
    cdp.on(
        "Network.requestWillBeSentExtraInfo",
        lambda event: origins.__setitem__(
            event["requestId"], event["headers"].get("Origin", event["headers"].get("origin"))
        ),
    )
    cdp.on(
        "Network.responseReceivedExtraInfo",
        lambda event: statuses.__setitem__(event["requestId"], event["statusCode"]),
    )
    cdp.on(
        "Network.loadingFailed",
        lambda event: cors.__setitem__(
            event["requestId"], event.get("corsErrorStatus", {}).get("corsError", "")
        ),
    )
    await cdp.send("Network.enable")
    try:
        await page.goto(stranger.origin + "/")
        await page.evaluate("window.reconnect = false; connect()")

        async def failed() -> bool:
            return bool(await page.evaluate("window.errors.length"))

        await eventually(failed, timeout=10)
        [sent] = [r for r, url in urls.items() if url.startswith(stranger.stream + "?")]

        async def answered() -> bool:
            return sent in statuses and sent in cors

        await eventually(answered, timeout=5)
        # refused before its ticket was used, and without CORS headers: the page cannot even
        # read the refusal, and the EventSource gives up (CLOSED: no reconnect)
        assert origins[sent] == stranger.origin
        assert statuses[sent] == 403
        assert cors[sent] == "MissingAllowOriginHeader"
        assert await page.evaluate("[window.opens, window.errors, window.events]") == [0, [2], []]
        assert await db.fetchval(COUNT_TICKETS) == 1
        assert not client.app[HUB].subscribers
    finally:
        await page.close()
