"""Maintenance windows: their silences in a real Alertmanager, what the overview and /metrics
show during them, flagged incidents, bad input; and the SQL that knows which windows are in
force agreeing with the domain's rules."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from exporter.domain import maintenance as rules
from exporter.storage.maintenance import WINDOWS_IN_FORCE
from tests.conftest import MakeClient, eventually
from tests.support.alertmanager import alertmanagers, get, route_config, silence
from tests.support.metrics import samples_by_name
from tests.test_alertmanager_webhook import am_alert, notification

TOKENS = {
    "tokens": [
        {"name": "pusher", "token": "w-token", "scopes": ["write"]},
        {"name": "grafana", "token": "r-token", "scopes": ["read"]},
        {"name": "ops", "token": "a-token", "scopes": ["admin"]},
    ]
}
W = {"Authorization": "Bearer w-token"}
R = {"Authorization": "Bearer r-token"}
ADMIN = {"Authorization": "Bearer a-token"}


def config(url: str | None = None) -> dict[str, Any]:
    alerts: dict[str, Any] = {"counts_refresh_interval": "10ms"}
    if url is not None:
        alerts |= {"alertmanager_url": url, "sync_interval": "200ms", "reconcile_interval": "1s"}
    return {"auth": TOKENS, "host": {"enabled": False}, "alerts": alerts}


async def overview(client: TestClient[Any, Any]) -> dict[str, Any]:
    found: dict[str, Any] = await (await client.get("/api/v1/overview", headers=R)).json()
    return found


async def metrics(client: TestClient[Any, Any]) -> dict[str, dict[tuple[str, ...], float]]:
    return samples_by_name(await (await client.get("/metrics")).text())


async def test_a_window_silences_puts_in_maintenance_flags_incidents_and_ends(
    make_client: MakeClient, tmp_path: Path, db: asyncpg.Connection
) -> None:
    async with alertmanagers(tmp_path, route_config(None)) as [url]:
        client = await make_client(config(url))
        for service, value in (("db", 0.99), ("api", 0.1)):
            resp = await client.post(
                "/api/v1/health-metrics", headers=W,
                json={"service": service, "metric_type": "cpu", "value": value,
                      "thresholds": {"warning": 0.5, "critical": 0.9}},
            )  # fmt: skip
            assert resp.status == 201
        assert (await overview(client))["status"] == "critical"

        ends = datetime.now(UTC) + timedelta(seconds=4)
        resp = await client.post(
            "/api/v1/maintenance", headers=ADMIN,
            json={"matchers": {"service": "db", "labels": {"team": "storage"}},
                  "ends_at": ends.isoformat(), "comment": "disk swap"},
        )  # fmt: skip
        assert resp.status == 201, await resp.text()
        window = await resp.json()
        assert window["author"] == "ops" and window["active"] is True
        assert window["matchers"] == {"service": "db", "labels": {"team": "storage"}}
        assert window["silence_id"] and window["alertmanager_pending"] is False
        made = await silence(url, window["silence_id"])
        assert made["status"]["state"] == "active" and made["createdBy"] == "ops"
        assert {(m["name"], m["value"]) for m in made["matchers"]} == {
            ("service", "db"), ("team", "storage"),
        }  # fmt: skip
        assert datetime.fromisoformat(made["endsAt"]) == ends.replace(
            microsecond=ends.microsecond // 1000 * 1000
        )

        # during the window: the service shows maintenance and raises nothing ...
        async def paused() -> bool:
            seen = await overview(client)
            return bool(seen["status"] == "healthy" and seen["maintenance"]["services"] == ["db"])

        await eventually(paused, timeout=5)
        seen = await overview(client)
        assert {s["service"]: s["status"] for s in seen["services"]} == {
            "api": "healthy", "db": "maintenance",
        }  # fmt: skip
        found = await metrics(client)
        assert found["monitoring_maintenance"] == {("db",): 1.0}
        assert found["monitoring_overall_status"] == {(): 0.0}
        assert found["monitoring_health_status"][("cpu", "db")] == 2.0  # the value stays true
        # ... and an incident it matches is flagged, and raises nothing either
        labels = {"service": "db", "team": "storage"}
        resp = await client.post(
            "/api/v1/alertmanager", json=notification(am_alert("m1", **labels)), headers=W
        )
        assert resp.status == 200
        assert (
            await db.fetchval("SELECT maintenance_id FROM monitoring.system_alerts")
            == (window["id"])
        )
        await eventually(paused, timeout=5)
        assert (await overview(client))["alerts"]["critical"] == 0

        # after the end: the silence is gone, the statuses come back
        async def over() -> bool:
            state = (await silence(url, window["silence_id"]))["status"]["state"]
            return bool(state == "expired" and (await overview(client))["status"] == "critical")

        await eventually(over, timeout=15)
        seen = await overview(client)
        assert seen["maintenance"] == {"services": [], "sources": [], "windows": []}
        assert {s["service"]: s["status"] for s in seen["services"]}["db"] == "critical"
        assert seen["alerts"]["critical"] == 1
        assert "monitoring_maintenance" not in await metrics(client)
        assert [s for s in await get(url, "silences") if s["status"]["state"] != "expired"] == []


async def test_a_deleted_window_expires_its_silence_and_leaves_the_list(
    make_client: MakeClient, tmp_path: Path
) -> None:
    async with alertmanagers(tmp_path, route_config(None)) as [url]:
        client = await make_client(config(url))
        start = datetime.now(UTC) - timedelta(minutes=5)
        resp = await client.post(
            "/api/v1/maintenance", headers=ADMIN,
            json={"matchers": {"source": "shop"}, "starts_at": start.isoformat(),
                  "ends_at": (start + timedelta(hours=1)).isoformat(), "recurrence": "daily"},
        )  # fmt: skip
        assert resp.status == 201
        window = await resp.json()
        assert window["occurrence_starts_at"] == start.isoformat().replace("+00:00", "Z")

        async def in_metrics() -> bool:
            return (await metrics(client)).get("monitoring_maintenance") == {("shop",): 1.0}

        await eventually(in_metrics, timeout=5)
        assert (await overview(client))["maintenance"]["sources"] == ["shop"]
        gone = await client.delete(f"/api/v1/maintenance/{window['id']}", headers=ADMIN)
        assert gone.status == 200
        body = await gone.json()
        assert body["deleted_by"] == "ops" and body["active"] is False
        assert (await silence(url, window["silence_id"]))["status"]["state"] == "expired"
        assert (
            await client.delete(f"/api/v1/maintenance/{window['id']}", headers=ADMIN)
        ).status == 200
        assert (await client.delete("/api/v1/maintenance/999", headers=ADMIN)).status == 404
        listed = await (await client.get("/api/v1/maintenance", headers=R)).json()
        assert listed == {"items": [], "next_cursor": None}
        everything = await client.get("/api/v1/maintenance?include_deleted=true", headers=R)
        assert [w["id"] for w in (await everything.json())["items"]] == [window["id"]]
        await eventually(lambda: _not(in_metrics()), timeout=5)
        assert (await client.delete(f"/api/v1/maintenance/{window['id']}", headers=R)).status == 403


async def _not(value: Any) -> bool:
    return not await value


async def test_bad_windows_are_400_with_the_path_store_nothing_and_send_nothing(
    make_client: MakeClient, tmp_path: Path, db: asyncpg.Connection
) -> None:
    async with alertmanagers(tmp_path, route_config(None)) as [url]:
        client = await make_client(config(url))
        now = datetime.now(UTC)
        soon, later = (now + timedelta(hours=1)).isoformat(), (now + timedelta(hours=2)).isoformat()
        cases: list[tuple[dict[str, Any], str]] = [
            ({"matchers": {"colour": "red"}, "ends_at": soon}, "matchers.colour"),
            ({"matchers": {"service": "db"}, "starts_at": later, "ends_at": soon}, "ends_at"),
            ({"matchers": {"service": "db"}, "ends_at": (now + timedelta(days=31)).isoformat()},
             "ends_at"),
            ({"matchers": {}, "ends_at": soon}, "matchers"),
            ({"matchers": {"labels": {"bad-name": "x"}}, "ends_at": soon},
             "matchers.labels.bad-name"),
            ({"matchers": {"labels": {"service": "x"}}, "ends_at": soon},
             "matchers.labels.service"),
            ({"matchers": {"service": ""}, "ends_at": soon}, "matchers.service"),
            ({"matchers": {"service": "db"}, "ends_at": soon, "recurrence": "hourly"},
             "recurrence"),
            ({"matchers": {"service": "db"}, "ends_at": soon, "repeat_until": later},
             "repeat_until"),
            ({"matchers": {"service": "db"}, "ends_at": (now - timedelta(hours=1)).isoformat()},
             "ends_at"),
        ]  # fmt: skip
        for body, path in cases:
            resp = await client.post("/api/v1/maintenance", json=body, headers=ADMIN)
            assert resp.status == 400, (body, await resp.text())
            error = (await resp.json())["error"]
            assert path in [d["path"] for d in error["details"]], (body, error)
        assert (await client.post("/api/v1/maintenance", json=cases[0][0], headers=W)).status == 403
        assert await db.fetchval("SELECT count(*) FROM monitoring.maintenance_windows") == 0
        assert await get(url, "silences") == []


async def test_the_sql_and_the_domain_agree_on_the_windows_in_force(
    db: asyncpg.Connection,
) -> None:
    rng = random.Random(14)
    now = await db.fetchval("SELECT now()")
    rows = []
    for _ in range(300):
        start = now + timedelta(seconds=rng.uniform(-20 * 86400, 86400))
        length = timedelta(seconds=rng.uniform(60, 2 * 86400))
        recurrence = rng.choice([None, "daily", "weekly"])
        if recurrence is not None:
            length = min(length, rules.PERIODS[recurrence])
        until = None
        if recurrence is not None and rng.random() < 0.5:
            until = start + timedelta(seconds=rng.uniform(0, 15 * 86400))
        rows.append((start, start + length, recurrence, until, rng.random() < 0.1))
    insert = (
        "INSERT INTO monitoring.maintenance_windows (matchers, starts_at, ends_at, recurrence,"
        ' repeat_until, author, deleted_at) VALUES (\'{"service": "x"}\', $1, $2, $3, $4,'
        " 'test', CASE WHEN $5 THEN now() END) RETURNING id"
    )
    async with db.transaction():
        ids = [await db.fetchval(insert, *row) for row in rows]
        at = await db.fetchval("SELECT now()")
        sql = WINDOWS_IN_FORCE.replace("__SCHEMA__", "monitoring")
        in_sql = {r["id"] for r in await db.fetch(sql)}
    windows = [
        rules.Window(i, {"service": "x"}, start, end, recurrence, until, deleted)  # type: ignore[arg-type]
        for i, (start, end, recurrence, until, deleted) in zip(ids, rows, strict=True)
    ]
    in_python = {w.id for w in rules.in_force(windows, at)}
    assert in_sql == in_python
    assert 20 < len(in_sql) < 280  # both answers occur


async def test_a_window_with_an_idempotency_key_is_stored_once(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config())
    body = {"matchers": {"alertname": "Backup"},
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}  # fmt: skip
    key = {**ADMIN, "Idempotency-Key": "window-1"}
    first = await client.post("/api/v1/maintenance", json=body, headers=key)
    again = await client.post("/api/v1/maintenance", json=body, headers=key)
    assert (first.status, again.status) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await db.fetchval("SELECT count(*) FROM monitoring.maintenance_windows") == 1
    window_id = (await first.json())["id"]
    key = {**ADMIN, "Idempotency-Key": "delete-1"}
    for _ in range(2):
        resp = await client.delete(f"/api/v1/maintenance/{window_id}", headers=key)
        assert resp.status == 200
