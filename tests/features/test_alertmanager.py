"""The bridge against real Alertmanagers (Debian's prometheus-alertmanager 0.25): silences that
hold, reconciliation with one Alertmanager and with a two-node cluster, API alerts with a
dedup key, and work that waits for an Alertmanager that cannot be reached."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, eventually
from tests.support import peers
from tests.support.alertmanager import (
    active_silences,
    alert,
    alertmanagers,
    ended,
    free_port,
    get,
    post_alerts,
    route_config,
    shipped_config,
    silence,
)
from tests.support.metrics import samples_by_name

TOKENS = {
    "tokens": [
        {"name": "alertmanager", "token": "am-token", "scopes": ["write"]},
        {"name": "oncall", "token": "oncall-token", "scopes": ["read", "ack"]},
        {"name": "ops", "token": "admin-token", "scopes": ["admin"]},
    ]
}
W = {"Authorization": "Bearer am-token"}
ONCALL = {"Authorization": "Bearer oncall-token"}
ADMIN = {"Authorization": "Bearer admin-token"}
INTERVAL = 0.5  # reconcile_interval of most tests, seconds


def config(urls: list[str], **alerts: Any) -> dict[str, Any]:
    return {
        "auth": TOKENS,
        "host": {"enabled": False},
        "alerts": {
            "alertmanager_urls": urls,
            "reconcile_interval": f"{INTERVAL}s",
            "reconcile_startup_grace": "0s",
            "sync_interval": "300ms",
            "request_timeout": "1s",
            **alerts,
        },
    }


async def incidents(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/alerts", headers=ONCALL)
    assert resp.status == 200
    items: list[dict[str, Any]] = (await resp.json())["items"]
    return items


async def one(client: TestClient[Any, Any], alert_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/alerts/{alert_id}", headers=ONCALL)
    assert resp.status == 200
    found: dict[str, Any] = await resp.json()
    return found


async def runs(db: asyncpg.Connection, job: str) -> int:
    found = await db.fetchval("SELECT runs FROM monitoring.scheduled_runs WHERE job = $1", job)
    return int(found or 0)


async def test_acknowledged_silence_is_extended_while_firing_expired_on_resolve_and_a_refire_opens_again(
    make_client: MakeClient, tmp_path: Path
) -> None:
    port = free_port()
    client = await make_client(config([f"http://127.0.0.1:{port}"], ack_silence_duration="3s"))
    webhook = f"http://127.0.0.1:{client.server.port}/api/v1/alertmanager"
    async with alertmanagers(tmp_path, route_config(webhook, "am-token"), ports=[port]) as [url]:
        labels = {"alertname": "E2EDiskFull", "severity": "critical", "service": "db"}
        first = alert(labels, annotations={"summary": "Disk full on db-1"})
        await post_alerts(url, [first])
        found: list[dict[str, Any]] = []

        async def listed(n: int, status: str) -> bool:
            found[:] = await incidents(client)
            return len(found) == n and found[0]["status"] == status

        await eventually(lambda: listed(1, "active"), timeout=20)
        item = found[0]
        assert (item["title"], item["severity"], item["service_name"]) == (
            "Disk full on db-1", "critical", "db",
        )  # fmt: skip
        ack = await client.post(
            f"/api/v1/alerts/{item['id']}/acknowledge", json={"by": "ann"}, headers=ONCALL
        )
        assert ack.status == 200
        acked = await ack.json()
        assert acked["alertmanager_pending"] == [] and acked["silence_id"]
        made = await silence(url, acked["silence_id"])
        assert made["status"]["state"] == "active" and made["createdBy"] == "ann"
        assert {(m["name"], m["value"]) for m in made["matchers"]} == set(labels.items())
        first_end = datetime.fromisoformat(acked["silence_ends_at"])
        started = time.monotonic()

        # past the silence's first length the alert still fires: the silence was extended
        async def extended() -> bool:
            now = await one(client, item["id"])
            if now["status"] != "acknowledged" or time.monotonic() - started < 3.5:
                return False
            current = await silence(url, now["silence_id"])
            ends = datetime.fromisoformat(now["silence_ends_at"])
            return current["status"]["state"] == "active" and ends > first_end

        await eventually(extended, timeout=15)
        assert (await incidents(client))[0]["silenced_by"]  # Alertmanager reports it silenced

        # the alert ends: Alertmanager notifies nobody of a silenced alert, reconciliation
        # resolves the incident, and the silence is expired
        await post_alerts(url, [ended(first)])
        await eventually(lambda: listed(1, "resolved"), timeout=10)
        resolved = found[0]
        assert resolved["resolved_by"] == "alertmanager"

        async def expired() -> bool:
            return bool(
                (await silence(url, resolved["silence_id"]))["status"]["state"] == "expired"
            )

        await eventually(expired, timeout=10)
        assert await active_silences(url) == []

        # the same alert fires again: a new incident within one reconcile interval
        await post_alerts(url, [alert(labels, datetime.now(UTC))])
        since = time.monotonic()
        await eventually(lambda: listed(2, "active"), timeout=10)
        assert time.monotonic() - since < INTERVAL + 1.5
        assert found[1]["id"] == item["id"] and found[1]["status"] == "resolved"


async def test_an_amtool_alert_acknowledged_stays_acknowledged_while_it_fires(
    make_client: MakeClient, tmp_path: Path, db: asyncpg.Connection
) -> None:
    port = free_port()
    client = await make_client(config([f"http://127.0.0.1:{port}"]))
    webhook = f"http://127.0.0.1:{client.server.port}/api/v1/alertmanager"
    async with alertmanagers(tmp_path, route_config(webhook, "am-token"), ports=[port]) as [url]:
        # amtool leaves the start to Alertmanager: nanoseconds in the webhook, milliseconds
        # in its API
        added = peers.run(
            "amtool", "alert", "add", "alertname=AmtoolAdded", "service=db", "severity=warning",
            f"--alertmanager.url={url}",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        found: list[dict[str, Any]] = []

        async def active() -> bool:
            found[:] = await incidents(client)
            return len(found) == 1

        await eventually(active, timeout=20)
        [held] = await get(url, "alerts")
        assert found[0]["starts_at"].replace("Z", "+00:00") == datetime.fromisoformat(
            held["startsAt"]
        ).isoformat().replace("+00:00", "+00:00")
        ack = await client.post(
            f"/api/v1/alerts/{found[0]['id']}/acknowledge", json={"by": "ann"}, headers=ONCALL
        )
        assert ack.status == 200
        before = await runs(db, "alertmanager:reconcile")

        async def passes() -> bool:
            return await runs(db, "alertmanager:reconcile") >= before + 4

        await eventually(passes, timeout=15)
        after = await incidents(client)
        assert [(a["status"], a["id"]) for a in after] == [("acknowledged", found[0]["id"])]
        assert (await silence(url, after[0]["silence_id"]))["status"]["state"] == "active"


async def test_a_cluster_without_webhooks_still_opens_and_resolves_incidents_once(
    make_client: MakeClient, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    interval = 1.0
    client = await make_client(
        config([f"http://127.0.0.1:{p}" for p in ports], reconcile_interval=f"{interval}s")
    )
    # the route reaches no webhook: only reconciliation can tell the bridge
    async with alertmanagers(tmp_path, route_config(None), n=2, ports=ports) as urls:
        both = alert({"alertname": "OnBoth", "service": "api", "severity": "critical"})
        first = alert({"alertname": "OnlyFirst", "service": "api"})
        second = alert({"alertname": "OnlySecond", "service": "db"})
        await post_alerts(urls[0], [both, first])
        await post_alerts(urls[1], [both, second])
        since = time.monotonic()
        found: list[dict[str, Any]] = []

        async def listed(status: str) -> bool:
            found[:] = await incidents(client)
            return len(found) == 3 and all(a["status"] == status for a in found)

        await eventually(lambda: listed("active"), timeout=10)
        assert time.monotonic() - since < 2 * interval + 1.5
        assert sorted(a["labels"]["alertname"] for a in found) == [
            "OnBoth", "OnlyFirst", "OnlySecond",
        ]  # fmt: skip
        assert {a["severity"] for a in found if a["title"] == "OnBoth"} == {"critical"}
        history = (await one(client, found[0]["id"]))["events"]
        assert history[0]["actor"] == "alertmanager" and "reconciliation" in history[0]["note"]

        # a silence made directly in one member covers an incident: it shows on it
        body = {
            "matchers": [{"name": "alertname", "value": "OnlyFirst", "isRegex": False}],
            "startsAt": datetime.now(UTC).isoformat(),
            "endsAt": datetime(2100, 1, 1, tzinfo=UTC).isoformat(),
            "createdBy": "bob",
            "comment": "made in Alertmanager",
        }
        async with client.session.post(f"{urls[1]}/api/v2/silences", json=body) as resp:
            silence_id = (await resp.json())["silenceID"]

        async def shown() -> bool:
            items = {a["title"]: a for a in await incidents(client)}
            held = items["OnlyFirst"]
            return bool(
                held["silenced_by"] == [silence_id] and held["alertmanager_state"] == "suppressed"
            )

        await eventually(shown, timeout=10)

        await post_alerts(urls[0], [ended(both), ended(first)])
        await post_alerts(urls[1], [ended(both), ended(second)])
        await eventually(lambda: listed("resolved"), timeout=10)
        assert {a["resolved_by"] for a in found} == {"alertmanager"}


async def test_one_incident_for_five_concurrent_posts_with_one_dedup_key_and_its_webhook(
    make_client: MakeClient, tmp_path: Path, db: asyncpg.Connection
) -> None:
    port = free_port()
    client = await make_client(config([f"http://127.0.0.1:{port}"]))
    webhook = f"http://127.0.0.1:{client.server.port}/api/v1/alertmanager"
    async with alertmanagers(tmp_path, route_config(webhook, "am-token"), ports=[port]) as [url]:
        body = {
            "title": "Nightly sync failed", "severity": "high", "alert_type": "system_error",
            "service": "sync", "labels": {"team": "data", "bad-name": "dropped"},
            "dedup_key": "nightly-sync",
        }  # fmt: skip
        answers = await asyncio.gather(
            *(client.post("/api/v1/alerts", json=body, headers=W) for _ in range(5))
        )
        assert sorted(r.status for r in answers) == [200, 200, 200, 200, 201]
        made = {(await r.json())["id"] for r in answers}
        assert len(made) == 1
        assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 1
        fingerprint = await db.fetchval("SELECT fingerprint FROM monitoring.system_alerts")

        # the alert is in Alertmanager, routed like any other ...
        async def sent() -> list[Any]:
            held: list[Any] = await get(
                url, "alerts", filter=f'monitoring_exporter_id="{fingerprint}"'
            )
            return held

        await eventually(lambda: _truthy(sent()), timeout=10)
        [held] = await sent()
        assert held["labels"] == {
            "alertname": "Nightly sync failed", "severity": "high", "alert_type": "system_error",
            "service": "sync", "team": "data", "monitoring_exporter_id": fingerprint,
        }  # fmt: skip

        # ... and its webhook comes back to us without opening a second incident
        async def delivered() -> bool:
            metrics = samples_by_name(await (await client.get("/metrics")).text())
            return metrics["monitoring_alertmanager_alerts_received_total"].get(("firing",), 0) >= 1

        await eventually(delivered, timeout=10)

        async def linked() -> bool:
            return bool(await db.fetchval(
                "SELECT alertmanager_fingerprint = $1 FROM monitoring.system_alerts", held["fingerprint"]
            ))  # fmt: skip

        await eventually(linked, timeout=10)
        assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 1

        # resolving by the key ends it in Alertmanager; the key is free again
        resp = await client.post(
            "/api/v1/alerts/resolve", json={"dedup_key": "nightly-sync"}, headers=W
        )
        assert resp.status == 200
        done = await resp.json()
        assert (done["status"], done["resolved_by"], done["alertmanager_pending"]) == (
            "resolved", "alertmanager", [],
        )  # fmt: skip
        await eventually(lambda: _falsy(sent()), timeout=10)
        again = await client.post("/api/v1/alerts", json=body, headers=W)
        assert again.status == 201 and (await again.json())["id"] not in made


async def _truthy(value: Any) -> bool:
    return bool(await value)


async def _falsy(value: Any) -> bool:
    return not await value


async def test_an_unreachable_alertmanager_fails_nothing_local_and_gets_the_work_later(
    make_client: MakeClient, tmp_path: Path
) -> None:
    port = free_port()  # nobody listens there yet
    client = await make_client(config([f"http://127.0.0.1:{port}"], request_timeout="300ms"))
    created = await client.post(
        "/api/v1/alerts",
        json={"title": "Export stuck", "severity": "medium", "alert_type": "system_error"},
        headers=W,
    )
    assert created.status == 201
    alert_id = (await created.json())["id"]
    assert (await created.json())["alertmanager_pending"] == ["send"]
    ack = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ann"},
                            headers=ONCALL)  # fmt: skip
    assert ack.status == 200
    acked = await ack.json()
    assert acked["status"] == "acknowledged"
    assert acked["alertmanager_pending"] == ["silence", "send"]
    assert "create_silence" in acked["alertmanager_error"]
    window = await client.post(
        "/api/v1/maintenance",
        json={
            "matchers": {"service": "db"},
            "ends_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        },
        headers=ADMIN,
    )
    assert window.status == 201 and (await window.json())["alertmanager_pending"] is True
    metrics = samples_by_name(await (await client.get("/metrics")).text())
    failures = metrics["monitoring_alertmanager_sync_failures_total"]
    assert failures[("create_silence",)] >= 2 and failures[("send_alerts",)] >= 1

    async with alertmanagers(tmp_path, route_config(None), ports=[port]) as [url]:

        async def caught_up() -> bool:
            now = await one(client, alert_id)
            return now["alertmanager_pending"] == [] and now["alertmanager_error"] is None

        await eventually(caught_up, timeout=15)
        now = await one(client, alert_id)
        made = await silence(url, now["silence_id"])
        assert made["status"]["state"] == "active"
        assert [(m["name"], m["value"]) for m in made["matchers"]] == [
            ("monitoring_exporter_id", now["fingerprint"])
        ]
        held = await get(url, "alerts")
        assert [a["labels"]["alertname"] for a in held] == ["Export stuck"]
        assert held[0]["status"]["silencedBy"] == [now["silence_id"]]

        async def window_silenced() -> bool:
            resp = await client.get("/api/v1/maintenance", headers=ONCALL)
            [item] = (await resp.json())["items"]
            return item["alertmanager_pending"] is False and item["silence_id"] is not None

        await eventually(window_silenced, timeout=15)


async def test_the_shipped_inhibition_of_warnings_holds_per_replica(tmp_path: Path) -> None:
    # a host figure critical on one replica must not hide a warning on another
    shipped = shipped_config("http://127.0.0.1:9/unused", "x")
    async with alertmanagers(tmp_path, shipped) as [url]:
        series = {"service": "host", "metric_type": "cpu_usage", "severity": "warning"}
        await post_alerts(
            url,
            [
                alert(series | {"alertname": "ServiceHealthCritical", "severity": "critical",
                                "replica": "exporter-0"}),
                alert(series | {"alertname": "ServiceHealthWarning", "replica": "exporter-0"}),
                alert(series | {"alertname": "ServiceHealthWarning", "replica": "exporter-1"}),
            ],
        )  # fmt: skip
        states: dict[tuple[str, str], list[str]] = {}

        async def evaluated() -> bool:
            states.clear()
            for held in await get(url, "alerts"):
                key = (held["labels"]["alertname"], held["labels"]["replica"])
                states[key] = held["status"]["inhibitedBy"]
            return len(states) == 3

        await eventually(evaluated, timeout=10)
        assert states[("ServiceHealthWarning", "exporter-0")] != []
        assert states[("ServiceHealthWarning", "exporter-1")] == []
        assert states[("ServiceHealthCritical", "exporter-0")] == []
