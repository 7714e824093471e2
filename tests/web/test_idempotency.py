"""Idempotency-Key on every write: a retry gets the first outcome back and stores nothing
twice, also when PostgreSQL crashes between the commit and the answer."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.storage.migrate import migrate
from tests.conftest import MakeClient, eventually
from tests.support.postgres import EmbeddedServer, embedded_data_dir

TOKENS = {
    "auth": {
        "tokens": [
            {"name": "one", "token": "t1", "scopes": ["admin"]},
            {"name": "two", "token": "t2", "scopes": ["admin"]},
        ]
    },
    "host": {"enabled": False},
}
ONE = {"Authorization": "Bearer t1"}
TWO = {"Authorization": "Bearer t2"}

# (path, body, table whose rows it stores)
WRITES: list[tuple[str, Any, str]] = [
    (
        "/api/v1/health-metrics",
        {"service": "api", "metric_type": "latency", "value": 1},
        "system_health_metrics",
    ),
    (
        "/api/v1/quality-indicators",
        {"source": "shop", "dataset": "orders", "dimension": "accuracy", "score": 90},
        "data_quality_indicators",
    ),
    (
        "/api/v1/performance-logs",
        [{"operation_type": "api_call", "duration_ms": 5, "status": "success"}] * 3,
        "system_performance_logs",
    ),
    (
        "/api/v1/alerts",
        {"title": "Disk full", "severity": "high", "alert_type": "system_error"},
        "system_alerts",
    ),
    (
        "/api/v1/alertmanager",
        {"version": "4", "status": "firing", "alerts": [{"status": "firing",
         "labels": {"alertname": "X"}, "startsAt": "2026-01-01T00:00:00Z",
         "fingerprint": "fp1"}]},
        "system_alert_events",
    ),
]  # fmt: skip


async def count(db: asyncpg.Connection, table: str) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM monitoring.{table}"))


async def post(
    client: TestClient[Any, Any], path: str, body: Any, key: str | None, headers: dict[str, str]
) -> tuple[int, Any, dict[str, str]]:
    extra = {"Idempotency-Key": key} if key is not None else {}
    resp = await client.post(path, json=body, headers={**headers, **extra})
    return resp.status, await resp.json(), dict(resp.headers)


@pytest.mark.parametrize(("path", "body", "table"), WRITES, ids=[w[0] for w in WRITES])
async def test_a_retry_with_the_key_gets_the_first_outcome_and_stores_nothing_twice(
    make_client: MakeClient, db: asyncpg.Connection, path: str, body: Any, table: str
) -> None:
    client = await make_client(TOKENS)
    key = uuid.uuid4().hex
    first = await post(client, path, body, key, ONE)
    assert 200 <= first[0] < 300
    stored = await count(db, table)
    again = await post(client, path, body, key, ONE)
    assert (again[0], again[1]) == (first[0], first[1])
    assert again[2]["Idempotent-Replayed"] == "true"
    assert await count(db, table) == stored
    # the same key from another token is another key
    other = await post(client, path, body, key, TWO)
    assert 200 <= other[0] < 300 and "Idempotent-Replayed" not in other[2]


@pytest.mark.parametrize(("path", "body", "table"), WRITES, ids=[w[0] for w in WRITES])
async def test_a_key_reused_for_another_request_is_422_and_stores_nothing(
    make_client: MakeClient, db: asyncpg.Connection, path: str, body: Any, table: str
) -> None:
    client = await make_client(TOKENS)
    key = uuid.uuid4().hex
    assert 200 <= (await post(client, path, body, key, ONE))[0] < 300
    stored = await count(db, table)
    changed = {**body, "value": 2} if isinstance(body, dict) and "value" in body else [body, body]
    status, error, _ = await post(client, path, changed, key, ONE)
    assert status == 422
    assert error["error"]["code"] == "idempotency_key_reused"
    assert error["error"]["details"][0]["path"] == "Idempotency-Key"
    assert await count(db, table) == stored


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "naïve", "tab\tkey"])
async def test_an_unusable_key_is_400_naming_the_header_and_stores_nothing(
    make_client: MakeClient, db: asyncpg.Connection, key: str
) -> None:
    client = await make_client(TOKENS)
    path, body, table = WRITES[0]
    resp = await client.post(
        path, json=body, headers={**ONE, "Idempotency-Key": key.encode().decode("latin-1")}
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert (error["code"], error["details"][0]["path"]) == ("invalid_header", "Idempotency-Key")
    assert await count(db, table) == 0


async def test_concurrent_requests_with_one_key_store_once_and_answer_alike(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(TOKENS)
    path, body, table = WRITES[2]  # the group-committed ingest: one batch may hold them all
    key = uuid.uuid4().hex
    answers = await asyncio.gather(*(post(client, path, body, key, ONE) for _ in range(10)))
    assert {(a[0], json.dumps(a[1])) for a in answers} == {(200, json.dumps({"committed": 3}))}
    assert await count(db, table) == 3
    key = uuid.uuid4().hex
    path, body, table = WRITES[3]  # a single transaction per request
    answers = await asyncio.gather(*(post(client, path, body, key, ONE) for _ in range(10)))
    assert len({a[1]["id"] for a in answers}) == 1
    assert await count(db, table) == 1


async def test_a_crash_between_commit_and_answer_loses_and_doubles_nothing(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """Senders retry every batch with its key until acknowledged while PostgreSQL is crashed
    (immediate stop) twice: every record is stored exactly once."""
    with embedded_data_dir(tmp_path) as data_dir:
        server = EmbeddedServer(data_dir)
        url = await asyncio.to_thread(server.start)
        try:
            conn = await asyncpg.connect(url)
            await migrate(conn, "monitoring")
            await conn.close()
            config = {
                **TOKENS,
                "database": {"acquire_timeout": "1s", "connect_timeout": "1s"},
            }
            client = await make_client(config, dsn=url)
            names = itertools.count()
            sent: list[str] = []
            stop = asyncio.Event()

            async def sender() -> None:
                while not stop.is_set():
                    batch = [f"r{next(names)}" for _ in range(20)]
                    body = "\n".join(
                        json.dumps({"operation_type": "crash_test", "operation_name": n,
                                    "duration_ms": 1, "status": "success"})
                        for n in batch
                    )  # fmt: skip
                    headers = {**ONE, "Idempotency-Key": uuid.uuid4().hex,
                               "Content-Type": "application/x-ndjson"}  # fmt: skip
                    while True:  # the same batch, the same key, until acknowledged
                        try:
                            resp = await client.post(
                                "/api/v1/performance-logs", data=body, headers=headers
                            )
                            if resp.status == 200:
                                break
                            assert resp.status == 503, resp.status
                        except (aiohttp.ClientError, OSError):
                            pass
                        await asyncio.sleep(0.05)
                    sent.extend(batch)

            senders = [asyncio.create_task(sender()) for _ in range(4)]
            for _ in range(2):
                before = len(sent)

                async def progressed(at_least: int = before + 200) -> bool:
                    return len(sent) >= at_least

                await eventually(progressed, timeout=60)
                await asyncio.to_thread(server.crash)
                await asyncio.sleep(0.5)
                url = await asyncio.to_thread(server.start)
            before = len(sent)
            await eventually(lambda: progressed(before + 200), timeout=60)
            stop.set()
            await asyncio.gather(*senders)
            conn = await asyncpg.connect(url)
            try:
                rows = await conn.fetch(
                    "SELECT operation_name, count(*) AS n FROM monitoring.system_performance_logs"
                    " WHERE operation_type = 'crash_test' GROUP BY operation_name"
                )
            finally:
                await conn.close()
            counts = {r["operation_name"]: r["n"] for r in rows}
            assert [n for n in sent if n not in counts] == []  # none lost
            assert {n: c for n, c in counts.items() if c != 1} == {}  # none doubled
            assert set(counts) == set(sent)
        finally:
            await asyncio.to_thread(server.stop)
