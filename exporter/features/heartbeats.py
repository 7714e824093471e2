"""Heartbeats (dead man's switches): beats, late heartbeats, and the replica's view of them.

A beat arrives by ``POST /api/v1/heartbeats/{name}``, or as an Alertmanager alert whose name
a heartbeat claims (the Watchdog), and is stored in PostgreSQL, so every replica agrees. The
leader's ``heartbeats:check`` job opens an incident (source ``exporter``) for each heartbeat
later than its interval and grace; the next beat resolves it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from exporter.config.heartbeats import Heartbeat as Configured
from exporter.exposition.heartbeats import LastSeen
from exporter.features import alertmanager
from exporter.features.core import CONFIG, DATABASE, EXPOSITION, LEADERSHIP, VIEWS
from exporter.features.leader import Job, Run
from exporter.features.views import View
from exporter.storage import Database, idempotency
from exporter.storage import heartbeats as storage
from exporter.storage.heartbeats import Settings
from exporter.storage.idempotency import Duplicate, IdempotencyKey


@dataclass
class Heartbeats:
    """The feature's state on one replica."""

    #: the configured heartbeats, by name
    configured: dict[str, Configured]
    #: the configured heartbeats an Alertmanager alert beats, by alert name
    by_alertname: dict[str, str]
    #: every stored heartbeat, by name: a view of the heartbeats table
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)


HEARTBEATS = web.AppKey("heartbeats", Heartbeats)


class Unknown(Exception):
    """A beat for a heartbeat that is not configured (and API creation is off)."""


class NeedsInterval(Exception):
    """The first beat of a heartbeat created through the API gives no interval."""


class SetInConfig(Exception):
    """A beat gives settings for a heartbeat the configuration file defines."""


def _settings(beat: Configured) -> Settings:
    return Settings(beat.interval.seconds, beat.grace.seconds, beat.title, beat.severity)


async def beat(
    app: web.Application,
    name: str,
    interval: float | None = None,
    grace: float | None = None,
    key: IdempotencyKey | None = None,
    render: Callable[[dict[str, Any] | None], tuple[int, bytes]] | None = None,
    immediate: bool = True,
) -> dict[str, Any] | Duplicate:
    """Record a beat of ``name``; resolves the heartbeat's open incident (and, ``immediate``,
    ends it in Alertmanager at once, else alertmanager:sync does).

    A configured heartbeat keeps its configured settings (a beat that gives some is
    refused); with ``alerts.heartbeats_via_api`` another name is created by a beat that
    gives its interval (and grace), and later beats need none. Raises Unknown, SetInConfig,
    NeedsInterval.
    """
    state, config = app[HEARTBEATS], app[CONFIG]
    configured = state.configured.get(name)
    settings: Settings | None
    if configured is not None:
        if interval is not None or grace is not None:
            raise SetInConfig(name)
        settings, origin = _settings(configured), "config"
    elif not config.alerts.heartbeats_via_api:
        raise Unknown(name)
    else:
        origin = "api"
        settings = None if interval is None else Settings(interval, grace or 0.0, None, "high")

    async def work(db: Database) -> tuple[dict[str, Any], list[int]] | None:
        return await storage.beat(db, name, settings, origin)

    def rendered(found: tuple[dict[str, Any], list[int]] | None) -> tuple[int, bytes]:
        assert render is not None
        return render(None if found is None else found[0])

    found = await idempotency.once(app[DATABASE], key, work, rendered)
    if isinstance(found, Duplicate):
        return found
    if found is None:
        raise NeedsInterval(name)
    row, resolved = found
    if immediate:
        await alertmanager.after_change(app, resolved)
    return row


async def beat_alertnames(app: web.Application, alertnames: Sequence[str]) -> None:
    """Beats from Alertmanager alerts (the Watchdog) reaching the webhook."""
    state = app[HEARTBEATS]
    for name in sorted({state.by_alertname[a] for a in alertnames if a in state.by_alertname}):
        # Alertmanager waits for the webhook's answer: no call back to it from here
        await beat(app, name, immediate=False)


async def listing(app: web.Application) -> list[dict[str, Any]]:
    """Every heartbeat, with when it is due and its open incident."""
    return await storage.listing(app[DATABASE])


# ---------------------------------------------------------------- scheduled work
async def _check(app: web.Application, run: Run) -> None:
    """Open incidents for late heartbeats (and send them to Alertmanager)."""
    db = app[DATABASE]
    async with run.commit() as conn:
        opened = await storage.open_late(conn, db)
    await alertmanager.after_change(app, opened)


async def _sync_config(app: web.Application) -> None:
    """Store the configured heartbeats (at the start of every leader's term)."""
    db, config = app[DATABASE], app[CONFIG]
    configured = [(b.name, _settings(b)) for b in config.heartbeats]
    async with db.transaction() as conn:
        resolved = await storage.sync_config(conn, db, configured, config.alerts.heartbeats_via_api)
    await alertmanager.after_change(app, resolved)


# ---------------------------------------------------------------- view and metric
def _view(app: web.Application) -> View:
    async def reload() -> None:
        rows = await storage.load(app[DATABASE])
        app[HEARTBEATS].rows = {r["name"]: r for r in rows}

    return View("heartbeats", ("heartbeats",), reload, min_interval=0.1)


def setup(app: web.Application) -> None:
    """Install the state, its view and metric, the check job and the configuration sync."""
    config = app[CONFIG]
    state = app[HEARTBEATS] = Heartbeats(
        {b.name: b for b in config.heartbeats},
        {b.alertname: b.name for b in config.heartbeats if b.alertname is not None},
    )
    app[VIEWS].add(_view(app))
    app[EXPOSITION].add("heartbeats", LastSeen(lambda: state.rows))
    leadership = app[LEADERSHIP]
    leadership.add_setup("heartbeats:config", lambda: _sync_config(app))
    leadership.add(
        Job(
            "heartbeats:check",
            config.alerts.heartbeat_check_interval.seconds,
            lambda run: _check(app, run),
        )
    )
