"""Our own registry: named collectors, each timed and isolated; a failure never fails a scrape.

Two kinds of sources: prometheus_client collectors (``collect()`` yields fresh families, rendered
by prometheus_client's encoders), and pre-rendered sources (``render_families(openmetrics)``
yields finished text) for large families whose lines are kept current as data arrives, so a
scrape of thousands of series costs a join instead of a re-encode.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

# _created series double the output and carry nothing Prometheus uses
disable_created_metrics()  # type: ignore[no-untyped-call]

log = logging.getLogger(__name__)

_EOF = b"# EOF\n"
# below this size compressing inline is cheaper than a hop to a worker thread
_THREAD_GZIP_BYTES = 256 * 1024


class Collector(Protocol):
    """Anything with ``collect()`` yielding fresh metric families (prometheus_client's protocol)."""

    def collect(self) -> Iterable[Metric]:
        """Yield metric families built from current state."""
        ...


class Prerendered(Protocol):
    """A source of finished exposition text, one string per family (gauges and untyped only)."""

    def render_families(self, openmetrics: bool) -> Iterable[str]:
        """Yield each family's text in the requested format."""
        ...


class Exposition:
    """The collectors of one service, exposed through one private CollectorRegistry."""

    def __init__(self) -> None:
        self._collectors: dict[str, Collector] = {}
        self._prerendered: dict[str, Prerendered] = {}
        # (success, seconds) of the pre-rendered sources in the scrape being rendered
        self._outcomes: dict[str, tuple[float, float]] = {}
        # (success, seconds) of the last run of collectors that run on their own schedule
        self._runs: list[Callable[[], Mapping[str, tuple[float, float]]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def _check_name(self, name: str) -> None:
        if name in self._collectors or name in self._prerendered:
            raise ValueError(f"collector {name!r} is already registered")

    def add(self, name: str, collector: Collector) -> None:
        """Add a collector; its success and duration are exported under ``collector=name``."""
        self._check_name(name)
        self._collectors[name] = collector

    def add_prerendered(self, name: str, source: Prerendered) -> None:
        """Add a pre-rendered source; exported with success and duration like a collector."""
        self._check_name(name)
        self._prerendered[name] = source

    def add_runs(self, runs: Callable[[], Mapping[str, tuple[float, float]]]) -> None:
        """Export the outcome of collectors that run on their own schedule (quality checks):
        ``runs()`` gives (success 0/1, seconds) by collector name."""
        self._runs.append(runs)

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
        outcomes = dict(self._outcomes)
        for runs in self._runs:
            outcomes.update(runs())
        for name, (ok, seconds) in outcomes.items():
            success.add_metric([name], ok)
            duration.add_metric([name], seconds)
        yield success
        yield duration

    def _render_prerendered(self, openmetrics: bool) -> bytes:
        parts: list[str] = []
        outcomes: dict[str, tuple[float, float]] = {}
        for name, source in self._prerendered.items():
            started = time.perf_counter()
            try:
                text = "".join(source.render_families(openmetrics))
            except Exception:
                log.exception("collector failed", extra={"collector": name})
                outcomes[name] = (0.0, time.perf_counter() - started)
                continue
            parts.append(text)
            outcomes[name] = (1.0, time.perf_counter() - started)
        self._outcomes = outcomes
        return "".join(parts).encode()

    def render(
        self, accept: str | None, accept_encoding: str | None
    ) -> tuple[bytes, dict[str, str]]:
        """Encode the current state for a scrape: text 0.0.4 or OpenMetrics, gzip if accepted."""
        encoder, content_type = choose_encoder(accept or "")
        openmetrics = content_type.startswith("application/openmetrics-text")
        fast = self._render_prerendered(openmetrics)
        body: bytes = encoder(self.registry)
        if openmetrics and body.endswith(_EOF):
            body = body[: -len(_EOF)] + fast + _EOF
        else:
            body = fast + body
        headers = {"Content-Type": content_type}
        if _wants_gzip(accept_encoding):
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    async def render_async(
        self, accept: str | None, accept_encoding: str | None
    ) -> tuple[bytes, dict[str, str]]:
        """Like ``render``, but a large body is compressed in a worker thread.

        zlib releases the GIL, so compressing megabytes of series no longer stalls the event
        loop (and with it every push waiting for its reply) for the length of the compression.
        """
        body, headers = self.render(accept, None)
        if _wants_gzip(accept_encoding):
            if len(body) >= _THREAD_GZIP_BYTES:
                body = await asyncio.to_thread(gzip.compress, body, 1)
            else:
                body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        return body, headers


def _wants_gzip(accept_encoding: str | None) -> bool:
    return bool(accept_encoding) and "gzip" in (accept_encoding or "")
