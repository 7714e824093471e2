"""Kubernetes probes: /livez never touches the database; /readyz checks what serving needs.

Readiness: the database answers, migrations are applied, a notification sent through the pool
comes back on the listener (proof that changes reach this replica: behind a transaction
pooler LISTEN "succeeds" and nothing arrives), the views are loaded, no critical background
task keeps failing, and the service is not shutting down. ``?verbose`` adds every check,
every background task with its last success, and this replica's role.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from exporter.features.core import DATABASE, LEADERSHIP, LIFECYCLE, LISTENER, SUPERVISOR, VIEWS
from exporter.storage import StorageUnavailable
from exporter.web.payload import json_response

ROUND_TRIP_TIMEOUT = 2.0


async def livez(request: web.Request) -> web.Response:
    """200 while the process and its event loop run."""
    return json_response({"status": "ok"})


async def _listener(app: web.Application) -> dict[str, Any]:
    listener, db = app[LISTENER], app[DATABASE]
    if not listener.connected:
        return {"ok": False, "error": listener.last_error or "not connected"}
    token, arrived = listener.expect_ping()
    try:
        await db.notify(listener.ping_channel, token)
        async with asyncio.timeout(ROUND_TRIP_TIMEOUT):
            await arrived
    except TimeoutError:
        return {
            "ok": False,
            "error": "a notification sent through the pool did not arrive on the listener: "
            "is database.direct_url (or database.direct_url_env, database.direct_url_file) a "
            "direct (or session-mode) connection, not a transaction pooler?",
        }
    except StorageUnavailable as exc:
        return {"ok": False, "error": str(exc)}
    finally:
        listener.forget_ping(token)
    return {"ok": True}


async def _checks(app: web.Application) -> dict[str, dict[str, Any]]:
    db = app[DATABASE]
    checks: dict[str, dict[str, Any]] = {}
    try:
        await db.ping()
        checks["database"] = {"ok": True}
    except StorageUnavailable as exc:
        checks["database"] = {"ok": False, "error": db.last_error or str(exc)}
    checks["migrations"] = {"ok": db.migrated}
    if db.migrations_error:
        checks["migrations"]["error"] = db.migrations_error
    if not db.migrated:
        # nothing below can work before the schema is there: name the cause, not its echoes
        waiting = {"ok": None, "skipped": "waiting for the database and its migrations"}
        checks["listener"] = checks["views"] = checks["tasks"] = waiting
    else:
        checks["listener"] = await _listener(app)
        checks["views"] = {"ok": app[VIEWS].ready}
        failing = app[SUPERVISOR].unhealthy()
        checks["tasks"] = {"ok": not failing, **({"failing": failing} if failing else {})}
    checks["shutdown"] = {"ok": not app[LIFECYCLE].draining}
    return checks


async def readyz(request: web.Request) -> web.Response:
    """200 when this replica can serve correct answers; else 503 naming what failed."""
    app = request.app
    checks = await _checks(app)
    failed = [name for name, check in checks.items() if check["ok"] is False]
    body: dict[str, Any] = {"status": "unavailable" if failed else "ok"}
    if failed:
        body["failed"] = failed
        body["checks"] = {name: checks[name] for name in failed}
    if "verbose" in request.query:
        body["checks"] = checks
        body["replica"] = app[LEADERSHIP].describe()
        body["tasks"] = app[SUPERVISOR].describe()
    return json_response(body, status=503 if failed else 200)


def setup(app: web.Application) -> None:
    """Add the probes and their Prometheus-style aliases."""
    for path in ("/livez", "/healthz", "/-/healthy"):
        app.router.add_get(path, livez)
    for path in ("/readyz", "/-/ready"):
        app.router.add_get(path, readyz)
