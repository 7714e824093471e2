"""The quality feature's state, and the check scheduler: one loop per check, each alone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from exporter.config.quality import DEFAULT_LEVELS, Check
from exporter.demo import quality as demo
from exporter.domain import quality as q
from exporter.exposition.quality import CheckRun
from exporter.inputs.quality_checks import Measurement, run_check
from exporter.storage import quality as storage
from exporter.storage.sources import SourcePools
from exporter.web.keys import CONFIG, DATABASE, EXPOSITION, SELF_METRICS

log = logging.getLogger(__name__)

TABLE = "data_quality_indicators"


@dataclass
class QualityState:
    """What the quality feature keeps in memory: the scoreboard and the checks' last runs."""

    scoreboard: q.Scoreboard
    pools: SourcePools
    runs: dict[str, CheckRun] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


QUALITY = web.AppKey("quality", QualityState)


def remember(state: QualityState, row: Any, weight: float, *, pushed: bool) -> None:
    """Put a stored or fresh measurement on the scoreboard."""
    levels = _levels(row)
    state.scoreboard.record(
        (row["source"], row["dataset"], row["dimension"]),
        row["check_name"] or "",
        q.Member(row["score"], levels, weight),
        row["measured_at"],
        now=time.monotonic(),
        pushed=pushed,
    )


async def run_one(app: web.Application, check: Check) -> bool:
    """Run a check once: export and store its measurement, or report its failure."""
    state = app[QUALITY]
    pools = state.pools
    started = time.perf_counter()
    try:
        # asyncio.timeout, not wait_for: 3.11's wait_for returns the check's result when the
        # loop is cancelled as the check finishes, and the loop then never stopped
        async with asyncio.timeout(check.timeout.seconds):
            measurement = await run_check(
                check, lambda s, sql, args, t: pools.fetch(s, sql, args, timeout=t)
            )
    except Exception as exc:
        took = time.perf_counter() - started
        state.runs[check.name] = CheckRun(False, took, time.time())
        app[EXPOSITION].report_run(f"quality:{check.name}", False, took)
        error = "timed out" if isinstance(exc, TimeoutError) else f"{exc}"
        log.warning("quality check failed", extra={"check": check.name, "error": error})
        return False
    took = time.perf_counter() - started
    await _store(app, check, measurement)
    # reported after storing, so whoever sees the run can also read its row
    state.runs[check.name] = CheckRun(True, took, time.time())
    app[EXPOSITION].report_run(f"quality:{check.name}", True, took)
    return True


async def _store(app: web.Application, check: Check, m: Measurement) -> None:
    levels = check.effective_levels
    row = storage.NewIndicator(
        source=check.source,
        dataset=check.dataset,
        dimension=check.dimension,
        score=m.score,
        total_records=m.total,
        valid_records=m.valid,
        status=q.status_of(m.score, q.Levels(levels.warning, levels.critical)),
        warning_level=levels.warning,
        critical_level=levels.critical,
        check_name=check.name,
        issues_json=msgspec.json.encode(m.issues).decode(),
        measured_at=datetime.now(UTC),
    )
    remember(app[QUALITY], _as_row(row), check.weight, pushed=False)
    db = app[DATABASE]
    try:
        async with db.transaction() as conn:
            await storage.insert(conn, db.schema, [row])
    except Exception as exc:
        # the measurement is still exported; the next run stores a fresh one
        log.warning("quality result not stored", extra={"check": check.name, "error": f"{exc}"})
        return
    app[SELF_METRICS].writes_committed.labels(TABLE).inc()


def _as_row(row: storage.NewIndicator) -> dict[str, Any]:
    return {
        "source": row.source,
        "dataset": row.dataset,
        "dimension": row.dimension,
        "check_name": row.check_name,
        "score": row.score,
        "warning_level": row.warning_level,
        "critical_level": row.critical_level,
        "measured_at": row.measured_at,
    }


async def _check_loop(app: web.Application, check: Check) -> None:
    while True:
        await run_one(app, check)
        await asyncio.sleep(check.interval.seconds)


async def run_checks(app: web.Application) -> None:
    """Wait for the database (and the demo data), restore the last state, then run the checks."""
    config, db = app[CONFIG], app[DATABASE]
    await db.wait_ready()
    if config.demo:
        await demo.seed_demo(db)
    await _restore(app)
    async with asyncio.TaskGroup() as group:
        for check in config.quality.checks:
            group.create_task(_check_loop(app, check), name=f"quality:{check.name}")


async def _restore(app: web.Application) -> None:
    """Export the stored latest measurements until checks and pushers send fresh ones."""
    state, db = app[QUALITY], app[DATABASE]
    ttl = app[CONFIG].metrics.series_ttl.seconds
    try:
        async with db.connection() as conn:
            rows = await storage.latest(conn, db.schema, datetime.now(UTC) - timedelta(seconds=ttl))
    except Exception as exc:
        log.warning("could not restore quality state", extra={"error": f"{exc}"})
        return
    for row in rows:
        name = row["check_name"]
        if name is None:
            remember(state, row, 1.0, pushed=True)
        elif name in state.weights:
            remember(state, row, state.weights[name], pushed=False)


async def pools_ctx(app: web.Application) -> AsyncIterator[None]:
    """Close the source pools when the app stops."""
    yield
    await app[QUALITY].pools.close()


async def overview_of(app: web.Application, since: datetime | None = None) -> q.Overview:
    """The quality overview from the latest stored measurement of every member."""
    db, weights = app[DATABASE], app[QUALITY].weights
    async with db.connection() as conn:
        rows = await storage.latest(conn, db.schema, since)
    return q.overview(
        q.Latest(
            source=r["source"],
            dataset=r["dataset"],
            dimension=r["dimension"],
            check_name=r["check_name"],
            score=r["score"],
            levels=_levels(r),
            measured_at=r["measured_at"],
            weight=weights.get(r["check_name"] or "", 1.0),
        )
        for r in rows
    )


def _levels(row: Any) -> q.Levels:
    warning, critical = row["warning_level"], row["critical_level"]
    return q.Levels(
        DEFAULT_LEVELS.warning if warning is None else warning,
        DEFAULT_LEVELS.critical if critical is None else critical,
    )
