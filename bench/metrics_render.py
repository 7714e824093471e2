"""/metrics render time of the service's own metrics, against prometheus_client's encoder."""

from __future__ import annotations

from prometheus_client import generate_latest

from bench.harness import Figure, median_seconds
from exporter.config import Config
from exporter.features.core import EXPOSITION, SELF_METRICS
from exporter.web.app import create_app


async def run(rounds: int) -> list[Figure]:
    """Render the exporter's own families (after some traffic) and time it."""
    app = create_app(Config(), dsn="postgresql://unused@127.0.0.1:1/unused")
    self_metrics = app[SELF_METRICS]
    for i in range(50):
        route = f"/api/v1/route{i % 10}"
        self_metrics.http_requests.labels(route, "GET", "200").inc()
        self_metrics.http_duration.labels(route).observe(0.001 * i)
    exposition = app[EXPOSITION]
    ours = median_seconds(lambda: exposition.render("text/plain", None), rounds, repeat=200)
    baseline = median_seconds(lambda: generate_latest(exposition.registry), rounds, repeat=200)
    return [
        Figure(
            "render own metrics (text 0.0.4)",
            ours * 1e6,
            "us",
            target="informational (baseline: generate_latest)",
            baseline=baseline * 1e6,
            baseline_name="prometheus_client.generate_latest",
        )
    ]
