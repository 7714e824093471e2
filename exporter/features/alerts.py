"""The alert bridge: webhooks into incidents, manual alerts, the lifecycle, silences, counts.

The path of a notification: ``web.alerts`` (parse, validate) → ``inputs.alertmanager``
(mapping) → ``receive`` here (group commit) → ``storage.alerts`` (one upsert per batch) → the
``system_alerts`` notification → every replica's counts view → ``exposition.alerts``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from exporter.domain import alert as lifecycle
from exporter.domain.alert import AlertRecord
from exporter.exposition.alerts import AlertCounts, BridgeMetrics
from exporter.features.core import CONFIG, DATABASE, EXPOSITION, LEADERSHIP, SELF_METRICS, VIEWS
from exporter.features.leader import Job, Run
from exporter.features.views import View
from exporter.outputs.silences import SilenceError, Silences
from exporter.storage import Database, idempotency
from exporter.storage import alerts as storage
from exporter.storage.group_commit import GroupCommit, Limits
from exporter.storage.idempotency import Duplicate, IdempotencyKey, Keyed

log = logging.getLogger(__name__)

TABLE = "system_alerts"


@dataclass
class Bridge:
    """The feature's state on one replica."""

    writer: GroupCommit[Keyed[Sequence[AlertRecord]], storage.Outcome | Duplicate]
    metrics: BridgeMetrics = field(default_factory=BridgeMetrics)
    #: incidents by (status, severity): a view of system_alert_counts
    counts: dict[tuple[str, str], int] | None = None
    silences: Silences | None = None


BRIDGE = web.AppKey("alert_bridge", Bridge)


# ---------------------------------------------------------------- incoming
#: how a write's response is stored under its Idempotency-Key (the web layer renders it)
Render = Callable[[Any], tuple[int, bytes]]


