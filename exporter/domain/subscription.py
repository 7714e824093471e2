"""What a stream client asked for, and whether a change matches it (pure)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from exporter.domain.limits import INT8_MAX

Channel = Literal["health_metrics", "system_alerts", "data_quality"]


class Filter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Optional narrowing: one service, or a set of severities (alerts only)."""

    service: str | None = None
    severity: list[Literal["low", "medium", "high", "critical"]] | None = None
    source: str | None = None


class Subscribe(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="subscribe"):
    """``{"type": "subscribe", "channels": [...], "after": {...}, "filter": {...}}``."""

    channels: list[Channel]
    after: dict[Channel, str] = {}
    filter: Filter = Filter()


class Event(msgspec.Struct, frozen=True, tag="event"):
    """``{"type": "event", "channel", "op", "cursor", "data"}``."""

    channel: str
    op: str
    cursor: str
    data: dict[str, Any]


def parse_cursor(value: str) -> int:
    """A stream cursor is the decimal id of the last change the client saw."""
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > INT8_MAX:
        raise ValueError("a cursor is the decimal id of the last change seen")
    return int(value)


def matches(flt: Filter, channel: str, data: dict[str, Any]) -> bool:
    """Whether a changed row passes the client's filter.

    ``service`` narrows health samples and alerts (their ``service_name``), ``severity`` narrows
    alerts, and ``source`` narrows quality measurements.
    """
    service = data.get("service_name")
    if channel != "data_quality" and flt.service is not None and service != flt.service:
        return False
    severity = data.get("severity")
    if channel == "system_alerts" and flt.severity is not None and severity not in flt.severity:
        return False
    source = data.get("source")
    return not (channel == "data_quality" and flt.source is not None and source != flt.source)
