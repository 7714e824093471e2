"""The shapes of alert data the API takes and returns (they also describe it in OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from exporter.domain import alert as lifecycle
from exporter.domain.limits import NoNul, RowId, Text, Timestamp

Title = Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=500)]
Name = Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=200)]
Note = Annotated[str, NoNul, msgspec.Meta(max_length=2000)]
MAX_AUTO_RESOLVE = 366 * 86400
# a Prometheus-style duration (30m, 1h30m), as config.types.parse_duration reads it
DurationText = Annotated[
    str, msgspec.Meta(pattern=r"^\s*(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+\s*$", max_length=64)
]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_AUTO_RESOLVE)]
DedupKey = Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=256)]


class Alert(msgspec.Struct, frozen=True):
    """One incident: the columns of ``system_alerts``."""

    id: int
    fingerprint: str
    alert_type: lifecycle.AlertType
    severity: lifecycle.Severity
    status: lifecycle.Status
    title: str
    description: str | None
    service_name: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    source: lifecycle.Source
    generator_url: str | None
    starts_at: datetime
    ends_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    auto_resolve: bool
    auto_resolve_at: datetime | None
    silence_id: str | None
    created_at: datetime
    updated_at: datetime
    #: API alerts: the key that makes a second creation return this incident while open
    dedup_key: str | None = None
    #: an acknowledgement that ends by itself (back to active) at this time
    acknowledged_until: datetime | None = None
    #: when the acknowledgement's silence stops (in the past once expired)
    silence_ends_at: datetime | None = None
    #: Alertmanager silences (made there or by an acknowledgement) that silence the alert,
    #: and alerts that inhibit it, as the last reconciliation found them
    silenced_by: list[str] = []
    inhibited_by: list[str] = []
    #: the alert's state in Alertmanager at the last reconciliation (null: not seen)
    alertmanager_state: Literal["active", "suppressed", "unprocessed"] | None = None
    #: alerts we send: the fingerprint Alertmanager gave it, and when it took it last
    alertmanager_fingerprint: str | None = None
    sent_at: datetime | None = None
    #: Alertmanager work this incident still waits for (retried by the leader), and why
    #: the last try failed
    alertmanager_pending: list[Literal["silence", "expire_silence", "send", "send_resolved"]] = []
    alertmanager_error: str | None = None
    #: the maintenance window in force when the incident opened, if one matched it
    maintenance_id: int | None = None


class AlertEvent(msgspec.Struct, frozen=True):
    """One lifecycle change of an incident."""

    id: int
    from_status: lifecycle.Status | None
    to_status: lifecycle.Status
    actor: str
    note: str | None
    at: datetime


class AlertWithEvents(Alert, frozen=True):
    """An incident and its history, oldest change first."""

    events: list[AlertEvent] = []


class NewAlert(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A manual alert (the seed's ``createAlert``).

    ``auto_resolve_after`` is a duration (``30m``, ``1h30m``) or seconds, more than 0 and at
    most 366 days.
    """

    title: Title
    severity: lifecycle.Severity
    alert_type: lifecycle.AlertType
    service: Name | None = None
    description: Annotated[str, NoNul, msgspec.Meta(max_length=10_000)] | None = None
    labels: dict[Text, Text] = {}
    auto_resolve_after: DurationText | Seconds | None = None
    #: while an incident with this key is open, a POST returns it (200) instead
    dedup_key: DedupKey | None = None


class Acknowledge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who acknowledges, why (optional), and until when (optional, in the future: the
    incident then returns to active, default ``alerts.ack_expiry``)."""

    by: Name
    note: Note | None = None
    until: Timestamp | None = None


class Unacknowledge(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who returns the incident to active, and why (optional)."""

    by: Name
    note: Note | None = None


class NewNote(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A note on an incident, kept as an event."""

    by: Name
    note: Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=2000)]


class ResolveByKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The open API alert to resolve, by its dedup key; who (default: the token's name)."""

    dedup_key: DedupKey
    by: Name | None = None
    note: Note | None = None


class Resolve(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who resolves, and a note."""

    by: Name
    note: Note | None = None


class AlertPath(msgspec.Struct, frozen=True):
    """The path of ``/api/v1/alerts/{id}`` and its actions."""

    id: RowId


class AlertQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Filters of ``GET /api/v1/alerts`` (status, severity, alert_type may repeat).

    ``cursor`` is a previous page's ``next_cursor``.
    """

    status: list[lifecycle.Status] | lifecycle.Status | None = None
    severity: list[lifecycle.Severity] | lifecycle.Severity | None = None
    alert_type: list[lifecycle.AlertType] | lifecycle.AlertType | None = None
    service: Text | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    cursor: Text | None = None
