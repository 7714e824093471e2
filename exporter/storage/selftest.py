"""The storage side of the self-test: one connection pinned in a transaction that is always
rolled back, the checks around it, and a NOTIFY round trip."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg

from exporter.storage.database import Database, Pinned
from exporter.storage.migrate import pending
from exporter.storage.performance_logs import ENSURE_PARTITIONS, INSERT, Rows

CHANNEL = "monitoring_selftest"
ALERT_EXISTS = "SELECT count(*) FROM __SCHEMA__.system_alerts WHERE id = $1"


@asynccontextmanager
async def connect(dsn: str, timeout: float) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own (the command line has no pool), set up like the pool's."""
    conn = await asyncpg.connect(
        dsn,
        timeout=timeout,
        server_settings={"application_name": "monitoring-exporter-selftest", "TimeZone": "UTC"},
    )
    try:
        # jsonb as text, as on the pool (Database._init_connection): the callers encode it
        await conn.set_type_codec(
            "jsonb", encoder=lambda v: v, decoder=lambda v: v, schema="pg_catalog"
        )
        yield conn
    finally:
        try:
            await conn.close(timeout=timeout)
        except Exception:  # a connection that broke mid-test: nothing to say goodbye to
            conn.terminate()


async def ping(conn: asyncpg.Connection) -> None:
    """The database answers."""
    await conn.fetchval("SELECT 1")


async def pending_versions(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Migrations this database still lacks."""
    return [m.version for m in await pending(conn, schema)]


class RolledBack:
    """A transaction on ``conn`` that is never committed: ``db`` runs everything inside it."""

    def __init__(self, db: Database, conn: asyncpg.Connection) -> None:
        self.db = Pinned(db, conn)
        self._transaction = conn.transaction()
        self._open = False

    async def __aenter__(self) -> RolledBack:
        await self._transaction.start()
        self._open = True
        return self

    async def rollback(self) -> None:
        """Roll back now."""
        if self._open:
            self._open = False
            await self._transaction.rollback()

    async def __aexit__(self, *_exc: object) -> None:
        if self._open:  # a step failed first; the connection may be gone, so may the rollback
            with contextlib.suppress(Exception):
                await self.rollback()


async def insert_performance_log(conn: asyncpg.Connection, schema: str, rows: Rows) -> None:
    """Insert rows the way the group writer does, creating today's partition if it is missing."""
    table = f'"{schema}"'
    now = datetime.now(UTC)
    try:
        async with conn.transaction():  # a savepoint: a failed INSERT must not end the test
            await conn.execute(INSERT.replace("__SCHEMA__", table), *rows.arrays(now))
        return
    except asyncpg.PostgresError as exc:
        if "no partition" not in str(exc):
            raise
    await conn.fetchval(ENSURE_PARTITIONS.replace("__SCHEMA__", table), now.date(), now.date())
    await conn.execute(INSERT.replace("__SCHEMA__", table), *rows.arrays(now))


async def alert_exists(conn: asyncpg.Connection, schema: str, alert_id: int) -> bool:
    """Whether an alert row is there (after the rollback it must not be)."""
    count: int = await conn.fetchval(ALERT_EXISTS.replace("__SCHEMA__", f'"{schema}"'), alert_id)
    return count > 0


async def notify_round_trip(dsn: str, sender: asyncpg.Connection, timeout: float) -> None:
    """LISTEN on a connection of its own, NOTIFY from ``sender``, wait for the payload.

    ``sender`` must not be in a transaction: a notification is delivered at commit.
    """
    token = uuid.uuid4().hex
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == token and not got.done():
            got.set_result(payload)

    listener = await asyncpg.connect(dsn, timeout=timeout)
    try:
        await listener.add_listener(CHANNEL, on_notify)
        await sender.execute("SELECT pg_notify($1, $2)", CHANNEL, token)
        async with asyncio.timeout(timeout):
            await got
    finally:
        listener.terminate()
