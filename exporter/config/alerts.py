"""The ``alerts`` section: the Alertmanager bridge."""

from __future__ import annotations

import msgspec

from exporter.config.section import Section
from exporter.config.types import Duration


class Alerts(Section, frozen=True):
    """The Alertmanager bridge."""

    # Where acknowledging an incident creates a silence (Alertmanager v2 API); none: no silences.
    alertmanager_url: str | None = None
    # How long such a silence lasts at most (it is expired earlier when the incident resolves).
    silence_duration: Duration = msgspec.field(default_factory=lambda: Duration(24 * 3600))
    # Timeout of each request to Alertmanager.
    request_timeout: Duration = msgspec.field(default_factory=lambda: Duration(5))
    # How often manual alerts whose auto_resolve_after elapsed are resolved.
    auto_resolve_interval: Duration = msgspec.field(default_factory=lambda: Duration(5))
    # Least time between two refreshes of the monitoring_alerts counts.
    counts_refresh_interval: Duration = msgspec.field(default_factory=lambda: Duration(1))
    # Most alerts written by one shared commit of concurrent webhooks.
    write_batch_max_alerts: int = 20_000

    def __post_init__(self) -> None:
        if self.alertmanager_url is not None and not self.alertmanager_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("alertmanager_url: expected an http:// or https:// URL")
        if self.write_batch_max_alerts < 1:
            raise ValueError("write_batch_max_alerts: must be at least 1")
        if self.auto_resolve_interval.seconds <= 0:
            raise ValueError("auto_resolve_interval: must be positive")
