"""Maintenance windows over HTTP: list, create, delete (state in ``features.maintenance``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from exporter.domain import maintenance as rules
from exporter.domain.limits import NoNul, RowId, Text, Timestamp
from exporter.features import maintenance
from exporter.features.core import CONFIG, DATABASE
from exporter.storage import maintenance as storage
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

TAGS = ("maintenance",)
Value = Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=500)]
LabelName = Annotated[str, NoNul, msgspec.Meta(max_length=200)]


class Matchers(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What a window silences: alerts whose labels equal every matcher given (``service``,
    ``alertname``, the data-quality ``source``, and any other labels). ``service`` puts
    that service in maintenance, ``source`` that source."""

    service: Value | None = None
    alertname: Value | None = None
    source: Value | None = None
    labels: dict[LabelName, Value] = {}


class NewWindow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A maintenance window: from ``starts_at`` (default now) to ``ends_at``, at most
    ``alerts.max_maintenance_window`` long; with ``recurrence`` again every day or week
    (fixed 24 h / 7 d periods, UTC), no occurrence starting after ``repeat_until``."""

    matchers: Matchers
    ends_at: Timestamp
    starts_at: Timestamp | None = None
    recurrence: Literal["daily", "weekly"] | None = None
    repeat_until: Timestamp | None = None
    comment: Annotated[str, NoNul, msgspec.Meta(max_length=2000)] = ""


class MaintenanceWindow(msgspec.Struct, frozen=True):
    """A stored window, whether it is in force now, its current (or next) occurrence, and
    its Alertmanager silence."""

    id: int
    matchers: Matchers
    starts_at: datetime
    ends_at: datetime
    recurrence: Literal["daily", "weekly"] | None
    repeat_until: datetime | None
    comment: str
    author: str
    #: in force now
    active: bool
    #: the occurrence in force now, else the next one (null: none is left)
    occurrence_starts_at: datetime | None
    occurrence_ends_at: datetime | None
    silence_id: str | None
    silence_starts_at: datetime | None
    silence_ends_at: datetime | None
    #: its silence waits for Alertmanager (retried by the leader), and why the last try failed
    alertmanager_pending: bool
    alertmanager_error: str | None
    deleted_at: datetime | None
    deleted_by: str | None
    created_at: datetime
    updated_at: datetime


class WindowPath(msgspec.Struct, frozen=True):
    """The path of ``/api/v1/maintenance/{id}``."""

    id: RowId


class WindowQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Filters of ``GET /api/v1/maintenance``: deleted windows only when asked."""

    include_deleted: bool = False
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    cursor: Text | None = None


def _flat(matchers: Matchers) -> dict[str, str]:
    flat = dict(matchers.labels)
    for name in rules.NAMED:
        value = getattr(matchers, name)
        if value is not None:
            flat[name] = value
    return flat


def _structured(flat: dict[str, str]) -> Matchers:
    named = {n: flat[n] for n in rules.NAMED if n in flat}
    labels = {k: v for k, v in flat.items() if k not in rules.NAMED}
    return Matchers(labels=labels, **named)


def as_window(app: web.Application, row: dict[str, Any]) -> MaintenanceWindow:
    """A window's row as the API shows it."""
    now = datetime.now(UTC)
    window = storage.window_of(row)
    occurrence = rules.current_or_next(window, now)
    return msgspec.convert(
        {
            **row,
            "matchers": _structured(row["matchers"]),
            "active": rules.occurrence(window, now) is not None,
            "occurrence_starts_at": occurrence[0] if occurrence else None,
            "occurrence_ends_at": occurrence[1] if occurrence else None,
            "alertmanager_pending": maintenance.pending(app, row, now),
        },
        MaintenanceWindow,
    )


def _invalid(problems: list[tuple[str, str]]) -> ApiError:
    details = [Detail(path, message) for path, message in problems]
    return ApiError(400, "invalid_body", "the body is not valid", details)


async def create_window(request: web.Request) -> web.Response:
    """``POST /api/v1/maintenance``: a window; 201. Its silence is made in Alertmanager
    (at once if it answers, else by the leader)."""
    media_type(request, ("application/json",))
    raw = await read_body(request, request.app[CONFIG].web.max_body_bytes)
    key = idempotency.key_of(request, raw)
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed
    body = decode_json(raw, NewWindow)
    now = datetime.now(UTC)
    starts_at = body.starts_at or now
    flat = _flat(body.matchers)
    longest = timedelta(seconds=request.app[CONFIG].alerts.max_maintenance_window.seconds)
    problems = rules.problems(
        flat, starts_at, body.ends_at, body.recurrence, body.repeat_until, longest
    )
    problems += [
        (f"matchers.labels.{name}", f"use matchers.{name}")
        for name in body.matchers.labels
        if name in rules.NAMED
    ]
    if not problems and body.recurrence is None and body.ends_at <= now:
        problems.append(("ends_at", "must be in the future"))
    if problems:
        raise _invalid(problems)
    principal = request.get(PRINCIPAL)
    row = await maintenance.create(
        request.app, flat, starts_at, body.ends_at, body.recurrence, body.repeat_until,
        body.comment, principal.name if principal else "anonymous", key,
        lambda r: idempotency.render(201, as_window(request.app, r)),
    )  # fmt: skip
    if isinstance(row, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    return json_response(as_window(request.app, row), status=201)


async def list_windows(request: web.Request) -> web.Response:
    """``GET /api/v1/maintenance``: windows, newest start first."""
    query = parse_query(request, WindowQuery)
    after = after_cursor(query.cursor)
    deleted = None if query.include_deleted else False
    rows = await storage.page(request.app[DATABASE], deleted, after, query.limit)
    items = [as_window(request.app, r) for r in rows]
    return json_response(Page(items, next_cursor(rows, query.limit, "starts_at")))


async def delete_window(request: web.Request) -> web.Response:
    """``DELETE /api/v1/maintenance/{id}``: the window ends now (idempotent) and its silence
    is expired; 200 with the window."""
    window_id = parse_path(request, WindowPath).id
    key = idempotency.key_of(request, b"")
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed

    def missing() -> ApiError:
        return ApiError(404, "not_found", f"maintenance window {window_id} does not exist")

    def render(row: dict[str, Any] | None) -> tuple[int, bytes]:
        if row is None:
            return idempotency.render_error(missing())
        return idempotency.render(200, as_window(request.app, row))

    principal = request.get(PRINCIPAL)
    by = principal.name if principal else "anonymous"
    row = await maintenance.delete(request.app, window_id, by, key, render)
    if isinstance(row, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    if row is None:
        raise missing()
    return json_response(as_window(request.app, row))


def setup(app: web.Application) -> None:
    """Register the maintenance routes."""
    api = app[API]
    for route in (
        Route("GET", "/api/v1/maintenance", list_windows, "List maintenance windows", "read",
              query=WindowQuery, response=Page[MaintenanceWindow], tags=TAGS),
        Route("POST", "/api/v1/maintenance", create_window, "Create a maintenance window",
              "admin", body=NewWindow, response=MaintenanceWindow, status=201, tags=TAGS,
              idempotent=True),
        Route("DELETE", "/api/v1/maintenance/{id}", delete_window,
              "Delete a maintenance window", "admin", response=MaintenanceWindow, tags=TAGS,
              responses={404: "no such window"}, path_params=WindowPath, idempotent=True),
    ):  # fmt: skip
        api.add(app, route)
