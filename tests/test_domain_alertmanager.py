"""What the bridge and Alertmanager owe each other, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exporter.domain import alertmanager as am
from exporter.domain.alertmanager import Firing

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Go truncates: the API says .123 for all of these; rounding first would say .124
        ("2024-05-01T12:00:00.1239996Z", AT.replace(microsecond=123000)),
        ("2024-05-01T12:00:00.123999999Z", AT.replace(microsecond=123000)),
        ("2024-05-01T12:00:00.999999999Z", AT.replace(microsecond=999000)),
        ("2024-05-01T12:00:00.1Z", AT.replace(microsecond=100000)),
        ("2024-05-01T12:00:00Z", AT),
        ("2024-05-01T14:00:00.5+02:00", AT.replace(microsecond=500000)),
        ("2024-05-01t12:00:00.1234z", AT.replace(microsecond=123000)),
        ("2024-05-01 14:00:00.9999+02:00", AT.replace(microsecond=999000)),
    ],
)
def test_times_are_read_to_the_millisecond_as_go_writes_them(text: str, expected: datetime) -> None:
    assert am.parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["2024-05-01T12:00:00", "2024-13-01T00:00:00Z", "0000-01-01T00:00:00Z", "soon", ""]
)
def test_a_time_without_an_offset_or_outside_the_calendar_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|month|year"):
        am.parse_time(text)


def test_to_millisecond_truncates() -> None:
    assert am.to_millisecond(AT.replace(microsecond=123999)) == AT.replace(microsecond=123000)


def test_merge_collapses_an_ha_pair_and_unites_what_suppresses() -> None:
    a = Firing("f1", AT, {"alertname": "A"}, silenced_by=("s1",), state="suppressed")
    a2 = Firing("f1", AT, {"alertname": "A"}, silenced_by=("s2",), state="suppressed")
    b = Firing("f2", AT, {"alertname": "B"})
    b2 = Firing("f2", AT, {"alertname": "B"}, inhibited_by=("f9",), state="suppressed")
    later = Firing("f1", AT + timedelta(minutes=1), {"alertname": "A"})
    merged = {m.key: m for m in am.merge([[a, b], [a2, b2, later]])}
    assert len(merged) == 3
    assert merged[a.key].silenced_by == ("s1", "s2")
    assert (merged[b.key].inhibited_by, merged[b.key].state) == (("f9",), "suppressed")
    assert merged[later.key].state == "active"


def test_outgoing_labels_carry_the_marker_and_what_the_webhook_maps_back() -> None:
    labels = am.outgoing_labels(
        "api-1", "Sync failed", "high", "performance", "sync",
        {"team": "data", "bad-name": "x", "empty": "", "alertname": "SyncFailed"},
    )  # fmt: skip
    assert labels == {
        "team": "data", "alertname": "SyncFailed", "severity": "high",
        "alert_type": "performance", "service": "sync", am.MARKER: "api-1",
    }  # fmt: skip
    assert am.outgoing_labels("api-2", "T", "low", "security", None, {})["alertname"] == "T"


def test_silences_match_an_alertmanager_alert_by_its_labels_and_ours_by_the_marker() -> None:
    assert am.silence_matchers("alertmanager", "fp", {"a": "1", "b": ""}) == {"a": "1"}
    assert am.silence_matchers("api", "api-1", {"a": "1"}) == {am.MARKER: "api-1"}
    assert am.silence_matchers("alertmanager", "fp", {}) == {}


def test_an_acknowledgement_silence_is_extended_at_half_its_length_and_never_past_until() -> None:
    length = timedelta(hours=1)
    assert am.silence_end(AT, length, None) == AT + length
    assert am.silence_end(AT, length, AT + timedelta(minutes=10)) == AT + timedelta(minutes=10)
    assert not am.needs_extension(AT + timedelta(minutes=31), AT, length, None)
    assert am.needs_extension(AT + timedelta(minutes=29), AT, length, None)
    assert not am.needs_extension(
        AT + timedelta(minutes=10), AT, length, AT + timedelta(minutes=10)
    )


def row(**over: Any) -> dict[str, Any]:
    return {
        "status": "active", "source": "alertmanager", "fingerprint": "fp",
        "labels": {"alertname": "A"}, "silence_id": None, "silence_ends_at": None,
        "sent_at": None, "resolved_at": None,
    } | over  # fmt: skip


def test_pending_work_follows_from_the_incident_alone() -> None:
    live = {"silence_id": "s", "silence_ends_at": AT + timedelta(minutes=5)}
    gone = {"silence_id": "s", "silence_ends_at": AT - timedelta(minutes=5)}
    assert am.pending(row(status="acknowledged"), AT, configured=True) == ["silence"]
    assert am.pending(row(status="acknowledged", **gone), AT, configured=True) == ["silence"]
    assert am.pending(row(status="acknowledged", **live), AT, configured=True) == []
    assert am.pending(row(status="acknowledged", labels={}), AT, configured=True) == []
    assert am.pending(row(status="resolved", **live), AT, configured=True) == ["expire_silence"]
    assert am.pending(row(status="active", **gone), AT, configured=True) == []
    assert am.pending(row(source="api"), AT, configured=True) == ["send"]
    sent = {"sent_at": AT - timedelta(minutes=2), "resolved_at": AT - timedelta(minutes=1)}
    assert am.pending(row(source="api", status="resolved", **sent), AT, configured=True) == [
        "send_resolved"
    ]
    assert am.pending(row(status="acknowledged"), AT, configured=False) == []


def test_alerts_that_cannot_be_stored_are_named() -> None:
    assert am.unstorable(Firing("f", AT, {"alertname": "A", "service": "db"})) is None
    assert "NUL" in str(am.unstorable(Firing("f", AT, {"alertname": "A\u0000"})))
    assert "NUL" in str(am.unstorable(Firing("f", AT, {"a": "b"}, {"summary": "\u0000"})))
    assert "200" in str(am.unstorable(Firing("f", AT, {"job": "j" * 201})))
