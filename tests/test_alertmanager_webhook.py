"""POST /api/v1/alertmanager: the version 4 payload into one incident per (fingerprint, startsAt)."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, eventually
from tests.support.proxy import TcpProxy

TOKENS = {
    "auth": {
        "tokens": [
            {"name": "alertmanager", "token": "w-token", "scopes": ["write"]},
            {"name": "grafana", "token": "r-token", "scopes": ["read"]},
            {"name": "oncall", "token": "a-token", "scopes": ["ack", "read"]},
        ]
    },
    "alerts": {"counts_refresh_interval": "10ms"},
}
WRITE = {"Authorization": "Bearer w-token"}
READ = {"Authorization": "Bearer r-token"}
ACK = {"Authorization": "Bearer a-token"}
T0 = "2024-05-01T12:00:00.123456789Z"


def am_alert(fp: str, status: str = "firing", starts: str = T0, **labels: str) -> dict[str, Any]:
    """One alert as Alertmanager 0.25 sends it."""
    return {
        "status": status,
        "labels": {"alertname": f"Alert{fp}", "severity": "critical", **labels},
        "annotations": {"summary": f"summary {fp}", "description": "it broke"},
        "startsAt": starts,
        "endsAt": "2024-05-01T13:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fp,
    }


def notification(*alerts: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    """A webhook notification carrying ``alerts``, with fields the bridge does not know."""
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="x"}',
        "truncatedAlerts": 0,
        "status": status or ("firing" if firing else "resolved"),
        "receiver": "exporter",
        "groupLabels": {"alertname": "x"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
        "notification_reason": "future field",
    }


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client(TOKENS)


async def post(client: TestClient[Any, Any], body: Any, headers: dict[str, str] = WRITE) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        "/api/v1/alertmanager",
        data=io.BytesIO(data) if len(data) > 1 << 20 else data,
        headers={**headers, "Content-Type": "application/json"},
    )


async def rows(db: asyncpg.Connection) -> list[Any]:
    found: list[Any] = await db.fetch(
        "SELECT * FROM monitoring.system_alerts ORDER BY fingerprint, starts_at"
    )
    return found


async def test_firing_notification_opens_incidents_with_the_mapping(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await post(
        client,
        notification(
            am_alert("a1", service="checkout", alert_type="performance"),
            am_alert("a2", severity="warning", job="node", category="security"),
        ),
    )
    assert resp.status == 200
    assert await resp.json() == {
        "alerts": 2,
        "opened": 2,
        "resolved": 0,
        "duplicates": 0,
        "heartbeats": 0,
        "own": 0,
    }
    a1, a2 = await rows(db)
    assert (a1["status"], a1["severity"], a1["alert_type"], a1["service_name"]) == (
        "active", "critical", "performance", "checkout",
    )  # fmt: skip
    assert (a2["severity"], a2["alert_type"], a2["service_name"]) == ("medium", "security", "node")
    assert a1["title"] == "summary a1" and a1["description"] == "it broke"
    assert a1["source"] == "alertmanager" and a1["ends_at"] is None
    assert json.loads(a1["labels"])["service"] == "checkout"
    assert json.loads(a1["annotations"])["summary"] == "summary a1"
    events = await db.fetch("SELECT * FROM monitoring.system_alert_events ORDER BY alert_id")
    assert [(e["from_status"], e["to_status"], e["actor"]) for e in events] == [
        (None, "active", "alertmanager")
    ] * 2


async def test_lifecycle_through_the_webhook(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    """Repeat keeps ack; resolved resolves; re-fire with new startsAt is a new incident;
    a late firing after resolved changes nothing."""
    assert (await post(client, notification(am_alert("f")))).status == 200
    alert_id = (await rows(db))[0]["id"]
    ack = await client.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ann"}, headers=WRITE
    )
    assert ack.status == 403  # write is not ack
    await db.execute(
        "UPDATE monitoring.system_alerts SET status='acknowledged', acknowledged_by='ann',"
        " acknowledged_at=now() WHERE id=$1",
        alert_id,
    )
    await post(client, notification(am_alert("f")))
    assert (await rows(db))[0]["status"] == "acknowledged"
    await post(client, notification(am_alert("f", "resolved")))
    await post(client, notification(am_alert("f")))  # late, out of order
    [row] = await rows(db)
    assert (row["status"], row["resolved_by"]) == ("resolved", "alertmanager")
    assert row["ends_at"] is not None
    await post(client, notification(am_alert("f", starts="2024-05-01T14:00:00Z")))
    first, second = await rows(db)
    assert (first["status"], second["status"]) == ("resolved", "active")
    events = await db.fetch(
        "SELECT from_status, to_status FROM monitoring.system_alert_events WHERE alert_id=$1",
        alert_id,
    )
    assert [tuple(e) for e in events] == [(None, "active"), ("acknowledged", "resolved")]


async def test_same_notification_five_times_shuffled_with_resolved_ones(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    rng = random.Random(4)
    fps = [f"fp{i}" for i in range(12)]
    resolved = set(fps[::3])
    deliveries = []
    for _ in range(5):
        deliveries.append(notification(*[am_alert(fp) for fp in fps]))
        deliveries.append(notification(*[am_alert(fp, "resolved") for fp in sorted(resolved)]))
        # HA duplicates inside one payload
        deliveries.append(
            notification(am_alert("fp1"), am_alert("fp1"), am_alert("fp0", "resolved"))
        )
    rng.shuffle(deliveries)
    for body in deliveries:
        assert (await post(client, body)).status == 200
    stored = await rows(db)
    assert [r["fingerprint"] for r in stored] == sorted(fps)
    for r in stored:
        assert r["status"] == ("resolved" if r["fingerprint"] in resolved else "active")
    # exactly one opening event per incident and one resolution for the resolved ones
    counts = await db.fetch(
        "SELECT to_status, count(*) FROM monitoring.system_alert_events GROUP BY 1"
    )
    by_status = {r["to_status"]: r["count"] for r in counts}
    assert by_status["resolved"] == len(resolved)
    # resolved-first deliveries create the incident resolved; the rest open it as active
    assert by_status["active"] + by_status["resolved"] <= len(fps) + len(resolved)
    assert by_status["active"] >= len(fps) - len(resolved)
    metrics = await (await client.get("/metrics")).text()
    assert "monitoring_alertmanager_alerts_duplicate_total" in metrics


async def test_concurrent_notifications_share_commits_and_stay_consistent(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    import asyncio

    bodies = [notification(*[am_alert(f"c{n}-{i}") for i in range(10)]) for n in range(30)]
    bodies += [notification(am_alert("c0-0", "resolved"))] * 3
    results = await asyncio.gather(*(post(client, b) for b in bodies))
    assert {r.status for r in results} == {200}
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 300
    assert (
        await db.fetchval("SELECT status FROM monitoring.system_alerts WHERE fingerprint='c0-0'")
        == "resolved"
    )


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        (b'{"version": "4", "status": "firing", "alerts": [', "malformed_json", "(body)"),
        (json.dumps(notification(am_alert("x")) | {"version": "3"}).encode(), "invalid_body",
         "version"),
        (json.dumps(notification(am_alert("x"), status="pending")).encode(), "invalid_body",
         "status"),
        (json.dumps(notification(am_alert("ok"), {
            k: v for k, v in am_alert("x").items() if k != "fingerprint"})).encode(),
         "invalid_body", "alerts[1]"),
        (json.dumps(notification(am_alert("ok"), am_alert("x", starts="yesterday"))).encode(),
         "invalid_body", "alerts[1].startsAt"),
        (json.dumps(notification(am_alert("ok"), am_alert("x", starts="2024-05-01T12:00:00")))
         .encode(), "invalid_body", "alerts[1].startsAt"),
        (json.dumps(notification(am_alert("ok"), am_alert("x") | {"labels": {"a": 1}})).encode(),
         "invalid_body", "alerts[1].labels[...]"),
        (json.dumps(notification(am_alert("ok"), am_alert("x") | {"fingerprint": ""})).encode(),
         "invalid_body", "alerts[1].fingerprint"),
        (json.dumps(notification(am_alert("ok"), am_alert("x", team="a\u0000b"))).encode(),
         "invalid_body", "alerts[1].labels.team"),
        (json.dumps(notification(am_alert("x") | {"annotations": {"summary": "\u0000"}}))
         .encode(), "invalid_body", "alerts[0].annotations.summary"),
        (json.dumps(notification(am_alert("ok"), am_alert("x", team="a\ud800b"))).encode(),
         "invalid_body", "alerts[1].labels.team"),
    ],
    ids=["malformed", "version3", "bad-status", "no-fingerprint", "bad-startsAt",
         "naive-startsAt", "label-not-string", "empty-fingerprint", "nul-label",
         "nul-annotation", "lone-surrogate"],
)  # fmt: skip
async def test_bad_payloads_are_400_and_store_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection, body: bytes, code: str, path: str
) -> None:
    resp = await post(client, body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert error["details"][0]["path"] == path
    assert await rows(db) == []
    metrics = await (await client.get("/metrics")).text()
    assert f'monitoring_alertmanager_notifications_rejected_total{{reason="{code}"}} 1.0' in metrics


async def test_a_valid_surrogate_pair_is_stored(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await post(client, notification(am_alert("emoji", team="\U0001f525")))
    assert resp.status == 200
    assert json.loads((await rows(db))[0]["labels"])["team"] == "\U0001f525"


async def test_a_10_mb_group_is_accepted(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    blob = "x" * 2000
    alerts = [am_alert(f"big{i}") | {"annotations": {"description": blob}} for i in range(5000)]
    body = json.dumps(notification(*alerts)).encode()
    assert len(body) > 10_000_000
    resp = await post(client, body)
    assert resp.status == 200
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 5000


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), ({"Authorization": "Bearer r-token"}, 403)]
)
async def test_missing_or_read_only_token(
    client: TestClient[Any, Any], db: asyncpg.Connection, headers: dict[str, str], status: int
) -> None:
    resp = await post(client, notification(am_alert("x")), headers)
    assert resp.status == status
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert await rows(db) == []


async def test_monitoring_alerts_metric_has_every_pair_and_follows_changes(
    client: TestClient[Any, Any],
) -> None:
    async def sample(status: str, severity: str) -> float | None:
        text = await (await client.get("/metrics")).text()
        needle = f'monitoring_alerts{{severity="{severity}",status="{status}"}} '
        for line in text.splitlines():
            if line.startswith(needle):
                return float(line.split()[-1])
        return None

    async def zero() -> bool:
        return await sample("resolved", "low") == 0.0

    await eventually(zero)
    await post(client, notification(am_alert("m1"), am_alert("m2")))

    async def two_active() -> bool:
        return await sample("active", "critical") == 2.0

    await eventually(two_active)
    text = await (await client.get("/metrics")).text()
    assert text.count("monitoring_alerts{") == 12
    assert 'monitoring_alertmanager_alerts_received_total{status="firing"} 2.0' in text


async def test_monitoring_alerts_follows_acknowledge_and_resolve(make_client: MakeClient) -> None:
    client = await make_client({**TOKENS, "alerts": {"counts_refresh_interval": "10ms"}})

    async def counts() -> dict[str, float]:
        text = await (await client.get("/metrics")).text()
        return {
            line.split('status="')[1].split('"')[0]: float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith('monitoring_alerts{severity="critical"')
        }

    await post(client, notification(am_alert("c1"), am_alert("c2")))
    rows = await (await client.get("/api/v1/alerts", headers=READ)).json()
    first = rows["items"][0]["id"]
    ack = await client.post(f"/api/v1/alerts/{first}/acknowledge", json={"by": "ann"}, headers=ACK)
    assert ack.status == 200

    async def acknowledged() -> bool:
        return await counts() == {"active": 1.0, "acknowledged": 1.0, "resolved": 0.0}

    await eventually(acknowledged)
    await post(client, notification(am_alert("c1", "resolved"), am_alert("c2", "resolved")))

    async def resolved() -> bool:
        return await counts() == {"active": 0.0, "acknowledged": 0.0, "resolved": 2.0}

    await eventually(resolved)


async def test_database_stopped_mid_stream_is_503_then_everything_is_stored(
    make_client: MakeClient, writer_url: str, db: asyncpg.Connection
) -> None:
    proxy = TcpProxy.to_database(writer_url)
    await proxy.start()
    proxy.enable()
    try:
        dsn = proxy.url(writer_url)
        client = await make_client(TOKENS, dsn=dsn)
        sent = [notification(*[am_alert(f"s{n}-{i}") for i in range(5)]) for n in range(6)]
        assert (await post(client, sent[0])).status == 200
        await proxy.cut()
        for body in sent[1:3]:
            resp = await post(client, body)
            assert resp.status == 503
            assert int(resp.headers["Retry-After"]) > 0
            assert (await resp.json())["error"]["code"] == "storage_unavailable"
        proxy.enable()
        pending = sent[1:]  # Alertmanager retries what got a 5xx

        async def delivered() -> bool:
            while pending:
                if (await post(client, pending[0])).status != 200:
                    return False
                pending.pop(0)
            return True

        await eventually(delivered, timeout=20)
        assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 30
    finally:
        await proxy.close()
