"""Data quality: checks the leader runs against the sources, pushed indicators, the scoreboard.

The path of a measurement: a check (``inputs.quality_checks``, one leader job per check) or a
push (``web.quality``) → ``storage.quality.insert`` (the indicator and its member's latest, in
one transaction) → the ``quality_series`` notification → every replica's scoreboard view →
``exposition.quality``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from exporter.config.quality import DEFAULT_LEVELS, Check
from exporter.domain import quality as q
from exporter.exposition.quality import CheckRun, QualityCollector
from exporter.features.core import CONFIG, DATABASE, EXPOSITION, LEADERSHIP, SELF_METRICS, VIEWS
from exporter.features.leader import Job, Run
from exporter.features.views import View
from exporter.inputs.quality_checks import Measurement, run_check
from exporter.storage import Database, idempotency
from exporter.storage import quality as storage
from exporter.storage.changes import Notice
from exporter.storage.idempotency import Duplicate, IdempotencyKey
from exporter.storage.sources import SourcePools

log = logging.getLogger(__name__)

TABLE = "data_quality_indicators"
_notice = msgspec.json.Decoder(Notice)


@dataclass
class Quality:
    """The feature's state on one replica: the scoreboard view and the source pools."""

    scoreboard: q.Scoreboard
    pools: SourcePools
    #: seconds a pushed member is exported after it was written
    ttl: float
    weights: dict[str, float] = field(default_factory=dict)
    #: configured checks, by the job that runs each
    checks: dict[str, Check] = field(default_factory=dict)


QUALITY = web.AppKey("quality", Quality)


def _levels(warning: float | None, critical: float | None) -> q.Levels:
    return q.Levels(
        DEFAULT_LEVELS.warning if warning is None else warning,
        DEFAULT_LEVELS.critical if critical is None else critical,
    )


def _remember(state: Quality, member: storage.Member) -> None:
    name = member.check_name
    if name and name not in state.weights:
        return  # a check no longer configured
    # a pushed member is exported for the TTL after it was written, like any pushed series
    expires = None if name else member.updated_at.timestamp() + state.ttl
    state.scoreboard.record(
        (member.source, member.dataset, member.dimension),
        name,
        q.Member(member.score, _levels(member.warning_level, member.critical_level),
                 state.weights.get(name, 1.0)),
        member.measured_at,
        expires,
    )  # fmt: skip


# ---------------------------------------------------------------- writing
async def push(
    app: web.Application,
    rows: Sequence[storage.NewIndicator],
    key: IdempotencyKey | None = None,
    render: Callable[[list[Any]], tuple[int, bytes]] | None = None,
) -> list[Any] | Duplicate:
    """Store pushed indicators atomically; the stored rows (DUPLICATE for a key used before:
    nothing stored). Raises QualitySeriesLimit."""
    config = app[CONFIG]
    cap = (config.metrics.max_series_per_family, config.metrics.series_ttl.seconds)

    async def work(db: Database) -> list[Any]:
        async with db.transaction() as conn:
            return await storage.insert(conn, db, rows, cap=cap)

    stored = await idempotency.once(app[DATABASE], key, work, render or _unrendered)
    if isinstance(stored, Duplicate):
        return stored
    app[SELF_METRICS].writes_committed.labels(TABLE).inc(len(stored))
    state = app[QUALITY]
    for row in stored:
        _remember(state, _member_of(row))
    return stored


def _unrendered(_rows: list[Any]) -> tuple[int, bytes]:
    raise RuntimeError("a keyed write needs a rendered response")


def _member_of(row: Any) -> storage.Member:
    # what the trigger made of a row this replica just committed
    return storage.Member(
        id=0, source=row["source"], dataset=row["dataset"], dimension=row["dimension"],
        check_name=row["check_name"] or "", score=row["score"], status=row["status"],
        warning_level=row["warning_level"], critical_level=row["critical_level"],
        measured_at=row["measured_at"], updated_at=datetime.now(UTC), version=0,
    )  # fmt: skip


