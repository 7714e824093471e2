"""The Alertmanager webhook payload (version 4): its types, its checks and its mapping.

Strict where the bridge depends on a field (version, status, labels, startsAt, fingerprint),
tolerant of every field it does not know (``truncatedAlerts``, future ones).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from exporter.domain import alert as lifecycle
from exporter.domain.alertmanager import parse_time
from exporter.domain.health import MAX_SERVICE
from exporter.domain.limits import (
    EARLIEST,
    LATEST,
    NoNul,
    Text,
    Timestamp,
    as_utc,
    join,
    time_problem,
    value_problems,
)

Fingerprint = Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=200)]
# Alertmanager sends Go's zero time (0001-01-01T00:00:00Z) while an alert has no end, so
# the range of a Timestamp applies only to the end of a resolved alert
EndsAt = Annotated[
    datetime,
    msgspec.Meta(tz=True, extra_json_schema={"description": "RFC 3339; Go's zero time: no end"}),
]
# Go's zero time: Alertmanager sends it as endsAt of alerts that have no end yet.
_ZERO_YEAR = 1
_LONG_SERVICE = f"must be at most {MAX_SERVICE} characters (it becomes service_name)"
Labels = Annotated[
    dict[Text, Text],
    msgspec.Meta(
        extra_json_schema={
            "properties": {"service": {"type": "string", "maxLength": MAX_SERVICE}},
            "description": f"service (or job, without service) at most {MAX_SERVICE} characters",
        }
    ),
]


class WebhookAlert(msgspec.Struct, frozen=True, rename="camel"):
    """One alert of a notification.

    ``endsAt`` counts only for a resolved alert, in the range of ``startsAt``.
    """

    status: lifecycle.Signal
    labels: Labels
    starts_at: Timestamp
    fingerprint: Fingerprint
    annotations: dict[Text, Text] = {}
    ends_at: EndsAt | None = None
    generator_url: Text = msgspec.field(default="", name="generatorURL")


class Notification(msgspec.Struct, frozen=True, rename="camel"):
    """A webhook notification: one group of alerts."""

    version: Literal["4"]
    status: lifecycle.Signal
    alerts: list[WebhookAlert]
    receiver: str = ""
    group_key: str = ""
    group_labels: dict[str, str] = {}
    common_labels: dict[str, str] = {}
    common_annotations: dict[str, str] = {}
    external_url: str = msgspec.field(default="", name="externalURL")


class WireAlert(WebhookAlert, frozen=True, rename="camel"):
    """A webhook alert as decoded: ``startsAt`` kept as text, read to the millisecond by
    :func:`starts_at` (Alertmanager sends nanoseconds; its API, which reconciliation reads,
    milliseconds: both must name the incident alike)."""

    starts_at: Annotated[str, msgspec.Meta(max_length=64)]  # type: ignore[assignment]


class WireNotification(Notification, frozen=True, rename="camel"):
    """A notification as decoded (its alerts :class:`WireAlert`)."""

    alerts: list[WireAlert]  # type: ignore[assignment]


decoder = msgspec.json.Decoder(WireNotification)


def starts_at(alert: WireAlert) -> datetime:
    """The alert's start, truncated to the millisecond; ValueError when it is no time."""
    return parse_time(alert.starts_at)


def _end(alert: WebhookAlert) -> datetime | None:
    """The end we store: a resolved alert's, unless it is Go's zero time."""
    ends_at = alert.ends_at if alert.status == "resolved" else None
    if ends_at is not None and ends_at.year <= _ZERO_YEAR:
        return None
    return ends_at


def to_record(alert: WireAlert) -> lifecycle.AlertRecord:
    """Map one webhook alert onto our columns (the spec's label mapping).

    Times go to PostgreSQL as JSON text, which it parses only with offsets of at most 15:59:
    they are sent in UTC (RFC 3339 allows offsets up to 23:59).
    """
    labels, annotations, status = alert.labels, alert.annotations, alert.status
    ends_at = _end(alert)
    # positional: this runs for every alert of every webhook
    return lifecycle.AlertRecord(
        alert.fingerprint,
        as_utc(starts_at(alert)),
        status,
        lifecycle.alert_type_of(labels),
        lifecycle.severity_of(labels),
        lifecycle.title_of(labels, annotations, alert.fingerprint),
        lifecycle.description_of(annotations),
        lifecycle.service_of(labels),
        labels,
        annotations,
        alert.generator_url or None,
        None if ends_at is None else as_utc(ends_at),
    )


def problems(notification: WireNotification) -> list[tuple[str, str]]:
    """Values that cannot be stored (NUL characters, times out of range) as (path, message),
    found before any write: a 5xx would make Alertmanager retry the payload forever."""
    found: list[tuple[str, str]] = []
    for i, alert in enumerate(notification.alerts):
        labels, annotations, ends_at = alert.labels, alert.annotations, _end(alert)
        service = lifecycle.service_of(labels) or ""
        try:
            start: datetime | None = starts_at(alert)
        except ValueError:
            start = None
        # fast path, one scan per alert: almost every alert holds no NUL and sane times
        text = "".join((*labels, *labels.values(), *annotations, *annotations.values()))
        if (
            start is not None
            and "\x00" not in text
            and "\x00" not in alert.fingerprint + alert.generator_url
            and EARLIEST <= start <= LATEST
            and (ends_at is None or EARLIEST <= ends_at <= LATEST)
            and len(service) <= MAX_SERVICE
        ):
            continue
        where = f"alerts[{i}]"
        # endsAt is judged as stored (Go's zero time stands for "no end")
        found += [(join(where, p), m) for p, m in value_problems(alert) if p != "endsAt"]
        problem = "expected an RFC 3339 timestamp with an offset" if start is None else (
            time_problem(start))  # fmt: skip
        if problem:
            found.append((f"{where}.startsAt", problem))
        problem = None if ends_at is None else time_problem(ends_at)
        if problem:
            found.append((f"{where}.endsAt", problem))
        if len(service) > MAX_SERVICE:
            # it becomes service_name, which is indexed (a btree entry holds at most 2704 bytes)
            label = "service" if labels.get("service") else "job"
            found.append((f"{where}.labels.{label}", _LONG_SERVICE))
    return found
