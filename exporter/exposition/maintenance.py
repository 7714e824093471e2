"""``monitoring_maintenance{service}`` and ``{source}`` from the maintenance windows view."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client.metrics_core import Metric


class InMaintenance:
    """1 for each service and data-quality source a window in force puts in maintenance
    (absent otherwise); ``affected`` says which at a time (the replica's view)."""

    def __init__(self, affected: Callable[[datetime], tuple[set[str], set[str]]]) -> None:
        self.affected = affected

    def collect(self) -> Iterator[Metric]:
        """The windows in force now."""
        services, sources = self.affected(datetime.now(UTC))
        family = Metric(
            "monitoring_maintenance",
            "1 for each service (label service) and data-quality source (label source) in a "
            "maintenance window now; their statuses do not raise monitoring_overall_status.",
            "gauge",
        )
        for name in sorted(services):
            family.add_sample("monitoring_maintenance", {"service": name}, 1.0)
        for name in sorted(sources):
            family.add_sample("monitoring_maintenance", {"source": name}, 1.0)
        yield family
