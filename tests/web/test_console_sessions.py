"""Console sessions: sign-in with a token, the cookie on the API, anti-forgery, sign-out."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.web.sessions import GRAFANA_DASHBOARDS
from tests.conftest import MakeClient
from tests.support import peers

CONFIG = {
    "auth": {
        "tokens": [
            {"name": "grafana", "token": "r-token", "scopes": ["read"]},
            {"name": "oncall", "token": "o-token", "scopes": ["read", "ack"]},
            {"name": "boss", "token": "a-token", "scopes": ["admin"]},
        ]
    },
    "console": {"grafana_url": "https://grafana.example.com/"},
}
ONCALL = {"Authorization": "Bearer o-token"}


class Signed:
    """A signed-in browser, as far as HTTP goes: its cookie and anti-forgery token."""

    def __init__(self, client: TestClient[Any, Any], cookie: str, csrf: str) -> None:
        self.client, self.cookie, self.csrf = client, cookie, csrf

    def headers(self, *, csrf: bool = True, origin: str | None = "self") -> dict[str, str]:
        out = {"Cookie": f"mexp_session={self.cookie}"}
        if csrf:
            out["X-CSRF-Token"] = self.csrf
        if origin == "self":
            out["Origin"] = f"http://{self.client.host}:{self.client.port}"
        elif origin is not None:
            out["Origin"] = origin
        return out


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    made = await make_client(CONFIG)
    return made


async def sign_in(client: TestClient[Any, Any], token: str) -> Signed:
    resp = await client.post("/api/v1/session", json={"token": token})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    cookie = SimpleCookie(resp.headers["Set-Cookie"])["mexp_session"]
    client.session.cookie_jar.clear()  # the tests send the cookie themselves
    return Signed(client, cookie.value, body["csrf_token"])


async def alert(db: asyncpg.Connection) -> int:
    alert_id: int = await db.fetchval(
        "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, status, title,"
        " source, starts_at) VALUES ('f1', 'security', 'high', 'active', 'Intrusion', 'api', now())"
        " RETURNING id"
    )
    return alert_id


async def status_of(db: asyncpg.Connection, alert_id: int) -> str:
    status: str = await db.fetchval(
        "SELECT status FROM monitoring.system_alerts WHERE id = $1", alert_id
    )
    return status


async def test_sign_in_sets_a_strict_http_only_cookie_and_stores_only_its_hash(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post("/api/v1/session", json={"token": "o-token"})
    assert resp.status == 201
    body = await resp.json()
    assert (body["name"], body["scopes"], body["auth_disabled"]) == (
        "oncall",
        ["ack", "read"],
        False,
    )
    assert len(body["csrf_token"]) >= 32
    assert body["grafana"][0] == {
        "title": "Overview",
        "uid": "monitoring-overview",
        "url": "https://grafana.example.com/d/monitoring-overview",
    }
    raw = resp.headers["Set-Cookie"]
    morsel = SimpleCookie(raw)["mexp_session"]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert not morsel["secure"]  # plain HTTP here; request.secure adds it under TLS
    assert int(morsel["max-age"]) == 12 * 3600
    rows = await db.fetch("SELECT id_hash, token_name, scopes FROM monitoring.console_sessions")
    assert [(r["token_name"], sorted(r["scopes"])) for r in rows] == [("oncall", ["ack", "read"])]
    assert morsel.value.encode() not in rows[0]["id_hash"]


async def test_a_wrong_token_is_refused_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post("/api/v1/session", json={"token": "guess"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert "Set-Cookie" not in resp.headers
    resp = await client.post("/api/v1/session", json={"token": ""})
    assert resp.status == 400
    assert await db.fetchval("SELECT count(*) FROM monitoring.console_sessions") == 0


async def test_the_cookie_is_the_tokens_principal_on_the_api(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    me = await sign_in(client, "o-token")
    resp = await client.get("/api/v1/alerts", headers=me.headers(origin=None))
    assert resp.status == 200
    resp = await client.get("/api/v1/session", headers=me.headers(origin=None))
    assert (await resp.json())["csrf_token"] == me.csrf
    alert_id = await alert(db)
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ann"}, headers=me.headers()
    )
    assert resp.status == 200, await resp.text()
    assert await status_of(db, alert_id) == "acknowledged"
    # the cookie holds no more than the token: a read-only person cannot act
    reader = await sign_in(client, "r-token")
    resp = await client.post(
        f"/api/v1/alerts/{alert_id}/resolve", json={"by": "x"}, headers=reader.headers()
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    assert await status_of(db, alert_id) == "acknowledged"


async def test_writes_with_the_cookie_need_the_anti_forgery_token_and_this_origin(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    me = await sign_in(client, "o-token")
    alert_id = await alert(db)
    url = f"/api/v1/alerts/{alert_id}/acknowledge"
    for headers in (
        me.headers(csrf=False),
        me.headers(csrf=False, origin=None),
        {**me.headers(), "X-CSRF-Token": me.csrf[:-1] + ("A" if me.csrf[-1] != "A" else "B")},
        me.headers(origin="https://evil.example"),
        me.headers(origin="null"),
    ):
        resp = await client.post(url, json={"by": "mallory"}, headers=headers)
        assert resp.status == 403, headers
        assert (await resp.json())["error"]["code"] == "csrf_failed"
    assert await status_of(db, alert_id) == "active"
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_alert_events") == 0
    # a bearer token is not a cookie: no anti-forgery token needed
    resp = await client.post(url, json={"by": "ann"}, headers=ONCALL)
    assert resp.status == 200


async def test_a_tampered_or_expired_cookie_is_401_and_cleared(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    me = await sign_in(client, "o-token")
    forged = Signed(client, me.cookie[:-2] + "xx", me.csrf)
    for who in (forged, Signed(client, "short", me.csrf)):
        resp = await client.get("/api/v1/alerts", headers=who.headers(origin=None))
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "session_invalid"
        assert SimpleCookie(resp.headers["Set-Cookie"])["mexp_session"]["max-age"] == "0"
    await db.execute(
        "UPDATE monitoring.console_sessions SET created_at = now() - interval '13 hours',"
        " expires_at = now() - interval '1 hour'"
    )
    resp = await client.get("/api/v1/session", headers=me.headers(origin=None))
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "session_invalid"


async def test_sign_out_ends_the_session_on_every_replica(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    me = await sign_in(client, "o-token")
    resp = await client.delete("/api/v1/session", headers=me.headers(csrf=False))
    assert resp.status == 403  # a cross-site page cannot sign a person out either
    assert await db.fetchval("SELECT count(*) FROM monitoring.console_sessions") == 1
    resp = await client.delete("/api/v1/session", headers=me.headers())
    assert resp.status == 204
    assert SimpleCookie(resp.headers["Set-Cookie"])["mexp_session"]["max-age"] == "0"
    assert await db.fetchval("SELECT count(*) FROM monitoring.console_sessions") == 0
    resp = await client.get("/api/v1/alerts", headers=me.headers(origin=None))
    assert resp.status == 401


async def test_a_cross_site_sign_in_is_refused(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post(
        "/api/v1/session", json={"token": "o-token"}, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "csrf_failed"
    assert await db.fetchval("SELECT count(*) FROM monitoring.console_sessions") == 0


async def test_a_token_removed_from_the_config_ends_its_sessions(
    make_client: MakeClient, client: TestClient[Any, Any]
) -> None:
    me = await sign_in(client, "o-token")
    others = {"auth": {"tokens": [CONFIG["auth"]["tokens"][0]]}}  # type: ignore[index]
    other = await make_client(others)
    resp = await other.get("/api/v1/alerts", headers={"Cookie": f"mexp_session={me.cookie}"})
    assert resp.status == 401
    # and another replica with the same tokens honours it
    same = await make_client(CONFIG)
    resp = await same.get("/api/v1/alerts", headers={"Cookie": f"mexp_session={me.cookie}"})
    assert resp.status == 200


async def test_demo_mode_needs_no_sign_in(make_client: MakeClient) -> None:
    client = await make_client({"auth": {"disabled": True}})
    resp = await client.get("/api/v1/session")
    assert resp.status == 200
    body = await resp.json()
    assert (body["name"], body["auth_disabled"], body["csrf_token"]) == ("anonymous", True, None)


async def test_the_page_has_strict_security_headers(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    page = await resp.text()
    assert "<script>" not in page and 'src="/console/app.js"' in page
    resp = await client.get("/console/app.js")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/javascript")
    assert (await client.get("/console/nothing.js")).status == 404
    assert (await client.get("/console/__init__.py")).status == 404


def test_the_grafana_links_name_the_shipped_dashboards() -> None:
    shipped = {
        json.loads(path.read_text())["uid"]
        for path in (peers.REPO / "grafana" / "dashboards").glob("*.json")
    }
    assert set(GRAFANA_DASHBOARDS.values()) == shipped


async def test_a_session_holds_what_its_token_still_allows(
    make_client: MakeClient, client: TestClient[Any, Any]
) -> None:
    boss = await sign_in(client, "a-token")
    # the same name, now read-only (another replica with a newer configuration)
    narrowed = {"auth": {"tokens": [{"name": "boss", "token": "a-token-2", "scopes": ["read"]}]}}
    other = await make_client(narrowed)
    resp = await other.get("/api/v1/session", headers={"Cookie": f"mexp_session={boss.cookie}"})
    assert (await resp.json())["scopes"] == ["read"]
    resp = await other.get("/api/v1/alerts", headers={"Cookie": f"mexp_session={boss.cookie}"})
    assert resp.status == 200
    resp = await other.put(
        "/api/v1/thresholds/db/cpu",
        json={"critical": 0.9},
        headers={**boss.headers(), "Origin": f"http://{other.host}:{other.port}"},
    )
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
