"""Behind a real PgBouncer in transaction pooling mode (as Supabase's pooler works): the API
reads and writes through the pooler, while LISTEN and the leader's lease use the direct URL;
a listener put behind the pooler by mistake shows up as not ready, naming the setting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from exporter.features.stream import HUB
from tests.conftest import MakeClient, eventually
from tests.support import peers
from tests.support.process import free_port

W = {"Authorization": "Bearer w"}
TOKENS = {"auth": {"tokens": [{"name": "w", "token": "w", "scopes": ["admin"]}]}}


def _server(url: str) -> tuple[str, int]:
    """Host (or socket directory) and port of a database URL."""
    parts = urlsplit(url)
    socket = parse_qs(parts.query).get("host")
    if socket:
        return socket[0], parts.port or 5432
    return parts.hostname or "127.0.0.1", parts.port or 5432


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder PgBouncer may use: it refuses to run as root, and then runs as nobody."""
    path = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def pooled(writer_url: str, workdir: Path) -> AsyncIterator[str]:
    """PgBouncer in transaction mode in front of this test's database; its URL for the writer."""
    pgbouncer = peers.peer("pgbouncer")
    tmp_path = workdir
    argv = [pgbouncer.path]
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    host, port = _server(writer_url)
    parts = urlsplit(writer_url)
    database, user = parts.path.lstrip("/"), parts.username or "postgres"
    listen = free_port()
    (tmp_path / "users.txt").write_text(f'"{user}" ""\n')
    (tmp_path / "pgbouncer.ini").write_text(
        f"""[databases]
{database} = host={host} port={port} dbname={database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {tmp_path / "users.txt"}
pool_mode = transaction
max_client_conn = 200
default_pool_size = 5
ignore_startup_parameters = extra_float_digits
logfile = {tmp_path / "pgbouncer.log"}
pidfile = {tmp_path / "pgbouncer.pid"}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        *argv,
        str(tmp_path / "pgbouncer.ini"),
        env=pgbouncer.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"postgresql://{user}@127.0.0.1:{listen}/{database}"

    async def up() -> bool:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            conn = await asyncpg.connect(url, statement_cache_size=0)
            await conn.close()
            return True
        return False

    try:
        await eventually(up, timeout=10)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


def pooled_config(pooled: str, direct: str, **database: Any) -> dict[str, Any]:
    return {
        **TOKENS,
        "host": {"enabled": False},
        "database": {"direct_url": direct, "statement_cache": False, **database},
    }


async def test_api_through_a_transaction_pooler_with_listen_and_lease_direct(
    make_client: MakeClient, pooled: str, writer_url: str, db: asyncpg.Connection
) -> None:
    client = await make_client(pooled_config(pooled, writer_url), dsn=pooled)
    body = {"service": "api", "metric_type": "latency", "value": 120, "unit": "ms"}
    for _ in range(20):
        assert (await client.post("/api/v1/health-metrics", json=body, headers=W)).status == 201
    page = await (await client.get("/api/v1/health-metrics?service=api", headers=W)).json()
    assert len(page["items"]) == 20
    alert = {"title": "t", "severity": "high", "alert_type": "performance"}
    created = await client.post("/api/v1/alerts", json=alert, headers=W)
    assert created.status == 201
    alert_id = (await created.json())["id"]
    ack = await client.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "me"}, headers=W)
    assert ack.status == 200
    logs = [{"operation_type": "api_call", "duration_ms": 5, "status": "success"}] * 50
    assert (await client.post("/api/v1/performance-logs", json=logs, headers=W)).status == 200
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_performance_logs") == 50

    # the views follow notifications (the listener is direct): the push is exported
    async def exported() -> bool:
        text = await (await client.get("/metrics")).text()
        return 'monitoring_health_metric_value{service="api",metric_type="latency"} 0.12' in text

    await eventually(exported)

    # and this replica leads through its direct lease session
    async def leads() -> bool:
        return "monitoring_leader 1.0" in await (await client.get("/metrics")).text()

    await eventually(leads)
    ready = await (await client.get("/readyz?verbose")).json()
    assert ready["status"] == "ok"
    assert ready["replica"]["role"] == "leader"


async def test_a_listener_behind_the_pooler_is_not_ready_and_says_why(
    make_client: MakeClient, pooled: str
) -> None:
    client = await make_client(pooled_config(pooled, pooled), dsn=pooled, wait_ready=False)

    async def refused() -> bool:
        resp = await client.get("/readyz")
        body = await resp.json()
        return resp.status == 503 and "listener" in body.get("failed", [])

    await eventually(refused, timeout=20)
    body = await (await client.get("/readyz")).json()
    assert "database.direct_url" in body["checks"]["listener"]["error"]
    assert "database.direct_url_env" in body["checks"]["listener"]["error"]


@pytest.mark.parametrize("listener_behind_pooler", [False, True])
async def test_the_stream_delivers_through_a_transaction_pooler(
    make_client: MakeClient, pooled: str, writer_url: str, listener_behind_pooler: bool
) -> None:
    # the change log is read through the pool; even a listener put behind the pooler by
    # mistake (no notification ever arrives) only delays delivery to the next poll
    direct = pooled if listener_behind_pooler else writer_url
    client = await make_client(
        pooled_config(pooled, direct), dsn=pooled, wait_ready=not listener_behind_pooler
    )
    ws = await client.ws_connect("/api/v1/stream", headers=W)
    await ws.send_json({"type": "subscribe", "channels": ["health_metrics"]})

    async def subscribed() -> bool:
        return bool(client.app[HUB].subscribers)

    await eventually(subscribed, timeout=20)
    body = {"service": "api", "metric_type": "latency", "value": 120, "unit": "ms"}
    resp = await client.post("/api/v1/health-metrics", json=body, headers=W)
    assert resp.status == 201
    msg = await ws.receive(timeout=10)
    event = msg.json()
    assert (event["type"], event["data"]["id"]) == ("event", (await resp.json())["id"])
    await ws.close()
