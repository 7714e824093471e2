"""Heartbeats (dead man's switches): when one is due, and when it is late. Pure.

A heartbeat expects a beat every ``interval``; it is late once ``interval + grace`` passed
since its last beat (or since it was created, before the first). A late heartbeat opens an
incident; its next beat resolves it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
#: incidents of a late heartbeat carry this dedup key (one open incident per heartbeat)
DEDUP_PREFIX = "heartbeat:"
ALERTNAME = "HeartbeatMissing"
ACTOR = "heartbeat"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A heartbeat as stored."""

    name: str
    interval: timedelta
    grace: timedelta
    created_at: datetime
    last_beat_at: datetime | None = None

    @property
    def deadline(self) -> datetime:
        """When the heartbeat turns late without a beat."""
        since = self.last_beat_at if self.last_beat_at is not None else self.created_at
        return since + self.interval + self.grace

    def late(self, now: datetime) -> bool:
        """Whether the heartbeat is late at ``now``."""
        return now > self.deadline


def dedup_key(name: str) -> str:
    """The dedup key of a heartbeat's incident."""
    return DEDUP_PREFIX + name


def title(name: str, configured: str | None) -> str:
    """The title of a late heartbeat's incident."""
    return configured or f"Heartbeat {name} is late"
