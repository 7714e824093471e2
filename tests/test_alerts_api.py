"""The alerts API: manual alerts, acknowledge/resolve, listing, history, auto-resolve, demo."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.domain import alert as lc
from tests.conftest import MakeClient, eventually
from tests.test_alertmanager_webhook import am_alert, notification, post

CONFIG = {
    "auth": {
        "tokens": [
            {"name": "alertmanager", "token": "w-token", "scopes": ["write"]},
            {"name": "grafana", "token": "r-token", "scopes": ["read"]},
            {"name": "oncall", "token": "o-token", "scopes": ["read", "ack"]},
        ]
    },
    "alerts": {"auto_resolve_interval": "50ms"},
}
W = {"Authorization": "Bearer w-token"}
R = {"Authorization": "Bearer r-token"}
ONCALL = {"Authorization": "Bearer o-token"}


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client(CONFIG)


async def create(client: TestClient[Any, Any], **body: Any) -> dict[str, Any]:
    body = {"title": "Disk full", "severity": "high", "alert_type": "system_error"} | body
    resp = await client.post("/api/v1/alerts", json=body, headers=W)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def test_create_then_get_with_history(client: TestClient[Any, Any]) -> None:
    made = await create(client, service="db", description="85%", labels={"host": "db-1"})
    assert (made["status"], made["source"], made["service_name"]) == ("active", "api", "db")
    assert made["labels"] == {"host": "db-1"} and made["auto_resolve"] is False
    resp = await client.get(f"/api/v1/alerts/{made['id']}", headers=R)
    assert resp.status == 200
    got = await resp.json()
    assert got["title"] == "Disk full"
    assert [(e["from_status"], e["to_status"], e["actor"]) for e in got["events"]] == [
        (None, "active", "alertmanager")
    ]


async def test_acknowledge_resolve_and_conflict(client: TestClient[Any, Any]) -> None:
    alert_id = (await create(client))["id"]
    url = f"/api/v1/alerts/{alert_id}"
    assert (await client.post(url + "/acknowledge", json={"by": "ann"}, headers=R)).status == 403
    first = await client.post(
        url + "/acknowledge", json={"by": "ann", "note": "on it"}, headers=ONCALL
    )
    assert first.status == 200
    body = await first.json()
    assert (body["status"], body["acknowledged_by"]) == ("acknowledged", "ann")
    again = await client.post(url + "/acknowledge", json={"by": "bob"}, headers=ONCALL)
    assert again.status == 200 and (await again.json())["acknowledged_by"] == "ann"
    done = await client.post(url + "/resolve", json={"by": "bob", "note": "freed"}, headers=ONCALL)
    assert (await done.json())["resolved_by"] == "bob"
    assert (await client.post(url + "/resolve", json={"by": "c"}, headers=ONCALL)).status == 200
    late = await client.post(url + "/acknowledge", json={"by": "ann"}, headers=ONCALL)
    assert late.status == 409
    error = (await late.json())["error"]
    assert error["code"] == "conflict" and "resolved" in error["message"]
    history = (await (await client.get(url, headers=R)).json())["events"]
    assert [(e["from_status"], e["to_status"], e["actor"], e["note"]) for e in history] == [
        (None, "active", "alertmanager", "created through the API"),
        ("active", "acknowledged", "ann", "on it"),
        ("acknowledged", "resolved", "bob", "freed"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/v1/alerts/999/acknowledge", {"by": "a"}, 404),
        # an id that is no integer, or beyond bigint, cannot exist: the path is invalid
        ("POST", "/api/v1/alerts/abc/resolve", {"by": "a"}, 400),
        ("GET", "/api/v1/alerts/99999999999999999999999", None, 400),
        ("POST", "/api/v1/alerts/1/acknowledge", {}, 400),
        ("POST", "/api/v1/alerts/1/acknowledge", {"by": "a", "extra": 1}, 400),
        ("POST", "/api/v1/alerts", {"title": "x", "severity": "huge", "alert_type": "security"}, 400),
        ("POST", "/api/v1/alerts", {"title": "", "severity": "low", "alert_type": "security"}, 400),
        ("POST", "/api/v1/alerts", {"title": "a\u0000", "severity": "low",
                                    "alert_type": "security"}, 400),
        ("POST", "/api/v1/alerts", {"title": "x", "severity": "low", "alert_type": "security",
                                    "auto_resolve_after": "soon"}, 400),
    ],
)  # fmt: skip
async def test_bad_requests(
    client: TestClient[Any, Any],
    db: asyncpg.Connection,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    headers = W if path == "/api/v1/alerts" else ONCALL
    resp = await client.request(
        method, path, json=body, headers={**headers, **R} if method == "GET" else headers
    )
    assert resp.status == status
    assert "error" in await resp.json()
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 0


async def test_list_filters_and_cursor(client: TestClient[Any, Any]) -> None:
    for i in range(5):
        await create(client, title=f"t{i}", severity="low" if i % 2 else "critical", service="s")
    await post(client, notification(am_alert("am1", service="other")))
    everything = await (await client.get("/api/v1/alerts", headers=R)).json()
    assert len(everything["items"]) == 6 and everything["next_cursor"] is None
    crit = await (await client.get("/api/v1/alerts?severity=critical&service=s", headers=R)).json()
    assert {a["title"] for a in crit["items"]} == {"t0", "t2", "t4"}
    both = await client.get(
        "/api/v1/alerts", params=[("severity", "low"), ("severity", "critical"),
                                  ("status", "active"), ("alert_type", "system_error")],
        headers=R,
    )  # fmt: skip
    assert len((await both.json())["items"]) == 6
    seen: list[int] = []
    url = "/api/v1/alerts?limit=2&service=s"
    while url:
        page = await (await client.get(url, headers=R)).json()
        seen += [a["id"] for a in page["items"]]
        url = (
            page["next_cursor"] and f"/api/v1/alerts?limit=2&service=s&cursor={page['next_cursor']}"
        )
    assert len(seen) == len(set(seen)) == 5
    old = await client.get("/api/v1/alerts", params={"until": "2024-05-02T00:00:00Z"}, headers=R)
    assert [a["fingerprint"] for a in (await old.json())["items"]] == ["am1"]
    for bad in ("status=open", "limit=0", "since=yesterday", "cursor=zzz", "colour=red"):
        resp = await client.get(f"/api/v1/alerts?{bad}", headers=R)
        assert resp.status == 400, bad
        assert (await resp.json())["error"]["code"] == "invalid_query"


async def test_auto_resolve_after(client: TestClient[Any, Any], db: asyncpg.Connection) -> None:
    made = await create(client, auto_resolve_after="200ms")
    assert made["auto_resolve"] is True and made["auto_resolve_at"] is not None
    keep = await create(client, title="stays")

    async def resolved() -> bool:
        got = await (await client.get(f"/api/v1/alerts/{made['id']}", headers=R)).json()
        return bool(got["status"] == "resolved")

    await eventually(resolved)
    got = await (await client.get(f"/api/v1/alerts/{made['id']}", headers=R)).json()
    assert got["resolved_by"] == "auto-resolve"
    assert got["events"][-1]["actor"] == "auto-resolve"
    assert (
        await db.fetchval("SELECT status FROM monitoring.system_alerts WHERE id=$1", keep["id"])
        == "active"
    )


async def test_demo_seeds_incidents_in_each_state(make_client: MakeClient) -> None:
    client = await make_client({"demo": True, "auth": {"disabled": True}})

    async def seeded() -> bool:
        items = (await (await client.get("/api/v1/alerts")).json())["items"]
        return {a["status"] for a in items} == {"active", "acknowledged", "resolved"}

    await eventually(seeded)


async def test_webhook_sql_agrees_with_the_domain_state_machine(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    """Random deliveries (and acknowledgements) through HTTP end where lifecycle.receive says."""
    rng = random.Random(7)
    expected: dict[str, lc.Incident | None] = {f"p{i}": None for i in range(8)}
    now = datetime.now(UTC)
    for _ in range(40):
        fp = rng.choice(sorted(expected))
        signal = rng.choice(["firing", "firing", "resolved"])
        assert (await post(client, notification(am_alert(fp, signal)))).status == 200
        expected[fp] = lc.receive(expected[fp], signal, now).incident  # type: ignore[arg-type]
        current = expected[fp]
        if current is not None and current.status == "active" and rng.random() < 0.3:
            alert_id = await db.fetchval(
                "SELECT id FROM monitoring.system_alerts WHERE fingerprint=$1", fp
            )
            resp = await client.post(
                f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "x"}, headers=ONCALL
            )
            assert resp.status == 200
            expected[fp] = lc.acknowledge(current, "x", now).incident
    for fp, incident in expected.items():
        status = await db.fetchval(
            "SELECT status FROM monitoring.system_alerts WHERE fingerprint=$1", fp
        )
        assert status == (incident.status if incident else None), fp
