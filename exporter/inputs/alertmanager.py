"""The Alertmanager webhook payload (version 4): its types, its checks and its mapping.

Strict where the bridge depends on a field (version, status, labels, startsAt, fingerprint),
tolerant of every field it does not know (``truncatedAlerts``, future ones).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from exporter.domain import alert as lifecycle

AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Fingerprint = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# Go's zero time: Alertmanager sends it as endsAt of alerts that have no end yet.
_ZERO_YEAR = 1


class WebhookAlert(msgspec.Struct, frozen=True, rename="camel"):
    """One alert of a notification."""

    status: lifecycle.Signal
    labels: dict[str, str]
    starts_at: AwareTime
    fingerprint: Fingerprint
    annotations: dict[str, str] = {}
    ends_at: AwareTime | None = None
    generator_url: str = msgspec.field(default="", name="generatorURL")


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


decoder = msgspec.json.Decoder(Notification)


def to_record(alert: WebhookAlert) -> lifecycle.AlertRecord:
    """Map one webhook alert onto our columns (the spec's label mapping)."""
    labels, annotations, status = alert.labels, alert.annotations, alert.status
    ends_at = alert.ends_at if status == "resolved" else None
    if ends_at is not None and ends_at.year <= _ZERO_YEAR:
        ends_at = None
    # positional: this runs for every alert of every webhook
    return lifecycle.AlertRecord(
        alert.fingerprint,
        alert.starts_at,
        status,
        lifecycle.alert_type_of(labels),
        lifecycle.severity_of(labels),
        lifecycle.title_of(labels, annotations, alert.fingerprint),
        lifecycle.description_of(annotations),
        lifecycle.service_of(labels),
        labels,
        annotations,
        alert.generator_url or None,
        ends_at,
    )


def problems(notification: Notification) -> list[tuple[str, str]]:
    """Values PostgreSQL would refuse (NUL characters), as (path, message), before any write."""
    found: list[tuple[str, str]] = []
    for i, alert in enumerate(notification.alerts):
        labels, annotations = alert.labels, alert.annotations
        # fast path, one scan per alert: almost every alert holds no NUL at all
        text = "".join((*labels, *labels.values(), *annotations, *annotations.values()))
        if "\x00" not in text and "\x00" not in alert.fingerprint + alert.generator_url:
            continue
        where = f"alerts[{i}]"
        for field, mapping in (("labels", alert.labels), ("annotations", alert.annotations)):
            for name, value in mapping.items():
                if "\x00" in name:
                    found.append((f"{where}.{field}", f"label name {name!r} contains NUL"))
                if "\x00" in value:
                    found.append((f"{where}.{field}.{name}", "contains a NUL character (\\u0000)"))
        for field, text in (
            ("fingerprint", alert.fingerprint),
            ("generatorURL", alert.generator_url),
        ):
            if "\x00" in text:
                found.append((f"{where}.{field}", "contains a NUL character (\\u0000)"))
    return found


def unrepresentable(body: bytes) -> tuple[str, str] | None:
    """Where a body that msgspec refused holds a string PostgreSQL cannot store, if it does.

    msgspec refuses lone UTF-16 surrogates (``"\\ud800"``) with an unhelpful message; the
    standard library accepts them, so it can locate the field for a clear 400.
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return _find_bad_string(document, "")


def _find_bad_string(node: Any, path: str) -> tuple[str, str] | None:
    if isinstance(node, str):
        if any("\ud800" <= ch <= "\udfff" for ch in node):
            return (path or "(body)", "contains a lone UTF-16 surrogate, which cannot be stored")
        return None
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            found = _find_bad_string(key, where) or _find_bad_string(value, where)
            if found:
                return found
    if isinstance(node, list):
        for i, value in enumerate(node):
            found = _find_bad_string(value, f"{path}[{i}]")
            if found:
                return found
    return None
