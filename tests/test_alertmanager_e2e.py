"""End to end with a real Alertmanager (Debian's prometheus-alertmanager 0.25).

Alertmanager posts to our webhook with a bearer token; acknowledging through our API creates a
silence in it; resolving the alert in Alertmanager resolves the incident and expires the silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.conftest import MakeClient, eventually
from tests.support import peers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def alertmanager(
    tmp_path: Path, port: int, webhook_url: str, token: str
) -> AsyncIterator[str]:
    """A throwaway Alertmanager sending every group to ``webhook_url`` within a second."""
    config = {
        "route": {
            "receiver": "exporter",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "exporter",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials": token}},
                    }
                ],
            }
        ],
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    found = peers.peer("prometheus-alertmanager")
    proc = await asyncio.create_subprocess_exec(
        *found.argv(),
        f"--config.file={path}",
        f"--storage.path={tmp_path / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=found.env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{url}/-/ready") as resp:
                        return resp.status == 200
                return False

            await eventually(ready, timeout=20)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(proc.wait(), timeout=10)


async def test_alertmanager_to_incident_to_silence_and_back(
    make_client: MakeClient, tmp_path: Path
) -> None:
    am_port = free_port()
    config = {
        "auth": {
            "tokens": [
                {"name": "alertmanager", "token": "am-token", "scopes": ["write"]},
                {"name": "oncall", "token": "oncall-token", "scopes": ["read", "ack"]},
            ]
        },
        "alerts": {
            "alertmanager_url": f"http://127.0.0.1:{am_port}",
            "reconcile_interval": "500ms",
            "reconcile_startup_grace": "0s",
        },
    }
    client = await make_client(config)
    webhook = f"http://127.0.0.1:{client.server.port}/api/v1/alertmanager"
    async with alertmanager(tmp_path, am_port, webhook, "am-token") as am_url:
        oncall = {"Authorization": "Bearer oncall-token"}
        labels = {"alertname": "E2EDiskFull", "severity": "critical", "service": "db"}
        starts = datetime.now(UTC) - timedelta(seconds=5)
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {"summary": "Disk full on db-1"},
            "startsAt": starts.isoformat(),
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{am_url}/api/v2/alerts", json=[alert]) as resp:
                assert resp.status == 200
            found: list[dict[str, Any]] = []

            async def incident(status: str) -> bool:
                resp = await client.get("/api/v1/alerts", headers=oncall)
                found[:] = (await resp.json())["items"]
                return len(found) == 1 and found[0]["status"] == status

            await eventually(lambda: incident("active"), timeout=20)
            item = found[0]
            assert (item["title"], item["severity"], item["service_name"]) == (
                "Disk full on db-1", "critical", "db",
            )  # fmt: skip
            ack = await client.post(
                f"/api/v1/alerts/{item['id']}/acknowledge", json={"by": "ann"}, headers=oncall
            )
            assert ack.status == 200
            silence_id = (await ack.json())["silence_id"]
            assert silence_id
            async with http.get(f"{am_url}/api/v2/silence/{silence_id}") as resp:
                silence = await resp.json()
            assert silence["status"]["state"] == "active"
            assert silence["createdBy"] == "ann"
            assert {(m["name"], m["value"]) for m in silence["matchers"]} == set(labels.items())

            resolved = alert | {"endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
            async with http.post(f"{am_url}/api/v2/alerts", json=[resolved]) as resp:
                assert resp.status == 200
            await eventually(lambda: incident("resolved"), timeout=20)
            assert found[0]["resolved_by"] == "alertmanager"

            async def expired() -> bool:
                async with http.get(f"{am_url}/api/v2/silence/{silence_id}") as resp:
                    return bool((await resp.json())["status"]["state"] == "expired")

            await eventually(expired, timeout=10)
