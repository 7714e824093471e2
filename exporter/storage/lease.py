"""Leadership in PostgreSQL: a session advisory lock on a dedicated connection, and fencing.

The replica whose connection holds the lock leads. PostgreSQL releases the lock the moment
that session ends: the process died, the connection was terminated, or the session sat idle
past ``idle_session_timeout`` because the leader stopped answering its own heartbeat. The
new leader bumps the lease's epoch; every write of scheduled work checks its epoch in its own
transaction (``fence``), holding the lease row FOR SHARE until commit, so the bump waits for
writes in flight and no write of a deposed leader commits after it.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from exporter.storage.database import connect_direct

# Any constant works; it only has to be the same for every replica (and differ from the
# migration and retention locks).
LOCK_KEY = 0x6D6F6E6C656164

TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
TAKE_EPOCH = """
UPDATE __SCHEMA__.leases SET epoch = epoch + 1, holder = $2, acquired_at = now()
WHERE name = $1 RETURNING epoch
"""
FENCE = "SELECT 1 FROM __SCHEMA__.leases WHERE name = $1 AND epoch = $2 FOR SHARE"


class LeaseLost(Exception):
    """This replica's lease is gone: another replica leads now, or may at any moment."""


class LeaseSession:
    """The dedicated connection of one replica: it tries for the lock, and holds it."""

    def __init__(self, conn: asyncpg.Connection, schema: str) -> None:
        self.conn = conn
        self.schema = schema

    @classmethod
    async def open(
        cls, dsn: str, schema: str, *, timeout: float, idle_timeout: float
    ) -> LeaseSession:
        """Connect to ``dsn`` (a direct or session-mode URL: a transaction pooler would hand
        the lock's session to somebody else)."""
        conn = await connect_direct(
            dsn,
            timeout=timeout,
            settings={
                "application_name": "monitoring-exporter-lease",
                # a leader that stops sending heartbeats loses its session, and so the lock
                "idle_session_timeout": str(int(idle_timeout * 1000)),
            },
        )
        return cls(conn, schema)

    def _sql(self, text: str) -> str:
        return text.replace("__SCHEMA__", f'"{self.schema}"')

    async def try_lock(self, timeout: float) -> bool:
        """Take the leader's lock if nobody holds it."""
        return bool(await self.conn.fetchval(TRY_LOCK, LOCK_KEY, timeout=timeout))

    async def take_epoch(self, name: str, holder: str, timeout: float) -> int:
        """Begin a term: bump the lease's epoch (waiting for fenced writes of the last term)."""
        epoch = await self.conn.fetchval(self._sql(TAKE_EPOCH), name, holder, timeout=timeout)
        if epoch is None:
            raise LeaseLost(f"lease {name!r} does not exist (are migrations applied?)")
        return int(epoch)

    async def heartbeat(self, timeout: float) -> None:
        """Prove the session is alive (and keep it from idling out)."""
        await self.conn.fetchval("SELECT 1", timeout=timeout)

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the connection ends (terminated by the server, or lost)."""
        self.conn.add_termination_listener(lambda _conn: callback())

    @property
    def closed(self) -> bool:
        """Whether the connection is gone."""
        return bool(self.conn.is_closed())

    def close(self) -> None:
        """Drop the connection at once; PostgreSQL releases the lock with the session."""
        if not self.conn.is_closed():
            self.conn.terminate()


async def fence(conn: asyncpg.Connection, schema: str, name: str, epoch: int) -> None:
    """Inside a transaction: raise LeaseLost unless ``epoch`` is still the lease's epoch."""
    found = await conn.fetchval(FENCE.replace("__SCHEMA__", f'"{schema}"'), name, epoch)
    if found is None:
        raise LeaseLost(f"lease {name!r} moved past epoch {epoch}")
