"""The self-test: every record written and rolled back, NOTIFY and /metrics checked, steps named."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import asyncpg

from exporter.selftest import STEPS
from tests.conftest import MakeClient
from tests.support.process import free_port
from tests.support.proxy import TcpProxy

TOKENS = {
    "auth": {
        "tokens": [
            {"name": "ops", "token": "admin-token", "scopes": ["admin"]},
            {"name": "grafana", "token": "read-token", "scopes": ["read", "write", "ack"]},
        ]
    },
    "host": {"enabled": False},
}
ADMIN = {"Authorization": "Bearer admin-token"}

TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'monitoring' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""


# what the running service writes on its own schedule (its leader's jobs), not the self-test
BOOKKEEPING = {"scheduled_runs", "leases", "change_feed_state"}
# ... and the changes of the overview's verdict its leader logs for the stream
COUNT = {
    "change_log": "SELECT count(*) FROM monitoring.change_log"
    " WHERE data->>'kind' IS DISTINCT FROM 'overall'"
}


async def row_counts(db: asyncpg.Connection) -> dict[str, int]:
    """Rows in every table of the schema (a partitioned table counts its partitions)."""
    names = [r["relname"] for r in await db.fetch(TABLES) if r["relname"] not in BOOKKEEPING]
    return {
        name: await db.fetchval(COUNT.get(name, f'SELECT count(*) FROM monitoring."{name}"'))
        for name in names
    }


def selftest_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITORING_")}
    return subprocess.run(
        [sys.executable, "-m", "exporter", "selftest", *args],
        capture_output=True, text=True, check=False, timeout=60, env=env,
    )  # fmt: skip


async def test_passes_over_http_and_leaves_nothing_behind(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(TOKENS)
    before = await row_counts(db)
    assert {"system_health_metrics", "system_alerts", "system_performance_logs"} <= set(before)
    resp = await client.get("/api/v1/selftest", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "ok"
    assert [s["name"] for s in body["steps"]] == list(STEPS)
    assert all(s["ok"] and s["seconds"] >= 0 for s in body["steps"])
    assert await row_counts(db) == before


async def test_needs_an_admin_token(make_client: MakeClient) -> None:
    client = await make_client(TOKENS)
    resp = await client.get("/api/v1/selftest")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.get("/api/v1/selftest", headers={"Authorization": "Bearer read-token"})
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"


async def test_an_unreachable_database_is_503_naming_the_step(
    make_client: MakeClient, database_url: str
) -> None:
    proxy = TcpProxy.to_database(database_url)
    await proxy.start()
    proxy.enable()
    try:
        client = await make_client(TOKENS, dsn=proxy.url(database_url))
        assert (await client.get("/api/v1/selftest", headers=ADMIN)).status == 200
        await proxy.cut()
        resp = await client.get("/api/v1/selftest", headers=ADMIN)
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) > 0
        error = (await resp.json())["error"]
        assert error["code"] == "selftest_failed"
        assert "step 'database'" in error["message"]
        (step,) = error["details"]
        assert step["path"] == "database" and step["message"].startswith("failed after")
    finally:
        await proxy.close()


async def test_command_passes_on_a_migrated_database_and_leaves_nothing(
    database_url: str, db: asyncpg.Connection
) -> None:
    before = await row_counts(db)
    result = await asyncio.to_thread(selftest_cli, "--database-url", database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in STEPS:
        (line,) = [x for x in lines if x.split()[1:2] == [name]]
        assert line.startswith("ok") and line.endswith(" ms"), line
    assert lines[-1].startswith(f"selftest passed: {len(STEPS)} steps")
    assert await row_counts(db) == before


def test_command_exits_1_naming_the_step_when_the_database_is_unreachable() -> None:
    nobody = f"postgresql://postgres@127.0.0.1:{free_port()}/monitoring"
    result = selftest_cli("--database-url", nobody)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[-2].startswith("FAILED  database") and "refused" in lines[-2].lower()
    assert lines[-1] == "selftest failed at step database"


async def test_command_on_an_unmigrated_database_names_the_migrations(
    empty_database_url: str,
) -> None:
    result = await asyncio.to_thread(selftest_cli, "--database-url", empty_database_url)
    assert result.returncode == 1
    failed: Any = [x for x in result.stdout.splitlines() if x.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].split()[1] == "schema"
    assert "monitoring-exporter migrate" in failed[0]
    assert result.stdout.splitlines()[-1] == "selftest failed at step schema"
