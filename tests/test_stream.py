"""The WebSocket stream: live changes, replay after a cursor, filters, slow clients."""

from __future__ import annotations

from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.features.stream import HUB
from tests.conftest import MakeClient, eventually

OPEN = {"auth": {"disabled": True}}
INSERT_HEALTH = (
    "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status)"
    " VALUES ($1, 'cpu', $2, 'healthy') RETURNING id"
)


async def next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.TEXT or msg.type == aiohttp.WSMsgType.BINARY, msg
    event: dict[str, Any] = msg.json()
    return event


async def subscribe(
    client: TestClient[Any, Any], message: dict[str, Any]
) -> aiohttp.ClientWebSocketResponse:
    ws = await client.ws_connect("/api/v1/stream")
    await ws.send_json({"type": "subscribe", **message})
    return ws


async def wait_subscribed(client: TestClient[Any, Any], n: int = 1) -> None:
    """Wait until the server has registered the subscriptions (replay done, following live)."""
    hub = client.app[HUB]

    async def registered() -> bool:
        return len(hub.subscribers) >= n

    await eventually(registered, timeout=5, interval=0.01)


async def cursor_of(db: asyncpg.Connection, table: str, row_id: int) -> str:
    """The stream cursor of the change a row made (from the change log)."""
    key = "(data->'event'->>'id')" if table == "system_alert_events" else "(data->>'id')"
    channel = {
        "system_health_metrics": "health_metrics",
        "data_quality_indicators": "data_quality",
        "system_alert_events": "system_alerts",
    }[table]
    query = (
        f"SELECT xid::text AS xid, id, xid < pg_snapshot_xmin(pg_current_snapshot()) AS released"
        f" FROM monitoring.change_log WHERE channel = $1 AND {key}::bigint = $2"
    )

    # a client only ever holds released cursors (every older transaction has finished)
    async def released() -> bool:
        return bool((await db.fetchrow(query, channel, row_id))["released"])

    await eventually(released, timeout=10, interval=0.01)
    row = await db.fetchrow(query, channel, row_id)
    return f"{row['xid']}-{row['id']}"


def order(cursor: str) -> tuple[int, int]:
    xid, _, row = cursor.partition("-")
    return (int(xid), int(row))


