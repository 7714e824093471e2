"""``monitoring_heartbeat_last_seen_timestamp_seconds{name}`` from the heartbeats view."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric


class LastSeen:
    """The last beat of every enabled heartbeat (0 before the first), from ``rows``: the
    replica's view of the heartbeats table, by name."""

    def __init__(self, rows: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        """The view's last beats."""
        family = GaugeMetricFamily(
            "monitoring_heartbeat_last_seen_timestamp_seconds",
            "When each heartbeat last beat (Unix seconds; 0: never).",
            labels=["name"],
        )
        for name, row in sorted(self.rows().items()):
            if row["enabled"]:
                at: datetime | None = row["last_beat_at"]
                family.add_metric([name], at.timestamp() if at else 0.0)
        yield family
