"""The alert lifecycle (active → acknowledged → resolved) and the Alertmanager label mapping.

Pure functions over plain dataclasses: no I/O. The webhook's bulk SQL in
``exporter.storage.alerts`` encodes :func:`receive` for many incidents at once; the tests
check that both agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal, NamedTuple

Status = Literal["active", "acknowledged", "resolved"]
Severity = Literal["low", "medium", "high", "critical"]
AlertType = Literal["performance", "data_quality", "system_error", "security"]
Source = Literal["alertmanager", "api", "exporter"]
Signal = Literal["firing", "resolved"]

STATUSES: tuple[Status, ...] = ("active", "acknowledged", "resolved")
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
ALERT_TYPES: tuple[AlertType, ...] = ("performance", "data_quality", "system_error", "security")

ALERTMANAGER = "alertmanager"
AUTO_RESOLVE = "auto-resolve"
ACK_EXPIRY = "ack-expiry"

_SEVERITY: dict[str, Severity] = {
    "info": "low",
    "low": "low",
    "none": "low",
    "warning": "medium",
    "warn": "medium",
    "medium": "medium",
    "error": "high",
    "high": "high",
    "critical": "critical",
    "page": "critical",
}


def severity_of(labels: Mapping[str, str]) -> Severity:
    """The ``severity`` label as ours; absent or unknown values map to ``medium``.

    info→low, warning→medium, error/high→high, critical/page→critical.
    """
    return _SEVERITY.get(labels.get("severity", "").strip().lower(), "medium")


def alert_type_of(labels: Mapping[str, str]) -> AlertType:
    """The ``alert_type`` (or ``category``) label; absent or unknown → ``system_error``."""
    raw = labels.get("alert_type") or labels.get("category") or ""
    value = raw.strip().lower()
    for known in ALERT_TYPES:
        if value == known:
            return known
    return "system_error"


def service_of(labels: Mapping[str, str]) -> str | None:
    """The ``service`` (or ``job``) label, if any."""
    return labels.get("service") or labels.get("job") or None


def title_of(labels: Mapping[str, str], annotations: Mapping[str, str], fingerprint: str) -> str:
    """The ``summary`` annotation, else the ``alertname`` label, else one from the fingerprint."""
    return (
        annotations.get("summary", "").strip()
        or labels.get("alertname", "").strip()
        or f"alert {fingerprint}"
    )


def description_of(annotations: Mapping[str, str]) -> str | None:
    """The ``description`` annotation, if any."""
    return annotations.get("description") or None


@dataclass(frozen=True, slots=True)
class Incident:
    """The lifecycle part of one incident."""

    status: Status = "active"
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    #: an acknowledgement that ends by itself: back to active then
    acknowledged_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One lifecycle change, as recorded in ``system_alert_events``."""

    actor: str
    from_status: Status | None
    to_status: Status
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """The incident after an operation, and the event it wrote (None: nothing changed)."""

    incident: Incident
    event: Event | None

    @property
    def changed(self) -> bool:
        """Whether the operation changed the incident."""
        return self.event is not None


class Conflict(Exception):
    """The operation is not allowed in the incident's current state (HTTP 409)."""


def open_incident(actor: str, note: str | None = None) -> Transition:
    """A new incident, active."""
    return Transition(Incident(), Event(actor, None, "active", note))


def receive(current: Incident | None, signal: Signal, at: datetime) -> Transition:
    """Apply one Alertmanager notification for the incident's ``(fingerprint, startsAt)``.

    firing: opens the incident, or changes nothing (an acknowledged incident stays so).
    resolved: resolves it by ``alertmanager``; a resolved incident never changes again, so a
    late, out-of-order firing after a resolved is ignored.
    """
    if current is None:
        if signal == "firing":
            return open_incident(ALERTMANAGER)
        incident = Incident(status="resolved", resolved_by=ALERTMANAGER, resolved_at=at)
        return Transition(incident, Event(ALERTMANAGER, None, "resolved"))
    if signal == "firing" or current.status == "resolved":
        return Transition(current, None)
    return resolve(current, ALERTMANAGER, None, at)


def _refuse_resolved(current: Incident, what: str) -> None:
    if current.status == "resolved":
        who = f" by {current.resolved_by}" if current.resolved_by else ""
        raise Conflict(
            f"the incident is already resolved{who}; a resolved incident cannot be {what}"
        )


def acknowledge(
    current: Incident,
    by: str,
    at: datetime,
    note: str | None = None,
    until: datetime | None = None,
) -> Transition:
    """Acknowledge an active incident (until a time, optionally); idempotent when
    acknowledged; a conflict when resolved."""
    _refuse_resolved(current, "acknowledged")
    if current.status == "acknowledged":
        return Transition(current, None)
    incident = replace(
        current,
        status="acknowledged",
        acknowledged_by=by,
        acknowledged_at=at,
        acknowledged_until=until,
    )
    return Transition(incident, Event(by, "active", "acknowledged", note))


def unacknowledge(current: Incident, by: str, note: str | None = None) -> Transition:
    """Return an acknowledged incident to active; idempotent when active; a conflict when
    resolved. Who acknowledged stays in the history, not on the incident."""
    _refuse_resolved(current, "unacknowledged")
    if current.status == "active":
        return Transition(current, None)
    incident = replace(
        current,
        status="active",
        acknowledged_by=None,
        acknowledged_at=None,
        acknowledged_until=None,
    )
    return Transition(incident, Event(by, "acknowledged", "active", note))


def expire_acknowledgement(current: Incident, at: datetime) -> Transition:
    """An acknowledgement whose ``until`` has come: back to active (actor ``ack-expiry``)."""
    due = current.acknowledged_until
    if current.status != "acknowledged" or due is None or due > at:
        return Transition(current, None)
    note = (
        f"acknowledged by {current.acknowledged_by} until {due.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    )
    return unacknowledge(current, ACK_EXPIRY, note)


def resolve(current: Incident, by: str, note: str | None, at: datetime) -> Transition:
    """Resolve an open incident; idempotent when it is resolved already."""
    if current.status == "resolved":
        return Transition(current, None)
    incident = replace(current, status="resolved", resolved_by=by, resolved_at=at)
    return Transition(incident, Event(by, current.status, "resolved", note))


def merge_signals(signals: list[Signal]) -> Signal:
    """Collapse several notifications of one incident into one with the same final effect.

    Resolution is terminal, so any ``resolved`` wins whatever the delivery order was.
    """
    return "resolved" if "resolved" in signals else "firing"


def open_by_severity(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    """Incidents not yet resolved, per severity (every severity present), from counts by
    (status, severity)."""
    found: dict[str, int] = dict.fromkeys(SEVERITIES, 0)
    for (status, severity), n in counts.items():
        if status != "resolved":
            found[severity] += n
    return found


class AlertRecord(NamedTuple):
    """One alert mapped onto the ``system_alerts`` columns, ready to store.

    A tuple in the order the bulk upsert reads its JSON array elements, so a whole batch
    encodes as one JSON document (an array of arrays) in one call.
    """

    fingerprint: str
    starts_at: datetime
    signal: Signal
    alert_type: AlertType
    severity: Severity
    title: str
    description: str | None
    service_name: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str | None
    ends_at: datetime | None

    @property
    def key(self) -> tuple[str, datetime]:
        """The incident this alert belongs to."""
        return (self.fingerprint, self.starts_at)
