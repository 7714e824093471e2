"""The alert bridge: webhooks into incidents, manual alerts, the lifecycle, notes, counts.

The path of a notification: ``web.alerts`` (parse, validate) → ``inputs.alertmanager``
(mapping) → ``receive`` here (heartbeat beats and our own alerts set apart, the rest group
committed) → ``storage.alerts`` (one upsert per batch) → the ``system_alerts`` notification →
every replica's counts view → ``exposition.alerts``. What a change owes Alertmanager
(silences, sends) follows the commit in ``features.alertmanager``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from exporter.domain import alert as lifecycle
from exporter.domain.alert import AlertRecord
from exporter.domain.alertmanager import MARKER
from exporter.exposition.alerts import AlertCounts, BridgeMetrics
from exporter.features import alertmanager, heartbeats
from exporter.features.core import CONFIG, DATABASE, EXPOSITION, LEADERSHIP, SELF_METRICS, VIEWS
from exporter.features.leader import Job, Run
from exporter.features.views import View
from exporter.storage import Database, idempotency
from exporter.storage import alertmanager as am_storage
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
    #: open incidents opened in a maintenance window, by (window, severity): a view
    in_maintenance: dict[tuple[int, str], int] = field(default_factory=dict)


BRIDGE = web.AppKey("alert_bridge", Bridge)

#: how a write's response is stored under its Idempotency-Key (the web layer renders it)
Render = Callable[[Any], tuple[int, bytes]]


# ---------------------------------------------------------------- incoming
@dataclass(frozen=True, slots=True)
class Received:
    """What a notification did: the incidents' outcome, heartbeat beats, alerts we sent."""

    outcome: storage.Outcome
    beats: int = 0
    ours: int = 0


