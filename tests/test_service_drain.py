"""SIGTERM while the database is stuck: exit 0 within 20 s, and no write answered 2xx unstored.

The ingest tables are locked (ACCESS EXCLUSIVE) by the test while performance logs, health
pushes and Alertmanager webhooks are in flight against the real ``serve`` process, logged in
as the writer-only login.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import eventually
from tests.support.process import ServiceProcess

LOCK = (
    "LOCK TABLE monitoring.system_performance_logs, monitoring.system_health_metrics,"
    " monitoring.system_alerts IN ACCESS EXCLUSIVE MODE"
)
PER_KIND = 4


def requests(url: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, marker, url, request kwargs) for every write sent while the tables are locked."""
    out = []
    for i in range(PER_KIND):
        marker = f"drain-{i}"
        record = {"operation_type": "drain", "operation_name": marker, "duration_ms": 1}
        out.append(
            (
                "logs",
                marker,
                f"{url}/api/v1/performance-logs",
                {
                    "data": json.dumps({**record, "status": "success"}),
                    "headers": {"Content-Type": "application/x-ndjson"},
                },
            )
        )
        push = {"service": marker, "metric_type": "cpu", "value": 1}
        out.append(("health", marker, f"{url}/api/v1/health-metrics", {"json": push}))
        alert = {
            "status": "firing",
            "labels": {"alertname": marker, "severity": "critical"},
            "annotations": {"summary": marker},
            "startsAt": "2024-05-01T12:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": marker,
        }
        webhook = {
            "version": "4",
            "groupKey": "{}",
            "status": "firing",
            "receiver": "exporter",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": [alert],
        }
        out.append(("alerts", marker, f"{url}/api/v1/alertmanager", {"json": webhook}))
    return out


STORED = {
    "logs": "SELECT operation_name FROM monitoring.system_performance_logs"
    " WHERE operation_type = 'drain'",
    "health": "SELECT service_name FROM monitoring.system_health_metrics WHERE source = 'push'",
    "alerts": "SELECT fingerprint FROM monitoring.system_alerts",
}


@pytest.fixture
async def service(
    writer_url: str, write_config: Callable[[dict[str, Any]], Path], tmp_path: Path
) -> AsyncIterator[ServiceProcess]:
    """The real service, as the writer-only login, with the default shutdown timeout (15 s)."""
    config = write_config({"auth": {"disabled": True}})
    process = ServiceProcess(
        ["--config", str(config), "--database-url", writer_url], tmp_path / "service.log"
    )
    try:
        await process.wait_ready()
        yield process
    finally:
        process.close()


async def locked_writes_then_sigterm(
    service: ServiceProcess,
    database_url: str,
    watcher: asyncpg.Connection,
    writer_login: str,
    release: bool,
) -> tuple[int, float, list[tuple[str, str, int]]]:
    """Lock the ingest tables, send writes, SIGTERM once they wait on the lock; with
    ``release``, let the lock go once the service drains. (exit code, seconds, answers)"""
    locker = await asyncpg.connect(database_url)
    lock = locker.transaction()
    await lock.start()
    held = True
    answers: list[asyncio.Task[int]] = []
    try:
        await locker.execute(LOCK)
        async with aiohttp.ClientSession() as session:

            async def send(kind: str, marker: str, url: str, kwargs: dict[str, Any]) -> int:
                async with session.post(url, **kwargs) as resp:
                    await resp.read()
                    return resp.status

            sent = requests(service.url)
            answers += [asyncio.create_task(send(*r)) for r in sent]

            async def writes_wait_on_the_lock() -> bool:
                # not on the locker: in its transaction, pg_stat_activity would not change
                waiting = await watcher.fetch(
                    "SELECT query FROM pg_stat_activity"
                    " WHERE usename = $1 AND wait_event_type = 'Lock'",
                    writer_login,
                )
                return all(
                    any(f"INSERT INTO {table}" in r[0].replace('"', "") for r in waiting)
                    for table in (
                        "monitoring.system_performance_logs",
                        "monitoring.system_health_metrics",
                        "monitoring.system_alerts",
                    )
                )

            await eventually(writes_wait_on_the_lock)
            terminated = asyncio.create_task(asyncio.to_thread(service.terminate))
            if release:

                async def draining() -> bool:
                    return "shutting down" in service.log()

                await eventually(draining)
                held = False
                await lock.rollback()
            code, seconds = await terminated
            # every request in flight got an answer (an exception here fails the test)
            statuses = await asyncio.gather(*answers)
    finally:
        for answer in answers:
            answer.cancel()
        await asyncio.gather(*answers, return_exceptions=True)
        if held:
            await lock.rollback()
        await locker.close()
    return code, seconds, [(k, m, s) for (k, m, _, _), s in zip(sent, statuses, strict=True)]


async def assert_every_2xx_is_stored(db: asyncpg.Connection, answers: list[Any]) -> None:
    stored = {kind: {r[0] for r in await db.fetch(sql)} for kind, sql in STORED.items()}
    for kind, marker, status in answers:
        assert status == 503 or 200 <= status < 300, (kind, status)
        if 200 <= status < 300:
            assert marker in stored[kind], (kind, marker)


async def test_sigterm_with_the_ingest_tables_locked_answers_503_and_exits_in_time(
    service: ServiceProcess, database_url: str, writer_login: str, db: asyncpg.Connection
) -> None:
    code, seconds, answers = await locked_writes_then_sigterm(
        service, database_url, db, writer_login, release=False
    )
    assert code == 0, service.log()
    assert seconds < 20
    # nothing could commit while the lock was held
    assert {status for _, _, status in answers} == {503}, answers
    assert "drain deadline reached" in service.log()
    await assert_every_2xx_is_stored(db, answers)
    for sql in STORED.values():
        assert await db.fetch(sql) == []


async def test_writes_that_commit_during_the_drain_are_answered_2xx_and_stored(
    service: ServiceProcess, database_url: str, writer_login: str, db: asyncpg.Connection
) -> None:
    code, seconds, answers = await locked_writes_then_sigterm(
        service, database_url, db, writer_login, release=True
    )
    assert code == 0, service.log()
    assert seconds < 10  # no waiting for the deadline once the writes could commit
    assert all(200 <= status < 300 for _, _, status in answers), answers
    await assert_every_2xx_is_stored(db, answers)
