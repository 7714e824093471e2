"""The alert lifecycle's new parts without Alertmanager: dedup keys, resolving by key,
unacknowledge, notes, acknowledgements that end by themselves; and bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, eventually
from tests.support.alertmanager import alertmanagers, get, route_config

TOKENS = {
    "tokens": [
        {"name": "pusher", "token": "w-token", "scopes": ["write"]},
        {"name": "oncall", "token": "o-token", "scopes": ["read", "ack"]},
    ]
}
W = {"Authorization": "Bearer w-token"}
ONCALL = {"Authorization": "Bearer o-token"}
CONFIG = {"auth": TOKENS, "host": {"enabled": False}, "alerts": {"auto_resolve_interval": "100ms"}}


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client(CONFIG)


async def create(client: TestClient[Any, Any], status: int = 201, **body: Any) -> dict[str, Any]:
    body = {"title": "Disk full", "severity": "high", "alert_type": "system_error"} | body
    resp = await client.post("/api/v1/alerts", json=body, headers=W)
    assert resp.status == status, await resp.text()
    found: dict[str, Any] = await resp.json()
    return found


async def history(client: TestClient[Any, Any], alert_id: int) -> list[tuple[Any, ...]]:
    got = await (await client.get(f"/api/v1/alerts/{alert_id}", headers=ONCALL)).json()
    return [(e["from_status"], e["to_status"], e["actor"], e["note"]) for e in got["events"]]


async def test_a_dedup_key_holds_one_open_incident_and_resolves_by_key(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    answers = await asyncio.gather(
        *(
            client.post(
                "/api/v1/alerts",
                json={"title": f"sync {i}", "severity": "low", "alert_type": "performance",
                      "dedup_key": "k1"},
                headers=W,
            )
            for i in range(8)
        )
    )  # fmt: skip
    assert sorted(r.status for r in answers) == [200] * 7 + [201]
    assert len({(await r.json())["id"] for r in answers}) == 1
    other = await create(client, dedup_key="k2")
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 2
    assert other["dedup_key"] == "k2" and other["alertmanager_pending"] == []

    resp = await client.post("/api/v1/alerts/resolve", json={"dedup_key": "k1", "note": "ok"},
                             headers=W)  # fmt: skip
    assert resp.status == 200
    done = await resp.json()
    assert (done["status"], done["resolved_by"], done["dedup_key"]) == ("resolved", "pusher", "k1")
    gone = await client.post("/api/v1/alerts/resolve", json={"dedup_key": "k1"}, headers=W)
    assert gone.status == 404
    assert (await gone.json())["error"]["details"][0]["path"] == "dedup_key"
    # the key is free again: a new incident
    again = await create(client, dedup_key="k1")
    assert again["id"] not in (done["id"], other["id"])
    # resolving by key is a write, not an acknowledgement: the ack token may not
    assert (await client.post("/api/v1/alerts/resolve", json={"dedup_key": "k2"},
                              headers=ONCALL)).status == 403  # fmt: skip


async def test_unacknowledge_and_notes(client: TestClient[Any, Any]) -> None:
    alert_id = (await create(client))["id"]
    url = f"/api/v1/alerts/{alert_id}"
    assert (
        await client.post(url + "/acknowledge", json={"by": "ann"}, headers=ONCALL)
    ).status == 200
    back = await client.post(url + "/unacknowledge", json={"by": "bob", "note": "not mine"},
                             headers=ONCALL)  # fmt: skip
    assert back.status == 200
    body = await back.json()
    assert (body["status"], body["acknowledged_by"], body["acknowledged_at"]) == (
        "active",
        None,
        None,
    )
    again = await client.post(url + "/unacknowledge", json={"by": "bob"}, headers=ONCALL)
    assert again.status == 200 and (await again.json())["status"] == "active"
    note = await client.post(url + "/notes", json={"by": "cy", "note": "looking at disks"},
                             headers=ONCALL)  # fmt: skip
    assert note.status == 201
    event = await note.json()
    assert (event["from_status"], event["to_status"], event["actor"], event["note"]) == (
        "active", "active", "cy", "looking at disks",
    )  # fmt: skip
    assert (await client.post(url + "/resolve", json={"by": "dee"}, headers=ONCALL)).status == 200
    late = await client.post(url + "/unacknowledge", json={"by": "bob"}, headers=ONCALL)
    assert late.status == 409
    # notes are welcome after the fact
    assert (await client.post(url + "/notes", json={"by": "cy", "note": "post-mortem"},
                              headers=ONCALL)).status == 201  # fmt: skip
    assert await history(client, alert_id) == [
        (None, "active", "pusher", "created through the API"),
        ("active", "acknowledged", "ann", None),
        ("acknowledged", "active", "bob", "not mine"),
        ("active", "active", "cy", "looking at disks"),
        ("active", "resolved", "dee", None),
        ("resolved", "resolved", "cy", "post-mortem"),
    ]
    missing = await client.post("/api/v1/alerts/999/notes", json={"by": "a", "note": "b"},
                                headers=ONCALL)  # fmt: skip
    assert missing.status == 404


async def test_an_acknowledgement_until_a_time_returns_to_active_with_an_event(
    client: TestClient[Any, Any],
) -> None:
    alert_id = (await create(client))["id"]
    url = f"/api/v1/alerts/{alert_id}"
    past = await client.post(url + "/acknowledge", json={"by": "ann", "until": "2020-01-01T00:00:00Z"},
                             headers=ONCALL)  # fmt: skip
    assert past.status == 400
    assert (await past.json())["error"]["details"][0]["path"] == "until"
    until = datetime.now(UTC) + timedelta(seconds=1)
    ack = await client.post(url + "/acknowledge", json={"by": "ann", "until": until.isoformat()},
                            headers=ONCALL)  # fmt: skip
    assert ack.status == 200
    assert datetime.fromisoformat((await ack.json())["acknowledged_until"]) == until

    async def back() -> bool:
        got = await (await client.get(url, headers=ONCALL)).json()
        return bool(got["status"] == "active")

    await eventually(back, timeout=10)
    (*_, last) = await history(client, alert_id)
    assert last[:3] == ("acknowledged", "active", "ack-expiry")
    assert last[3].startswith("acknowledged by ann until ")


async def test_a_configured_ack_expiry_applies_without_until(make_client: MakeClient) -> None:
    client = await make_client(
        {**CONFIG, "alerts": {"ack_expiry": "30m", "auto_resolve_interval": "1s"}}
    )
    alert_id = (await create(client))["id"]
    before = datetime.now(UTC)
    ack = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "ann"},
                            headers=ONCALL)  # fmt: skip
    until = datetime.fromisoformat((await ack.json())["acknowledged_until"])
    assert timedelta(minutes=29) < until - before < timedelta(minutes=31)


async def test_bad_dedup_keys_are_400_store_nothing_and_send_nothing(
    make_client: MakeClient, tmp_path: Path, db: asyncpg.Connection
) -> None:
    async with alertmanagers(tmp_path, route_config(None)) as [url]:
        client = await make_client(
            {**CONFIG, "alerts": {"alertmanager_url": url, "reconcile_interval": "200ms"}}
        )
        for key, problem in (("k" * 257, "256"), ("", "1"), ("a\u0000b", "NUL")):
            resp = await client.post(
                "/api/v1/alerts",
                json={"title": "t", "severity": "low", "alert_type": "security", "dedup_key": key},
                headers=W,
            )
            assert resp.status == 400, key
            [detail] = (await resp.json())["error"]["details"]
            assert detail["path"] == "dedup_key" and problem in detail["message"], detail
        resp = await client.post("/api/v1/alerts/resolve", json={"dedup_key": "k" * 257}, headers=W)
        assert resp.status == 400
        assert (await resp.json())["error"]["details"][0]["path"] == "dedup_key"
        assert await db.fetchval("SELECT count(*) FROM monitoring.system_alerts") == 0
        # a good one reaches Alertmanager; the bad ones never did
        await create(client, dedup_key="k" * 256)

        async def sent() -> bool:
            return len(await get(url, "alerts")) == 1

        await eventually(sent, timeout=10)


async def test_new_writes_take_an_idempotency_key(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    alert_id = (await create(client, dedup_key="once"))["id"]
    for path, body, headers in (
        (f"/api/v1/alerts/{alert_id}/notes", {"by": "ann", "note": "n"}, ONCALL),
        (f"/api/v1/alerts/{alert_id}/unacknowledge", {"by": "ann"}, ONCALL),
        ("/api/v1/alerts/resolve", {"dedup_key": "once"}, W),
    ):
        key = {"Idempotency-Key": f"k-{path}"}
        first = await client.post(path, json=body, headers={**headers, **key})
        again = await client.post(path, json=body, headers={**headers, **key})
        assert first.status == again.status and first.status in (200, 201), path
        assert again.headers["Idempotent-Replayed"] == "true"
        assert await again.json() == await first.json()
    notes = await db.fetchval(
        "SELECT count(*) FROM monitoring.system_alert_events WHERE from_status = to_status"
    )
    assert notes == 1
