"""What the bridge and Alertmanager owe each other, as pure rules: the time precision both
name an alert by, alerts merged across an HA pair, the labels of the alerts we send, the
silence of an acknowledgement and its extension, and the work still pending on an incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from exporter.domain.health import MAX_SERVICE

#: the label that marks an alert we sent, its value the incident's fingerprint: the webhook
#: and the alert list that bring it back find the incident by it, and never open another
MARKER = "monitoring_exporter_id"

State = Literal["active", "suppressed", "unprocessed"]
Operation = Literal["silence", "expire_silence", "send", "send_resolved"]
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def to_millisecond(at: datetime) -> datetime:
    """``at`` truncated to the millisecond: Alertmanager's API gives start times so (Go
    formats them with three digits, dropping the rest), its webhook with nanoseconds."""
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time truncated to the millisecond, as Go writes it; ValueError when it is
    not one. The digits past the millisecond are cut from the text before it is parsed
    (rounding them, as parsers do, would move 1 time in 2000 to the next millisecond)."""
    if len(text) < 20 or text[4] != "-" or text[10] not in "Tt " or text[16] != ":":
        raise ValueError("expected an RFC 3339 timestamp with an offset")
    if text[-1] == "z":  # RFC 3339 allows it, fromisoformat does not
        text = text[:-1] + "Z"
    if len(text) > 24 and text[19] == ".":
        zone = len(text) - 1 if text[-1] == "Z" else len(text) - 6
        if zone > 23:
            text = text[:23] + text[zone:]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("expected an RFC 3339 timestamp with an offset")
    return parsed


@dataclass(frozen=True, slots=True)
class Firing:
    """An alert one or more Alertmanagers hold, as ``GET /api/v2/alerts`` lists it."""

    fingerprint: str
    starts_at: datetime
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    generator_url: str | None = None
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    state: State = "active"

    @property
    def key(self) -> tuple[str, datetime]:
        """The incident it belongs to: (fingerprint, startsAt to the millisecond)."""
        return (self.fingerprint, self.starts_at)


def merge(lists: Iterable[Iterable[Firing]]) -> list[Firing]:
    """One alert per incident from every Alertmanager's list (an HA pair holds each alert
    twice): silences and inhibitions are the union of what each member says, and the alert
    is suppressed when any of them suppresses it (silences travel by gossip, with a lag)."""
    merged: dict[tuple[str, datetime], Firing] = {}
    for alerts in lists:
        for alert in alerts:
            seen = merged.get(alert.key)
            if seen is None:
                merged[alert.key] = alert
                continue
            silenced = tuple(sorted({*seen.silenced_by, *alert.silenced_by}))
            inhibited = tuple(sorted({*seen.inhibited_by, *alert.inhibited_by}))
            merged[alert.key] = Firing(
                seen.fingerprint,
                seen.starts_at,
                seen.labels,
                seen.annotations,
                seen.generator_url,
                silenced,
                inhibited,
                _merged_state(seen.state, alert.state, bool(silenced or inhibited)),
            )
    return list(merged.values())


def _merged_state(a: State, b: State, suppressed: bool) -> State:
    if suppressed or "suppressed" in (a, b):
        return "suppressed"
    return "active" if "active" in (a, b) else "unprocessed"


def unstorable(alert: Firing) -> str | None:
    """Why an alert Alertmanager holds cannot become an incident (PostgreSQL refuses NUL in
    text; a service name becomes an indexed column of at most 200 characters), or None."""
    texts = (alert.fingerprint, *alert.labels, *alert.labels.values(), *alert.annotations,
             *alert.annotations.values(), alert.generator_url or "")  # fmt: skip
    if any("\x00" in text for text in texts):
        return "it holds a NUL character"
    service = alert.labels.get("service") or alert.labels.get("job") or ""
    if len(service) > MAX_SERVICE:
        return f"its service is longer than {MAX_SERVICE} characters"
    return None


def outgoing_labels(
    fingerprint: str,
    title: str,
    severity: str,
    alert_type: str,
    service: str | None,
    labels: Mapping[str, str],
) -> dict[str, str]:
    """The labels of an incident we send to Alertmanager (an API alert, a late heartbeat):
    its own labels (those Alertmanager can take: a label name is ``[a-zA-Z_][a-zA-Z0-9_]*``,
    an empty value is no label), ``alertname`` (its own, else the title), severity,
    alert_type and service as the webhook maps them back, and the :data:`MARKER`."""
    out = {k: v for k, v in labels.items() if v != "" and LABEL_NAME.match(k)}
    out.setdefault("alertname", title)
    out["severity"] = severity
    out["alert_type"] = alert_type
    if service:
        out["service"] = service
    out[MARKER] = fingerprint
    return out


def silence_matchers(source: str, fingerprint: str, labels: Mapping[str, str]) -> dict[str, str]:
    """What the silence of an acknowledged incident matches (equality on every label): an
    alert from Alertmanager by all its labels, one we sent by its marker alone. Empty: the
    incident cannot be silenced (an Alertmanager alert without labels does not exist)."""
    if source != "alertmanager":
        return {MARKER: fingerprint}
    return {k: v for k, v in labels.items() if v != ""}


def silence_end(now: datetime, length: timedelta, until: datetime | None) -> datetime:
    """Where an acknowledgement's silence ends: ``length`` from now, never past ``until``."""
    end = now + length
    return end if until is None else min(end, until)


def needs_extension(
    ends_at: datetime, now: datetime, length: timedelta, until: datetime | None
) -> bool:
    """An acknowledgement's silence is extended once less than half its length remains
    (unless it already reaches the acknowledgement's ``until``)."""
    if until is not None and ends_at >= until:
        return False
    return ends_at - now < length / 2


def pending(row: Mapping[str, Any], now: datetime, configured: bool) -> list[Operation]:
    """Alertmanager work an incident still waits for (a row of ``system_alerts``); the
    leader retries it, so this is what a failed call leaves behind."""
    if not configured:
        return []
    out: list[Operation] = []
    status, silence_id, ends = row["status"], row["silence_id"], row["silence_ends_at"]
    live = silence_id is not None and ends is not None and ends > now
    if status == "acknowledged" and not live and silenceable(row):
        out.append("silence")
    if status != "acknowledged" and live:
        out.append("expire_silence")
    if row["source"] != "alertmanager":
        sent = row["sent_at"]
        if status != "resolved" and sent is None:
            out.append("send")
        elif status == "resolved" and sent is not None and sent < row["resolved_at"]:
            out.append("send_resolved")
    return out


def silenceable(row: Mapping[str, Any]) -> bool:
    """Whether an incident's acknowledgement gets a silence (see :func:`silence_matchers`)."""
    return bool(silence_matchers(row["source"], row["fingerprint"], row["labels"] or {}))
