"""Kubernetes probes: /livez never touches the database; /readyz checks what serving needs."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from exporter.storage import StorageUnavailable
from exporter.web.keys import DATABASE, LIFECYCLE, LISTENER
from exporter.web.payload import json_response


async def livez(request: web.Request) -> web.Response:
    """200 while the process and its event loop run."""
    return json_response({"status": "ok"})


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
    checks["listener"] = {"ok": app[LISTENER].connected}
    checks["shutdown"] = {"ok": not app[LIFECYCLE].draining}
    return checks


async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers, migrations are applied and the listener is connected."""
    checks = await _checks(request.app)
    failed = [name for name, check in checks.items() if not check["ok"]]
    body: dict[str, Any] = {"status": "unavailable" if failed else "ok"}
    if failed:
        body["failed"] = failed
        body["checks"] = {name: checks[name] for name in failed}
    if "verbose" in request.query:
        body["checks"] = checks
    return json_response(body, status=503 if failed else 200)


def setup(app: web.Application) -> None:
    """Add the probes and their Prometheus-style aliases."""
    for path in ("/livez", "/healthz", "/-/healthy"):
        app.router.add_get(path, livez)
    for path in ("/readyz", "/-/ready"):
        app.router.add_get(path, readyz)
