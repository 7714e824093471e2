"""Opaque cursors for keyset pagination over (time descending, id descending)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec

from exporter.domain.limits import INT8_MAX, Timestamp, time_problem
from exporter.web.errors import ApiError, Detail

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Page(msgspec.Struct, Generic[T], frozen=True):
    """A page of a list: ``{"items": [...], "next_cursor": "..." | null}``."""

    items: list[T]
    next_cursor: str | None


class Position(msgspec.Struct, frozen=True, array_like=True):
    """Where the previous page ended: the last row's time and id."""

    at: Timestamp
    id: Annotated[int, msgspec.Meta(ge=0, le=INT8_MAX)]


def encode_cursor(at: datetime, row_id: int) -> str:
    """A URL-safe cursor pointing just past the row (at, row_id)."""
    raw = msgspec.json.encode(Position(at.astimezone(UTC), row_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor names; 400 ``invalid_query`` when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = msgspec.json.decode(raw, type=Position)
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        position = None
    if position is None or time_problem(position.at):
        raise ApiError(
            400, "invalid_query", "the cursor is not valid", [Detail("cursor", "not a cursor")]
        )
    return position


def after_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """The (time, id) a list continues after, or None for the first page."""
    if not cursor:
        return None
    position = decode_cursor(cursor)
    return position.at, position.id


def next_cursor(rows: list[Any], limit: int, time_key: str) -> str | None:
    """The cursor after the last row when the page is full (fetch ``limit`` rows)."""
    if len(rows) < limit or not rows:
        return None
    last = rows[-1]
    return encode_cursor(last[time_key], last["id"])
