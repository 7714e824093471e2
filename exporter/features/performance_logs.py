"""Performance logs: the lossless ingest (group commit), the histogram, the summary from the
rollups, partitions and retention.

The path of a record: ``web.performance_logs`` or ``web.otlp`` (parse, validate into columns)
→ ``ingest`` here (shared batches; the reply waits for its commit) →
``storage.performance_logs`` (one ``INSERT … unnest`` per batch, whose statement trigger keeps
the rollups and the histogram) → the histogram (``exposition.performance_logs``) and the
summary (``storage.rollups``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from exporter.config import Config
from exporter.domain.performance_log import DurationHistogram, OperationSummary, summary_window
from exporter.domain.sketch import Sketch
from exporter.exposition.performance_logs import PerformanceLogCollector
from exporter.features.core import (
    CONFIG,
    DATABASE,
    EXPOSITION,
    LEADERSHIP,
    SELF_METRICS,
    SUPERVISOR,
)
from exporter.features.leader import Job, Run
from exporter.storage import idempotency, retention, rollups
from exporter.storage import performance_log_queries as queries
from exporter.storage import performance_logs as store
from exporter.storage.group_commit import GroupCommit, Limits
from exporter.storage.idempotency import Duplicate, IdempotencyKey, Keyed

TABLE = "system_performance_logs"
# seconds between reads of the stored histogram (a few rows: every replica within a second)
HISTOGRAM_REFRESH = 1.0

WRITER = web.AppKey("performance_log_writer", GroupCommit[Keyed[store.Rows], None | Duplicate])
HISTOGRAM = web.AppKey("performance_log_histogram", DurationHistogram)


async def ingest(
    app: web.Application,
    rows: store.Rows,
    body_bytes: int,
    key: IdempotencyKey | None = None,
    response: tuple[int, bytes] | None = None,
) -> Duplicate | None:
    """Store one request's records; returns once they are committed. With ``key``,
    ``response`` is stored under it, and a key used before is DUPLICATE (nothing stored).

    Raises QueueFull or TooLarge (nothing queued), Rejected (the database refused the records)
    or StorageUnavailable (not committed).
    """
    render = (lambda _: response) if key is not None and response is not None else None
    return await app[WRITER].submit(
        Keyed(rows, key, render), body_bytes + len(rows) * store.ROW_OVERHEAD
    )


def offer(app: web.Application, rows: store.Rows) -> bool:
    """Queue records nobody waits for (the service's own API calls); False if not accepted."""
    return app[WRITER].offer(Keyed(rows), 256 + len(rows) * store.ROW_OVERHEAD)


def _limits(config: Config) -> Limits:
    cfg = config.performance_logs
    return Limits(
        max_batch=cfg.batch_max_rows,
        max_concurrent=cfg.max_concurrent_batches,
        # while a batch is in flight the next one fills up to a full batch or waits its delay
        min_overlap=cfg.batch_max_rows,
        max_delay=cfg.batch_max_delay.seconds,
        max_queued=cfg.queue_max_rows,
        max_queued_bytes=cfg.queue_max_bytes,
    )


async def summary(
    app: web.Application,
    since: datetime,
    until: datetime,
    operation_type: str | None,
    operation_name: str | None,
    user_id: str | None,
    limit: int,
) -> tuple[datetime, datetime, list[OperationSummary]]:
    """Per operation over [since, until): counts, error rate, mean, max and p50/p95/p99.

    From the rollups, with p50/p95/p99 within 1 % of the exact percentile_cont; the window
    comes back widened to whole minutes or hours where the raw records or minute rollups of
    its edges have expired. With ``user_id`` (not a rollup dimension), exact over the raw
    records, which costs a sort of every record in the window.
    """
    db = app[DATABASE]
    if user_id is not None:
        filters = {
            "operation_type": operation_type,
            "operation_name": operation_name,
            "user_id": user_id,
            "since": since,
            "until": until,
        }
        rows = await queries.summarise(db, filters, limit)
        return since, until, [_exact(r) for r in rows]
    keep = app[CONFIG].retention
    since, until = summary_window(
        since,
        until,
        now=datetime.now(UTC),
        raw_retention=timedelta(seconds=keep.performance_logs.seconds),
        minute_retention=timedelta(seconds=keep.performance_log_minute_rollups.seconds),
    )
    merged = await rollups.summarise(db, since, until, operation_type, operation_name, limit)
    return since, until, [_estimated(m) for m in merged]


def _exact(r: Any) -> OperationSummary:
    return OperationSummary(
        **dict(r.items()), error_rate=(r["errors"] + r["timeouts"]) / r["count"]
    )


def _estimated(m: rollups.Merged) -> OperationSummary:
    sketch = Sketch(dict(zip(m.keys, m.counts, strict=True)), m.count, m.sum_ms, m.min_ms, m.max_ms)
    p50, p95, p99 = sketch.quantiles((0.5, 0.95, 0.99))
    return OperationSummary(
        operation_type=m.operation_type,
        operation_name=m.operation_name,
        count=m.count,
        errors=m.errors,
        timeouts=m.timeouts,
        error_rate=(m.errors + m.timeouts) / m.count,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        avg_ms=m.sum_ms / m.count,
        max_ms=m.max_ms,
    )


async def _read_histogram(app: web.Application) -> None:
    app[HISTOGRAM].load(*await queries.histogram(app[DATABASE]))


async def _retention(app: web.Application, run: Run) -> None:
    """Partitions ahead, expired partitions, rows and rollups gone (the leader, fenced)."""
    keep = app[CONFIG].retention
    async with run.commit() as conn:
        await retention.run_pass(conn, app[DATABASE], keep)
        await rollups.prune(
            conn,
            app[DATABASE],
            datetime.now(UTC),
            timedelta(seconds=keep.performance_log_minute_rollups.seconds),
            timedelta(seconds=keep.performance_log_rollups.seconds),
        )


async def _writer_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[WRITER].close(timeout=app[CONFIG].web.shutdown_timeout.seconds)


def setup(app: web.Application) -> None:
    """Install the writer, the histogram and the retention job."""
    config, db = app[CONFIG], app[DATABASE]
    histogram = app[HISTOGRAM] = DurationHistogram(config.performance_logs.max_histogram_series)
    committed = app[SELF_METRICS].writes_committed.labels(TABLE)

    async def insert(conn: Any, batch: Sequence[store.Rows]) -> list[None]:
        return await store.insert_batch(conn, db, batch)

    async def write(conn: Any, batch: Sequence[Keyed[store.Rows]]) -> list[Duplicate | None]:
        return await idempotency.keyed_batch(conn, db, batch, insert)

    def on_commit(batch: Sequence[Keyed[store.Rows]], results: Sequence[Duplicate | None]) -> None:
        for item, result in zip(batch, results, strict=True):
            if result is None:
                committed.inc(len(item.value))

    writer = app[WRITER] = GroupCommit(
        "performance-logs-writer",
        db,
        write,
        _limits(config),
        units=lambda item: len(item.value),
        on_commit=on_commit,
    )
    app[EXPOSITION].add("performance_logs", PerformanceLogCollector(histogram, writer))
    # the histogram is PostgreSQL's (kept by the ingest's statements): every replica reads it
    app.cleanup_ctx.append(
        app[SUPERVISOR].periodic(
            "performance-logs-histogram",
            _read_histogram,
            lambda a: HISTOGRAM_REFRESH,
            wait=lambda a: a[DATABASE].wait_ready(),
        )
    )
    interval = min(config.retention.interval.seconds, 3600.0) or 3600.0
    app[LEADERSHIP].add(Job("retention", interval, lambda run: _retention(app, run)))
    app.cleanup_ctx.append(_writer_ctx)


__all__ = ["HISTOGRAM", "WRITER", "ingest", "offer", "setup", "summary"]
