"""Saved views of the console: ``/api/v1/dashboards``, a person's filters and layout by name,
private unless shared, versioned like thresholds (storage in ``storage.dashboards``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from exporter.domain.limits import NoNul, Version
from exporter.features.core import CONFIG, DATABASE
from exporter.storage import dashboards as storage
from exporter.web.api import API, Route
from exporter.web.auth import PRINCIPAL, Principal
from exporter.web.errors import ApiError
from exporter.web.payload import (
    decode_json,
    json_response,
    media_type,
    parse_path,
    parse_query,
    read_body,
)

#: bytes of a view's layout and filters together, as JSON
MAX_VIEW_BYTES = 64 << 10
ViewName = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-][A-Za-z0-9 _.-]{0,99}$", max_length=100)
]
Owner = Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=200)]


class DashboardPath(msgspec.Struct, frozen=True):
    """The path of ``/api/v1/dashboards/{name}``."""

    name: ViewName


class DashboardQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Whose view (default: the caller's), and for a removal the version it must be at."""

    owner: Owner | None = None
    expect_version: Version | None = None


class DashboardIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A view to store: filters and layout (JSON objects, together at most 64 KiB), and
    whether others may open it. ``expect_version``: only over that version (else 409)."""

    filters: dict[str, Any] = {}
    layout: dict[str, Any] = {}
    shared: bool = False
    expect_version: Version | None = None


class Dashboard(msgspec.Struct, frozen=True):
    """A saved view."""

    name: str
    owner: str
    shared: bool
    filters: dict[str, Any]
    layout: dict[str, Any]
    version: int
    updated_at: datetime


class DashboardList(msgspec.Struct, frozen=True):
    """The views the caller may open: their own first, then shared ones (admins: all)."""

    items: list[Dashboard]


def _out(row: Any) -> Dashboard:
    config = msgspec.json.decode(row["config"])
    return Dashboard(
        name=row["name"],
        owner=row["owner"],
        shared=config.get("shared") is True,
        filters=config.get("filters", {}),
        layout=config.get("layout", {}),
        version=row["version"],
        updated_at=row["updated_at"],
    )


def _not_found(name: str, owner: str) -> ApiError:
    return ApiError(404, "not_found", f"no view {name!r} of {owner!r}")


def _target(request: web.Request, *, write: bool) -> tuple[str, str, DashboardQuery, Principal]:
    """(name, owner, query, principal); another's view is for admins to change."""
    name = parse_path(request, DashboardPath).name
    query = parse_query(request, DashboardQuery)
    principal = request[PRINCIPAL]
    owner = query.owner or principal.name
    if write and owner != principal.name and not principal.allows("admin"):
        raise ApiError(403, "forbidden", "only an admin may change another person's view")
    return name, owner, query, principal


async def list_dashboards(request: web.Request) -> web.Response:
    """``GET /api/v1/dashboards``: the views the caller may open."""
    principal = request[PRINCIPAL]
    rows = await storage.visible(request.app[DATABASE], principal.name, principal.allows("admin"))
    return json_response(DashboardList([_out(r) for r in rows]))


async def get_dashboard(request: web.Request) -> web.Response:
    """``GET /api/v1/dashboards/{name}``: a view of the caller (or ``owner``'s, when shared
    or the caller is an admin); 404 for one that does not exist or is private."""
    name, owner, _, principal = _target(request, write=False)
    row = await storage.get(request.app[DATABASE], name, owner)
    if row is None or storage.is_removed(row):
        raise _not_found(name, owner)
    view = _out(row)
    if owner != principal.name and not view.shared and not principal.allows("admin"):
        raise _not_found(name, owner)  # a private view is not there for others
    return json_response(view)


async def put_dashboard(request: web.Request) -> web.Response:
    """``PUT /api/v1/dashboards/{name}``: store a view (its next version); 413 over 64 KiB of
    filters and layout, 409 when ``expect_version`` is stale."""
    name, owner, _, _ = _target(request, write=True)
    media_type(request, ("application/json",))
    body = decode_json(
        await read_body(request, request.app[CONFIG].web.max_body_bytes), DashboardIn
    )
    size = len(msgspec.json.encode(body.filters)) + len(msgspec.json.encode(body.layout))
    if size > MAX_VIEW_BYTES:
        message = f"a view's filters and layout hold at most {MAX_VIEW_BYTES} bytes of JSON"
        raise ApiError(413, "payload_too_large", message)
    config = msgspec.json.encode(
        {"filters": body.filters, "layout": body.layout, "shared": body.shared}
    )
    try:
        row = await storage.save(
            request.app[DATABASE], name, owner, config.decode(), body.expect_version
        )
    except storage.VersionConflict:
        raise ApiError(409, "conflict", "the view changed since the expected version") from None
    return json_response(_out(row))


async def delete_dashboard(request: web.Request) -> web.Response:
    """``DELETE /api/v1/dashboards/{name}``: remove a view (its version still counts up)."""
    name, owner, query, _ = _target(request, write=True)
    try:
        await storage.remove(request.app[DATABASE], name, owner, query.expect_version)
    except storage.NoView:
        raise _not_found(name, owner) from None
    except storage.VersionConflict:
        raise ApiError(409, "conflict", "the view changed since the expected version") from None
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the saved-view routes (a person's own views need a valid token, no scope)."""
    api, tags = app[API], ("console",)
    for route in (
        Route("GET", "/api/v1/dashboards", list_dashboards, "Saved views the caller may open",
              "any", response=DashboardList, tags=tags),
        Route("GET", "/api/v1/dashboards/{name}", get_dashboard, "One saved view", "any",
              path_params=DashboardPath, query=DashboardQuery, response=Dashboard, tags=tags,
              responses={404: "no such view, or another person's private view"}),
        Route("PUT", "/api/v1/dashboards/{name}", put_dashboard, "Save a view (versioned)",
              "any", path_params=DashboardPath, query=DashboardQuery, body=DashboardIn,
              response=Dashboard, tags=tags,
              responses={403: "another person's view, and the caller is no admin",
                         409: "the view is not at expect_version",
                         413: "filters and layout exceed 64 KiB"}),
        Route("DELETE", "/api/v1/dashboards/{name}", delete_dashboard, "Remove a saved view",
              "any", path_params=DashboardPath, query=DashboardQuery, status=204, tags=tags,
              responses={403: "another person's view, and the caller is no admin",
                         404: "no such view", 409: "the view is not at expect_version"}),
    ):  # fmt: skip
        api.add(app, route)