async def overview(
    app: web.Application, since: datetime | None = None, without: Set[str] = frozenset()
) -> q.Overview:
    """The quality overview from the latest measurement of every member (of the sources not
    ``without``: the overview leaves out sources in maintenance)."""
    weights = app[QUALITY].weights
    members = await storage.members(app[DATABASE], since)
    return q.overview(
        q.Latest(
            source=m.source,
            dataset=m.dataset,
            dimension=m.dimension,
            check_name=m.check_name or None,
            score=m.score,
            levels=_levels(m.warning_level, m.critical_level),
            measured_at=m.measured_at,
            weight=weights.get(m.check_name, 1.0),
        )
        for m in members
        if (not m.check_name or m.check_name in weights) and m.source not in without
    )


# ---------------------------------------------------------------- scheduled work
def _check_job(app: web.Application, check: Check) -> Job:
    async def run(run: Run) -> None:
        pools = app[QUALITY].pools
        async with asyncio.timeout(check.timeout.seconds):
            measurement = await run_check(
                check, lambda s, sql, args, t: pools.fetch(s, sql, args, timeout=t)
            )
        row = _new_row(check, measurement)
        db = app[DATABASE]
        async with run.commit() as conn:
            stored = await storage.insert(conn, db, [row])
        app[SELF_METRICS].writes_committed.labels(TABLE).inc()
        _remember(app[QUALITY], _member_of(stored[0]))

    return Job(f"quality:{check.name}", check.interval.seconds, run)


def _new_row(check: Check, m: Measurement) -> storage.NewIndicator:
    levels = check.effective_levels
    return storage.NewIndicator(
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


def check_runs(app: web.Application) -> Mapping[str, CheckRun]:
    """The last run of every configured check, whichever replica ran it."""
    runs = app[LEADERSHIP].runs
    out: dict[str, CheckRun] = {}
    for name in app[QUALITY].weights:
        run = runs.get(f"quality:{name}")
        if run is not None:
            out[name] = CheckRun(
                run.ok, run.last_duration_seconds, run.last_finished_at.timestamp()
            )
    return out


# ---------------------------------------------------------------- the view and the lifetimes
def _scoreboard_view(app: web.Application) -> View:
    async def reload() -> None:
        state = app[QUALITY]
        members = await storage.members(app[DATABASE])
        state.scoreboard.clear()
        for member in members:
            _remember(state, member)

    async def update(payloads: Sequence[str]) -> None:
        ids: list[int] = []
        for payload in payloads:
            notice = _notice.decode(payload)
            if notice.ids is None:
                await reload()
                return
            ids += notice.ids
        state = app[QUALITY]
        for member in await storage.members_by_ids(app[DATABASE], ids):
            _remember(state, member)

    # other replicas' writes arrive in bursts: at most ten reads a second
    return View("quality_series", ("quality_series",), reload, update, min_interval=0.1)


async def _pools_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[QUALITY].pools.close()


def setup(app: web.Application) -> None:
    """Install the scoreboard view, the source pools and one leader job per check."""
    config = app[CONFIG]
    state = app[QUALITY] = Quality(
        scoreboard=q.Scoreboard(),
        pools=SourcePools(config.quality.sources),
        ttl=config.metrics.series_ttl.seconds,
        weights={c.name: c.weight for c in config.quality.checks},
    )
    app[EXPOSITION].add("quality", QualityCollector(state.scoreboard, lambda: check_runs(app)))
    app[EXPOSITION].add_runs(
        lambda: {
            f"quality:{n}": (1.0 if r.ok else 0.0, r.duration) for n, r in check_runs(app).items()
        }
    )
    app[VIEWS].add(_scoreboard_view(app))
    for check in config.quality.checks:
        app[LEADERSHIP].add(_check_job(app, check))
    app.cleanup_ctx.append(_pools_ctx)
