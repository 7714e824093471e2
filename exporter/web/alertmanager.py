"""The Alertmanager webhook's route (state in ``features.alerts``)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from exporter.features import alerts
from exporter.features.alerts import BRIDGE
from exporter.features.core import CONFIG, SELF_METRICS
from exporter.inputs import alertmanager as webhook
from exporter.storage import StorageUnavailable
from exporter.storage.idempotency import Duplicate
from exporter.web import idempotency
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail
from exporter.web.payload import decode_json, json_response, media_type, read_body


class WebhookReceipt(msgspec.Struct, frozen=True):
    """What a notification did once committed."""

    alerts: int
    opened: int
    resolved: int
    duplicates: int
    #: alerts that are heartbeat beats (the Watchdog), not incidents
    heartbeats: int = 0
    #: alerts we sent to Alertmanager, back: they belong to their incident
    own: int = 0


async def receive_webhook(request: web.Request) -> web.Response:
    """``POST /api/v1/alertmanager``: store a notification; 200 once it is committed.

    Alerts named by a heartbeat's ``alertname`` (the Watchdog) are beats; alerts this
    service sent (label ``monitoring_exporter_id``) belong to their incident.
    """
    bridge = request.app[BRIDGE]
    bridge.metrics.notifications.inc()
    try:
        media_type(request, ("application/json",))
        body = await read_body(request, request.app[CONFIG].web.alertmanager_max_body_bytes)
        key = idempotency.key_of(request, body)
        if (replayed := await idempotency.replay(request, key)) is not None:
            return replayed
        notification = _parse_notification(request, body)
    except ApiError as exc:
        bridge.metrics.notifications_rejected.labels(exc.code).inc()
        request.app[SELF_METRICS].writes_rejected.labels("system_alerts", exc.code).inc()
        raise
    records = [webhook.to_record(a) for a in notification.alerts]
    resolved = sum(r.signal == "resolved" for r in records)
    bridge.metrics.alerts.labels("firing").inc(len(records) - resolved)
    bridge.metrics.alerts.labels("resolved").inc(resolved)

    def receipt(received: alerts.Received) -> WebhookReceipt:
        outcome = received.outcome
        opened = sum(c.inserted for c in outcome.changed)
        return WebhookReceipt(
            len(records), opened, len(outcome.changed) - opened, outcome.duplicates,
            received.beats, received.ours,
        )  # fmt: skip

    try:
        found = await alerts.receive(
            request.app, records, key, lambda o: idempotency.render(200, receipt(o))
        )
    except StorageUnavailable:
        bridge.metrics.notifications_rejected.labels("storage_unavailable").inc()
        raise
    if isinstance(found, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    return json_response(receipt(found))


def _parse_notification(request: web.Request, body: bytes) -> webhook.WireNotification:
    # the payload's own checks below are column-wise: this route is the bulk path
    notification = decode_json(body, webhook.decoder, check=False)
    problems = webhook.problems(notification)
    if problems:
        request.app[BRIDGE].metrics.alerts_rejected.inc(len(notification.alerts))
        details = [Detail(path, message) for path, message in problems[:20]]
        raise ApiError(400, "invalid_body", "the body holds values that cannot be stored", details)
    return notification


def setup(app: web.Application) -> None:
    """Register the webhook's route."""
    api, tags = app[API], ("alerts",)
    for route in (
        Route("POST", "/api/v1/alertmanager", receive_webhook,
              "Alertmanager webhook (payload version 4)", "write", body=webhook.Notification,
              response=WebhookReceipt, tags=tags, responses={413: "body too large"},
              idempotent=True),
    ):  # fmt: skip
        api.add(app, route)
