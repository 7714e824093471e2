"""Maintenance windows: their silences in Alertmanager, and what they put in maintenance.

Windows live in PostgreSQL; every replica keeps a view of those that are not over, so each
says the same about which services and sources are in maintenance now (the overview's
``maintenance`` status, ``monitoring_maintenance``). The leader's ``maintenance:silences``
job keeps one Alertmanager silence per window occurrence (the request that creates or
deletes a window tries at once, and what fails waits for the job).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from exporter.domain import maintenance as rules
from exporter.domain.maintenance import Window
from exporter.exposition.maintenance import InMaintenance
from exporter.features import alertmanager
from exporter.features.alertmanager import ALERTMANAGER
from exporter.features.core import CONFIG, DATABASE, EXPOSITION, LEADERSHIP, VIEWS
from exporter.features.leader import Job, Run
from exporter.features.views import View
from exporter.outputs.alertmanager import AlertmanagerError
from exporter.storage import Database, StorageUnavailable, idempotency
from exporter.storage import maintenance as storage
from exporter.storage.idempotency import Duplicate, IdempotencyKey
from exporter.storage.maintenance import Results

log = logging.getLogger(__name__)

Render = Callable[[Any], tuple[int, bytes]]


@dataclass
class Maintenance:
    """The feature's state on one replica: the windows that are not over (a view)."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    def windows(self) -> list[Window]:
        """The windows of the view."""
        return storage.windows(list(self.rows.values()))

    def affected(self, at: datetime) -> tuple[set[str], set[str]]:
        """The services and data-quality sources in maintenance at ``at``."""
        return rules.affected(self.windows(), at)

    def in_force(self, at: datetime) -> set[int]:
        """The ids of the windows in force at ``at``."""
        return {w.id for w in rules.in_force(self.windows(), at)}


MAINTENANCE = web.AppKey("maintenance", Maintenance)


def pending(app: web.Application, row: dict[str, Any], at: datetime) -> bool:
    """Whether a window's silence waits for Alertmanager work."""
    if not alertmanager.configured(app):
        return False
    work = rules.silence_work(
        storage.window_of(row), row["silence_id"], row["silence_starts_at"],
        row["silence_ends_at"], at,
    )  # fmt: skip
    return work is not None


async def create(
    app: web.Application,
    matchers: dict[str, str],
    starts_at: datetime,
    ends_at: datetime,
    recurrence: str | None,
    repeat_until: datetime | None,
    comment: str,
    author: str,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate:
    """Store a window (validated by the caller), then make its silence."""

    async def work(db: Database) -> dict[str, Any]:
        return await storage.insert(
            db, matchers, starts_at, ends_at, recurrence, repeat_until, comment, author
        )

    row = await idempotency.once(app[DATABASE], key, work, render or _unrendered)
    if isinstance(row, Duplicate):
        return row
    return await _after(app, row)


async def delete(
    app: web.Application,
    window_id: int,
    by: str,
    key: IdempotencyKey | None = None,
    render: Render | None = None,
) -> dict[str, Any] | Duplicate | None:
    """Delete a window (idempotent), then expire its silence; None when there is none."""

    async def work(db: Database) -> dict[str, Any] | None:
        return await storage.delete(db, window_id, by)

    row = await idempotency.once(app[DATABASE], key, work, render or _unrendered)
    if row is None or isinstance(row, Duplicate):
        return row
    return await _after(app, row)


def _unrendered(_result: Any) -> tuple[int, bytes]:
    raise RuntimeError("a keyed write needs a rendered response")


async def _after(app: web.Application, row: dict[str, Any]) -> dict[str, Any]:
    """The silence work a window's change calls for, done now if Alertmanager answers."""
    if app[ALERTMANAGER].client is None:
        return row
    db = app[DATABASE]
    try:
        results = await _work(app, [row])
        async with db.transaction() as conn:
            unwanted = await storage.store(conn, db, results)
        await _expire(app, unwanted)
        return await storage.get(db, row["id"]) or row
    except StorageUnavailable as exc:
        log.warning("could not record a window's silence", extra={"error": str(exc)})
        return row


async def _work(app: web.Application, rows: Sequence[dict[str, Any]]) -> Results:
    link = app[ALERTMANAGER]
    client = link.client
    results = Results.empty()
    if client is None:
        return results
    at = datetime.now(UTC)
    for row in rows:
        window = storage.window_of(row)
        work = rules.silence_work(
            window, row["silence_id"], row["silence_starts_at"], row["silence_ends_at"], at
        )
        if work is None:
            continue
        action, occurrence = work
        try:
            if action == "expire":
                await client.expire_silence(row["silence_id"])
                results.expired.append((row["id"], row["silence_id"]))
                link.metrics.silences.labels("expire", "ok").inc()
                continue
            assert occurrence is not None
            start, end = occurrence
            comment = f"Maintenance window {row['id']}"
            if row["comment"]:
                comment += f": {row['comment']}"
            made = await client.create_silence(
                window.matchers, start, end, row["author"], comment[:1000]
            )
            link.metrics.silences.labels("create", "ok").inc()
            results.silenced.append((row["id"], made, start, end, row["silence_id"]))
        except AlertmanagerError as exc:
            operation = "expire_silence" if action == "expire" else "create_silence"
            link.metrics.silences.labels(action, "error").inc()
            link.failed(operation, str(exc), window_id=row["id"])
            results.failed.append((row["id"], f"{operation}: {exc}"))
    return results


async def _expire(app: web.Application, silences: Sequence[str]) -> None:
    client = app[ALERTMANAGER].client
    for silence_id in silences:
        if client is None:
            return
        try:
            await client.expire_silence(silence_id)
        except AlertmanagerError as exc:
            app[ALERTMANAGER].failed("expire_silence", str(exc), silence_id=silence_id)


async def _keep_silences(app: web.Application, run: Run) -> None:
    """One silence per occurrence: made for the current (or next) one, expired on delete."""
    if app[ALERTMANAGER].client is None:
        return
    db = app[DATABASE]
    results = await _work(app, await storage.live(db))
    if results.silenced or results.expired or results.failed:
        async with run.commit() as conn:
            unwanted = await storage.store(conn, db, results)
        await _expire(app, unwanted)


# ---------------------------------------------------------------- view and metric
def _view(app: web.Application) -> View:
    async def reload() -> None:
        rows = await storage.live(app[DATABASE])
        app[MAINTENANCE].rows = {r["id"]: r for r in rows if r["deleted_at"] is None}

    return View("maintenance_windows", ("maintenance_windows",), reload, min_interval=0.1)


def setup(app: web.Application) -> None:
    """Install the view, the metric and the silence job."""
    state = app[MAINTENANCE] = Maintenance()
    app[VIEWS].add(_view(app))
    app[EXPOSITION].add("maintenance", InMaintenance(state.affected))
    if alertmanager.configured(app):
        app[LEADERSHIP].add(
            Job(
                "maintenance:silences",
                app[CONFIG].alerts.sync_interval.seconds,
                lambda run: _keep_silences(app, run),
            )
        )
