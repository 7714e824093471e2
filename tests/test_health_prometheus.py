"""End to end: a real Prometheus scrapes the exporter and shows every probe's figures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import MakeClient, eventually
from tests.support import peers
from tests.support.proxy import TcpProxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def web_target() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", ok)
    server = TestServer(app)
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}/health"
    await server.close()


@pytest.fixture
async def database_port(database_url: str) -> AsyncIterator[str]:
    """A TCP address of the test database (the embedded server listens on a Unix socket)."""
    proxy = TcpProxy.to_database(database_url)
    await proxy.start()
    proxy.enable()
    yield f"127.0.0.1:{proxy.port}"
    await proxy.close()


async def start_prometheus(
    tmp_path: Path, target_port: int
) -> tuple[asyncio.subprocess.Process, str]:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "monitoring-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    found = peers.peer("prometheus")
    proc = await asyncio.create_subprocess_exec(
        *found.argv(),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=found.env,
    )
    return proc, f"http://127.0.0.1:{port}"


async def test_prometheus_shows_every_probe(
    make_client: MakeClient,
    database_url: str,
    database_port: str,
    web_target: str,
    tmp_path: Path,
) -> None:
    client = await make_client(
        {
            "auth": {"disabled": True},
            "host": {"enabled": False},
            "services": [
                {
                    "name": "dashboard_api",
                    "interval": "1s",
                    "http": {"url": web_target},
                    "thresholds": {"response_time": {"warning": "500ms", "critical": "1s"}},
                },
                {"name": "database_port", "interval": "1s", "tcp": {"address": database_port}},
                {
                    "name": "supabase_db",
                    "interval": "1s",
                    "postgres": {"dsn": database_url, "query": "SELECT 1"},
                },
            ],
        }
    )
    assert client.port is not None
    proc, prometheus = await start_prometheus(tmp_path, client.port)
    services = {"dashboard_api", "database_port", "supabase_db"}
    try:
        async with aiohttp.ClientSession() as session:

            async def query(expr: str) -> list[dict[str, Any]]:
                try:
                    async with session.get(
                        f"{prometheus}/api/v1/query", params={"query": expr}
                    ) as resp:
                        if resp.status != 200:
                            return []
                        body = await resp.json()
                except aiohttp.ClientError:
                    return []
                result: list[dict[str, Any]] = body["data"]["result"]
                return result

            async def shown() -> bool:
                times = await query('monitoring_health_metric_value{metric_type="response_time"}')
                status = await query('monitoring_health_status{metric_type="up"}')
                up = await query("monitoring_service_up == 1")
                return (
                    {r["metric"]["service"] for r in times} == services
                    and all(0 < float(r["value"][1]) < 1 for r in times)
                    and {r["metric"]["service"] for r in status} == services
                    and all(r["value"][1] == "0" for r in status)
                    and {r["metric"]["service"] for r in up} == services
                )

            await eventually(shown, timeout=45, interval=0.5)
            thresholds = await query(
                'monitoring_health_threshold{service="dashboard_api",metric_type="response_time"}'
            )
            assert {(r["metric"]["level"], r["value"][1]) for r in thresholds} == {
                ("warning", "0.5"),
                ("critical", "1"),
            }
            # the exporter's own health rides along
            success = await query('monitoring_collector_success{collector="health"}')
            assert success and success[0]["value"][1] == "1"
    finally:
        proc.terminate()
        await proc.wait()