async def test_live_inserts_arrive_as_events(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    # the service samples its own host into the same table: follow only the pushed service
    ws = await subscribe(client, {"channels": ["health_metrics"], "filter": {"service": "api"}})
    await wait_subscribed(client)
    row_id = await db.fetchval(INSERT_HEALTH, "api", 0.25)
    event = await next_event(ws)
    assert event["type"] == "event"
    assert event["channel"] == "health_metrics"
    assert event["op"] == "insert"
    assert event["cursor"] == await cursor_of(db, "system_health_metrics", row_id)
    assert event["data"]["id"] == row_id
    assert event["data"]["service_name"] == "api"
    assert event["data"]["value"] == 0.25
    assert event["data"]["metadata"] == {}
    await ws.close()


async def test_after_a_cursor_the_missed_changes_are_replayed_first(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    ids = [await db.fetchval(INSERT_HEALTH, "api", float(i)) for i in range(4)]
    ws = await subscribe(
        client,
        {
            "channels": ["health_metrics"],
            "after": {"health_metrics": await cursor_of(db, "system_health_metrics", ids[1])},
            "filter": {"service": "api"},
        },
    )
    assert [(await next_event(ws))["data"]["id"] for _ in range(2)] == ids[2:]
    await wait_subscribed(client)
    live = await db.fetchval(INSERT_HEALTH, "api", 9.0)
    event = await next_event(ws)
    assert event["data"]["id"] == live
    assert event["cursor"] == await cursor_of(db, "system_health_metrics", live)
    await ws.close()


async def test_alert_acknowledgement_is_a_change_too(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    ws = await subscribe(client, {"channels": ["system_alerts"], "filter": {"severity": ["high"]}})
    await wait_subscribed(client)
    async with db.transaction():
        alert_id = await db.fetchval(
            "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, title, source, starts_at)"
            " VALUES ('f', 'performance', 'high', 'slow', 'api', now()) RETURNING id"
        )
        await db.execute(
            "INSERT INTO monitoring.system_alert_events (alert_id, to_status, actor) VALUES ($1, 'active', 'api')",
            alert_id,
        )
    async with db.transaction():
        await db.execute(
            "UPDATE monitoring.system_alerts SET status = 'acknowledged', acknowledged_at = now(),"
            " acknowledged_by = 'ann' WHERE id = $1",
            alert_id,
        )
        await db.execute(
            "INSERT INTO monitoring.system_alert_events (alert_id, from_status, to_status, actor)"
            " VALUES ($1, 'active', 'acknowledged', 'ann')",
            alert_id,
        )
    created, acked = await next_event(ws), await next_event(ws)
    # each event carries the lifecycle change, and the row as it is now
    assert (created["op"], created["data"]["event"]["to_status"]) == ("insert", "active")
    assert (acked["op"], acked["data"]["event"]["to_status"]) == ("update", "acknowledged")
    assert acked["data"]["acknowledged_by"] == "ann"
    # a reconnecting client that saw the creation gets the acknowledgement replayed
    again = await subscribe(
        client, {"channels": ["system_alerts"], "after": {"system_alerts": created["cursor"]}}
    )
    replayed = await next_event(again)
    assert replayed["cursor"] == acked["cursor"]
    await ws.close()
    await again.close()


async def test_filters_narrow_by_service(make_client: MakeClient, db: asyncpg.Connection) -> None:
    client = await make_client(OPEN)
    ws = await subscribe(client, {"channels": ["health_metrics"], "filter": {"service": "db"}})
    await wait_subscribed(client)
    await db.fetchval(INSERT_HEALTH, "api", 1.0)
    wanted = await db.fetchval(INSERT_HEALTH, "db", 2.0)
    event = await next_event(ws)
    assert event["data"]["id"] == wanted
    await ws.close()


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe", "channels": ["nope"]},
        {"type": "subscribe", "channels": ["health_metrics"], "after": {"health_metrics": "x"}},
        # the old cursor (a row id) is refused like any bad cursor
        {"type": "subscribe", "channels": ["health_metrics"], "after": {"health_metrics": "12"}},
        # beyond bigint would fail the replay query
        {
            "type": "subscribe",
            "channels": ["health_metrics"],
            "after": {"health_metrics": "9999999999999999999-1"},
        },
        {
            "type": "subscribe",
            "channels": ["health_metrics"],
            "after": {"health_metrics": "\u0661-\u0662"},
        },
        {"type": "subscribe", "channels": ["health_metrics"], "after": {"health_metrics": "01-2"}},
        {"type": "hello"},
    ],
)
async def test_invalid_subscriptions_are_refused(
    make_client: MakeClient, message: dict[str, Any]
) -> None:
    client = await make_client(OPEN)
    ws = await client.ws_connect("/api/v1/stream")
    await ws.send_json(message)
    error = await ws.receive(timeout=5)
    assert error.json()["type"] == "error"
    closing = await ws.receive(timeout=5)
    assert closing.type == aiohttp.WSMsgType.CLOSE
    assert closing.data == 1008


async def test_a_client_that_cannot_keep_up_is_closed_with_1013(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client({**OPEN, "web": {"stream_queue_size": 10}})
    ws = await subscribe(client, {"channels": ["health_metrics"]})
    await wait_subscribed(client)
    # the client reads nothing while several MB of changes arrive
    for _ in range(10):
        await db.execute(
            "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status, metadata)"
            " SELECT 'api', 'cpu', i, 'healthy', jsonb_build_object('pad', repeat('x', 4000))"
            " FROM generate_series(1, 500) i"
        )
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            break
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == 1013


async def test_the_stream_needs_the_read_scope(make_client: MakeClient) -> None:
    client = await make_client(
        {"auth": {"tokens": [{"name": "w", "token": "w", "scopes": ["write"]}]}}
    )
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/api/v1/stream")
    assert info.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/api/v1/stream", headers={"Authorization": "Bearer w"})
    assert info.value.status == 403


async def test_webhook_acknowledge_and_resolve_reach_the_stream(make_client: MakeClient) -> None:
    client = await make_client(OPEN)
    ws = await subscribe(client, {"channels": ["system_alerts"]})
    await wait_subscribed(client)
    alert = {
        "status": "firing",
        "labels": {"alertname": "DiskFull", "severity": "critical", "service": "db"},
        "annotations": {"summary": "Disk full"},
        "startsAt": "2026-11-27T10:00:00Z",
        "fingerprint": "feed",
    }
    body = {"version": "4", "status": "firing", "receiver": "x", "alerts": [alert]}
    assert (await client.post("/api/v1/alertmanager", json=body)).status == 200
    opened = await next_event(ws)
    assert (opened["op"], opened["data"]["event"]["to_status"]) == ("insert", "active")
    alert_id = opened["data"]["id"]
    ack = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ann"})
    assert ack.status == 200
    acked = await next_event(ws)
    assert (acked["op"], acked["data"]["event"]["actor"]) == ("update", "ann")
    resolved_body = {**body, "status": "resolved", "alerts": [{**alert, "status": "resolved"}]}
    assert (await client.post("/api/v1/alertmanager", json=resolved_body)).status == 200
    resolved = await next_event(ws)
    assert resolved["data"]["event"]["to_status"] == "resolved"
    assert resolved["data"]["resolved_by"] == "alertmanager"
    assert order(opened["cursor"]) < order(acked["cursor"]) < order(resolved["cursor"])
    await ws.close()


async def test_pushed_health_metrics_reach_the_stream(make_client: MakeClient) -> None:
    client = await make_client({**OPEN, "host": {"enabled": False}})
    ws = await subscribe(client, {"channels": ["health_metrics"], "filter": {"service": "api"}})
    await wait_subscribed(client)
    push = {"service": "api", "metric_type": "response_time", "value": 250, "unit": "ms"}
    resp = await client.post("/api/v1/health-metrics", json=push)
    assert resp.status == 201
    event = await next_event(ws)
    assert event["data"]["id"] == (await resp.json())["id"]
    assert event["data"]["value"] == 0.25
    assert event["data"]["unit"] == "s"
    await ws.close()
