"""Real Alertmanagers for the tests: one, or an HA cluster of several on loopback, each
with its own storage and ports; and a few calls of its v2 API."""

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

from tests.conftest import eventually
from tests.support import peers


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def route_config(
    webhook_url: str | None = None, token: str | None = None, *, repeat: str = "1h"
) -> dict[str, Any]:
    """A configuration sending every group to ``webhook_url`` within a second, or nowhere
    (webhook delivery switched off) without one."""
    receiver: dict[str, Any] = {"name": "exporter"}
    if webhook_url is not None:
        hook: dict[str, Any] = {"url": webhook_url, "send_resolved": True}
        if token is not None:
            hook["http_config"] = {"authorization": {"credentials": token}}
        receiver["webhook_configs"] = [hook]
    return {
        "route": {
            "receiver": "exporter",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": repeat,
        },
        "receivers": [receiver],
    }


def shipped_config(webhook_url: str, token: str) -> dict[str, Any]:
    """deploy/compose/alertmanager.yml with its webhooks pointed at ``webhook_url`` (with
    ``token``) and its timings shortened for a test."""
    shipped: dict[str, Any] = yaml.safe_load(
        (peers.REPO / "deploy" / "compose" / "alertmanager.yml").read_text()
    )
    for receiver in shipped["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
            hook["http_config"] = {"authorization": {"credentials": token}}
    for route in (shipped["route"], *shipped["route"]["routes"]):
        route |= {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1s"}
    return shipped


@contextlib.asynccontextmanager
async def alertmanagers(
    tmp_path: Path, config: dict[str, Any], n: int = 1, ports: list[int] | None = None
) -> AsyncIterator[list[str]]:
    """``n`` Alertmanagers (with n > 1 one cluster, each peering with the others); their
    base URLs once every one is ready."""
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    web_ports = ports or [free_port() for _ in range(n)]
    mesh = [free_port() for _ in range(n)]
    found = peers.peer("prometheus-alertmanager")
    procs = []
    try:
        for i, port in enumerate(web_ports):
            cluster = (
                [
                    f"--cluster.listen-address=127.0.0.1:{mesh[i]}",
                    # readiness waits for the mesh to settle: quick gossip settles it sooner
                    "--cluster.gossip-interval=50ms",
                    "--cluster.settle-timeout=5s",
                    *(f"--cluster.peer=127.0.0.1:{p}" for j, p in enumerate(mesh) if j != i),
                ]
                if n > 1
                else ["--cluster.listen-address="]
            )
            procs.append(
                await asyncio.create_subprocess_exec(
                    *found.argv(),
                    f"--config.file={path}",
                    f"--storage.path={tmp_path / f'am-data-{port}'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    *cluster,
                    "--log.level=error",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                    env=found.env,
                )
            )
        urls = [f"http://127.0.0.1:{port}" for port in web_ports]
        async with aiohttp.ClientSession() as http:
            for url in urls:

                async def ready(url: str = url) -> bool:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{url}/-/ready") as resp:
                            return resp.status == 200
                    return False

                await eventually(ready, timeout=20)
        yield urls
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout=1)
            except TimeoutError:
                # a cluster member takes 10 s to leave the mesh gracefully: nothing to keep
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def alert(labels: dict[str, str], starts: datetime | None = None, **more: Any) -> dict[str, Any]:
    """A postable alert (firing, started a moment ago unless ``starts``)."""
    at = starts or datetime.now(UTC) - timedelta(seconds=1)
    return {"labels": labels, "annotations": {}, "startsAt": at.isoformat(), **more}


def ended(body: dict[str, Any]) -> dict[str, Any]:
    """The same alert, resolved a moment ago."""
    return body | {"endsAt": (datetime.now(UTC) - timedelta(milliseconds=100)).isoformat()}


async def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    """``POST /api/v2/alerts``."""
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/v2/alerts",
                                                          json=alerts) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()


async def get(url: str, path: str, **params: str) -> Any:
    """A GET of the v2 API, decoded."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/v2/{path}",
                                                         params=params) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def silence(url: str, silence_id: str) -> dict[str, Any]:
    """One silence."""
    found: dict[str, Any] = await get(url, f"silence/{silence_id}")
    return found


async def active_silences(url: str) -> list[dict[str, Any]]:
    """Silences in force now."""
    return [s for s in await get(url, "silences") if s["status"]["state"] == "active"]
