"""The exporter's own behaviour: long-lived counters (the only ones we keep)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class SelfMetrics:
    """Counters of requests and writes, in a registry that the Exposition collects."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "monitoring_http_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "monitoring_http_request_duration_seconds",
            "Time to answer HTTP requests, by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        # (route, method, status) -> its children: labels() validates and locks on every
        # call, a dict lookup does not (the keys are as bounded as the labels themselves)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.writes_committed = Counter(
            "monitoring_writes_committed",
            "Rows committed to PostgreSQL, by table.",
            ["table"],
            registry=self.registry,
        )
        self.writes_rejected = Counter(
            "monitoring_writes_rejected",
            "Records rejected before storage, by table and reason.",
            ["table", "reason"],
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one answered request."""
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.http_requests.labels(route, method, str(status)),
                self.http_duration.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)
