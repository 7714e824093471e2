"""The change feed: bad input refused without harming others, resets after retention, 1011
after a failed read, changes committed while the listener reconnects, Server-Sent Events, and
the status_changes channel."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.features.stream import HUB
from tests.conftest import MakeClient, eventually
from tests.test_stream import INSERT_HEALTH, cursor_of, next_event, subscribe, wait_subscribed

OPEN = {"auth": {"disabled": True}, "host": {"enabled": False}}


async def closed(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """Read until the server closes; the close message."""
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return msg


async def logged(db: asyncpg.Connection) -> int:
    """Changes logged (but the overview's verdict, which the leader logs when it likes)."""
    return int(
        await db.fetchval(
            "SELECT count(*) FROM monitoring.change_log"
            " WHERE data->>'kind' IS DISTINCT FROM 'overall'"
        )
    )


@pytest.mark.parametrize(
    ("frame", "code", "says"),
    [
        ("not json", 1008, "not JSON"),
        (json.dumps({"type": "subscribe", "channels": ["nope"]}), 1008, "unknown channel 'nope'"),
        (
            json.dumps(
                {"type": "subscribe", "channels": ["health_metrics"], "after": {"x": "1-1"}}
            ),
            1008,
            "invalid subscribe message",
        ),
        # ahead of everything released (a forged or foreign cursor)
        (
            json.dumps(
                {
                    "type": "subscribe",
                    "channels": ["health_metrics"],
                    "after": {"health_metrics": "9000000000000000000-1"},
                }
            ),
            1008,
            "ahead of every change",
        ),
        ("x" * 70_000, 1009, ""),
    ],
)
async def test_bad_subscriptions_are_closed_and_others_keep_their_changes(
    make_client: MakeClient, db: asyncpg.Connection, frame: str, code: int, says: str
) -> None:
    client = await make_client(OPEN)
    good = await subscribe(client, {"channels": ["health_metrics"]})
    await wait_subscribed(client)
    before = await logged(db)
    bad = await client.ws_connect("/api/v1/stream")
    await bad.send_str(frame)
    if code == 1008:
        error = await bad.receive(timeout=5)
        assert error.json()["type"] == "error"
        assert says in error.json()["message"]
    msg = await closed(bad)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert msg.data == code
    assert await logged(db) == before  # nothing stored
    assert len(client.app[HUB].subscribers) == 1
    row_id = await db.fetchval(INSERT_HEALTH, "api", 1.0)
    assert (await next_event(good))["data"]["id"] == row_id
    await good.close()


async def test_a_cursor_older_than_the_log_gets_a_reset_then_live_changes(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    first = await db.fetchval(INSERT_HEALTH, "api", 1.0)
    old = await cursor_of(db, "system_health_metrics", first)
    second = await db.fetchval(INSERT_HEALTH, "api", 2.0)
    await cursor_of(db, "system_health_metrics", second)
    # retention removes both (they are backdated past the one-hour minimum)
    await db.execute("UPDATE monitoring.change_log SET at = now() - interval '2 days'")
    assert await db.fetchval("SELECT monitoring.prune_change_log('1 hour')") >= 2
    ws = await subscribe(client, {"channels": ["health_metrics"], "after": {"health_metrics": old}})
    reset = await next_event(ws)
    assert reset["type"] == "reset"
    assert "no longer kept" in reset["message"]
    await wait_subscribed(client)
    live = await db.fetchval(INSERT_HEALTH, "api", 3.0)
    event = await next_event(ws)
    assert (event["type"], event["data"]["id"]) == ("event", live)
    await ws.close()


async def test_retention_keeps_an_hour_whatever_the_caller_asks(db: asyncpg.Connection) -> None:
    await db.execute(INSERT_HEALTH, "api", 1.0)
    await db.execute("UPDATE monitoring.change_log SET at = now() - interval '30 minutes'")
    assert await db.fetchval("SELECT monitoring.prune_change_log('1 second')") == 0
    assert await db.fetchval("SELECT monitoring.prune_change_log(NULL)") == 0
    assert await logged(db) == 1


async def test_a_failed_read_closes_with_1011_and_the_client_resumes_without_a_gap(
    make_client: MakeClient, db: asyncpg.Connection, writer_url: str
) -> None:
    client = await make_client(OPEN)
    ws = await subscribe(client, {"channels": ["health_metrics"]})
    await wait_subscribed(client)
    seen = await db.fetchval(INSERT_HEALTH, "api", 1.0)
    event = await next_event(ws)
    assert event["data"]["id"] == seen
    # the service's login loses the right to read the log: its next read fails for real
    login = await db.fetchval(
        "SELECT usename FROM pg_stat_activity WHERE application_name = 'monitoring-exporter'"
        " AND datname = current_database() LIMIT 1"
    )
    await db.execute(f'REVOKE monitoring_writer FROM "{login}"')
    missed = await db.fetchval(INSERT_HEALTH, "api", 2.0)
    msg = await closed(ws)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1011)
    await db.execute(f'GRANT monitoring_writer TO "{login}"')
    again = await subscribe(
        client, {"channels": ["health_metrics"], "after": {"health_metrics": event["cursor"]}}
    )
    assert (await next_event(again))["data"]["id"] == missed
    await again.close()


async def test_changes_committed_while_the_listener_reconnects_reach_connected_clients(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    ws = await subscribe(client, {"channels": ["health_metrics"]})
    await wait_subscribed(client)
    ids = []
    for n in range(3):
        await db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'monitoring-exporter-listener'"
            " AND datname = current_database()"
        )
        ids.append(await db.fetchval(INSERT_HEALTH, "api", float(n)))
    assert [(await next_event(ws))["data"]["id"] for _ in ids] == ids
    await ws.close()


async def sse(
    client: TestClient[Any, Any], path: str, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    return resp


async def next_sse(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next event (comments skipped): its id, event and decoded data."""
    fields: dict[str, Any] = {}
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode().rstrip("\n")
        if line == "" and fields:
            return fields
        if line.startswith(":") or not line:
            continue
        name, _, value = line.partition(": ")
        fields[name] = json.loads(value) if name == "data" else value


async def test_server_sent_events_follow_and_resume_with_last_event_id(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    resp = await sse(client, "/api/v1/events?channels=health_metrics&service=api")
    await wait_subscribed(client)
    await db.execute(INSERT_HEALTH, "other", 0.5)
    first = await db.fetchval(INSERT_HEALTH, "api", 1.0)
    event = await next_sse(resp)
    assert event["event"] == "event"
    assert event["id"] == event["data"]["cursor"]
    assert event["data"]["data"]["id"] == first
    resp.close()
    missed = [await db.fetchval(INSERT_HEALTH, "api", float(n)) for n in range(3)]
    again = await sse(
        client,
        "/api/v1/events?channels=health_metrics&service=api",
        headers={"Last-Event-ID": event["id"]},
    )
    assert [(await next_sse(again))["data"]["data"]["id"] for _ in missed] == missed
    again.close()


@pytest.mark.parametrize(
    ("query", "headers", "where"),
    [
        ("channels=nope", {}, "channels"),
        ("channels=", {}, "channels"),
        ("channels=health_metrics&after=12", {}, "after"),
        ("channels=health_metrics", {"Last-Event-ID": "1-x"}, "Last-Event-ID"),
        ("channels=health_metrics&after=9000000000000000000-1", {}, "after"),
        ("channels=system_alerts&severity=huge", {}, "filter"),
        ("channels=health_metrics&colour=red", {}, "colour"),
    ],
)
async def test_server_sent_events_refuse_bad_queries_with_400(
    make_client: MakeClient, db: asyncpg.Connection, query: str, headers: dict[str, str], where: str
) -> None:
    client = await make_client(OPEN)
    before = await logged(db)
    resp = await client.get(f"/api/v1/events?{query}", headers=headers)
    assert resp.status == 400
    body = await resp.json()
    assert body["error"]["code"] == "invalid_query"
    assert body["error"]["details"][0]["path"].startswith(where)
    assert await logged(db) == before
    assert not client.app[HUB].subscribers


async def test_server_sent_events_need_the_read_scope(make_client: MakeClient) -> None:
    client = await make_client(
        {"auth": {"tokens": [{"name": "w", "token": "w", "scopes": ["write"]}]}}
    )
    assert (await client.get("/api/v1/events?channels=health_metrics")).status == 401
    resp = await client.get(
        "/api/v1/events?channels=health_metrics", headers={"Authorization": "Bearer w"}
    )
    assert resp.status == 403


async def next_of(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """The next status change of a kind (the overall verdict's pass every filter but status)."""
    while True:
        event = await next_event(ws)
        if event["data"]["kind"] == kind:
            return event


async def test_status_changes_carry_transitions_only_and_filter(
    make_client: MakeClient,
) -> None:
    client = await make_client(OPEN)
    ws = await subscribe(client, {"channels": ["status_changes"], "filter": {"dataset": "sales"}})
    await wait_subscribed(client)
    url = "/api/v1/quality-indicators"
    for dataset, score in [("sales", 100), ("sales", 100), ("other", 50), ("sales", 90)]:
        body = {"source": "shop", "dataset": dataset, "dimension": "accuracy", "score": score}
        assert (await client.post(url, json=body)).status == 201
    new, worse = await next_of(ws, "quality"), await next_of(ws, "quality")
    assert (new["data"]["kind"], new["data"]["from_status"], new["data"]["status"]) == (
        "quality",
        None,
        "healthy",
    )
    assert (worse["data"]["from_status"], worse["data"]["status"]) == ("healthy", "critical")
    assert worse["data"]["dataset"] == "sales"
    await ws.close()
    health = await subscribe(
        client,
        {
            "channels": ["status_changes"],
            "filter": {"metric_type": "latency", "status": ["critical"]},
        },
    )
    await wait_subscribed(client)
    push = "/api/v1/health-metrics"
    for value in (100, 2000, 2000):
        body = {
            "service": "api",
            "metric_type": "latency",
            "value": value,
            "unit": "ms",
            "thresholds": {"warning": 500, "critical": 1000},
        }
        assert (await client.post(push, json=body)).status == 201
    event = await next_of(health, "health")
    assert (event["data"]["service_name"], event["data"]["status"]) == ("api", "critical")
    await health.close()


async def test_a_change_of_the_overall_verdict_is_a_status_change(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)

    async def recorded() -> bool:
        return await db.fetchval("SELECT verdict FROM monitoring.change_feed_state") is not None

    await eventually(recorded, timeout=20)
    ws = await subscribe(
        client, {"channels": ["status_changes"], "filter": {"status": ["critical"]}}
    )
    await wait_subscribed(client)
    alert = {"title": "down", "severity": "critical", "alert_type": "system_error"}
    assert (await client.post("/api/v1/alerts", json=alert)).status == 201
    event = await next_of(ws, "overall")
    assert event["data"]["status"] == "critical"
    # once: the verdict holds, nothing more is logged for it
    await asyncio.sleep(0)
    overall = await db.fetchval(
        "SELECT count(*) FROM monitoring.change_log WHERE data->>'kind' = 'overall'"
        " AND data->>'status' = 'critical'"
    )
    assert overall == 1
    await ws.close()


async def test_of_several_cursors_in_after_the_latest_counts(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(OPEN)
    ids = [await db.fetchval(INSERT_HEALTH, "api", float(i)) for i in range(3)]
    early = await cursor_of(db, "system_health_metrics", ids[0])
    later = await cursor_of(db, "system_health_metrics", ids[1])
    # cursors are one order across channels: the client has everything up to the later one
    ws = await subscribe(
        client,
        {
            "channels": ["health_metrics", "data_quality"],
            "after": {"health_metrics": early, "data_quality": later},
        },
    )
    assert (await next_event(ws))["data"]["id"] == ids[2]
    await ws.close()


async def test_an_unknown_status_in_a_filter_is_refused(make_client: MakeClient) -> None:
    client = await make_client(OPEN)
    ws = await subscribe(
        client, {"channels": ["status_changes"], "filter": {"status": ["sideways"]}}
    )
    error = await ws.receive(timeout=5)
    assert "$.filter.status[0]" in error.json()["message"]
    assert (await closed(ws)).data == 1008
