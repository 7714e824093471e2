"""The alert bridge's state on the app, its Alertmanager silences and its background work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from exporter.exposition.alerts import BridgeMetrics
from exporter.outputs.silences import SilenceError, Silences
from exporter.storage import StorageUnavailable
from exporter.storage import alerts as storage
from exporter.web.keys import CONFIG, DATABASE, LISTENER

log = logging.getLogger(__name__)


@dataclass
class Bridge:
    """The feature's state on the app."""

    writer: storage.AlertWriter
    metrics: BridgeMetrics = field(default_factory=BridgeMetrics)
    counts: dict[tuple[str, str], int] | None = None
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    silences: Silences | None = None


BRIDGE = web.AppKey("alert_bridge", Bridge)
# Seconds between rereads of the counts when no change was reported.
SAFETY_REFRESH = 15.0


# ----------------------------------------------------------------------------- silences


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


# ----------------------------------------------------------------------------- lifetimes


async def silence_client(app: web.Application) -> AsyncIterator[None]:
    """An Alertmanager API client for the app's lifetime, when alerts.alertmanager_url is set."""
    url = app[CONFIG].alerts.alertmanager_url
    if url is None:
        yield
        return
    async with aiohttp.ClientSession() as session:
        app[BRIDGE].silences = Silences(session, url, app[CONFIG].alerts.request_timeout.seconds)
        yield
        app[BRIDGE].silences = None


async def refresh_counts(app: web.Application) -> None:
    """Keep ``monitoring_alerts`` fresh: reread the counts after every change.

    The counts are a few rows kept by triggers (system_alert_counts), so rereading is cheap;
    changes closer together than ``counts_refresh_interval`` share one read.
    """
    bridge, db = app[BRIDGE], app[DATABASE]
    pause = app[CONFIG].alerts.counts_refresh_interval.seconds

    def on_notify(channel: str, _payload: str) -> None:
        if channel == "system_alerts":
            bridge.dirty.set()

    unsubscribe = app[LISTENER].subscribe(on_notify)
    try:
        await db.wait_ready()
        while True:
            bridge.dirty.clear()
            try:
                bridge.counts = await storage.count_alerts(db)
            except StorageUnavailable:
                bridge.dirty.set()
            # a safety refresh covers notifications lost while the listener reconnected;
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the event's result
            # when a cancellation arrives just as the event is set, and this loop then ran on
            # after its task was cancelled (the app's cleanup waited for it forever)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAFETY_REFRESH):
                    await bridge.dirty.wait()
            await asyncio.sleep(pause)
    finally:
        unsubscribe()


async def auto_resolve(app: web.Application) -> None:
    """Resolve due manual alerts, and silenced incidents that Alertmanager dropped."""
    db = app[DATABASE]
    await db.wait_ready()
    while True:
        try:
            resolved = await storage.resolve_due(db)
            resolved += await _reconcile_silenced(app)
            for _alert_id, silence_id in resolved:
                app[BRIDGE].dirty.set()
                if silence_id:
                    await expire_silence(app, silence_id)
        except StorageUnavailable:
            pass
        await asyncio.sleep(app[CONFIG].alerts.auto_resolve_interval.seconds)


async def _reconcile_silenced(app: web.Application) -> list[tuple[int, str | None]]:
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
    return await storage.resolve_gone(db, gone) if gone else []


async def seed_demo(app: web.Application) -> None:
    """Seed a few incidents in each state (``--demo``)."""
    await app[DATABASE].wait_ready()
    added = await storage.seed_demo(app[DATABASE])
    if added:
        app[BRIDGE].dirty.set()
        log.info("demo alerts seeded", extra={"alerts": added})
