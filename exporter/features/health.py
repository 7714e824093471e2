"""Service health: pushed samples, probes, host figures, stored rules and the replica's view.

The path of a sample: a push (``web.health``) or a probe (``inputs.probes``, run by the leader)
or the host sampler (``inputs.host``, every replica) → ``storage.health.store_samples``, one
transaction that decides status and hysteresis from the stored state (``domain``) → the
``health_series`` notification → every replica's view (``SeriesStore``) → the pre-rendered
families (``exposition.health``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from exporter.config import Config
from exporter.config.services import Service
from exporter.domain.health import Status
from exporter.domain.health_rules import Key, RuleBook, configured_rules, key_of_name, override_of
from exporter.domain.health_series import Sample, Series, SeriesLimit, SeriesStore
from exporter.exposition.health import HealthExposition
from exporter.features.core import (
    CONFIG,
    DATABASE,
    EXPOSITION,
    LEADERSHIP,
    REPLICA,
    SELF_METRICS,
    SUPERVISOR,
    VIEWS,
)
from exporter.features.leader import Job, Run
from exporter.features.views import View
from exporter.inputs.host import HostReader
from exporter.inputs.probes import Prober
from exporter.storage import health as storage
from exporter.storage import idempotency
from exporter.storage import thresholds as threshold_store
from exporter.storage.changes import Notice
from exporter.storage.group_commit import GroupCommit, Limits
from exporter.storage.idempotency import Duplicate, IdempotencyKey, Keyed

log = logging.getLogger(__name__)

_notice = msgspec.json.Decoder(Notice)


@dataclass
class Health:
    """The feature's state on one replica: rules, the series view and its writer."""

    config: Config
    replica: str
    rules: RuleBook
    store: SeriesStore
    exposition: HealthExposition
    writer: GroupCommit[Keyed[list[Sample]], Pushed | Duplicate]

    def expires(self, sample: Sample) -> datetime:
        """When a series stops being exported without a new sample."""
        ttl = self.config.metrics.series_ttl.seconds
        if sample.source == "probe":
            # a probe's series outlives a few missed probes (a leader change, a slow probe)
            interval = next(
                (s.interval.seconds for s in self.config.services if s.name == sample.service),
                0.0,
            )
            ttl = max(ttl, 3 * interval)
        elif sample.source == "host":
            ttl = max(ttl, 3 * self.config.host.interval.seconds)
        return datetime.now(UTC) + timedelta(seconds=ttl)

    def cache(self, series: Sequence[Series]) -> None:
        """Show series this replica just committed (the notification confirms them later)."""
        now = datetime.now(UTC).timestamp()
        for item in series:
            self.store.put(dataclasses.replace(item, sample=_bare(item.sample)), now)

    def statuses(self) -> dict[str, dict[str, Status]]:
        """Status per metric type per service (per-replica figures: the worst replica)."""
        out: dict[str, dict[str, Status]] = {}
        rank = {"healthy": 0, "warning": 1, "critical": 2}
        for (service, metric_type, _replica), series in self.store.items():
            metrics = out.setdefault(service, {})
            current = metrics.get(metric_type)
            if current is None or rank[series.status] > rank[current]:
                metrics[metric_type] = series.status
        return out


HEALTH = web.AppKey("health", Health)


def _bare(sample: Sample) -> Sample:
    # the view keeps what the table keeps: no per-sample metadata
    return dataclasses.replace(sample, metadata={}) if sample.metadata else sample


# ---------------------------------------------------------------- writing
@dataclass(frozen=True)
class Pushed:
    """What a push did: its stored rows, or the cap it hit; and the series its batch changed."""

    rows: list[Any] | SeriesLimit
    series: list[Series]


