"""Stream tickets: a web page opens the stream with a short-lived, single-use ticket instead of
a bearer token; and the Origin check of the browser routes."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, eventually
from tests.test_stream import INSERT_HEALTH, next_event, wait_subscribed

READ = {"Authorization": "Bearer reader-token"}
TOKENS: dict[str, Any] = {
    "auth": {
        "tokens": [
            {"name": "reader", "token": "reader-token", "scopes": ["read"]},
            {"name": "pusher", "token": "pusher-token", "scopes": ["write"]},
        ]
    },
    "host": {"enabled": False},
}
TICKETS = "/api/v1/stream/tickets"
COUNT = "SELECT count(*) FROM monitoring.stream_tickets"


def config(**web: Any) -> dict[str, Any]:
    return {**TOKENS, "web": web} if web else TOKENS


async def issue(client: TestClient[Any, Any], **headers: str) -> dict[str, Any]:
    resp = await client.post(TICKETS, headers={**READ, **headers})
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def error_of(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The contract's error body, checked for shape."""
    assert resp.content_type == "application/json"
    body: dict[str, dict[str, Any]] = await resp.json()
    assert set(body["error"]) >= {"code", "message"}
    return body["error"]


async def refused(client: TestClient[Any, Any], ticket: str, **headers: str) -> int:
    """The status of a WebSocket handshake that must fail."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect(f"/api/v1/stream?ticket={ticket}", headers=headers)
    return info.value.status


async def test_a_ticket_opens_the_stream_once(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config())
    body = await issue(client)
    assert set(body) == {"ticket", "expires_at"}
    ticket = body["ticket"]
    assert len(ticket) >= 40
    expires = datetime.fromisoformat(body["expires_at"])
    now = await db.fetchval("SELECT now()")
    assert now + timedelta(seconds=25) < expires <= now + timedelta(seconds=31)
    # stored hashed: the table holds nothing that opens a stream
    stored = await db.fetchrow("SELECT * FROM monitoring.stream_tickets")
    assert bytes(stored["ticket_hash"]) == hashlib.sha256(ticket.encode()).digest()
    assert (stored["token_name"], stored["scopes"]) == ("reader", ["read"])

    # no Authorization header: the ticket alone opens the stream
    ws = await client.ws_connect(f"/api/v1/stream?ticket={ticket}")
    await ws.send_json(
        {"type": "subscribe", "channels": ["health_metrics"], "filter": {"service": "api"}}
    )
    await wait_subscribed(client)
    row_id = await db.fetchval(INSERT_HEALTH, "api", 0.5)
    assert (await next_event(ws))["data"]["id"] == row_id
    assert await db.fetchval(COUNT) == 0  # used up

    # used once: a second handshake with it is refused before the upgrade, with the JSON error
    assert await refused(client, ticket) == 401
    resp = await client.get(f"/api/v1/stream?ticket={ticket}")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith('Bearer realm="monitoring-exporter"')
    assert (await error_of(resp))["code"] == "unauthorized"
    # the open stream is not affected
    later = await db.fetchval(INSERT_HEALTH, "api", 0.75)
    assert (await next_event(ws))["data"]["id"] == later
    await ws.close()


async def test_an_expired_ticket_is_refused_and_pruned(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config(stream_ticket_ttl="50ms"))

    async def wait_expired(ticket: dict[str, Any]) -> None:
        deadline = datetime.fromisoformat(ticket["expires_at"])

        async def past() -> bool:
            return bool(await db.fetchval("SELECT now() > $1", deadline))

        await eventually(past, timeout=5, interval=0.02)

    expired = await issue(client)
    await wait_expired(expired)
    assert await refused(client, expired["ticket"]) == 401
    assert await db.fetchval(COUNT) == 0
    # an expired ticket nobody presented goes when the next ticket is issued
    forgotten = await issue(client)
    await wait_expired(forgotten)
    fresh = await issue(client)
    rows = await db.fetch("SELECT ticket_hash FROM monitoring.stream_tickets")
    assert [bytes(r[0]) for r in rows] == [hashlib.sha256(fresh["ticket"].encode()).digest()]


async def test_a_ticket_from_one_replica_opens_the_stream_on_another(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    a = await make_client(config())
    b = await make_client(config())
    ticket = (await issue(a))["ticket"]
    ws = await b.ws_connect(f"/api/v1/stream?ticket={ticket}")
    await ws.send_json({"type": "subscribe", "channels": ["health_metrics"]})
    await wait_subscribed(b)
    row_id = await db.fetchval(INSERT_HEALTH, "api", 1.0)
    assert (await next_event(ws))["data"]["id"] == row_id
    # and it is used up everywhere
    assert await refused(a, ticket) == 401
    await ws.close()


async def test_two_handshakes_racing_with_one_ticket_open_one_stream(
    make_client: MakeClient,
) -> None:
    a = await make_client(config())
    b = await make_client(config())
    ticket = (await issue(a))["ticket"]
    answers = await asyncio.gather(
        a.get(f"/api/v1/stream?ticket={ticket}"), b.get(f"/api/v1/stream?ticket={ticket}")
    )
    # no upgrade headers: the one that got through fails the upgrade itself (400), the other 401
    assert sorted(r.status for r in answers) == [400, 401]


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ({"Authorization": "Basic cmVhZGVyOnJlYWRlcg=="}, 401, "unauthorized"),
        # every token has a scope; one without read may not subscribe, so gets no ticket
        ({"Authorization": "Bearer pusher-token"}, 403, "forbidden"),
    ],
)
async def test_a_ticket_needs_a_token_with_the_read_scope(
    make_client: MakeClient,
    db: asyncpg.Connection,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    client = await make_client(config())
    resp = await client.post(TICKETS, headers=headers)
    assert resp.status == status
    assert (await error_of(resp))["code"] == code
    if status == 401:
        assert "WWW-Authenticate" in resp.headers
    assert await db.fetchval(COUNT) == 0


@pytest.mark.parametrize("ticket", ["", "x", "A" * 43, "A" * 5000, "%00", "%F0%9F%90%8D"])
async def test_an_unknown_ticket_is_refused(
    make_client: MakeClient, db: asyncpg.Connection, ticket: str
) -> None:
    client = await make_client(config())
    mine = await issue(client)
    resp = await client.get(f"/api/v1/stream?ticket={ticket}")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].endswith('error="invalid_token"')
    assert (await error_of(resp))["code"] == "unauthorized"
    # nothing stored, nothing consumed: the real ticket still works
    assert await db.fetchval(COUNT) == 1
    ws = await client.ws_connect(f"/api/v1/stream?ticket={mine['ticket']}")
    await ws.close()


async def test_a_ticket_opens_only_the_stream_routes(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config())
    ticket = (await issue(client))["ticket"]
    resp = await client.get(f"/api/v1/health-metrics?ticket={ticket}")
    assert resp.status == 401
    # nor does it buy the next ticket (a leaked one would live for ever)
    resp = await client.post(f"{TICKETS}?ticket={ticket}")
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "unauthorized"
    assert await db.fetchval(COUNT) == 1  # neither consumed nor added to


async def test_with_auth_disabled_no_ticket_is_needed(make_client: MakeClient) -> None:
    client = await make_client({"auth": {"disabled": True}, "host": {"enabled": False}})
    body = await (await client.post(TICKETS)).json()
    ws = await client.ws_connect(f"/api/v1/stream?ticket={body['ticket']}")
    await ws.close()


# ------------------------------------------------------------------ origins


def own_origin(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("/")).rstrip("/")


async def test_a_page_from_another_origin_is_refused_unless_allowed(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config(allowed_origins=["http://dashboard.example:3000"]))
    ticket = (await issue(client))["ticket"]
    evil = {"Origin": "http://evil.example"}
    # before the upgrade and before the ticket is looked at
    assert await refused(client, ticket, **evil) == 403
    resp = await client.get(f"/api/v1/stream?ticket={ticket}", headers=evil)
    assert resp.status == 403
    error = await error_of(resp)
    assert error["code"] == "forbidden"
    assert "http://evil.example" in error["message"]
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert await db.fetchval(COUNT) == 1
    # no tickets for that page either, and none stored
    resp = await client.post(TICKETS, headers={**READ, **evil})
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "forbidden"
    assert await db.fetchval(COUNT) == 1
    # the allowed origin (any case) and the service's own open the stream
    ws = await client.ws_connect(
        f"/api/v1/stream?ticket={ticket}", headers={"Origin": "http://Dashboard.example:3000"}
    )
    await ws.close()
    again = (await issue(client))["ticket"]
    ws = await client.ws_connect(
        f"/api/v1/stream?ticket={again}", headers={"Origin": own_origin(client)}
    )
    await ws.close()


async def test_with_no_origins_configured_only_the_services_own_pages_may(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config())
    for origin in ("http://localhost:3000", "null", own_origin(client).replace("http", "https")):
        resp = await client.post(TICKETS, headers={**READ, "Origin": origin})
        assert resp.status == 403, origin
    assert await db.fetchval(COUNT) == 0
    resp = await client.post(TICKETS, headers={**READ, "Origin": own_origin(client)})
    assert resp.status == 201
    # a route that is not a browser route is not checked (CORS keeps pages out of those)
    resp = await client.get("/api/v1/health-metrics", headers={**READ, "Origin": "http://x"})
    assert resp.status == 200


async def test_cors_for_the_tickets_route(make_client: MakeClient, db: asyncpg.Connection) -> None:
    page = "http://dashboard.example:3000"
    client = await make_client(config(allowed_origins=[page]))
    preflight = await client.options(
        TICKETS,
        headers={
            "Origin": page,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == page
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert preflight.headers["Vary"] == "Origin"
    resp = await client.post(TICKETS, headers={**READ, "Origin": page})
    assert resp.status == 201
    assert resp.headers["Access-Control-Allow-Origin"] == page
    # the page can read why it failed, too
    resp = await client.post(TICKETS, headers={"Origin": page})
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == page
    assert "WWW-Authenticate" in resp.headers["Access-Control-Expose-Headers"]
    # a preflight from elsewhere is refused
    preflight = await client.options(
        TICKETS, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert await db.fetchval(COUNT) == 1


async def test_the_openapi_document_describes_tickets(make_client: MakeClient) -> None:
    client = await make_client(config())
    doc = await (await client.get("/api/v1/openapi.json")).json()
    post = doc["paths"][TICKETS]["post"]
    assert post["security"] == [{"bearer": ["read"]}]
    assert "201" in post["responses"] and "403" in post["responses"]
    stream = doc["paths"]["/api/v1/stream"]["get"]
    assert [p["name"] for p in stream["parameters"]] == ["ticket"]
    assert "ticket" in stream["responses"]["401"]["description"]


async def test_cors_for_server_sent_events(make_client: MakeClient, db: asyncpg.Connection) -> None:
    # an EventSource's answer starts before its handler returns: the CORS headers go with it
    page = "http://dashboard.example:3000"
    client = await make_client(config(allowed_origins=[page]))
    events = "/api/v1/events?channels=health_metrics&ticket="
    ticket = (await issue(client))["ticket"]
    resp = await client.get(events + ticket, headers={"Origin": page})
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    assert resp.headers["Access-Control-Allow-Origin"] == page
    assert resp.headers["Vary"] == "Origin"
    resp.close()
    # the page can read why it failed: a spent ticket, a malformed cursor
    resp = await client.get(events + ticket, headers={"Origin": page})
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "unauthorized"
    assert resp.headers["Access-Control-Allow-Origin"] == page
    again = (await issue(client))["ticket"]
    resp = await client.get(events + again + "&after=12", headers={"Origin": page})
    assert resp.status == 400
    assert (await error_of(resp))["details"][0]["path"] == "after"
    assert resp.headers["Access-Control-Allow-Origin"] == page
    # another origin: 403 without CORS, before the ticket is looked at
    third = (await issue(client))["ticket"]
    resp = await client.get(events + third, headers={"Origin": "http://evil.example"})
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "forbidden"
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert await db.fetchval(COUNT) == 1
