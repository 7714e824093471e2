"""The alert bridge's families: incidents per state, and the webhook's own counters."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.domain import alert as lifecycle


class BridgeMetrics:
    """Counters of the webhook and of the Alertmanager client (the exporter's own behaviour)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        prefix = "monitoring_alertmanager_"
        self.notifications = Counter(
            prefix + "notifications_received", "Webhook notifications received.",
            registry=self.registry,
        )  # fmt: skip
        self.notifications_rejected = Counter(
            prefix + "notifications_rejected", "Webhook notifications not stored, by reason.",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.alerts = Counter(
            prefix + "alerts_received", "Alerts received in webhook notifications, by status.",
            ["status"], registry=self.registry,
        )  # fmt: skip
        self.alerts_rejected = Counter(
            prefix + "alerts_rejected", "Alerts in notifications that were rejected.",
            registry=self.registry,
        )  # fmt: skip
        self.duplicates = Counter(
            prefix + "alerts_duplicate",
            "Alerts that changed nothing (redeliveries, HA duplicates, firing repeats).",
            registry=self.registry,
        )  # fmt: skip
        self.beats = Counter(
            prefix + "heartbeat_alerts",
            "Alerts in notifications taken as heartbeat beats (e.g. the Watchdog).",
            registry=self.registry,
        )  # fmt: skip


class AlertmanagerMetrics:
    """Counters of this replica's calls to Alertmanager (the exporter's own behaviour)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        prefix = "monitoring_alertmanager_"
        self.silences = Counter(
            prefix + "silence_requests", "Requests to Alertmanager's silence API, by result.",
            ["operation", "result"], registry=self.registry,
        )  # fmt: skip
        self.sync_failures = Counter(
            prefix + "sync_failures",
            "Alertmanager work that failed and is left pending for a retry, by operation "
            "(list_alerts, send_alerts, create_silence, extend_silence, expire_silence).",
            ["operation"], registry=self.registry,
        )  # fmt: skip
        self.reconciled = Counter(
            prefix + "reconciled_incidents",
            "Incidents reconciliation opened, resolved or updated from Alertmanager's alerts.",
            ["change"], registry=self.registry,
        )  # fmt: skip


class AlertCounts:
    """``monitoring_alerts{status,severity}`` from the cached counts; every pair is present."""

    def __init__(self, counts: Callable[[], dict[tuple[str, str], int] | None]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        """The counts as of the last refresh (nothing until the first one)."""
        counts = self.counts()
        if counts is None:
            return
        family = GaugeMetricFamily(
            "monitoring_alerts", "Incidents currently in each state.", labels=["status", "severity"]
        )
        for status in lifecycle.STATUSES:
            for severity in lifecycle.SEVERITIES:
                family.add_metric([status, severity], counts.get((status, severity), 0))
        yield family
