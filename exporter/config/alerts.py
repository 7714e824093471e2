"""The ``alerts`` section: the Alertmanager bridge."""

from __future__ import annotations

import msgspec

from exporter.config.section import Section
from exporter.config.types import Duration


class Alerts(Section, frozen=True):
    """The Alertmanager bridge."""

    alertmanager_url: str | None = None
    silence_duration: Duration = msgspec.field(default_factory=lambda: Duration(24 * 3600))
    request_timeout: Duration = msgspec.field(default_factory=lambda: Duration(5))
