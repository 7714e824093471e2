"""Who migrates: the owner with `monitoring-exporter migrate`; a writer-only service waits for
it, and no one runs against a schema newer than the code."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

from exporter.storage.migrate import load_migrations
from tests.conftest import MakeClient, as_login, eventually
from tests.support.process import ServiceProcess

LATEST = max(m.version for m in load_migrations())


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m exporter ARGS`` to completion."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_a_writer_only_service_waits_not_ready_until_the_owner_migrates(
    make_client: MakeClient, empty_database_url: str, writer_login: str
) -> None:
    client = await make_client(
        {"auth": {"disabled": True}},
        dsn=as_login(empty_database_url, writer_login),
        wait_ready=False,
    )

    async def says_why() -> bool:
        resp = await client.get("/readyz")
        body = await resp.json()
        return resp.status == 503 and "error" in body.get("checks", {}).get("migrations", {})

    await eventually(says_why)
    body = await (await client.get("/readyz", params={"verbose": ""})).json()
    assert body["failed"] == ["migrations"]  # the database itself answers
    error = body["checks"]["migrations"]["error"]
    assert "`monitoring-exporter migrate`" in error and writer_login in error
    # writes are refused meanwhile, as storage unavailable
    resp = await client.post(
        "/api/v1/health-metrics", json={"service": "a", "metric_type": "cpu", "value": 1}
    )
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "storage_unavailable"

    migrated = await run_cli("migrate", "--database-url", empty_database_url)
    assert migrated.returncode == 0, migrated.stderr

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready, timeout=20)  # it retries at most every 10 s
    conn = await asyncpg.connect(empty_database_url)
    try:
        pushed = "SELECT count(*) FROM monitoring.system_health_metrics WHERE source = 'push'"
        assert await conn.fetchval(pushed) == 0
    finally:
        await conn.close()


async def test_serve_as_the_owner_migrates_at_start_and_stores_the_retention_policy(
    make_client: MakeClient, empty_database_url: str
) -> None:
    await make_client({"retention": {"resolved_alerts": "10d"}}, dsn=empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT max(version) FROM monitoring.schema_migrations") == (
            LATEST
        )
        assert await conn.fetchval(
            "SELECT keep FROM monitoring.retention_policy WHERE name = 'resolved_alerts'"
        ) == timedelta(days=10)
    finally:
        await conn.close()


async def test_the_message_names_the_schema_owner(
    make_client: MakeClient, database_url: str, db: asyncpg.Connection, writer_login: str
) -> None:
    # a migration the writer finds missing, in a schema owned by someone else
    await db.execute("DELETE FROM monitoring.schema_migrations WHERE version = $1", LATEST)
    owner = await db.fetchval("SELECT current_user")
    client = await make_client(dsn=as_login(database_url, writer_login), wait_ready=False)

    async def says_who() -> bool:
        check = (await (await client.get("/readyz")).json()).get("checks", {}).get("migrations")
        return bool(check and "error" in check)

    await eventually(says_who)
    check = (await (await client.get("/readyz")).json())["checks"]["migrations"]
    assert f"lacks migrations {LATEST}" in check["error"]
    assert f'login of its owner "{owner}"' in check["error"]


async def test_a_replica_refuses_a_schema_newer_than_its_code(
    tmp_path: Path, database_url: str, writer_url: str, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO monitoring.schema_migrations (version, name) VALUES ($1, 'from_the_future')",
        LATEST + 1,
    )
    for name, url in (("writer", writer_url), ("owner", database_url)):
        service = ServiceProcess(["--database-url", url], tmp_path / f"{name}.log")
        try:
            code = await asyncio.to_thread(service.proc.wait, 30)
            assert code == 1, service.log()
            assert "newer than this monitoring-exporter knows" in service.log()
            assert f"applied {LATEST + 1}" in service.log()
        finally:
            service.close()
    migrated = await run_cli("migrate", "--database-url", database_url)
    assert migrated.returncode == 1
    assert "newer than this monitoring-exporter knows" in migrated.stderr
    assert await db.fetchval("SELECT max(version) FROM monitoring.schema_migrations") == LATEST + 1


async def test_migrate_as_the_writer_says_whose_job_it_is(
    writer_url: str, db: asyncpg.Connection
) -> None:
    result = await run_cli("migrate", "--database-url", writer_url)
    assert result.returncode == 1
    owner = await db.fetchval("SELECT current_user")
    assert f'run `monitoring-exporter migrate` with the login of its owner \\"{owner}\\"' in (
        result.stderr
    )


async def test_migrate_stores_the_configured_retention_as_the_policy(
    database_url: str,
    db: asyncpg.Connection,
    write_config: Callable[[dict[str, Any]], Path],
) -> None:
    config = write_config({"retention": {"health_metrics": "7d", "performance_logs": "36h"}})
    result = await run_cli("migrate", "--config", str(config), "--database-url", database_url)
    assert result.returncode == 0, result.stderr
    policy = dict(await db.fetch("SELECT name, keep FROM monitoring.retention_policy"))
    assert policy == {
        "health_metrics": timedelta(days=7),
        "quality_indicators": timedelta(days=90),
        "resolved_alerts": timedelta(days=180),
        "performance_logs": timedelta(hours=36),
    }
