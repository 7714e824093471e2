"""system_performance_logs: the group-commit writer and the queries.

Records of concurrent requests are gathered into shared batches and written with one
``INSERT … SELECT FROM unnest(…)`` per batch. COPY would be faster still, but PostgreSQL
refuses ``COPY FROM`` into a table with row level security (``COPY FROM not supported with
row-level security``), and RLS is forced on every table here; see
tests/test_performance_logs_storage.py which checks that. Every request waits for the commit
of its batch; a request's records are never split across batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from exporter.config.performance_logs import PerformanceLogs
from exporter.storage.database import Database, is_outage
from exporter.storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

COLUMNS = (
    "operation_type",
    "operation_name",
    "duration_ms",
    "memory_usage_bytes",
    "cpu_usage_percent",
    "status",
    "error_message",
    "user_id",
    "request_details",
    "recorded_at",
)

INSERT = """
INSERT INTO {schema}.system_performance_logs
    (operation_type, operation_name, duration_ms, memory_usage_bytes, cpu_usage_percent,
     status, error_message, user_id, request_details, recorded_at)
SELECT t, n, d, m, c, s, e, u, coalesce(r, '{{}}')::jsonb, coalesce(a, $11)
FROM unnest($1::text[], $2::text[], $3::float8[], $4::int8[], $5::float8[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::timestamptz[])
     AS x(t, n, d, m, c, s, e, u, r, a)
"""

ENSURE_PARTITIONS = "SELECT {schema}.ensure_performance_log_partitions($1::date, $2::date)"


@dataclass(slots=True)
class Rows:
    """Records as columns, in the order of the INSERT's arrays."""

    operation_type: list[str] = field(default_factory=list)
    operation_name: list[str | None] = field(default_factory=list)
    duration_ms: list[float] = field(default_factory=list)
    memory_usage_bytes: list[int | None] = field(default_factory=list)
    cpu_usage_percent: list[float | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    error_message: list[str | None] = field(default_factory=list)
    user_id: list[str | None] = field(default_factory=list)
    request_details: list[str | None] = field(default_factory=list)  # None: {}
    recorded_at: list[datetime | None] = field(default_factory=list)  # None: now

    def __len__(self) -> int:
        return len(self.status)

    def extend(self, other: Rows) -> None:
        """Append another set of rows."""
        for name in COLUMNS:
            getattr(self, name).extend(getattr(other, name))

    def arrays(self, now: datetime) -> list[Any]:
        """The INSERT's parameters.

        A column that is all NULL (None means the default for request_details and recorded_at,
        ``{}`` and the commit time) is sent
        as one NULL instead of an array: unnest pads it with NULLs, and asyncpg's per-element
        type checks are a large part of the cost of a batch.
        """
        args: list[Any] = []
        for name in COLUMNS:
            column = getattr(self, name)
            args.append(column if any(v is not None for v in column) else None)
        args.append(now)
        return args


# Python objects held per queued row beyond the request body's bytes (lists, str, datetime)
ROW_OVERHEAD = 400


class QueueFull(Exception):
    """The pending queue is at its bound; the sender should retry shortly."""


class TooLarge(Exception):
    """One request holds more than the whole queue may; it can never be accepted."""


class Rejected(Exception):
    """PostgreSQL refused a request's records for a data reason (the request is at fault)."""


@dataclass(slots=True)
class _Pending:
    rows: Rows
    nbytes: int
    future: asyncio.Future[None] | None


def _is_data_error(exc: BaseException) -> bool:
    """Class 22 (data exception) and 23 (integrity) errors are the records' fault."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and sqlstate[:2] in ("22", "23")


def _missing_partition(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.PostgresError) and "no partition" in str(exc)


class GroupWriter:
    """Gathers the records of concurrent requests into shared, bounded batches.

    Scheduling is event driven (no polling task): an arrival starts a batch at once when
    none is in flight, so an idle service adds no delay; while batches are in flight, the
    next one fills up until it reaches batch_max_rows, its oldest request has waited
    batch_max_delay and a slot is free, or a batch in flight finishes.
    """

    def __init__(
        self,
        db: Database,
        config: PerformanceLogs,
        on_commit: Callable[[Rows], None] = lambda rows: None,
    ) -> None:
        self.db = db
        self.config = config
        self.on_commit = on_commit
        self.queued_rows = 0  # rows accepted and not yet answered (pending + in flight)
        self.queued_bytes = 0
        self.waiting = 0  # requests waiting for their commit
        self.batches = 0
        self._queue: deque[_Pending] = deque()
        self._pending_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._closing = False
        self._sql = INSERT.format(schema=f'"{db.schema}"')
        self._ensure = ENSURE_PARTITIONS.format(schema=f'"{db.schema}"')

    def _enqueue(self, rows: Rows, nbytes: int, future: asyncio.Future[None] | None) -> None:
        if self._closing:
            raise StorageUnavailable("the service is shutting down", retry_after=1)
        n = len(rows)
        nbytes += n * ROW_OVERHEAD
        cfg = self.config
        if n > cfg.queue_max_rows or nbytes > cfg.queue_max_bytes:
            raise TooLarge()
        if self.queued_rows + n > cfg.queue_max_rows or (
            self.queued_bytes + nbytes > cfg.queue_max_bytes
        ):
            raise QueueFull()
        self._queue.append(_Pending(rows, nbytes, future))
        self._pending_rows += n
        self.queued_rows += n
        self.queued_bytes += nbytes
        if not self._flushes or self._pending_rows >= cfg.batch_max_rows:
            self._start()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                cfg.batch_max_delay.seconds, self._on_timer
            )

    async def write(self, rows: Rows, nbytes: int) -> None:
        """Queue one request's records and return once they are committed.

        Raises QueueFull or TooLarge before queueing, Rejected when the database refuses
        the records, StorageUnavailable when it cannot commit them now.
        """
        if not rows:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(rows, nbytes, future)
        self.waiting += 1
        try:
            # if this wait is cancelled, the batch still commits; _settle skips done futures
            await future
        finally:
            self.waiting -= 1

    def offer(self, rows: Rows, nbytes: int) -> bool:
        """Queue records nobody waits for (self-instrumentation); False when not accepted."""
        try:
            self._enqueue(rows, nbytes, None)
        except (QueueFull, TooLarge, StorageUnavailable):
            return False
        return True

    def _on_timer(self) -> None:
        self._timer = None
        if self._queue:
            self._start()

    def _start(self) -> None:
        """Start writing the head of the queue as one batch, if a slot is free."""
        if not self._queue or len(self._flushes) >= self.config.max_concurrent_batches:
            return  # a finishing batch starts the next one
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = asyncio.create_task(self._flush(self._take()), name="performance-logs-flush")
        self._flushes.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        # what queued up while the batch was being written goes now: this is the group commit
        self._start()

    def _take(self) -> list[_Pending]:
        """Whole requests from the head of the queue, up to batch_max_rows (at least one)."""
        batch = [self._queue.popleft()]
        rows = len(batch[0].rows)
        while self._queue and rows + len(self._queue[0].rows) <= self.config.batch_max_rows:
            item = self._queue.popleft()
            rows += len(item.rows)
            batch.append(item)
        self._pending_rows -= rows
        return batch

    async def close(self) -> None:
        """Stop accepting, write everything pending and answer every waiting request."""
        self._closing = True
        self._start()
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)

    async def _flush(self, batch: list[_Pending]) -> None:
        """Write ``batch``, then keep the connection for what queued up meanwhile."""
        pending: list[_Pending] | None = batch
        try:
            async with self.db.connection() as conn:
                while pending is not None:
                    taken, pending = pending, None
                    await self._write(conn, taken)  # answers `taken` on every path
                    if self._queue:
                        pending = self._take()
        except Exception as exc:
            if pending is not None:  # no connection, so this batch was never tried
                self._settle(pending, exc)

    async def _write(self, conn: asyncpg.Connection, batch: list[_Pending]) -> None:
        """Write a batch and answer its requests; raises when the connection is unusable."""
        if len(batch) == 1:
            rows = batch[0].rows
        else:
            rows = Rows()
            for item in batch:
                rows.extend(item.rows)
        try:
            await self._insert(conn, rows)
        except Exception as exc:
            if not _is_data_error(exc):
                self._settle(batch, exc)
                raise
            if len(batch) == 1:
                self._settle(batch, exc)
                return
            # one bad request must not fail the others: commit each on its own
            for i, item in enumerate(batch):
                try:
                    await self._insert(conn, item.rows)
                except Exception as one_exc:
                    if not _is_data_error(one_exc):
                        self._settle(batch[i:], one_exc)
                        raise
                    self._settle([item], one_exc)
                else:
                    self._settle([item], None, item.rows)
            return
        self._settle(batch, None, rows)

    async def _insert(self, conn: asyncpg.Connection, rows: Rows) -> None:
        # one statement outside an explicit transaction is its own atomic transaction
        # (no BEGIN/COMMIT round trips)
        now = datetime.now(UTC)
        try:
            await conn.execute(self._sql, *rows.arrays(now))
        except asyncpg.PostgresError as exc:
            if not _missing_partition(exc):
                raise
            # partition maintenance has not caught up (e.g. started before midnight UTC)
            days = [(at or now).date() for at in rows.recorded_at]
            await conn.fetchval(self._ensure, min(days), max(days))
            await conn.execute(self._sql, *rows.arrays(now))

    def _settle(
        self, batch: list[_Pending], exc: BaseException | None, rows: Rows | None = None
    ) -> None:
        """Answer the batch's requests (committed when ``exc`` is None) and free its room."""
        for item in batch:
            self.queued_rows -= len(item.rows)
            self.queued_bytes -= item.nbytes
        if exc is None:
            self.batches += 1
            for item in batch:
                if item.future is not None and not item.future.done():
                    item.future.set_result(None)
            try:
                self.on_commit(rows or Rows())
            except Exception:
                log.exception("performance log commit hook failed")
            return
        error: Exception
        if _is_data_error(exc):
            error = Rejected(str(exc))
        elif isinstance(exc, StorageUnavailable):
            error = exc
        else:
            level = logging.INFO if is_outage(exc) else logging.WARNING
            log.log(
                level,
                "performance log batch failed",
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )
            error = StorageUnavailable(f"the batch was not committed: {type(exc).__name__}")
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)
