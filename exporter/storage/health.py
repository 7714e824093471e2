"""system_health_metrics: batched inserts (one statement, one commit) and filtered pages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from exporter.domain.health_rules import Key
from exporter.domain.health_series import Evaluated, Sample, Series, SeriesLimit, SeriesStore
from exporter.exposition.self_metrics import SelfMetrics
from exporter.storage.database import Database
from exporter.storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

TABLE = "system_health_metrics"

INSERT_SAMPLES = """
INSERT INTO {schema}.system_health_metrics
    (service_name, metric_type, value, unit, status, warning_threshold, critical_threshold,
     direction, source, metadata, recorded_at)
SELECT s, m, v, u, st, w, c, d, src, md::jsonb, at
FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[], $6::float8[],
            $7::float8[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])
     AS t(s, m, v, u, st, w, c, d, src, md, at)
RETURNING id, service_name, metric_type, value, unit, status, warning_threshold,
          critical_threshold, direction, source, metadata, recorded_at, created_at
"""

SELECT_COLUMNS = """
SELECT id, service_name, metric_type, value, unit, status, warning_threshold,
       critical_threshold, direction, source, metadata, recorded_at, created_at
FROM {schema}.system_health_metrics
"""

DEMO_SEEDED = """
SELECT EXISTS (SELECT 1 FROM {schema}.system_health_metrics WHERE metadata ? 'demo')
"""

# Filter fragments: constant SQL text; the values always travel as parameters.
_FILTERS = {
    "service": "service_name = ${n}",
    "metric_type": "metric_type = ${n}",
    "status": "status = ${n}",
    "since": "recorded_at >= ${n}",
    "until": "recorded_at < ${n}",
}
_AFTER = "(recorded_at, id) < (${n}, ${m})"


@dataclass(frozen=True)
class Row:
    """One sample ready to insert (values in base units, status already computed)."""

    service: str
    metric_type: str
    value: float
    unit: str
    status: str
    warning: float | None
    critical: float | None
    direction: str | None
    source: str
    metadata: dict[str, Any]
    recorded_at: datetime


async def insert_samples(conn: asyncpg.Connection, schema: str, rows: Sequence[Row]) -> list[Any]:
    """Insert rows with one statement; returns the stored rows in the same order."""
    columns: list[list[Any]] = [[] for _ in range(11)]
    for r in rows:
        values = (
            r.service,
            r.metric_type,
            r.value,
            r.unit,
            r.status,
            r.warning,
            r.critical,
            r.direction,
            r.source,
            msgspec.json.encode(r.metadata).decode(),
            r.recorded_at,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    stored: list[Any] = await conn.fetch(INSERT_SAMPLES.format(schema=schema), *columns)
    return stored


async def list_samples(
    db: Database,
    filters: dict[str, Any],
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[Any]:
    """A page of samples, newest first, matching every given filter."""
    clauses: list[str] = []
    args: list[Any] = []
    for name, fragment in _FILTERS.items():
        value = filters.get(name)
        if value is not None:
            args.append(value)
            clauses.append(fragment.replace("{n}", str(len(args))))
    if after is not None:
        args += [after[0], after[1]]
        clauses.append(_AFTER.replace("{n}", str(len(args) - 1)).replace("{m}", str(len(args))))
    sql = SELECT_COLUMNS.format(schema=db.schema)
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    args.append(limit)
    sql += f" ORDER BY recorded_at DESC, id DESC LIMIT ${len(args)}"
    async with db.connection() as conn:
        rows: list[Any] = await conn.fetch(sql, *args)
    return rows


@dataclass
class _Job:
    rows: list[Row] | None  # rows already evaluated and applied (probe and host samples)
    samples: list[Sample] | None  # pushed samples, evaluated here and applied after commit
    future: asyncio.Future[list[Any]] | None


# probe and host jobs waiting for a database that has not been reached yet, at most
MAX_QUEUED_JOBS = 10_000


class SampleWriter:
    """Stores every sample, grouping concurrent ones into one statement and one commit.

    Pushes wait for their commit and only then change the exported state (a 2xx means
    committed); probe and host samples change the state at once and are stored best effort,
    so a database outage never stalls probes or scrapes.
    """

    def __init__(
        self,
        db: Database,
        store: SeriesStore,
        self_metrics: SelfMetrics,
        *,
        max_batch: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.store = store
        self.self_metrics = self_metrics
        self.max_batch = max_batch
        self.clock = clock
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()

    async def push(self, samples: list[Sample]) -> list[Any]:
        """Evaluate, commit and apply pushed samples; the stored rows, in order.

        Raises SeriesLimit (nothing stored) or StorageUnavailable (nothing stored).
        """
        if not self.db.ready:
            raise StorageUnavailable("database is not connected yet")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(None, samples, future))
        return await future

    def record(self, samples: list[Sample]) -> list[Evaluated]:
        """Apply probe or host samples now and queue them for storage (best effort)."""
        evaluated = self.store.evaluate(samples, self.clock())
        self.store.apply(evaluated)
        if self._queue.qsize() >= MAX_QUEUED_JOBS:
            # the database has not been reached for a long time: keep memory bounded
            self._reject(len(evaluated), "queue_full")
        else:
            self._queue.put_nowait(_Job([to_row(e) for e in evaluated], None, None))
        return evaluated

    async def run(self) -> None:
        """Write batches until cancelled; samples wait in the queue until the first connect."""
        await self.db.wait_ready()
        while True:
            jobs = [await self._queue.get()]
            size = _size(jobs[0])
            while size < self.max_batch and not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += _size(job)
            await self._write(jobs)

    async def _write(self, jobs: list[_Job]) -> None:
        overlay: dict[Key, Series] = {}
        accepted: list[tuple[_Job, list[Evaluated], list[Row]]] = []
        now = self.clock()
        for job in jobs:
            if job.samples is None:
                accepted.append((job, [], job.rows or []))
                continue
            try:
                evaluated = self.store.evaluate(job.samples, now, overlay)
            except SeriesLimit as exc:
                self._reject(len(job.samples), "series_limit")
                _fail(job, exc)
                continue
            accepted.append((job, evaluated, [to_row(e) for e in evaluated]))
        rows = [row for _, _, job_rows in accepted for row in job_rows]
        if not rows:
            return
        try:
            async with self.db.transaction() as conn:
                stored = await insert_samples(conn, self.db.schema, rows)
        except StorageUnavailable as exc:
            self._reject(len(rows), "storage_unavailable")
            if any(job.future is None for job, _, _ in accepted):
                log.warning("health samples not stored", extra={"error": str(exc)})
            for job, _, _ in accepted:
                _fail(job, exc)
            return
        except Exception as exc:
            if len(accepted) > 1:
                # one bad job must not sink the others: retry each on its own
                for job, _, _ in accepted:
                    await self._write([job])
                return
            log.exception("health samples rejected by the database")
            self._reject(len(rows), "database_error")
            _fail(accepted[0][0], exc)
            return
        self.self_metrics.writes_committed.labels(TABLE).inc(len(stored))
        offset = 0
        for job, evaluated, job_rows in accepted:
            mine = stored[offset : offset + len(job_rows)]
            offset += len(job_rows)
            self.store.apply(evaluated)
            if job.future is not None and not job.future.done():
                job.future.set_result(mine)

    def _reject(self, count: int, reason: str) -> None:
        self.self_metrics.writes_rejected.labels(TABLE, reason).inc(count)


def to_row(item: Evaluated) -> Row:
    """The table row of an evaluated sample."""
    s, rule = item.sample, item.series.rule
    return Row(
        s.service,
        s.metric_type,
        s.value,
        s.unit,
        item.status,
        rule.warning,
        rule.critical,
        None if rule.empty else rule.direction,
        s.source,
        s.metadata,
        s.recorded_at,
    )


def _size(job: _Job) -> int:
    return len(job.samples if job.samples is not None else job.rows or [])


def _fail(job: _Job, exc: BaseException) -> None:
    if job.future is not None and not job.future.done():
        job.future.set_exception(exc)
