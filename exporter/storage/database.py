"""The connection pool: connects with backoff, checks or applies migrations, maps outages to
StorageUnavailable, and gives up on stuck statements at the drain deadline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from exporter.config.performance_logs import Retention
from exporter.config.schema import Database as DatabaseConfig
from exporter.storage.errors import StorageUnavailable
from exporter.storage.migrate import MigrationsPending, SchemaTooNew, inspect, migrate

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


def _keep_cancelled(exc: BaseException | None = None) -> None:
    """Raise CancelledError if this task is being cancelled.

    A statement cancelled mid-flight leaves the connection busy, so the ROLLBACK or release
    that follows fails (InterfaceError: another operation is in progress); that error must
    not replace the cancellation, or a loop being stopped would take it for a failed run and
    go on, and the app's shutdown would wait for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError() from exc


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
    """The service's own PostgreSQL: one pool, connected and migrated in the background.

    A login that owns the schema migrates it; any other login (the service's writer-only
    login) waits, not ready, until the owner has run ``monitoring-exporter migrate``. A
    database migrated by a newer release is refused for good (``refused``).
    """

    def __init__(
        self,
        dsn: str,
        config: DatabaseConfig,
        retention: Retention | None = None,
        *,
        direct_dsn: str | None = None,
    ) -> None:
        self.dsn = dsn
        #: for sessions a transaction pooler would break: LISTEN, leases, migrations
        self.direct_dsn = direct_dsn or dsn
        self.config = config
        self.schema = config.schema
        self._sql: dict[str, str] = {}
        self.retention = retention
        self.pool: asyncpg.Pool | None = None
        self.migrated = False
        self.last_error: str | None = None
        #: why the schema is not usable yet (migrations pending), for /readyz
        self.migrations_error: str | None = None
        #: why this code will not run against the database (set once, with ``refused``)
        self.refusal: str | None = None
        self.refused = asyncio.Event()
        self._ready = asyncio.Event()
        self._closing = False
        self._deadline: asyncio.TimerHandle | None = None

    async def connect_forever(self, *, max_backoff: float = 10.0) -> None:
        """Create the pool and bring the schema up to date, retrying with capped backoff."""
        backoff = 0.25
        while True:
            try:
                await self._connect_once()
            except SchemaTooNew as exc:
                self.refusal = self.migrations_error = str(exc)
                log.error("refusing to run against this database", extra={"error": str(exc)})
                self.refused.set()
                return
            except MigrationsPending as exc:
                self.last_error = None
                if self.migrations_error != str(exc):
                    log.warning("waiting for migrations", extra={"error": str(exc)})
                self.migrations_error = str(exc)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "database not available, retrying",
                    extra={"error": self.last_error, "retry_in_seconds": backoff},
                )
            else:
                self.last_error = self.migrations_error = None
                self.migrated = True
                self._ready.set()
                log.info("database connected and migrated", extra={"schema": self.schema})
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    async def _connect_once(self) -> None:
        """Check (and as the owner, apply) migrations, then open the pool.

        The pool is opened even while migrations are pending, so /readyz can tell a missing
        schema from a missing database; ``connection()`` refuses until they are applied.
        Migrations use the direct URL: a transaction pooler would split them.
        """
        conn = await asyncpg.connect(self.direct_dsn, timeout=self.config.connect_timeout.seconds)
        try:
            state = await inspect(conn, self.schema)
            if state.newer:
                raise state.too_new()
            if state.may_migrate:
                await migrate(conn, self.schema, self.retention)
        finally:
            await conn.close()
        if self.pool is None:
            self.pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.config.min_connections,
                max_size=self.config.max_connections,
                timeout=self.config.connect_timeout.seconds,
                command_timeout=self.config.command_timeout.seconds,
                server_settings={"application_name": "monitoring-exporter", "TimeZone": "UTC"},
                init=self._init_connection,
                connection_class=PooledConnection,
                statement_cache_size=100 if self.config.statement_cache else 0,
            )
        if not state.may_migrate and state.pending:
            raise state.blocked()

    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        # jsonb as plain text both ways: the web layer encodes/decodes with msgspec
        await conn.set_type_codec(
            "jsonb", encoder=lambda v: v, decoder=lambda v: v, schema="pg_catalog"
        )

    def sql(self, text: str) -> str:
        """A statement with ``__SCHEMA__`` naming the configured schema (rendered once).

        Statements name the schema themselves rather than relying on ``search_path``: a
        transaction pooler does not keep session settings between transactions.
        """
        rendered = self._sql.get(text)
        if rendered is None:
            rendered = self._sql[text] = text.replace("__SCHEMA__", f'"{self.schema}"')
        return rendered

    async def wait_ready(self) -> None:
        """Wait until the pool exists and migrations are applied."""
        await self._ready.wait()

    @property
    def ready(self) -> bool:
        """Whether the pool exists and migrations are applied."""
        return self._ready.is_set()

    def drain_by(self, deadline: float) -> None:
        """Give what is in flight until ``deadline`` (event loop time), then terminate the pool.

        Statements still running then (say, waiting on a lock) fail as outages, so the
        requests waiting on them are answered 503 instead of holding the shutdown up.
        """
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_at(deadline, self.terminate)

    def terminate(self) -> None:
        """Close every connection at once, in use or not."""
        self._closing = True
        if self.pool is not None:
            pool, self.pool = self.pool, None
            busy = pool.get_size() - pool.get_idle_size()
            pool.terminate()
            if busy:
                log.warning(
                    "drain deadline reached: terminated connections still in use",
                    extra={"connections": busy},
                )

    async def close(self) -> None:
        """Close the pool, letting queries in flight finish until the drain deadline."""
        self._closing = True
        pool, self.pool = self.pool, None
        if pool is not None:
            timeout = 10.0
            if self._deadline is not None:
                timeout = max(0.0, self._deadline.when() - asyncio.get_running_loop().time())
            try:
                async with asyncio.timeout(timeout):
                    await pool.close()
            except TimeoutError:
                pool.terminate()
        if self._deadline is not None:
            self._deadline.cancel()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; outages surface as StorageUnavailable."""
        if not self.migrated:
            raise StorageUnavailable("database is not connected and migrated yet")
        async with self._acquire() as conn:
            yield conn

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        if self.pool is None:
            if self._closing:
                raise StorageUnavailable("the service is shutting down", retry_after=1)
            raise StorageUnavailable("database is not connected yet")
        try:
            async with self.pool.acquire(timeout=self.config.acquire_timeout.seconds) as conn:
                try:
                    yield conn
                except BaseException as exc:
                    if is_outage(exc) or isinstance(
                        exc, (StorageUnavailable, asyncio.CancelledError)
                    ):
                        # the protocol may be stuck mid-operation, and with no reset query
                        # on release (PooledConnection) nothing would notice: never hand
                        # such a connection to the next request, the pool opens a new one
                        with contextlib.suppress(asyncpg.InterfaceError):  # released already
                            conn.terminate()
                    raise
        except StorageUnavailable:
            _keep_cancelled()
            raise
        except Exception as exc:
            _keep_cancelled(exc)
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
                _keep_cancelled()
                raise
            except Exception as exc:
                _keep_cancelled(exc)
                if is_outage(exc):
                    raise StorageUnavailable(f"database unavailable: {type(exc).__name__}") from exc
                raise

    async def ping(self, deadline: float = 2.0) -> None:
        """Run ``SELECT 1``; raise StorageUnavailable if the database does not answer."""
        async with self._acquire() as conn:
            try:
                await conn.fetchval("SELECT 1", timeout=deadline)
            except Exception as exc:
                raise StorageUnavailable(f"database did not answer: {type(exc).__name__}") from exc

    async def notify(self, channel: str, payload: str) -> None:
        """Send a notification through the pool (the listener's delivery check)."""
        async with self.connection() as conn:
            await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    def pool_stats(self) -> dict[str, Any]:
        """Sizes of the pool for the exporter's own metrics."""
        if self.pool is None:
            return {"size": 0, "idle": 0, "max": self.config.max_connections}
        return {
            "size": self.pool.get_size(),
            "idle": self.pool.get_idle_size(),
            "max": self.pool.get_max_size(),
        }


async def connect_direct(
    dsn: str, *, timeout: float, settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    """A dedicated connection outside the pool (LISTEN, leases, migrations)."""
    return await asyncpg.connect(
        dsn,
        timeout=timeout,
        server_settings={"application_name": "monitoring-exporter", **(settings or {})},
    )


class Pinned(Database):
    """A Database whose connections are all one connection, inside an outer transaction.

    Storage functions that open their own connection or transaction then run inside the outer
    one, their transactions being savepoints of it: the self-test rolls it back, an idempotent
    write commits it together with its key.
    """

    def __init__(self, db: Database, conn: asyncpg.Connection) -> None:
        super().__init__(db.dsn, db.config, db.retention, direct_dsn=db.direct_dsn)
        self._conn = conn
        self.migrated = True

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The pinned connection."""
        yield self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A savepoint of the outer transaction."""
        async with self._conn.transaction():
            yield self._conn
