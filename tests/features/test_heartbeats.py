"""Heartbeats (dead man's switches): beats, late ones, bad names, API creation, and the
Watchdog through a real Prometheus and Alertmanager with the shipped rule and routing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, eventually
from tests.support import peers
from tests.support.alertmanager import alertmanagers, free_port, shipped_config
from tests.support.metrics import samples_by_name

REPO = Path(__file__).resolve().parents[2]
TOKENS = {
    "tokens": [
        {"name": "cron", "token": "w-token", "scopes": ["write"]},
        {"name": "grafana", "token": "r-token", "scopes": ["read"]},
    ]
}
W = {"Authorization": "Bearer w-token"}
R = {"Authorization": "Bearer r-token"}


def config(**alerts: Any) -> dict[str, Any]:
    return {
        "auth": TOKENS,
        "host": {"enabled": False},
        "alerts": {"heartbeat_check_interval": "100ms", **alerts},
        "heartbeats": [{"name": "shopify_sync", "interval": "1s", "grace": "500ms"}],
    }


async def heartbeats(client: TestClient[Any, Any]) -> dict[str, dict[str, Any]]:
    body = await (await client.get("/api/v1/heartbeats", headers=R)).json()
    assert body["next_cursor"] is None
    return {h["name"]: h for h in body["items"]}


async def incidents(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await (await client.get("/api/v1/alerts", headers=R)).json())[
        "items"
    ]
    return items


async def test_a_late_heartbeat_opens_an_incident_that_the_next_beat_resolves(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config())
    beat = await client.post("/api/v1/heartbeats/shopify_sync", headers=W)
    assert beat.status == 200
    first = await beat.json()
    assert (first["origin"], first["interval"], first["grace"], first["beats"]) == (
        "config", 1.0, 0.5, 1,
    )  # fmt: skip
    seen = datetime.fromisoformat(first["last_beat_at"])

    async def exported() -> bool:
        text = await (await client.get("/metrics")).text()
        found = samples_by_name(text).get("monitoring_heartbeat_last_seen_timestamp_seconds", {})
        return found.get(("shopify_sync",)) == seen.timestamp()

    await eventually(exported, timeout=5)

    async def late() -> bool:
        return len(await incidents(client)) == 1

    await eventually(late, timeout=10)
    [incident] = await incidents(client)
    assert (incident["source"], incident["title"], incident["status"]) == (
        "exporter", "Heartbeat shopify_sync is late", "active",
    )  # fmt: skip
    assert incident["dedup_key"] == "heartbeat:shopify_sync"
    assert incident["labels"] == {"alertname": "HeartbeatMissing", "heartbeat": "shopify_sync"}
    # it opened once the deadline passed, and not much later
    opened = datetime.fromisoformat(incident["starts_at"])
    assert timedelta(seconds=1.5) <= opened - seen < timedelta(seconds=3)
    listed = (await heartbeats(client))["shopify_sync"]
    assert listed["late"] is True and listed["alert_id"] == incident["id"]
    # late stays one incident however often the leader looks
    before = await db.fetchval(
        "SELECT runs FROM monitoring.scheduled_runs WHERE job = 'heartbeats:check'"
    )

    async def looked() -> bool:
        runs = await db.fetchval(
            "SELECT runs FROM monitoring.scheduled_runs WHERE job = 'heartbeats:check'"
        )
        return bool(runs >= before + 5)

    await eventually(looked, timeout=10)
    assert len(await incidents(client)) == 1

    again = await client.post("/api/v1/heartbeats/shopify_sync", headers=W)
    assert again.status == 200 and (await again.json())["beats"] == 2
    [resolved] = await incidents(client)
    assert (resolved["status"], resolved["resolved_by"]) == ("resolved", "heartbeat")
    listed = (await heartbeats(client))["shopify_sync"]
    assert listed["late"] is False and listed["alert_id"] is None


async def test_a_name_that_is_not_configured_is_400_and_stores_nothing(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(config())
    for path, body, field in (
        ("/api/v1/heartbeats/nightly_export", None, "name"),
        ("/api/v1/heartbeats/nightly_export", {"interval": "1h"}, "name"),
        ("/api/v1/heartbeats/shopify_sync", {"interval": "1h"}, "interval"),
        ("/api/v1/heartbeats/shopify_sync", {"grace": "soon"}, "grace"),
        ("/api/v1/heartbeats/shopify_sync", {"colour": "red"}, "colour"),
        ("/api/v1/heartbeats/bad%20name", None, "name"),
    ):
        resp = await client.post(path, json=body, headers=W)
        assert resp.status == 400, (path, body)
        error = (await resp.json())["error"]
        assert error["details"][0]["path"] == field, error
    assert await db.fetchval("SELECT count(*) FROM monitoring.heartbeats WHERE beats > 0") == 0
    assert (
        await db.fetchval(
            "SELECT count(*) FROM monitoring.heartbeats WHERE name = 'nightly_export'"
        )
        == 0
    )
    assert (await client.post("/api/v1/heartbeats/shopify_sync", headers=R)).status == 403


async def test_heartbeats_created_through_the_api(make_client: MakeClient) -> None:
    client = await make_client(config(heartbeats_via_api=True))
    url = "/api/v1/heartbeats/nightly_export"
    needs = await client.post(url, headers=W)
    assert needs.status == 400
    assert (await needs.json())["error"]["details"][0]["path"] == "interval"
    made = await client.post(url, json={"interval": "1h", "grace": 300}, headers=W)
    assert made.status == 200
    body = await made.json()
    assert (body["origin"], body["interval"], body["grace"]) == ("api", 3600.0, 300.0)
    again = await client.post(url, headers=W)
    assert again.status == 200 and (await again.json())["beats"] == 2
    listed = await heartbeats(client)
    assert set(listed) == {"nightly_export", "shopify_sync"}
    assert listed["nightly_export"]["late"] is False


async def test_the_watchdog_beats_and_pipeline_down_opens_when_prometheus_stops(
    make_client: MakeClient, tmp_path: Path, db: asyncpg.Connection
) -> None:
    am_port = free_port()
    interval, grace = 2.0, 1.0
    client = await make_client(
        {
            "auth": {"tokens": [*TOKENS["tokens"],
                                {"name": "alertmanager", "token": "am", "scopes": ["write"]}]},
            "host": {"enabled": False},
            "alerts": {"alertmanager_url": f"http://127.0.0.1:{am_port}", "reconcile_interval": "500ms",
                       "reconcile_startup_grace": "0s", "heartbeat_check_interval": "100ms"},
            "heartbeats": [{"name": "alerting_pipeline", "interval": f"{interval}s",
                            "grace": f"{grace}s", "alertname": "Watchdog",
                            "title": "Alerting pipeline down", "severity": "critical"}],
        }
    )  # fmt: skip
    webhook = f"http://127.0.0.1:{client.server.port}/api/v1/alertmanager"
    # the shipped Watchdog rule, evaluated every second
    shipped = yaml.safe_load((REPO / "rules" / "alerts.yml").read_text())
    watchdog = next(
        r for g in shipped["groups"] for r in g["rules"] if r.get("alert") == "Watchdog"
    )
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "watchdog", "interval": "1s", "rules": [watchdog]}]})
    )
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "alerting": {"alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            }
        )
    )  # fmt: skip
    found = peers.peer("prometheus")
    async with alertmanagers(tmp_path, shipped_config(webhook, "am"), ports=[am_port]):
        prometheus = await asyncio.create_subprocess_exec(
            *found.argv(),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{free_port()}",
            # an alert Prometheus stops sending ends in Alertmanager 4 resend delays later
            "--rules.alert.resend-delay=500ms",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=found.env,
        )
        try:

            async def beating() -> bool:
                return bool((await heartbeats(client))["alerting_pipeline"]["beats"] >= 3)

            await eventually(beating, timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                prometheus.terminate()
            await prometheus.wait()
        # the Watchdog is a heartbeat, never an incident (neither by webhook nor by
        # reconciliation); the beats resolved what the start-up's silence opened
        before = await incidents(client)
        assert [i for i in before if i["labels"].get("alertname") != "HeartbeatMissing"] == []
        assert {i["status"] for i in before} <= {"resolved"}
        stopped = time.monotonic()

        async def down() -> list[dict[str, Any]]:
            return [i for i in await incidents(client) if i["status"] == "active"]

        await eventually(lambda: _some(down()), timeout=30)
        [incident] = await down()
        assert (incident["title"], incident["severity"], incident["source"]) == (
            "Alerting pipeline down", "critical", "exporter",
        )  # fmt: skip
        last = (await heartbeats(client))["alerting_pipeline"]["last_beat_at"]
        opened = datetime.fromisoformat(incident["starts_at"]) - datetime.fromisoformat(last)
        # opened once interval + grace passed since the last beat, within a check or two
        assert (
            timedelta(seconds=interval + grace) <= opened < timedelta(seconds=interval + grace + 1)
        )
        assert time.monotonic() - stopped < 30


async def _some(found: Any) -> bool:
    return bool(await found)


async def test_a_beat_with_an_idempotency_key_counts_once(make_client: MakeClient) -> None:
    client = await make_client(config())
    key = {**W, "Idempotency-Key": "beat-1"}
    for _ in range(3):
        assert (await client.post("/api/v1/heartbeats/shopify_sync", headers=key)).status == 200
    assert (await heartbeats(client))["shopify_sync"]["beats"] == 1
