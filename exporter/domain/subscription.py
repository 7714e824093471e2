"""What a stream client asked for, whether a change matches it, and cursors (pure)."""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from exporter.domain.limits import INT8_MAX

Channel = Literal["health_metrics", "system_alerts", "data_quality", "status_changes"]
Status = Literal["healthy", "warning", "critical", "unknown", "active", "acknowledged", "resolved"]
#: a position in the change log: (transaction id, row id), compared as a pair
Cursor = tuple[int, int]

_CURSOR = re.compile(r"(0|[1-9][0-9]{0,18})-(0|[1-9][0-9]{0,18})")


class Filter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Optional narrowing of the changes a client gets (each applies where the field exists)."""

    service: str | None = None
    severity: list[Literal["low", "medium", "high", "critical"]] | None = None
    source: str | None = None
    status: list[Status] | None = None
    metric_type: str | None = None
    dataset: str | None = None


class Subscribe(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="subscribe"):
    """``{"type": "subscribe", "channels": [...], "after": {...}, "filter": {...}}``.

    Cursors are one order over every channel; of several in ``after`` the latest counts.
    """

    channels: list[Channel]
    after: dict[Channel, str] = {}
    filter: Filter = Filter()


class Event(msgspec.Struct, frozen=True, tag="event"):
    """``{"type": "event", "channel", "op", "cursor", "data"}``."""

    channel: str
    op: str
    cursor: str
    data: dict[str, Any]


class Reset(msgspec.Struct, frozen=True, tag="reset"):
    """``{"type": "reset", "cursor", "message"}``: changes after the client's cursor are no
    longer kept; it reloads its state (the REST API) and follows on from ``cursor``."""

    cursor: str
    message: str


def parse_cursor(value: str) -> Cursor:
    """A cursor is ``<xid>-<id>``, two decimal numbers (as the stream sent it)."""
    match = _CURSOR.fullmatch(value)
    if match is None:
        raise ValueError("a cursor is <transaction id>-<change id>, as the stream sent it")
    xid, row = int(match.group(1)), int(match.group(2))
    if xid > INT8_MAX or row > INT8_MAX:
        raise ValueError("a cursor is <transaction id>-<change id>, as the stream sent it")
    return (xid, row)


def format_cursor(cursor: Cursor) -> str:
    """The text of a cursor."""
    return f"{cursor[0]}-{cursor[1]}"


def latest(cursors: list[str]) -> Cursor | None:
    """The latest of several cursors (raises ValueError naming a malformed one)."""
    parsed = [parse_cursor(c) for c in cursors]
    return max(parsed, default=None)


def matches(flt: Filter, channel: str, data: dict[str, Any]) -> bool:
    """Whether a change passes the client's filter.

    ``service`` narrows health samples, alerts and health transitions (``service_name``),
    ``severity`` alerts, ``source`` and ``dataset`` quality measurements and transitions,
    ``metric_type`` health samples and transitions, ``status`` samples, measurements, alerts
    and transitions (the status they reach). A transition of the overall verdict passes every
    filter but ``status``.
    """
    if flt.status is not None and data.get("status") not in flt.status:
        return False
    if channel == "status_changes" and data.get("kind") == "overall":
        return True
    health_like = channel == "health_metrics" or (
        channel == "status_changes" and data.get("kind") == "health"
    )
    quality_like = channel == "data_quality" or (
        channel == "status_changes" and data.get("kind") == "quality"
    )
    if flt.service is not None and not quality_like and data.get("service_name") != flt.service:
        return False
    if flt.metric_type is not None and health_like and data.get("metric_type") != flt.metric_type:
        return False
    if flt.source is not None and quality_like and data.get("source") != flt.source:
        return False
    if flt.dataset is not None and quality_like and data.get("dataset") != flt.dataset:
        return False
    severity = data.get("severity")
    alert = channel == "system_alerts"
    return not (alert and flt.severity is not None and severity not in flt.severity)
