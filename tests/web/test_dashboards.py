"""Saved views: /api/v1/dashboards/{name}, per person, versioned, private unless shared."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient

CONFIG = {
    "auth": {
        "tokens": [
            {"name": "ann", "token": "ann-token", "scopes": ["read"]},
            {"name": "bob", "token": "bob-token", "scopes": ["read", "ack"]},
            {"name": "boss", "token": "boss-token", "scopes": ["admin"]},
            {"name": "pusher", "token": "push-token", "scopes": ["write"]},
        ]
    }
}
ANN = {"Authorization": "Bearer ann-token"}
BOB = {"Authorization": "Bearer bob-token"}
BOSS = {"Authorization": "Bearer boss-token"}
VIEW = {
    "filters": {"status": ["active"], "severity": ["critical"]},
    "layout": {"page": "incidents"},
}


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    made = await make_client(CONFIG)
    return made


async def stored(db: asyncpg.Connection) -> list[tuple[str, str, int, str]]:
    rows = await db.fetch(
        "SELECT name, owner, version, config::text FROM monitoring.monitoring_dashboard_config"
        " WHERE kind = 'dashboard' ORDER BY owner, name"
    )
    return [(r["name"], r["owner"], r["version"], r["config"]) for r in rows]


async def test_save_load_update_and_remove_a_view(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.put("/api/v1/dashboards/critical", json=VIEW, headers=ANN)
    assert resp.status == 200, await resp.text()
    saved = await resp.json()
    assert (saved["name"], saved["owner"], saved["version"], saved["shared"]) == (
        "critical", "ann", 1, False)  # fmt: skip
    assert saved["filters"] == VIEW["filters"] and saved["layout"] == VIEW["layout"]
    got = await (await client.get("/api/v1/dashboards/critical", headers=ANN)).json()
    assert got == saved
    resp = await client.put(
        "/api/v1/dashboards/critical", json={**VIEW, "expect_version": 1, "shared": True},
        headers=ANN,
    )  # fmt: skip
    assert (await resp.json())["version"] == 2
    resp = await client.delete("/api/v1/dashboards/critical", headers=ANN)
    assert resp.status == 204
    assert (await client.get("/api/v1/dashboards/critical", headers=ANN)).status == 404
    # made again, it goes on counting: a client holding version 1 or 2 cannot overwrite it
    resp = await client.put("/api/v1/dashboards/critical", json=VIEW, headers=ANN)
    assert (await resp.json())["version"] == 4
    resp = await client.put(
        "/api/v1/dashboards/critical", json={**VIEW, "expect_version": 2}, headers=ANN
    )
    assert resp.status == 409


async def test_a_view_is_private_unless_shared_and_admins_manage_all(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    await client.put("/api/v1/dashboards/mine", json=VIEW, headers=ANN)
    await client.put("/api/v1/dashboards/team", json={**VIEW, "shared": True}, headers=ANN)
    # bob has a view of the same name: names are per person
    await client.put("/api/v1/dashboards/mine", json={"layout": {"page": "quality"}}, headers=BOB)
    mine = await (await client.get("/api/v1/dashboards/mine", headers=BOB)).json()
    assert mine["layout"] == {"page": "quality"} and mine["owner"] == "bob"
    resp = await client.get("/api/v1/dashboards/mine?owner=ann", headers=BOB)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.get("/api/v1/dashboards/team?owner=ann", headers=BOB)
    assert resp.status == 200
    listed = await (await client.get("/api/v1/dashboards", headers=BOB)).json()
    assert [(v["owner"], v["name"]) for v in listed["items"]] == [("bob", "mine"), ("ann", "team")]
    # a shared view is not another person's to change
    before = await stored(db)
    resp = await client.put("/api/v1/dashboards/team?owner=ann", json=VIEW, headers=BOB)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    resp = await client.delete("/api/v1/dashboards/team?owner=ann", headers=BOB)
    assert resp.status == 403
    assert await stored(db) == before
    # an admin sees and manages every view
    listed = await (await client.get("/api/v1/dashboards", headers=BOSS)).json()
    assert len(listed["items"]) == 3
    assert (await client.get("/api/v1/dashboards/mine?owner=ann", headers=BOSS)).status == 200
    assert (await client.delete("/api/v1/dashboards/mine?owner=ann", headers=BOSS)).status == 204


async def test_a_view_over_its_size_limit_is_413_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    await client.put("/api/v1/dashboards/big", json=VIEW, headers=ANN)
    before = await stored(db)
    huge = {"layout": {"notes": "x" * (64 << 10)}}
    resp = await client.put("/api/v1/dashboards/big", json=huge, headers=ANN)
    assert resp.status == 413
    body = await resp.json()
    assert body["error"]["code"] == "payload_too_large" and "65536" in body["error"]["message"]
    resp = await client.put("/api/v1/dashboards/other", json=huge, headers=ANN)
    assert resp.status == 413
    assert await stored(db) == before


async def test_an_unknown_view_is_404_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    for method in ("GET", "DELETE"):
        resp = await client.request(method, "/api/v1/dashboards/nothing", headers=ANN)
        assert resp.status == 404, method
        body = await resp.json()
        assert body["error"] == {
            "code": "not_found", "message": "no view 'nothing' of 'ann'", "details": []}  # fmt: skip
    assert await stored(db) == []


async def test_a_stale_expect_version_is_409_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    await client.put("/api/v1/dashboards/v", json=VIEW, headers=ANN)
    await client.put("/api/v1/dashboards/v", json={"layout": {"page": "services"}}, headers=ANN)
    before = await stored(db)
    for stale in (
        client.put("/api/v1/dashboards/v", json={**VIEW, "expect_version": 1}, headers=ANN),
        client.delete("/api/v1/dashboards/v?expect_version=1", headers=ANN),
        # expecting a version of a view that was never made
        client.put("/api/v1/dashboards/new", json={**VIEW, "expect_version": 1}, headers=ANN),
    ):
        resp = await stale
        assert resp.status == 409
        assert (await resp.json())["error"] == {
            "code": "conflict", "message": "the view changed since the expected version",
            "details": []}  # fmt: skip
    assert await stored(db) == before


async def test_bad_names_and_bodies_are_400_and_store_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    for path, body in (
        ("/api/v1/dashboards/%20lead", VIEW),
        ("/api/v1/dashboards/" + "n" * 101, VIEW),
        ("/api/v1/dashboards/ok", {"layout": []}),
        ("/api/v1/dashboards/ok", {"layout": {}, "colour": "red"}),
    ):
        resp = await client.put(path, json=body, headers=ANN)
        assert resp.status == 400, path
        assert (await resp.json())["error"]["code"] in ("invalid_path", "invalid_body")
    assert await stored(db) == []


async def test_any_valid_token_keeps_its_own_views(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    push = {"Authorization": "Bearer push-token"}
    resp = await client.put("/api/v1/dashboards/mine", json=VIEW, headers=push)
    assert resp.status == 200
    assert (await (await client.get("/api/v1/dashboards/mine", headers=push)).json())["owner"] == (
        "pusher"
    )
    resp = await client.get("/api/v1/dashboards", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    assert [(n, o) for n, o, _, _ in await stored(db)] == [("mine", "pusher")]