async def receive(
    app: web.Application,
    records: list[AlertRecord],
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> Received | Duplicate:
    """Store a notification's alerts (shared commits); its outcome once committed.

    Alerts that are heartbeats (the Watchdog) are beats, never incidents; alerts we sent
    (they carry the marker label) belong to their incident, never a second one.
    """
    bridge = app[BRIDGE]
    beating = app[alertmanager.ALERTMANAGER].heartbeat_alertnames
    incidents: list[AlertRecord] = []
    beats: list[str] = []
    heartbeat_alerts = 0
    ours: list[tuple[str, str]] = []
    for record in records:
        if MARKER in record.labels:
            ours.append((record.labels[MARKER], record.fingerprint))
        elif record.labels.get("alertname") in beating:
            heartbeat_alerts += 1
            if record.signal == "firing":  # a resolved Watchdog is no sign of life
                beats.append(record.labels["alertname"])
        else:
            incidents.append(record)
    if beats:
        await heartbeats.beat_alertnames(app, beats)
        bridge.metrics.beats.inc(len(beats))
    if ours:
        await am_storage.link(app[DATABASE], ours)

    def received(outcome: storage.Outcome) -> Received:
        return Received(outcome, heartbeat_alerts, len(ours))

    rendered = None if render is None else (lambda o: render(received(o)))
    outcome = await bridge.writer.submit(Keyed(incidents, key, rendered))
    if isinstance(outcome, Duplicate):
        return outcome
    bridge.metrics.duplicates.inc(outcome.duplicates)
    if outcome.changed:
        app[SELF_METRICS].writes_committed.labels(TABLE).inc(len(outcome.changed))
    # the silence of an incident resolved here is expired by alertmanager:sync, not by this
    # request: Alertmanager waits for the answer and must not wait on a call back to itself
    return received(outcome)


async def create(
    app: web.Application,
    values: tuple[str, str, str, str | None, str | None, str],
    auto_resolve_after: float | None,
    actor: str,
    dedup_key: str | None = None,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> tuple[dict[str, Any], bool] | Duplicate:
    """A manual incident (source ``api``), sent to Alertmanager when one is configured; with
    a ``dedup_key`` an open incident holds, that incident. (row, whether it was created)."""
    fingerprint = f"api-{uuid.uuid4().hex}"

    async def work(db: Database) -> tuple[dict[str, Any], bool]:
        return await storage.create_alert(
            db, fingerprint, values, auto_resolve_after, actor, dedup_key
        )

    found = await idempotency.once(app[DATABASE], key, work, render or _unrendered)
    if isinstance(found, Duplicate):
        return found
    row, created = found
    if created:
        app[SELF_METRICS].writes_committed.labels(TABLE).inc()
        row = await _refreshed(app, row)
    return row, created


async def _refreshed(app: web.Application, row: dict[str, Any]) -> dict[str, Any]:
    """The incident after the Alertmanager work its change called for (done now if it can)."""
    await alertmanager.after_change(app, [row["id"]])
    if not alertmanager.configured(app):
        return row
    try:
        fresh = await am_storage.by_ids(app[DATABASE], [row["id"]])
    except Exception:  # the change is committed; its row as committed will do
        return row
    return fresh[0] if fresh else row


async def change(
    app: web.Application,
    alert_id: int,
    operation: Callable[[lifecycle.Incident], lifecycle.Transition],
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Apply a lifecycle operation; None when there is no such alert. Raises Conflict.

    The Alertmanager side (the acknowledgement's silence made or expired, an API alert's end
    sent) follows the commit; what fails is retried by the leader and shown as pending.
    """

    async def work(db: Database) -> Any:
        return await storage.change_alert(db, alert_id, operation)

    def rendered(found: Any) -> tuple[int, bytes]:
        assert render is not None
        return render(None if found is None else found[0])

    found = await idempotency.once(app[DATABASE], key, work, rendered)
    if found is None or isinstance(found, Duplicate):
        return found
    row, transition = found
    if transition.changed:
        return await _refreshed(app, row)
    return dict(row)


def _until(app: web.Application, until: datetime | None, at: datetime) -> datetime | None:
    """When an acknowledgement ends: as asked, else after alerts.ack_expiry, else never."""
    if until is not None:
        return until
    expiry = app[CONFIG].alerts.ack_expiry
    return None if expiry is None else at + timedelta(seconds=expiry.seconds)


async def acknowledge(
    app: web.Application,
    alert_id: int,
    by: str,
    note: str | None,
    until: datetime | None = None,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Acknowledge (idempotent), silencing the incident in Alertmanager when configured."""
    at = datetime.now(UTC)
    ends = _until(app, until, at)
    return await change(
        app, alert_id, lambda i: lifecycle.acknowledge(i, by, at, note, ends), key, render
    )


async def unacknowledge(
    app: web.Application,
    alert_id: int,
    by: str,
    note: str | None,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Back to active (idempotent); the acknowledgement's silence is expired."""
    return await change(app, alert_id, lambda i: lifecycle.unacknowledge(i, by, note), key, render)


async def resolve(
    app: web.Application,
    alert_id: int,
    by: str,
    note: str | None,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Resolve (idempotent); the incident's silence is expired, an API alert's end sent."""
    at = datetime.now(UTC)
    return await change(app, alert_id, lambda i: lifecycle.resolve(i, by, note, at), key, render)


async def resolve_by_key(
    app: web.Application,
    dedup_key: str,
    by: str,
    note: str | None,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Resolve the open incident holding ``dedup_key``; None when no open incident does."""
    alert_id = await storage.open_by_key(app[DATABASE], dedup_key)
    if alert_id is None:
        if key is not None and render is not None:
            # the refusal is an outcome too: a retry with the key gets it back
            async def refused(db: Database) -> None:
                return None

            found = await idempotency.once(app[DATABASE], key, refused, render)
            return found if isinstance(found, Duplicate) else None
        return None
    return await resolve(app, alert_id, by, note, key, render)


async def add_note(
    app: web.Application,
    alert_id: int,
    by: str,
    note: str,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Keep a note on an incident (an event from its status to the same); None when there
    is no such incident."""

    async def work(db: Database) -> dict[str, Any] | None:
        return await storage.add_note(db, alert_id, by, note)

    return await idempotency.once(app[DATABASE], key, work, render or _unrendered)


def _unrendered(_result: Any) -> tuple[int, bytes]:
    raise RuntimeError("a keyed write needs a rendered response")


# ---------------------------------------------------------------- scheduled work
async def _auto_resolve(app: web.Application, run: Run) -> None:
    """Resolve due manual alerts; end acknowledgements whose ``until`` came."""
    db = app[DATABASE]
    async with run.commit() as conn:
        resolved = await storage.resolve_due(conn, db)
        expired = await storage.expire_acknowledgements(conn, db)
    if resolved or expired:
        log.info(
            "alerts resolved or acknowledgements ended on schedule",
            extra={"resolved": len(resolved), "acknowledgements_ended": len(expired)},
        )
    # their silences expired, the ends of API alerts sent (what fails: alertmanager:sync)
    await alertmanager.after_change(app, resolved + expired)


# ---------------------------------------------------------------- the views and the lifetimes
def _counts_view(app: web.Application) -> View:
    async def reload() -> None:
        bridge, db = app[BRIDGE], app[DATABASE]
        bridge.counts = await storage.count_alerts(db)
        bridge.in_maintenance = await storage.count_in_maintenance(db)

    # a webhook storm notifies at the rate of its commits; the counts are read at most every
    # alerts.counts_refresh_interval
    interval = app[CONFIG].alerts.counts_refresh_interval.seconds
    return View("alert_counts", ("system_alerts",), reload, min_interval=interval)


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
    app.cleanup_ctx.append(_writer_ctx)
