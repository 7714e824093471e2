"""Health exposition speed: render vs generate_latest, and push latency while being scraped.

1. ``/metrics`` render with 10,000 health series (4 samples each), 1% of them updated between
   scrapes, against prometheus_client's ``generate_latest`` over the same series rebuilt per
   scrape (the usual collector pattern). Target: at most 0.15x.
2. p99 latency of single health pushes (each committed to PostgreSQL) while /metrics (10,000
   series, gzip) is scraped every 0.5 s by another process, against the p99 without
   scraping. Target: at most 1.5x.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from bench.harness import Figure, percentile, scratch_database
from exporter.config import parse_config
from exporter.domain.health import STATUS_CODE, Rule, classify, first_track
from exporter.domain.health_series import Sample, Series, SeriesStore
from exporter.features.core import DATABASE, EXPOSITION
from exporter.features.health import HEALTH
from exporter.web.app import create_app

SERIES = 10_000
NOW = datetime.now(UTC)
CONFIG: dict[str, Any] = {
    "auth": {"disabled": True},
    "host": {"enabled": False},
    "metrics": {"max_series_per_family": SERIES + 100},
}


def fill(store: SeriesStore, count: int, offset: float = 0.0) -> None:
    """Put ``count`` pushed series into the store (state only, nothing stored)."""
    samples = [
        Sample(
            f"service-{i % 500}",
            f"metric_{i // 500}",
            (i + offset) * 0.001,
            "s",
            "push",
            NOW,
            pushed_rule=Rule(warning=5.0, critical=9.0),
        )
        for i in range(count)
    ]
    now = time.time()
    for sample in samples:
        current = store.get(sample.series_key)
        version = current.version + 1 if current is not None else 1
        track = first_track(classify(sample.value, sample.pushed_rule or Rule()))
        store.put(Series(sample, track, now + 3600, version), now)


class SameSeries:
    """The same series as a prometheus_client collector rebuilding its families per scrape."""

    def __init__(self, store: SeriesStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """Four gauge families from the store."""
        labels = ["service", "metric_type"]
        value = GaugeMetricFamily("monitoring_health_metric_value", "v", labels=labels)
        status = GaugeMetricFamily("monitoring_health_status", "s", labels=labels)
        threshold = GaugeMetricFamily("monitoring_health_threshold", "t", labels=[*labels, "level"])
        for (service, metric_type, _), series in self.store.items():
            value.add_metric([service, metric_type], series.sample.value)
            status.add_metric([service, metric_type], STATUS_CODE[series.status])
            rule = series.sample.pushed_rule or Rule()
            threshold.add_metric([service, metric_type, "warning"], rule.warning or 0.0)
            threshold.add_metric([service, metric_type, "critical"], rule.critical or 0.0)
        yield from (value, status, threshold)


def render_figure(rounds: int) -> Figure:
    app = create_app(parse_config(CONFIG), dsn="postgresql://unused@127.0.0.1:1/unused")
    store, exposition = app[HEALTH].store, app[EXPOSITION]
    fill(store, SERIES)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SameSeries(store))
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(max(rounds, 3) * 4):
        fill(store, SERIES // 100, offset=r + 1)  # 1% of the series changed since last scrape
        started = time.perf_counter()
        body, _ = exposition.render("text/plain", None)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = generate_latest(registry)
        theirs.append(time.perf_counter() - started)
    assert len(body) > len(reference) * 0.5
    value, baseline = statistics.median(ours), statistics.median(theirs)
    return Figure(
        "render 10,000 health series (text 0.0.4)",
        value * 1e3,
        "ms",
        target="<= 0.15x generate_latest",
        baseline=baseline * 1e3,
        baseline_name="prometheus_client.generate_latest, same series",
        met=value <= 0.15 * baseline,
    )


async def push_latencies(client: TestClient[Any, Any], count: int) -> list[float]:
    out = []
    for i in range(count):
        body = {"service": f"service-{i % 500}", "metric_type": "metric_0", "value": i % 7}
        started = time.perf_counter()
        resp = await client.post("/api/v1/health-metrics", json=body)
        await resp.read()
        out.append(time.perf_counter() - started)
        assert resp.status == 201, await resp.text()
    return out


# The scraper is another process, as Prometheus is: asks for gzip, reads the whole body.
SCRAPER = """
import sys, time, urllib.request
url = sys.argv[1]
while True:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req) as resp:
        resp.read()
    print("scraped", flush=True)
    time.sleep(0.5)
"""


async def scraped_pushes(client: TestClient[Any, Any], count: int) -> tuple[list[float], int]:
    """Push latencies while another process scrapes /metrics every 0.5 s; and the scrapes.

    Pushes go on until there are ``count`` of them and at least three scrapes happened.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRAPER,
        str(client.make_url("/metrics")),
        stdout=asyncio.subprocess.PIPE,
    )
    scrapes = 0
    started = asyncio.Event()

    async def count_scrapes() -> None:
        nonlocal scrapes
        assert proc.stdout is not None
        while await proc.stdout.readline():
            scrapes += 1
            started.set()

    counter = asyncio.create_task(count_scrapes())
    latencies: list[float] = []
    try:
        await started.wait()  # the first scrape is done: scraping is under way
        while len(latencies) < count or scrapes < 4:
            latencies += await push_latencies(client, 50)
    finally:
        proc.terminate()
        await proc.wait()
        await counter
    return latencies, scrapes


async def push_figure(rounds: int) -> Figure:
    async with scratch_database() as url:
        app = create_app(parse_config(CONFIG), dsn=url)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        try:
            await app[DATABASE].wait_ready()
            fill(app[HEALTH].store, SERIES)
            await push_latencies(client, 50)  # warm up the pool and the code paths
            quiet: list[float] = []
            scraped: list[float] = []
            scrapes = 0
            for _ in range(rounds):
                quiet.append(percentile(await push_latencies(client, 300), 99))
                latencies, n = await scraped_pushes(client, 300)
                scraped.append(percentile(latencies, 99))
                scrapes += n
            assert scrapes >= 3 * rounds
        finally:
            await client.close()
    value, baseline = statistics.median(scraped), statistics.median(quiet)
    return Figure(
        "p99 single push while scraped every 0.5 s",
        value * 1e3,
        "ms",
        target="<= 1.5x p99 without scraping",
        baseline=baseline * 1e3,
        baseline_name="p99 single push, no scraping",
        met=value <= 1.5 * baseline,
    )


async def run(rounds: int) -> list[Figure]:
    """Both figures."""
    return [render_figure(rounds), await push_figure(rounds)]