async def receive(
    app: web.Application,
    records: list[AlertRecord],
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> storage.Outcome | Duplicate:
    """Store a notification's alerts (shared commits); its outcome once committed."""
    bridge = app[BRIDGE]
    outcome = await bridge.writer.submit(Keyed(records, key, render))
    if isinstance(outcome, Duplicate):
        return outcome
    bridge.metrics.duplicates.inc(outcome.duplicates)
    if outcome.changed:
        app[SELF_METRICS].writes_committed.labels(TABLE).inc(len(outcome.changed))
    for change in outcome.changed:
        if change.status == "resolved" and change.silence_id:
            await expire_silence(app, change.silence_id)
    return outcome


async def create(
    app: web.Application,
    values: tuple[str, str, str, str | None, str | None, str],
    auto_resolve_after: float | None,
    actor: str,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate:
    """A manual incident (source ``api``)."""
    fingerprint = f"api-{uuid.uuid4().hex}"

    async def work(db: Database) -> dict[str, Any]:
        return await storage.create_alert(db, fingerprint, values, auto_resolve_after, actor)

    row = await idempotency.once(app[DATABASE], key, work, render or _unrendered)
    if not isinstance(row, Duplicate):
        app[SELF_METRICS].writes_committed.labels(TABLE).inc()
    return row


async def change(
    app: web.Application,
    alert_id: int,
    operation: Callable[[lifecycle.Incident], lifecycle.Transition],
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Apply a lifecycle operation; None when there is no such alert. Raises Conflict."""

    async def work(db: Database) -> Any:
        return await storage.change_alert(db, alert_id, operation)

    def rendered(found: Any) -> tuple[int, bytes]:
        assert render is not None
        return render(None if found is None else found[0])

    found = await idempotency.once(app[DATABASE], key, work, rendered)
    if found is None or isinstance(found, Duplicate):
        return found
    row, transition = found
    if transition.changed and row["status"] == "resolved" and row["silence_id"]:
        await expire_silence(app, row["silence_id"])
    return dict(row)


async def acknowledge(
    app: web.Application,
    alert_id: int,
    by: str,
    note: str | None,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Acknowledge (idempotent), silencing the incident in Alertmanager when configured."""
    now = datetime.now(UTC)
    row = await change(
        app, alert_id, lambda i: lifecycle.acknowledge(i, by, now, note), key, render
    )
    if row is None or isinstance(row, Duplicate):
        return row
    silences = app[BRIDGE].silences
    # an acknowledged incident without a silence retries one that failed before
    if (
        silences
        and row["status"] == "acknowledged"
        and row["source"] == "alertmanager"
        and row["silence_id"] is None
    ):
        row["silence_id"] = await create_silence(app, silences, row, by)
    return row


async def resolve(
    app: web.Application,
    alert_id: int,
    by: str,
    note: str | None,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Resolve (idempotent); the incident's silence is expired."""
    now = datetime.now(UTC)
    return await change(app, alert_id, lambda i: lifecycle.resolve(i, by, note, now), key, render)


def _unrendered(_result: Any) -> tuple[int, bytes]:
    raise RuntimeError("a keyed write needs a rendered response")


# ---------------------------------------------------------------- silences
async def create_silence(
    app: web.Application, silences: Silences, row: dict[str, Any], by: str
) -> str | None:
    """Silence the incident in Alertmanager; a failure is logged and counted, never raised."""
    metrics = app[BRIDGE].metrics
    try:
        silence_id = await silences.create(
            row["labels"],
            app[CONFIG].alerts.silence_duration.seconds,
            by,
            f"Acknowledged in monitoring-exporter (alert {row['id']}: {row['title']})",
        )
    except SilenceError as exc:
        metrics.silences.labels("create", "error").inc()
        log.warning("could not create silence", extra={"alert_id": row["id"], "error": str(exc)})
        return None
    metrics.silences.labels("create", "ok").inc()
    if not await storage.set_silence(app[DATABASE], row["id"], silence_id):
        await expire_silence(app, silence_id)  # resolved while the silence was being made
        return None
    return silence_id


async def expire_silence(app: web.Application, silence_id: str) -> None:
    """Expire a silence; failures are logged and counted (it ends at its endsAt anyway)."""
    bridge = app[BRIDGE]
    if bridge.silences is None:
        return
    try:
        await bridge.silences.expire(silence_id)
    except SilenceError as exc:
        bridge.metrics.silences.labels("expire", "error").inc()
        log.warning("could not expire silence", extra={"silence_id": silence_id, "error": str(exc)})
    else:
        bridge.metrics.silences.labels("expire", "ok").inc()


# ---------------------------------------------------------------- scheduled work
async def _auto_resolve(app: web.Application, run: Run) -> None:
    """Resolve due manual alerts, and silenced incidents that Alertmanager dropped."""
    db = app[DATABASE]
    async with run.commit() as conn:
        resolved = await storage.resolve_due(conn, db)
    resolved += await _reconcile_silenced(app, run)
    for _alert_id, silence_id in resolved:
        if silence_id:
            await expire_silence(app, silence_id)


async def _reconcile_silenced(app: web.Application, run: Run) -> list[tuple[int, str | None]]:
    # Alertmanager sends no resolved notification for a silenced alert (its issue #226)
    silences, db = app[BRIDGE].silences, app[DATABASE]
    if silences is None:
        return []
    candidates = await storage.silenced_open(db)
    if not candidates:
        return []
    try:
        firing = await silences.active_alerts()
    except SilenceError as exc:
        app[BRIDGE].metrics.silences.labels("list_alerts", "error").inc()
        log.warning("could not list Alertmanager alerts", extra={"error": str(exc)})
        return []
    gone = [i for i, fp, starts in candidates if (fp, starts) not in firing]
    if not gone:
        return []
    async with run.commit() as conn:
        return await storage.resolve_gone(conn, db, gone)


# ---------------------------------------------------------------- the view and the lifetimes
def _counts_view(app: web.Application) -> View:
    async def reload() -> None:
        app[BRIDGE].counts = await storage.count_alerts(app[DATABASE])

    # a webhook storm notifies at the rate of its commits; the counts are read at most every
    # alerts.counts_refresh_interval
    interval = app[CONFIG].alerts.counts_refresh_interval.seconds
    return View("alert_counts", ("system_alerts",), reload, min_interval=interval)


async def _silence_client(app: web.Application) -> AsyncIterator[None]:
    """An Alertmanager API client for the app's lifetime, when alerts.alertmanager_url is set."""
    url = app[CONFIG].alerts.alertmanager_url
    if url is None:
        yield
        return
    async with aiohttp.ClientSession() as session:
        app[BRIDGE].silences = Silences(session, url, app[CONFIG].alerts.request_timeout.seconds)
        yield
        app[BRIDGE].silences = None


async def _writer_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[BRIDGE].writer.close(timeout=app[CONFIG].web.shutdown_timeout.seconds)


def setup(app: web.Application) -> None:
    """Install the bridge's state, writer, view, scheduled work and lifetimes."""
    config, db = app[CONFIG], app[DATABASE]

    async def upsert(conn: Any, batch: Sequence[Sequence[AlertRecord]]) -> list[storage.Outcome]:
        return await storage.write_batch(conn, db, batch)

    async def write(
        conn: Any, batch: Sequence[Keyed[Sequence[AlertRecord]]]
    ) -> list[storage.Outcome | Duplicate]:
        return await idempotency.keyed_batch(conn, db, batch, upsert)

    limits = Limits(
        max_batch=config.alerts.write_batch_max_alerts,
        # three statements in flight measured best on two cores: one batch's commit (a WAL
        # flush) overlaps the next batch's work; each extra statement has a fixed cost, so
        # another starts only with enough alerts waiting
        max_concurrent=3,
        min_overlap=100,
    )
    writer: GroupCommit[Keyed[Sequence[AlertRecord]], storage.Outcome | Duplicate] = GroupCommit(
        "alerts-writer", db, write, limits, units=lambda item: len(item.value)
    )
    bridge = app[BRIDGE] = Bridge(writer)
    app[EXPOSITION].add("alerts", AlertCounts(lambda: bridge.counts))
    app[EXPOSITION].add("alertmanager_webhook", bridge.metrics.registry)
    app[VIEWS].add(_counts_view(app))
    app[LEADERSHIP].add(
        Job(
            "alerts:auto-resolve",
            config.alerts.auto_resolve_interval.seconds,
            lambda run: _auto_resolve(app, run),
        )
    )
    app.cleanup_ctx.append(_silence_client)
    app.cleanup_ctx.append(_writer_ctx)