async def push(
    app: web.Application,
    samples: list[Sample],
    key: IdempotencyKey | None = None,
    render: Callable[[list[Any] | SeriesLimit], tuple[int, bytes]] | None = None,
) -> list[Any] | Duplicate:
    """Store pushed samples (all or nothing); their stored rows once committed. With ``key``,
    ``render`` gives the response stored under it, and a key used before is DUPLICATE
    (nothing stored).

    Raises SeriesLimit (nothing stored) or StorageUnavailable (nothing stored).
    """

    def rendered(outcome: Pushed) -> tuple[int, bytes]:
        assert render is not None
        return render(outcome.rows)

    result = await app[HEALTH].writer.submit(Keyed(samples, key, rendered if key else None))
    if isinstance(result, Duplicate):
        return result
    if isinstance(result.rows, SeriesLimit):
        raise result.rows
    return result.rows


def _writer(app: web.Application, health_of: Any) -> GroupCommit[Keyed[list[Sample]], Any]:
    db, config = app[DATABASE], app[CONFIG]
    committed = app[SELF_METRICS].writes_committed.labels(storage.TABLE)
    rejected = app[SELF_METRICS].writes_rejected

    async def store(conn: Any, pushes: Sequence[list[Sample]]) -> list[Pushed]:
        health: Health = health_of()
        written = await storage.store_batch(
            conn,
            db,
            pushes,
            health.rules,
            cap=config.metrics.max_series_per_family,
            expires=health.expires,
        )
        out: list[Pushed] = []
        for outcome, rows in zip(written.plan.outcomes, written.rows, strict=True):
            if isinstance(outcome, SeriesLimit):
                out.append(Pushed(outcome, written.series))
            else:
                out.append(Pushed(rows or [], written.series))
        return out

    async def write(conn: Any, items: Sequence[Keyed[list[Sample]]]) -> list[Pushed | Duplicate]:
        return await idempotency.keyed_batch(conn, db, items, store)

    def on_commit(
        items: Sequence[Keyed[list[Sample]]], results: Sequence[Pushed | Duplicate]
    ) -> None:
        # shown here at once (the notification confirms it everywhere, this replica included)
        cached: set[int] = set()
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Duplicate):
                continue
            if id(result.series) not in cached:
                cached.add(id(result.series))
                health_of().cache(result.series)
            if isinstance(result.rows, SeriesLimit):
                rejected.labels(storage.TABLE, "series_limit").inc(len(item.value))
            else:
                committed.inc(len(result.rows))

    return GroupCommit(
        "health-writer",
        db,
        write,
        Limits(max_batch=10_000),
        units=lambda item: len(item.value),
        on_commit=on_commit,
    )


# ---------------------------------------------------------------- rules
async def save_rule(
    app: web.Application, key: Key, config: dict[str, Any], expect_version: int | None
) -> Key:
    """Store a rule overriding the YAML (versioned); in force here at once, elsewhere on the
    notification. Raises VersionConflict."""
    row = await threshold_store.save_threshold(app[DATABASE], *key, config, expect_version)
    return _install(app[HEALTH], row)


async def remove_rule(app: web.Application, key: Key, expect_version: int | None) -> Key:
    """Remove a stored rule (a tombstone). Raises NoOverride or VersionConflict."""
    row = await threshold_store.remove_threshold(app[DATABASE], *key, expect_version)
    return _install(app[HEALTH], row)


def _install(health: Health, row: Any) -> Key:
    key = key_of_name(row["name"])
    health.rules.set_override(
        key, override_of(msgspec.json.decode(row["config"]), row["version"], row["updated_at"])
    )
    return key


# ---------------------------------------------------------------- scheduled and per-replica work
def _probe_job(app: web.Application, service: Service, session: list[aiohttp.ClientSession]) -> Job:
    prober: Prober | None = None

    async def run(run: Run) -> None:
        nonlocal prober
        if prober is None:
            prober = Prober(service, session[0] if session else None)
        health, db = app[HEALTH], app[DATABASE]
        result = await prober.run()
        since = run.started_at - timedelta(seconds=service.uptime_window.seconds)
        async with run.commit() as conn:
            up, total = await storage.uptime(conn, db, service.name, since)
            ratio = (up + result.up) / (total + 1)
            samples = result.samples(service.name, ratio)
            written = await storage.store_samples(
                conn, db, [samples], health.rules, cap=None, expires=health.expires
            )
        health.cache(written.series)
        app[SELF_METRICS].writes_committed.labels(storage.TABLE).inc(len(samples))

    return Job(f"probe:{service.name}", service.interval.seconds, run)


