"""Host and process figures, the demo services, notifications and the full /metrics output."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)

from exporter.config import Config
from exporter.demo import demo_config
from exporter.features.core import LIFECYCLE, REPLICA
from exporter.web.app import create_app
from tests.conftest import MakeClient, eventually
from tests.support import peers
from tests.support.process import free_port


async def test_host_and_process_figures(make_client: MakeClient, tmp_path: Path) -> None:
    pid_file = tmp_path / "me.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    client = await make_client(
        {
            "auth": {"disabled": True},
            "host": {
                "interval": "100ms",
                "mounts": ["/", "/no/such/mount"],
                "thresholds": {"memory_usage": {"warning": 0.99, "critical": 1.0}},
            },
            "services": [
                {"name": "me", "process": {"pid_file": str(pid_file)}},
                {"name": "ghost", "process": {"name": "no-such-process-anywhere"}},
            ],
        }
    )
    # per-replica figures name the replica that measured them
    replica = f',replica="{client.app[REPLICA]}"'
    wanted = [
        'service="host",metric_type="cpu_usage"' + replica,
        'service="host",metric_type="memory_usage"' + replica,
        'service="host",metric_type="disk_usage_root"' + replica,
        'service="monitoring_exporter",metric_type="process_memory_rss"' + replica,
        'service="me",metric_type="process_cpu_usage"' + replica,
        'service="me",metric_type="process_memory_rss"' + replica,
        'service="me",metric_type="process_uptime"' + replica,
    ]

    async def shown() -> bool:
        text = await (await client.get("/metrics")).text()
        return all(f"monitoring_health_metric_value{{{w}}}" in text for w in wanted)

    await eventually(shown)
    text = await (await client.get("/metrics")).text()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("monitoring_health_metric_value{")
    }
    for w in wanted[:3]:
        assert 0 <= values[f"monitoring_health_metric_value{{{w}}}"] <= 1
    value = 'monitoring_health_metric_value{{service="me",metric_type="{}"' + replica + "}}"
    assert values[value.format("process_memory_rss")] > 1e6
    assert values[value.format("process_uptime")] > 0
    # a process that is not running: count 0, critical, and no figures made up for it
    assert (
        f'monitoring_health_status{{service="ghost",metric_type="process_count"{replica}}} 2'
        in text
    )
    assert 'service="ghost",metric_type="process_cpu_usage"' not in text
    assert "no_such_mount" not in text
    assert (
        'monitoring_health_threshold{service="host",metric_type="memory_usage",level="warning"} 0.99'
        in text
    )


async def test_demo_services_probe_real_things_and_seed_history(
    database_url: str, db: asyncpg.Connection
) -> None:
    port = free_port()
    config = demo_config(Config(), database_url, f":{port}")
    services = {s.name: s for s in config.services}
    assert {"dashboard_api", "supabase_db", "data_sync"} <= set(services)
    dashboard, data_sync = services["dashboard_api"].http, services["data_sync"].tcp
    assert dashboard is not None and dashboard.url == f"http://127.0.0.1:{port}/livez"
    # the demo's own listener: nothing outside the demo decides whether it is up
    assert data_sync is not None and data_sync.address == f"127.0.0.1:{port}"
    app = create_app(config, dsn=database_url)
    client: TestClient[Any, Any] = TestClient(TestServer(app, port=port))
    await client.start_server()
    app[LIFECYCLE].serving.set()
    try:

        async def up() -> bool:
            text = await (await client.get("/metrics")).text()
            return all(
                f'monitoring_service_up{{service="{name}"}} 1.0' in text
                for name in ("dashboard_api", "supabase_db", "data_sync")
            )

        await eventually(up)

        async def seeded() -> bool:
            n = await db.fetchval(
                "SELECT count(*) FROM monitoring.system_health_metrics WHERE metadata ? 'demo'"
            )
            return bool(n > 100)

        await eventually(seeded)
        overview = await (await client.get("/api/v1/overview")).json()
        assert {"dashboard_api", "supabase_db", "data_sync"} <= {
            s["service"] for s in overview["services"]
        }
    finally:
        await client.close()


async def test_pushes_are_logged_for_the_stream_and_wake_it(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client({"auth": {"disabled": True}, "host": {"enabled": False}})
    got: list[str] = []
    await db.add_listener("change_log", lambda *args: got.append(args[2]))
    resp = await client.post(
        "/api/v1/health-metrics", json={"service": "s", "metric_type": "t", "value": 1}
    )
    row_id = (await resp.json())["id"]

    async def notified() -> bool:
        await asyncio.sleep(0)
        return "change_log" in got

    await eventually(notified)
    logged = await db.fetchval(
        "SELECT count(*) FROM monitoring.change_log"
        " WHERE channel = 'health_metrics' AND (data->>'id')::bigint = $1",
        row_id,
    )
    assert logged == 1


async def test_full_metrics_output_is_valid_in_both_formats(make_client: MakeClient) -> None:
    client = await make_client({"auth": {"disabled": True}, "host": {"interval": "100ms"}})
    body: list[dict[str, Any]] = [
        {"service": s, "metric_type": "t", "value": 1} for s in ('q"uote', "b\\s", "n\nl", "ü")
    ]
    assert (await client.post("/api/v1/health-metrics", json=body)).status == 201
    resp = await client.get("/metrics")
    text = await resp.read()
    found = peers.peer("promtool")
    promtool = await asyncio.create_subprocess_exec(
        *found.argv("check", "metrics"),
        env=found.env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(30):
        output, _ = await promtool.communicate(text)
    assert promtool.returncode == 0, output
    resp = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name for f in parse_openmetrics(await resp.text())}  # type: ignore[no-untyped-call]
    assert {"monitoring_health_metric_value", "monitoring_health_status"} <= families
