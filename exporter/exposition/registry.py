"""Our own registry: named collectors, each timed and isolated; a failure never fails a scrape."""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

# _created series double the output and carry nothing Prometheus uses
disable_created_metrics()  # type: ignore[no-untyped-call]

log = logging.getLogger(__name__)


class Collector(Protocol):
    """Anything with ``collect()`` yielding fresh metric families (prometheus_client's protocol)."""

    def collect(self) -> Iterable[Metric]:
        """Yield metric families built from current state."""
        ...


class Exposition:
    """The collectors of one service, exposed through one private CollectorRegistry."""

    def __init__(self) -> None:
        self._collectors: dict[str, Collector] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def add(self, name: str, collector: Collector) -> None:
        """Add a collector; its success and duration are exported under ``collector=name``."""
        if name in self._collectors:
            raise ValueError(f"collector {name!r} is already registered")
        self._collectors[name] = collector

    def collect(self) -> Iterator[Metric]:
        """Run every collector; a failing one is logged and reported, never raised."""
        success = GaugeMetricFamily(
            "monitoring_collector_success",
            "Whether the collector succeeded on the last scrape or run (1) or failed (0).",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "monitoring_collector_duration_seconds",
            "How long the collector took on the last scrape or run.",
            labels=["collector"],
        )
        for name, collector in self._collectors.items():
            started = time.perf_counter()
            try:
                families = list(collector.collect())
            except Exception:
                log.exception("collector failed", extra={"collector": name})
                ok = 0.0
                families = []
            else:
                ok = 1.0
            yield from families
            success.add_metric([name], ok)
            duration.add_metric([name], time.perf_counter() - started)
        yield success
        yield duration

    def render(
        self, accept: str | None, accept_encoding: str | None
    ) -> tuple[bytes, dict[str, str]]:
        """Encode the current state for a scrape: text 0.0.4 or OpenMetrics, gzip if accepted."""
        encoder, content_type = choose_encoder(accept or "")
        body: bytes = encoder(self.registry)
        headers = {"Content-Type": content_type}
        if accept_encoding and "gzip" in accept_encoding:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return body, headers
