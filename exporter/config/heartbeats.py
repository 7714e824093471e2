"""The ``heartbeats`` section: dead man's switches."""

from __future__ import annotations

from typing import Literal

import msgspec

from exporter.config.section import Section
from exporter.config.types import Duration
from exporter.domain.heartbeat import NAME

MAX_SECONDS = 366 * 86400


class Heartbeat(Section, frozen=True):
    """A dead man's switch: beats are expected every interval; later than interval + grace
    opens an incident (source exporter) that the next beat resolves."""

    # its name in POST /api/v1/heartbeats/{name} and in the metrics ([A-Za-z0-9_.:-])
    name: str
    # a beat is expected this often
    interval: Duration
    # how late a beat may be before the heartbeat counts as late
    grace: Duration = msgspec.field(default_factory=lambda: Duration(0))
    # an Alertmanager alert of this name reaching the webhook is a beat, not an incident
    # (e.g. Watchdog)
    alertname: str | None = None
    # the title of the incident when it is late (default: "Heartbeat <name> is late")
    title: str | None = None
    # the severity of that incident
    severity: Literal["low", "medium", "high", "critical"] = "high"

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError("name: expected 1 to 200 of A-Z a-z 0-9 _ . : -")
        if not 0 < self.interval.seconds <= MAX_SECONDS:
            raise ValueError("interval: must be positive and at most 366d")
        if self.grace.seconds > MAX_SECONDS:
            raise ValueError("grace: must be at most 366d")
        if self.alertname is not None and not self.alertname:
            raise ValueError("alertname: must not be empty")
        if self.title is not None and not self.title.strip():
            raise ValueError("title: must not be empty")
