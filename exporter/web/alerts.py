"""The alerts API: manual alerts, lists, and the lifecycle (the webhook is
``web.alertmanager``). State and background work are in ``features.alerts``, the wire types in
``domain.alert_records``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from exporter.config.types import parse_duration
from exporter.domain import alert as lifecycle
from exporter.domain import alertmanager as am
from exporter.domain.alert_records import (
    MAX_AUTO_RESOLVE,
    Acknowledge,
    Alert,
    AlertEvent,
    AlertPath,
    AlertQuery,
    AlertWithEvents,
    NewAlert,
    NewNote,
    Resolve,
    ResolveByKey,
    Unacknowledge,
)
from exporter.features import alertmanager, alerts
from exporter.features.core import CONFIG, DATABASE
from exporter.storage import alerts as storage
from exporter.storage.idempotency import Duplicate
from exporter.web import idempotency
from exporter.web.api import API, Route
from exporter.web.auth import PRINCIPAL
from exporter.web.errors import ApiError, Detail
from exporter.web.pagination import Page, after_cursor, next_cursor
from exporter.web.payload import (
    decode_json,
    json_response,
    media_type,
    parse_path,
    parse_query,
    read_body,
)

log = logging.getLogger(__name__)
# ----------------------------------------------------------------------------- handlers


def as_alert(app: web.Application, row: dict[str, Any]) -> Alert:
    """An incident's row as the API shows it, with the Alertmanager work it waits for."""
    waiting = am.pending(row, datetime.now(UTC), alertmanager.configured(app))
    return msgspec.convert({**row, "alertmanager_pending": waiting}, Alert)


