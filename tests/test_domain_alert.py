"""The alert lifecycle and the Alertmanager label mapping, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exporter.domain import alert as lc

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_first_firing_opens_an_active_incident() -> None:
    t = lc.receive(None, "firing", AT)
    assert t.incident.status == "active"
    assert t.event == lc.Event("alertmanager", None, "active")


def test_firing_repeat_keeps_an_acknowledged_incident_acknowledged() -> None:
    acked = lc.acknowledge(lc.Incident(), "ann", AT).incident
    t = lc.receive(acked, "firing", AT)
    assert t.incident == acked
    assert not t.changed


def test_resolved_resolves_by_alertmanager_with_an_event() -> None:
    acked = lc.acknowledge(lc.Incident(), "ann", AT).incident
    t = lc.receive(acked, "resolved", AT)
    assert t.incident.status == "resolved"
    assert t.incident.resolved_by == "alertmanager"
    assert t.incident.acknowledged_by == "ann"
    assert t.event == lc.Event("alertmanager", "acknowledged", "resolved")


def test_resolved_first_creates_a_resolved_incident() -> None:
    t = lc.receive(None, "resolved", AT)
    assert t.incident.status == "resolved"
    assert t.event == lc.Event("alertmanager", None, "resolved")


def test_a_resolved_incident_never_becomes_active_again() -> None:
    resolved = lc.receive(lc.Incident(), "resolved", AT).incident
    late = lc.receive(resolved, "firing", AT)
    assert late.incident == resolved
    assert not late.changed
    assert not lc.receive(resolved, "resolved", AT).changed


def test_acknowledging_a_resolved_incident_is_a_conflict() -> None:
    resolved = lc.resolve(lc.Incident(), "bob", "fixed", AT).incident
    with pytest.raises(lc.Conflict, match="resolved by bob"):
        lc.acknowledge(resolved, "ann", AT)


def test_acknowledge_and_resolve_are_idempotent() -> None:
    acked = lc.acknowledge(lc.Incident(), "ann", AT, "on it")
    assert acked.event == lc.Event("ann", "active", "acknowledged", "on it")
    assert not lc.acknowledge(acked.incident, "bob", AT).changed
    resolved = lc.resolve(acked.incident, "bob", "fixed", AT)
    assert resolved.event == lc.Event("bob", "acknowledged", "resolved", "fixed")
    again = lc.resolve(resolved.incident, "carl", None, AT)
    assert again.incident.resolved_by == "bob" and not again.changed


def test_merge_signals_resolved_wins_in_any_order() -> None:
    assert lc.merge_signals(["firing", "resolved", "firing"]) == "resolved"
    assert lc.merge_signals(["firing", "firing"]) == "firing"


@pytest.mark.parametrize(
    ("label", "severity"),
    [
        ("info", "low"),
        ("warning", "medium"),
        ("error", "high"),
        ("high", "high"),
        ("critical", "critical"),
        ("page", "critical"),
        ("PAGE", "critical"),
        (None, "medium"),
        ("bogus", "medium"),
    ],
)
def test_severity_mapping(label: str | None, severity: str) -> None:
    labels = {} if label is None else {"severity": label}
    assert lc.severity_of(labels) == severity


def test_type_service_title_mapping() -> None:
    labels = {"alertname": "HighLatency", "category": "performance", "job": "api"}
    assert lc.alert_type_of(labels) == "performance"
    assert lc.alert_type_of({"alert_type": "security", "category": "performance"}) == "security"
    assert lc.alert_type_of({}) == "system_error"
    assert lc.alert_type_of({"alert_type": "weird"}) == "system_error"
    assert lc.service_of(labels) == "api"
    assert lc.service_of({"service": "db", "job": "x"}) == "db"
    assert lc.service_of({}) is None
    assert lc.title_of(labels, {"summary": "Latency high"}, "f") == "Latency high"
    assert lc.title_of(labels, {}, "f") == "HighLatency"
    assert lc.title_of({}, {}, "abc") == "alert abc"
    assert lc.description_of({"description": "d"}) == "d"
    assert lc.description_of({}) is None


def test_open_by_severity_counts_active_and_acknowledged_for_every_severity() -> None:
    counts = {("active", "high"): 2, ("acknowledged", "high"): 1, ("resolved", "low"): 9}
    assert lc.open_by_severity(counts) == {"low": 0, "medium": 0, "high": 3, "critical": 0}


def test_unacknowledge_returns_to_active_and_forgets_who_acknowledged() -> None:
    acked = lc.acknowledge(lc.Incident(), "ann", AT, until=AT + timedelta(hours=1)).incident
    assert acked.acknowledged_until == AT + timedelta(hours=1)
    back = lc.unacknowledge(acked, "bob", "not mine")
    assert back.event == lc.Event("bob", "acknowledged", "active", "not mine")
    assert back.incident == lc.Incident()
    assert not lc.unacknowledge(back.incident, "bob").changed
    resolved = lc.resolve(acked, "c", None, AT).incident
    with pytest.raises(lc.Conflict, match="cannot be unacknowledged"):
        lc.unacknowledge(resolved, "bob")


def test_an_acknowledgement_expires_at_its_until() -> None:
    acked = lc.acknowledge(lc.Incident(), "ann", AT, until=AT + timedelta(hours=1)).incident
    assert not lc.expire_acknowledgement(acked, AT + timedelta(minutes=59)).changed
    expired = lc.expire_acknowledgement(acked, AT + timedelta(hours=1))
    assert expired.incident.status == "active"
    assert expired.event == lc.Event(
        "ack-expiry", "acknowledged", "active", "acknowledged by ann until 2024-05-01T13:00:00Z"
    )
    assert not lc.expire_acknowledgement(
        lc.acknowledge(lc.Incident(), "a", AT).incident, AT
    ).changed
