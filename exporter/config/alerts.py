"""The ``alerts`` section: the Alertmanager bridge."""

from __future__ import annotations

import msgspec

from exporter.config.section import Section
from exporter.config.types import Duration


class Alerts(Section, frozen=True):
    """The Alertmanager bridge."""

    # Alertmanagers to reconcile with, silence in and send API alerts to: one, or the members
    # of one HA cluster (silences go to the first that answers and travel by gossip, alerts
    # to each); none: no calls to Alertmanager.
    alertmanager_urls: list[str] = msgspec.field(default_factory=list)
    # One Alertmanager: the same as a one-element alertmanager_urls.
    alertmanager_url: str | None = None
    # How often the leader compares the open incidents with every Alertmanager's alerts
    # (opens what no webhook delivered, resolves what is gone, records silences).
    reconcile_interval: Duration = msgspec.field(default_factory=lambda: Duration(30))
    # An Alertmanager up for less than this resolves nothing by reconciliation (it forgets
    # its alerts on a restart; Prometheus resends them within its resend delay, 1m).
    reconcile_startup_grace: Duration = msgspec.field(default_factory=lambda: Duration(120))
    # How often Alertmanager work that failed is retried (silences, API alerts) and
    # maintenance silences are kept in step.
    sync_interval: Duration = msgspec.field(default_factory=lambda: Duration(5))
    # Length of an acknowledgement's silence; reconciliation extends it while the alert
    # fires, once less than half remains.
    ack_silence_duration: Duration = msgspec.field(default_factory=lambda: Duration(3600))
    # Acknowledgements end after this (back to active) unless the request gives ``until``;
    # none: they last until resolved or unacknowledged.
    ack_expiry: Duration | None = None
    # Timeout of each request to Alertmanager.
    request_timeout: Duration = msgspec.field(default_factory=lambda: Duration(5))
    # How often manual alerts whose auto_resolve_after elapsed are resolved, and
    # acknowledgements whose ``until`` came end.
    auto_resolve_interval: Duration = msgspec.field(default_factory=lambda: Duration(5))
    # Least time between two refreshes of the monitoring_alerts counts.
    counts_refresh_interval: Duration = msgspec.field(default_factory=lambda: Duration(1))
    # Most alerts written by one shared commit of concurrent webhooks.
    write_batch_max_alerts: int = 20_000
    # The longest maintenance window (each occurrence of a recurring one).
    max_maintenance_window: Duration = msgspec.field(default_factory=lambda: Duration(30 * 86400))
    # Heartbeats not in the YAML may be created by their first beat through the API.
    heartbeats_via_api: bool = False
    # How often the leader looks for late heartbeats.
    heartbeat_check_interval: Duration = msgspec.field(default_factory=lambda: Duration(5))

    def __post_init__(self) -> None:
        if self.alertmanager_url is not None and self.alertmanager_urls:
            raise ValueError("alertmanager_url: give alertmanager_urls or alertmanager_url")
        for i, url in enumerate(self.urls):
            if not url.startswith(("http://", "https://")):
                where = "alertmanager_url" if self.alertmanager_url else f"alertmanager_urls[{i}]"
                raise ValueError(f"{where}: expected an http:// or https:// URL")
        if len(set(self.urls)) != len(self.urls):
            raise ValueError("alertmanager_urls: the same URL twice")
        if self.write_batch_max_alerts < 1:
            raise ValueError("write_batch_max_alerts: must be at least 1")
        for name in (
            "auto_resolve_interval",
            "reconcile_interval",
            "sync_interval",
            "ack_silence_duration",
            "heartbeat_check_interval",
            "max_maintenance_window",
        ):
            if getattr(self, name).seconds <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.ack_expiry is not None and self.ack_expiry.seconds <= 0:
            raise ValueError("ack_expiry: must be positive")

    @property
    def urls(self) -> list[str]:
        """Every configured Alertmanager's base URL."""
        if self.alertmanager_url is not None:
            return [self.alertmanager_url]
        return list(self.alertmanager_urls)
