"""Heartbeats over HTTP: beats and the list (state in ``features.heartbeats``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from exporter.config.types import parse_duration
from exporter.domain.heartbeat import NAME
from exporter.features import heartbeats
from exporter.features.core import CONFIG
from exporter.storage.idempotency import Duplicate
from exporter.web import idempotency
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail
from exporter.web.payload import decode_json, json_response, media_type, parse_path, read_body

TAGS = ("heartbeats",)
MAX_SECONDS = 366 * 86400
DurationText = Annotated[
    str, msgspec.Meta(pattern=r"^\s*(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+\s*$", max_length=64)
]
Interval = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
Grace = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]


class HeartbeatPath(msgspec.Struct, frozen=True):
    """The path of ``/api/v1/heartbeats/{name}``."""

    name: Annotated[str, msgspec.Meta(pattern=NAME.pattern)]


class Beat(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An optional body of a beat: the settings of a heartbeat created through the API
    (``alerts.heartbeats_via_api``), a duration (``15m``) or seconds; its first beat must
    give the interval. Configured heartbeats take none."""

    interval: DurationText | Interval | None = None
    grace: DurationText | Grace | None = None


class HeartbeatOut(msgspec.Struct, frozen=True):
    """A heartbeat: its settings (seconds), its last beat, when it turns late, and the open
    incident of a late one."""

    name: str
    interval: float
    grace: float
    origin: Literal["config", "api"]
    enabled: bool
    title: str | None
    severity: str
    last_beat_at: datetime | None
    beats: int
    due_at: datetime
    late: bool
    alert_id: int | None
    created_at: datetime
    updated_at: datetime


class HeartbeatList(msgspec.Struct, frozen=True):
    """Every heartbeat, by name."""

    items: list[HeartbeatOut]
    next_cursor: str | None = None


def as_heartbeat(row: dict[str, Any]) -> HeartbeatOut:
    """A heartbeat's row as the API shows it."""
    since = row["last_beat_at"] or row["created_at"]
    due = since + timedelta(seconds=row["interval_seconds"] + row["grace_seconds"])
    return msgspec.convert(
        {
            **row,
            "interval": row["interval_seconds"],
            "grace": row["grace_seconds"],
            "due_at": due,
            "late": row["enabled"] and datetime.now(UTC) > due,
            "alert_id": row.get("alert_id"),
        },
        HeartbeatOut,
    )


def _seconds(value: str | float | None, field: str, least: float) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except ValueError as exc:
        raise _invalid(field, str(exc)) from None
    if not least <= seconds <= MAX_SECONDS or (field == "interval" and seconds == 0):
        raise _invalid(field, "must be positive and at most 366d" if field == "interval"
                       else "must be at most 366d")  # fmt: skip
    return seconds


def _invalid(path: str, message: str) -> ApiError:
    return ApiError(400, "invalid_body", "the request is not valid", [Detail(path, message)])


async def post_beat(request: web.Request) -> web.Response:
    """``POST /api/v1/heartbeats/{name}``: a beat; it resolves the heartbeat's incident."""
    name = parse_path(request, HeartbeatPath).name
    raw = await read_body(request, request.app[CONFIG].web.max_body_bytes)
    key = idempotency.key_of(request, raw)
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed
    body = Beat()
    if raw.strip():
        media_type(request, ("application/json",))
        body = decode_json(raw, Beat)
    interval = _seconds(body.interval, "interval", 0.0)
    grace = _seconds(body.grace, "grace", 0.0)
    try:
        row = await heartbeats.beat(
            request.app, name, interval, grace, key,
            lambda r: idempotency.render(200, as_heartbeat(r)) if r is not None
            else idempotency.render_error(_invalid("interval", NEEDS_INTERVAL)),
        )  # fmt: skip
    except heartbeats.Unknown:
        raise _invalid(
            "name",
            "not a configured heartbeat (heartbeats: in the configuration file; "
            "alerts.heartbeats_via_api is off)",
        ) from None
    except heartbeats.SetInConfig:
        raise _invalid(
            "interval" if body.interval is not None else "grace",
            "this heartbeat is configured in the configuration file, which sets it",
        ) from None
    except heartbeats.NeedsInterval:
        raise _invalid("interval", NEEDS_INTERVAL) from None
    if isinstance(row, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    return json_response(as_heartbeat(row))


NEEDS_INTERVAL = "required to create a heartbeat through the API (its first beat)"


async def list_heartbeats(request: web.Request) -> web.Response:
    """``GET /api/v1/heartbeats``: every heartbeat, by name."""
    rows = await heartbeats.listing(request.app)
    return json_response(HeartbeatList([as_heartbeat(r) for r in rows]))


def setup(app: web.Application) -> None:
    """Register the heartbeat routes."""
    api = app[API]
    for route in (
        Route("GET", "/api/v1/heartbeats", list_heartbeats, "List heartbeats", "read",
              response=HeartbeatList, tags=TAGS),
        Route("POST", "/api/v1/heartbeats/{name}", post_beat, "Record a beat", "write",
              body=Beat, response=HeartbeatOut, tags=TAGS, path_params=HeartbeatPath,
              idempotent=True),
    ):  # fmt: skip
        api.add(app, route)
