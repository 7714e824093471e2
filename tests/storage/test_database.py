"""The pool's edges: a cancelled statement stays a cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from exporter.config import parse_config
from exporter.storage import Database


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, parse_config({}).database)
    await db.connect_forever()
    yield db
    await db.close()


@pytest.mark.parametrize("inside", ["transaction", "connection"])
async def test_a_task_cancelled_mid_statement_ends_cancelled(
    database: Database, db: asyncpg.Connection, inside: str
) -> None:
    """The ROLLBACK (or release) after a cancelled statement fails, the connection being busy;
    that failure must not turn the cancellation into an ordinary error, or a background loop
    being stopped goes on (an app's shutdown then waited for it forever)."""
    started = asyncio.Event()

    async def slow() -> None:
        opened = database.transaction() if inside == "transaction" else database.connection()
        async with opened as conn:
            started.set()
            # waiting on a lock, as retention's partition upkeep may be when the app stops
            await conn.fetchval("SELECT count(*) FROM monitoring.leases WHERE name = $1", "x")

    await db.execute("BEGIN")
    await db.execute("LOCK TABLE monitoring.leases IN ACCESS EXCLUSIVE MODE")
    task = asyncio.create_task(slow())
    await started.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    await db.execute("ROLLBACK")
    assert task in done
    assert task.cancelled(), task.exception()
    # and the pool still serves (the busy connection was dropped, not handed out again)
    async with database.connection() as conn:
        assert await conn.fetchval("SELECT 1") == 1


@pytest.mark.parametrize("turns", range(0, 40, 4))
async def test_a_cancel_at_any_point_of_a_transaction_ends_cancelled(
    database: Database, turns: int
) -> None:
    async def busy() -> None:
        while True:
            async with database.transaction() as conn:
                for _ in range(5):
                    await conn.execute("SELECT 1")

    task = asyncio.create_task(busy())
    await asyncio.sleep(0.05)
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done
    assert task.cancelled(), task.exception()