async def create_alert(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts``: a manual incident, source ``api``; 201, or 200 with the open
    incident holding the same ``dedup_key``. Sent to Alertmanager when one is configured."""
    media_type(request, ("application/json",))
    raw = await read_body(request, request.app[CONFIG].web.max_body_bytes)
    key = idempotency.key_of(request, raw)
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed
    body = decode_json(raw, NewAlert)
    after = _seconds(body.auto_resolve_after)
    principal = request.get(PRINCIPAL)

    def render(found: tuple[dict[str, Any], bool]) -> tuple[int, bytes]:
        row, created = found
        return idempotency.render(201 if created else 200, as_alert(request.app, row))

    found = await alerts.create(
        request.app,
        (body.alert_type, body.severity, body.title, body.description, body.service,
         msgspec.json.encode(body.labels).decode()),
        after,
        principal.name if principal else "api",
        body.dedup_key,
        key,
        render,
    )  # fmt: skip
    if isinstance(found, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    row, created = found
    return json_response(as_alert(request.app, row), status=201 if created else 200)


def _seconds(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        raise ApiError(400, "invalid_body", "the body is not valid",
                       [Detail("auto_resolve_after", str(exc))]) from None  # fmt: skip
    if not 0 < seconds <= MAX_AUTO_RESOLVE:
        raise ApiError(400, "invalid_body", "the body is not valid",
                       [Detail("auto_resolve_after", "must be between 0 and 366d")])  # fmt: skip
    return seconds


async def list_alerts(request: web.Request) -> web.Response:
    """``GET /api/v1/alerts``: newest first, filtered, one page."""
    query = parse_query(request, AlertQuery)
    after = after_cursor(query.cursor)
    filters: dict[str, Any] = {
        "status": _as_list(query.status),
        "severity": _as_list(query.severity),
        "alert_type": _as_list(query.alert_type),
        "service": query.service,
        "since": query.since,
        "until": query.until,
    }
    rows = await storage.list_alerts(request.app[DATABASE], filters, after, query.limit)
    items = [as_alert(request.app, r) for r in rows]
    return json_response(Page(items, next_cursor(rows, query.limit, "starts_at")))


def _as_list(value: str | list[Any] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


async def get_alert(request: web.Request) -> web.Response:
    """``GET /api/v1/alerts/{id}``: one incident with its event history."""
    found = await storage.get_alert(request.app[DATABASE], _alert_id(request))
    if found is None:
        raise _not_found(request)
    row, events = found
    alert = msgspec.structs.asdict(as_alert(request.app, row))
    return json_response(msgspec.convert({**alert, "events": events}, AlertWithEvents))


async def acknowledge_alert(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts/{id}/acknowledge``: idempotent; 409 when resolved. With
    Alertmanager, a silence is made (and extended while the alert fires)."""
    alert_id = _alert_id(request)
    raw = await _small_body(request)
    body = decode_json(raw, Acknowledge)
    if body.until is not None and body.until <= datetime.now(UTC):
        raise ApiError(400, "invalid_body", "the body is not valid",
                       [Detail("until", "must be in the future")])  # fmt: skip

    async def action(*args: Any) -> Any:
        return await alerts.acknowledge(request.app, alert_id, body.by, body.note, body.until,
                                        *args)  # fmt: skip

    return await _change(request, raw, alert_id, action)


async def unacknowledge_alert(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts/{id}/unacknowledge``: back to active, its silence expired;
    idempotent; 409 when resolved."""
    alert_id = _alert_id(request)
    raw = await _small_body(request)
    body = decode_json(raw, Unacknowledge)

    async def action(*args: Any) -> Any:
        return await alerts.unacknowledge(request.app, alert_id, body.by, body.note, *args)

    return await _change(request, raw, alert_id, action)


async def resolve_alert(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts/{id}/resolve``: idempotent; expires the incident's silence."""
    alert_id = _alert_id(request)
    raw = await _small_body(request)
    body = decode_json(raw, Resolve)

    async def action(*args: Any) -> Any:
        return await alerts.resolve(request.app, alert_id, body.by, body.note, *args)

    return await _change(request, raw, alert_id, action)


async def resolve_by_key(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts/resolve``: resolve the open API alert holding ``dedup_key``;
    404 when none is open."""
    raw = await _small_body(request)
    body = decode_json(raw, ResolveByKey)
    principal = request.get(PRINCIPAL)
    by = body.by or (principal.name if principal else "api")

    def missing() -> ApiError:
        return ApiError(404, "not_found", "no open alert holds this dedup_key",
                        [Detail("dedup_key", "no open alert holds it")])  # fmt: skip

    async def action(*args: Any) -> Any:
        return await alerts.resolve_by_key(request.app, body.dedup_key, by, body.note, *args)

    return await _change(request, raw, None, action, missing)


async def add_note(request: web.Request) -> web.Response:
    """``POST /api/v1/alerts/{id}/notes``: keep a note as an event (status unchanged); 201
    with the event."""
    alert_id = _alert_id(request)
    raw = await _small_body(request)
    body = decode_json(raw, NewNote)
    key = idempotency.key_of(request, raw)
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed

    def render(event: dict[str, Any] | None) -> tuple[int, bytes]:
        if event is None:
            return idempotency.render_error(_not_found(request))
        return idempotency.render(201, msgspec.convert(event, AlertEvent))

    event = await alerts.add_note(request.app, alert_id, body.by, body.note, key, render)
    if isinstance(event, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    if event is None:
        raise _not_found(request)
    return json_response(msgspec.convert(event, AlertEvent), status=201)


async def _change(
    request: web.Request,
    raw: bytes,
    alert_id: int | None,
    action: Callable[..., Awaitable[Any]],
    missing: Callable[[], ApiError] | None = None,
) -> web.Response:
    key = idempotency.key_of(request, raw)
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed
    absent = missing or (lambda: _not_found(request))

    def render(row: dict[str, Any] | None) -> tuple[int, bytes]:
        if row is None:
            return idempotency.render_error(absent())
        return idempotency.render(200, as_alert(request.app, row))

    try:
        row = await action(key, render)
    except lifecycle.Conflict as exc:
        what = f"alert {alert_id}" if alert_id is not None else "the alert"
        raise ApiError(409, "conflict", f"{what}: {exc}") from None
    if isinstance(row, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    if row is None:
        raise absent()
    return json_response(as_alert(request.app, row))


async def _small_body(request: web.Request) -> bytes:
    media_type(request, ("application/json",))
    return await read_body(request, request.app[CONFIG].web.max_body_bytes)


def _alert_id(request: web.Request) -> int:
    return parse_path(request, AlertPath).id


def _not_found(request: web.Request) -> ApiError:
    return ApiError(404, "not_found", f"alert {request.match_info['id']} does not exist")


def setup(app: web.Application) -> None:
    """Register the alert routes."""
    api, tags = app[API], ("alerts",)
    conflict = {404: "no such alert", 409: "the alert is resolved"}
    for route in (
        Route("GET", "/api/v1/alerts", list_alerts, "List alerts", "read", query=AlertQuery,
              response=Page[Alert], tags=tags),
        Route("POST", "/api/v1/alerts", create_alert, "Create an alert", "write", body=NewAlert,
              response=Alert, status=201, tags=tags, idempotent=True,
              also={200: "an open alert holds the dedup_key: that alert"}),
        Route("POST", "/api/v1/alerts/resolve", resolve_by_key,
              "Resolve the open API alert with a dedup key", "write", body=ResolveByKey,
              response=Alert, tags=tags, responses={404: "no open alert holds the key"},
              idempotent=True),
        Route("GET", "/api/v1/alerts/{id}", get_alert, "One alert with its events", "read",
              response=AlertWithEvents, tags=tags, responses={404: "no such alert"},
              path_params=AlertPath, router_path="/api/v1/alerts/{id:(?!resolve$)[^/]+}"),
        Route("POST", "/api/v1/alerts/{id}/acknowledge", acknowledge_alert,
              "Acknowledge an alert", "ack", body=Acknowledge, response=Alert, tags=tags,
              responses=conflict, path_params=AlertPath, idempotent=True),
        Route("POST", "/api/v1/alerts/{id}/unacknowledge", unacknowledge_alert,
              "Return an acknowledged alert to active", "ack", body=Unacknowledge,
              response=Alert, tags=tags, responses=conflict, path_params=AlertPath,
              idempotent=True),
        Route("POST", "/api/v1/alerts/{id}/resolve", resolve_alert, "Resolve an alert",
              "ack", body=Resolve, response=Alert, tags=tags, responses={404: "no such alert"},
              path_params=AlertPath, idempotent=True),
        Route("POST", "/api/v1/alerts/{id}/notes", add_note, "Keep a note on an alert", "ack",
              body=NewNote, response=AlertEvent, status=201, tags=tags,
              responses={404: "no such alert"}, path_params=AlertPath, idempotent=True),
    ):  # fmt: skip
        api.add(app, route)