async def _host_step(app: web.Application, reader: HostReader) -> None:
    health, db = app[HEALTH], app[DATABASE]
    samples = await asyncio.to_thread(reader.samples, health.replica)
    if not samples:
        return
    async with db.transaction() as conn:
        written = await storage.store_samples(
            conn, db, [samples], health.rules, cap=None, expires=health.expires
        )
    health.cache(written.series)
    app[SELF_METRICS].writes_committed.labels(storage.TABLE).inc(len(samples))


# ---------------------------------------------------------------- the views
def _series_view(app: web.Application) -> View:
    async def reload() -> None:
        series = await storage.live_series(app[DATABASE])
        app[HEALTH].store.replace_all(series, datetime.now(UTC).timestamp())

    async def update(payloads: Sequence[str]) -> None:
        ids: list[int] = []
        for payload in payloads:
            notice = _notice.decode(payload)
            if notice.ids is None:
                await reload()  # a large statement: read everything once
                return
            ids += notice.ids
        now = datetime.now(UTC).timestamp()
        for series in await storage.series_by_ids(app[DATABASE], ids):
            app[HEALTH].store.put(series, now)

    # other replicas' writes arrive in bursts: at most ten reads a second
    return View("health_series", ("health_series",), reload, update, min_interval=0.1)


def _rules_view(app: web.Application) -> View:
    async def reload() -> None:
        db, health = app[DATABASE], app[HEALTH]
        async with db.connection() as conn:
            rows = await threshold_store.load_thresholds(conn, db.schema)
        for row in rows:
            _install(health, row)

    return View("thresholds", ("dashboard_config",), reload)


# ---------------------------------------------------------------- wiring
def setup(app: web.Application) -> None:
    """Install the feature's state, writer, views, scheduled jobs and lifetimes."""
    config = app[CONFIG]
    rules = RuleBook(configured_rules(config))
    store = SeriesStore()
    exposition = HealthExposition(store, rules)
    health_box: list[Health] = []
    writer = _writer(app, lambda: health_box[0])
    health = app[HEALTH] = Health(config, app[REPLICA], rules, store, exposition, writer)
    health_box.append(health)
    app[EXPOSITION].add_prerendered("health", exposition)
    views = app[VIEWS]
    views.add(_series_view(app))
    views.add(_rules_view(app))

    probed = [s for s in config.services if s.http or s.tcp or s.postgres]
    sessions: list[aiohttp.ClientSession] = []
    for service in probed:
        app[LEADERSHIP].add(_probe_job(app, service, sessions))
    if probed:
        app.cleanup_ctx.append(_probe_session(sessions))

    processes = {s.name: s.process for s in config.services if s.process is not None}
    if config.host.enabled or processes:
        reader_box: list[HostReader] = []

        async def host_step(a: web.Application) -> None:
            if not reader_box:
                reader_box.append(
                    await asyncio.to_thread(
                        HostReader, config.host.mounts, processes, host=config.host.enabled
                    )
                )
            await _host_step(a, reader_box[0])

        app.cleanup_ctx.append(
            app[SUPERVISOR].periodic(
                "health-host",
                host_step,
                lambda a: a[CONFIG].host.interval.seconds,
                wait=lambda a: a[DATABASE].wait_ready(),
            )
        )
    app.cleanup_ctx.append(_writer_ctx)


def _probe_session(sessions: list[aiohttp.ClientSession]) -> Any:
    async def ctx(app: web.Application) -> Any:
        # one session for every http probe, for the app's lifetime
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            sessions.append(session)
            yield
            sessions.clear()

    return ctx


async def _writer_ctx(app: web.Application) -> Any:
    yield
    await app[HEALTH].writer.close(timeout=app[CONFIG].web.shutdown_timeout.seconds)
