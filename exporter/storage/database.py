"""The connection pool: connects with backoff, migrates, and maps outages to StorageUnavailable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from exporter.config.schema import Database as DatabaseConfig
from exporter.storage.errors import StorageUnavailable
from exporter.storage.migrate import migrate

log = logging.getLogger(__name__)

# Errors that mean "the database is not there right now", as opposed to a bad statement:
# a retry later can succeed, so the caller answers 503 with Retry-After.
_OUTAGE = (
    OSError,
    TimeoutError,
    # the connection is gone or was never there (08xxx, ConnectionDoesNotExistError)
    asyncpg.PostgresConnectionError,
    # the client side of a connection in churn: "connection is closed", "pool is closing",
    # "another operation is in progress"
    asyncpg.InterfaceError,
    # the protocol caught mid-operation by a dying connection: "cannot switch to state …"
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.CannotConnectNowError,
    # 57xxx: terminated by an administrator, crash shutdown, statement timeout
    asyncpg.exceptions.OperatorInterventionError,
    # 53xxx: out of connections, memory or disk
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TooManyConnectionsError,
    # 40xxx: a deadlock or serialization failure rolled the transaction back
    asyncpg.exceptions.TransactionRollbackError,
    # 58xxx: an I/O error on the server
    asyncpg.exceptions.PostgresSystemError,
    # a replica promoted or a primary demoted under us
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)
# InterfaceErrors that are about the statement or the configuration, never an outage: a
# retry would fail the same way, forever
_NOT_OUTAGE = (
    asyncpg.exceptions._base.DataError,
    asyncpg.exceptions._base.ClientConfigurationError,
    asyncpg.exceptions._base.UnsupportedClientFeatureError,
    asyncpg.exceptions._base.UnsupportedServerFeatureError,
)


def is_outage(exc: BaseException) -> bool:
    """True when an exception means the database is unreachable or refusing work."""
    return isinstance(exc, _OUTAGE) and not isinstance(exc, _NOT_OUTAGE)


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg is untyped
    """A pool connection released without asyncpg's reset query.

    That query (RESET ALL, UNLISTEN *, CLOSE ALL, pg_advisory_unlock_all) costs a round trip
    on every release, and pooled connections here never carry session state: statements use
    transaction-scoped settings and advisory locks only, and LISTEN and migrations have their
    own connections. asyncpg still rolls back a transaction left open.
    """

    def get_reset_query(self) -> str:
        """Nothing to reset (see the class)."""
        return ""


class Database:
    """The service's own PostgreSQL: one pool, connected and migrated in the background."""

    def __init__(self, dsn: str, config: DatabaseConfig) -> None:
        self.dsn = dsn
        self.config = config
        self.schema = config.schema
        self.pool: asyncpg.Pool | None = None
        self.migrated = False
        self.last_error: str | None = None
        self._ready = asyncio.Event()

    async def connect_forever(self, *, max_backoff: float = 10.0) -> None:
        """Create the pool and migrate, retrying with capped exponential backoff."""
        backoff = 0.25
        while True:
            try:
                await self._connect_once()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "database not available, retrying",
                    extra={"error": self.last_error, "retry_in_seconds": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)
            else:
                self.last_error = None
                self._ready.set()
                log.info("database connected and migrated", extra={"schema": self.schema})
                return

    async def _connect_once(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=self.config.connect_timeout.seconds)
        try:
            await migrate(conn, self.schema)
        finally:
            await conn.close()
        self.migrated = True
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.config.min_connections,
            max_size=self.config.max_connections,
            timeout=self.config.connect_timeout.seconds,
            command_timeout=self.config.command_timeout.seconds,
            server_settings={"application_name": "monitoring-exporter", "TimeZone": "UTC"},
            init=self._init_connection,
            connection_class=PooledConnection,
        )

    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        # jsonb as plain text both ways: the web layer encodes/decodes with msgspec
        await conn.set_type_codec(
            "jsonb", encoder=lambda v: v, decoder=lambda v: v, schema="pg_catalog"
        )

    async def wait_ready(self) -> None:
        """Wait until the pool exists and migrations are applied."""
        await self._ready.wait()

    @property
    def ready(self) -> bool:
        """Whether the pool exists and migrations are applied."""
        return self._ready.is_set()

    async def close(self) -> None:
        """Close the pool, letting queries in flight finish."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; outages surface as StorageUnavailable."""
        if self.pool is None:
            raise StorageUnavailable("database is not connected yet")
        try:
            async with self.pool.acquire(timeout=self.config.acquire_timeout.seconds) as conn:
                try:
                    yield conn
                except BaseException as exc:
                    if is_outage(exc) or isinstance(exc, StorageUnavailable):
                        # the protocol may be stuck mid-operation, and with no reset query
                        # on release (PooledConnection) nothing would notice: never hand
                        # such a connection to the next request, the pool opens a new one
                        conn.terminate()
                    raise
        except StorageUnavailable:
            raise
        except Exception as exc:
            if is_outage(exc):
                raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection inside one transaction."""
        async with self.connection() as conn:
            try:
                async with conn.transaction():
                    yield conn
            except StorageUnavailable:
                raise
            except Exception as exc:
                if is_outage(exc):
                    raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
                raise

    async def ping(self, deadline: float = 2.0) -> None:
        """Run ``SELECT 1``; raise StorageUnavailable if the database does not answer."""
        async with self.connection() as conn:
            try:
                await conn.fetchval("SELECT 1", timeout=deadline)
            except Exception as exc:
                raise StorageUnavailable(f"database did not answer: {type(exc).__name__}") from exc

    def pool_stats(self) -> dict[str, Any]:
        """Sizes of the pool for the exporter's own metrics."""
        if self.pool is None:
            return {"size": 0, "idle": 0, "max": self.config.max_connections}
        return {
            "size": self.pool.get_size(),
            "idle": self.pool.get_idle_size(),
            "max": self.pool.get_max_size(),
        }
